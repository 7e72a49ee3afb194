"""Methods as registry entries: which multimodal VAE stage 1 trains, and what it exposes.

A method is one file in this package that defines ``METHOD``, a :class:`Method`, and one
name in :data:`_MODULES`. It declares:

* ``model``: builds its stage-1 network from the run's :class:`~vlvae.models.config.ModelConfig`
  and :class:`~vlvae.config.MethodConfig`. Every method shares the VLVAE's image and text
  decoders and its image encoder family, so that only the objective differs; the model's
  ``forward(x, y, kl_weight, w_x, w_y)`` returns the loss to minimise (a
  :class:`~vlvae.models.vlvae.VLVAEOutput`, optionally with more ``terms`` to log).
* ``stages``: the stages fitted on its frozen model after stage 1 (``q_true``, ``q_agg``,
  ``prior``; registered in :mod:`vlvae.methods.stages`). ``q_agg`` needs only an image
  posterior q(z|x), so the paper's q_Agg (Eqn 5) can be fitted post hoc on any method.
* ``own_text_posterior``: the label of the method's own q(z|y) (``model.text_posterior``),
  if it trains one; evaluation compares it with the post-hoc q_Agg.
* ``configure``: what the method fixes in a run's config before it starts (e.g. joint inference).

Adding a method: write ``vlvae/methods/<name>.py`` with a model and ``METHOD``, and add
``"<name>"`` to :data:`_MODULES`. CLI choices (``--method``), ``reproduce --methods``,
config validation and the comparison table all read this registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from vlvae.errors import VLVAEError

__all__ = ["Method", "method_names", "get_method", "build_model", "configure", "no_joint_inference"]

#: The modules of the registered methods, in the order tables list them.
_MODULES = ("vlvae", "joint", "jmvae", "telbo", "mvae")


@dataclass(frozen=True)
class Method:
    """A registered method (see the module docstring).

    Attributes:
        name: its registry name (``--method``, ``method.name`` in the config).
        title: how tables and figures label it.
        reference: the paper (and equation) it implements.
        model: ``(ModelConfig, MethodConfig) -> nn.Module``, the stage-1 network.
        weights_kind: tag stored with its stage-1 weights (weights of another kind are refused).
        stages: stages 2-3 that ``reproduce`` fits on its frozen model, in order.
        own_text_posterior: label of its own q(z|y) (``model.text_posterior``), or None.
        configure: ``ExperimentConfig -> ExperimentConfig``, applied before a run starts.
    """

    name: str
    title: str
    reference: str
    model: Callable
    weights_kind: str
    stages: tuple[str, ...] = ("q_agg",)
    own_text_posterior: str | None = None
    configure: Callable | None = field(default=None, compare=False)


def method_names() -> tuple[str, ...]:
    """The registered methods' names."""
    return _MODULES


def get_method(name: str) -> Method:
    """The registered method called ``name``; one clear line if there is none."""
    if name not in _MODULES:
        raise VLVAEError(f"unknown method {name!r}; choose one of {', '.join(_MODULES)}")
    return importlib.import_module(f"vlvae.methods.{name}").METHOD


def build_model(model_config, method_config):
    """The stage-1 network of ``method_config.name``, sized by ``model_config``."""
    return get_method(method_config.name).model(model_config, method_config)


def no_joint_inference(cfg):
    """A baseline's ``configure``: refuses ``model.joint_inference`` (its q(z|x, y) is a network of
    its own)."""
    if cfg.model.joint_inference:
        raise VLVAEError(
            f"method {cfg.method.name!r} has its own joint posterior and keeps q(z|x) image-only; "
            "drop --set model.joint_inference=true (or use --method joint)"
        )
    return cfg


def configure(cfg):
    """``cfg`` with what its method fixes applied (e.g. ``joint`` turns on joint inference)."""
    method = get_method(cfg.method.name)
    return method.configure(cfg) if method.configure is not None else cfg
