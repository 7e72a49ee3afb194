"""Methods as registry entries: which multimodal VAE stage 1 trains, and what it exposes.

A method is one file in this package that defines ``METHOD``, a :class:`Method`, and one
name in :data:`_MODULES`. It declares:

* ``model``: builds its stage-1 network from the run's :class:`~vlvae.models.config.ModelConfig`
  and its :class:`MethodConfig`.
* ``config``: its own typed knobs, a dataclass subclassing :class:`MethodConfig` (e.g. JMVAE-kl's
  ``alpha``): the run's config reads, validates and saves them under ``method.<knob>``
  (``--set method.alpha=0.2``) without :mod:`vlvae.config` knowing them. A field's
  ``metadata={"range": (low, low included, high, high included)}`` is checked like every range of
  the config (None: unbounded on that side). Every method shares the VLVAE's image and text
  decoders and its image encoder family, so that only the objective differs; the model's
  ``forward(x, y, kl_weight, w_x, w_y)`` returns the loss to minimise (a
  :class:`~vlvae.models.vlvae.VLVAEOutput`, optionally with more ``terms`` to log).
* ``stages``: the stages fitted on its frozen model after stage 1 (``q_true``, ``q_agg``,
  ``prior``; registered in :mod:`vlvae.methods.stages`). ``q_agg`` needs only an image
  posterior q(z|x), so the paper's q_Agg (Eqn 5) can be fitted post hoc on any method.
* ``own_text_posterior``: the label of the method's own q(z|y) (``model.text_posterior``),
  if it trains one; evaluation compares it with the post-hoc q_Agg.
* ``configure``: what the method fixes in a run's config before it starts (e.g. joint inference).

Adding a method: write ``vlvae/methods/<name>.py`` with a model (and its knobs' config, if it
has any) and ``METHOD``, and add ``"<name>"`` to :data:`_MODULES`. CLI choices (``--method``),
``reproduce --methods``, config validation and the comparison table all read this registry.

This package sits below :mod:`vlvae.config`: a method receives its config as an argument and
never imports the config module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from vlvae.errors import VLVAEError

__all__ = [
    "Method",
    "MethodConfig",
    "method_names",
    "get_method",
    "method_config",
    "knob_names",
    "build_model",
    "configure",
    "no_joint_inference",
]


@dataclass
class MethodConfig:
    """The ``method`` section of a run's config: which multimodal VAE stage 1 trains.

    Attributes:
        name: a method registered in :mod:`vlvae.methods`: ``vlvae`` (the paper's, marginal
            inference q(z|x)), ``joint`` (the VLVAE with joint inference q(z|x, y), §6 Fig. 7),
            ``jmvae`` (Suzuki et al. 2016), ``telbo`` (Vedantam et al. 2018), ``mvae`` (Wu &
            Goodman 2018). Every method shares the VLVAE's networks and ``stage1`` settings.

    A method with knobs subclasses this with its own typed fields (:attr:`Method.config`).
    """

    name: str = "vlvae"


#: The modules of the registered methods, in the order tables list them.
_MODULES = ("vlvae", "joint", "jmvae", "telbo", "mvae")


@dataclass(frozen=True)
class Method:
    """A registered method (see the module docstring).

    Attributes:
        name: its registry name (``--method``, ``method.name`` in the config).
        title: how tables and figures label it.
        reference: the paper (and equation) it implements.
        model: ``(ModelConfig, its MethodConfig) -> nn.Module``, the stage-1 network.
        weights_tag: tag stored with its stage-1 weights (weights with another tag are refused).
        stages: stages 2-3 that ``reproduce`` fits on its frozen model, in order.
        own_text_posterior: label of its own q(z|y) (``model.text_posterior``), or None.
        configure: ``ExperimentConfig -> ExperimentConfig``, applied before a run starts.
        config: the dataclass of its ``method`` section: :class:`MethodConfig`, or a subclass with
            its own knobs.
    """

    name: str
    title: str
    reference: str
    model: Callable
    weights_tag: str
    stages: tuple[str, ...] = ("q_agg",)
    own_text_posterior: str | None = None
    configure: Callable | None = field(default=None, compare=False)
    config: type[MethodConfig] = MethodConfig


def method_names() -> tuple[str, ...]:
    """The registered methods' names."""
    return _MODULES


def get_method(name: str) -> Method:
    """The registered method called ``name``; one clear line if there is none."""
    if name not in _MODULES:
        raise VLVAEError(f"unknown method {name!r}; choose one of {', '.join(_MODULES)}")
    return importlib.import_module(f"vlvae.methods.{name}").METHOD


def knob_names(name: str) -> tuple[str, ...]:
    """The knobs method ``name`` declares (the fields of its config besides ``name``)."""
    return tuple(f.name for f in fields(get_method(name).config) if f.name != "name")


def method_config(name: str, **values) -> MethodConfig:
    """The ``method`` section of method ``name``: its own config class with its defaults, and the
    ``values`` of the knobs it declares over them (values of other knobs are left out)."""
    known = knob_names(name)
    return get_method(name).config(name=name, **{k: v for k, v in values.items() if k in known})


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
