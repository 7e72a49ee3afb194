"""Networks the baselines add to the VLVAE: their own text and joint posteriors (JMVAE, TELBO, MVAE).

Every baseline keeps the VLVAE's generative networks (N(0, I) prior, shared decoder,
constrained-Beta image decoder, GRU text decoder) and its image posterior q(z|x), and adds:

* :class:`GaussianTextPosterior` — its own q(z|y): the text encoder of
  :class:`~vlvae.models.posteriors.TextPosterior` and a shared encoder (as q(z|x)'s) to a
  diagonal Gaussian;
* for JMVAE and TELBO a joint posterior q(z|x, y): the VLVAE's joint-inference image posterior
  (its own image and text encoders).

:class:`MultimodalVAE` holds them; each method's file (:mod:`vlvae.methods`) subclasses it with
its objective. ``image_posterior(x, y)`` is always the image-only q(z|x) (the proposal of the
bounds, the reconstructions, and what a post-hoc q_Agg aggregates).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import LongTensor, Tensor, nn
from torch.distributions import Distribution
from zuko.distributions import DiagNormal

from vlvae.models.config import ModelConfig
from vlvae.models.posteriors import ImagePosterior
from vlvae.models.shared import SharedEncoder
from vlvae.models.text import TextEncoder
from vlvae.models.vlvae import VLVAE, VLVAEOutput

__all__ = ["GaussianTextPosterior", "MultimodalVAE", "MultimodalOutput", "gaussian", "frozen_decoders"]


def gaussian(mean: Tensor, logvar: Tensor) -> Distribution:
    """The diagonal Gaussian N(mean, diag exp(logvar)): batch (batch,), event (latent,)."""
    return DiagNormal(mean, torch.exp(0.5 * logvar))


@dataclass
class MultimodalOutput(VLVAEOutput):
    """A baseline's training step: :class:`VLVAEOutput`'s fields for the joint term, plus ``terms``.

    ``elbo``, ``log_px``, ``log_py`` and ``kl`` describe the joint posterior's ELBO; ``terms``
    holds the method's other scalars (batch means) for the logs.
    """

    terms: dict = field(default_factory=dict)

    @classmethod
    def of(
        cls, objective: Tensor, log_px: Tensor, log_py: Tensor, kl: Tensor, **terms: Tensor
    ) -> MultimodalOutput:
        """From per-example tensors: the objective to maximise and the joint ELBO's terms (batch means
        taken)."""
        return cls(
            loss=-objective.mean(),
            elbo=(log_px + log_py - kl).mean(),
            log_px=log_px.mean(),
            log_py=log_py.mean(),
            kl=kl.mean(),
            terms={k: v.mean() for k, v in terms.items()},
        )


class GaussianTextPosterior(nn.Module):
    """q(z|y) as the baselines train it: text encoder -> shared encoder -> diagonal Gaussian.

    Example:
        >>> q = GaussianTextPosterior(ModelConfig(image_size=16, latent_dim=4))
        >>> q(torch.randint(19, (3, 9))).rsample().shape
        torch.Size([3, 4])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = TextEncoder(
            config.vocab_size, config.embedding_dim, config.text_hidden, config.encoding_dim
        )
        self.shared_encoder = SharedEncoder(
            config.encoding_dim, config.shared_hidden, config.latent_dim, config.logvar_min, config.logvar_max
        )

    def encode(self, y: LongTensor) -> tuple[Tensor, Tensor]:
        """y (batch, L) -> mean, logvar (batch, latent)."""
        return self.shared_encoder(self.encoder(y))

    def forward(self, y: LongTensor) -> Distribution:
        return gaussian(*self.encode(y))


class MultimodalVAE(VLVAE):
    """The VLVAE's networks with an image-only q(z|x), a Gaussian q(z|y) and optionally a joint q(z|x, y).

    Arguments:
        config: the model configuration (``joint_inference`` must be off: the joint posterior is
            a separate network here, and ``image_posterior`` stays image-only).
        joint_posterior: also build q(z|x, y).
    """

    def __init__(self, config: ModelConfig, joint_posterior: bool) -> None:
        if config.joint_inference:
            raise ValueError("a baseline keeps q(z|x) image-only; set model.joint_inference=false")
        super().__init__(config)
        self.text_posterior = GaussianTextPosterior(config)
        self.joint_posterior = (
            ImagePosterior(replace(config, joint_inference=True)) if joint_posterior else None
        )


class _Decoders(nn.Module):
    """A view of a model's three decoders (not registered in the model), for :func:`frozen_decoders`."""

    def __init__(self, model: MultimodalVAE) -> None:
        super().__init__()
        self.shared_decoder = model.shared_decoder
        self.image_decoder = model.image_decoder
        self.text_decoder = model.text_decoder
        object.__setattr__(self, "owner", model)  # not a submodule

    def forward(self, x, y, z):
        return self.owner.decode_terms(x, y, z)


def frozen_decoders(model: MultimodalVAE, x: Tensor | None, y: LongTensor | None, z: Tensor):
    """:meth:`VLVAE.decode_terms` with the decoders frozen: parameters detached, in evaluation mode.

    Gradients reach z (and through it the inference network that drew it) but no decoder
    parameter: TELBO's unimodal terms train their inference networks against frozen decoders.

    The decoders run in evaluation mode for this pass (each module's mode is restored after it,
    even on an error), so the pass leaves every decoder buffer untouched: batch norm normalises
    with its running statistics and does not update them (nor ``num_batches_tracked``), and
    dropout is off. Running statistics rather than the batch's own, because:

    * the running statistics are what the decoders are evaluated with (every sample, bound and
      score runs the model in evaluation mode), so q(z|x) and q(z|y) are fitted to the very
      decoders that will decode their samples; and only the joint term, which trains the decoders,
      shapes those statistics;
    * batch statistics would renormalise the decoders' hidden units to each unimodal batch, so a
      q(z|y) whose codes sit off the joint posterior's region (shifted or too wide) would be
      partly forgiven in training and not at evaluation; with running statistics it is not.

    Early in training the running statistics lag the changing weights (momentum 0.1: about ten
    steps), a transient the KL warm-up already spans.
    """
    view = _Decoders(model)
    modes = {m: m.training for m in view.modules()}
    params = {name: p.detach() for name, p in view.named_parameters()}
    view.eval()
    try:
        return torch.func.functional_call(view, params, (x, y, z))
    finally:
        for m, training in modes.items():
            m.train(training)
