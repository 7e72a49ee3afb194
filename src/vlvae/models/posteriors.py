"""Approximate posteriors and the learned aggregate prior (Cremer & Kushman 2018, §2-§4, §5.1).

Every distribution over z here follows zuko's interface: a module called with
its context returns a :class:`torch.distributions.Distribution`
(``log_prob(z)``, ``rsample(shape)``, ``sample(shape)``), batch shape
``(batch,)`` and event shape ``(latent_dim,)``.

* :class:`ImagePosterior` — q(z|x) (or q(z|x, y) with joint inference, §6):
  image encoder (+ text encoder), shared encoder, diagonal Gaussian.
* :class:`TextPosterior` — q_φ(z|y): its own text encoder gives a context; a
  diagonal Gaussian base whose mean and log-variance are a linear map of it,
  then six conditional coupling steps (§5.1.1). Trained as q_True (Eqn 3) or
  q_Agg (Eqn 5); ``family="gaussian"`` keeps only the base (a baseline).
* :class:`AggregatePrior` — q_φ(z) ≈ E_pD(x)[q(z|x)] (§4.2): a learnable
  diagonal Gaussian base and six unconditional coupling steps.

Under mixed precision every distribution here has float32 parameters and log-densities while
the encoders' layers run in low precision (docs/mixed_precision.md).
"""

from __future__ import annotations

import torch
from torch import LongTensor, Tensor, nn
from torch.distributions import Distribution
from zuko.distributions import DiagNormal
from zuko.flows import Flow

from vlvae.models.config import POSTERIOR_FAMILIES, ModelConfig
from vlvae.models.flows import ConditionalDiagNormal, LearnableDiagNormal, coupling_transforms
from vlvae.models.image import make_image_encoder
from vlvae.models.shared import SharedEncoder
from vlvae.models.text import TextEncoder
from vlvae.objectives import float32

__all__ = ["ImagePosterior", "TextPosterior", "AggregatePrior", "POSTERIOR_FAMILIES"]


def _check_family(family: str) -> None:
    if family not in POSTERIOR_FAMILIES:
        raise ValueError(f"posterior_family must be one of {POSTERIOR_FAMILIES}, got {family!r}.")


class ImagePosterior(nn.Module):
    """q(z|x), or q(z|x, y) when ``config.joint_inference``: a diagonal Gaussian.

    Arguments:
        config: the model configuration.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.joint = config.joint_inference
        self.image_encoder = make_image_encoder(
            config.arch,
            config.image_size,
            config.image_channels,
            config.encoder_channels or config.base_channels,
            config.n_downsample,
            config.n_res_blocks,
            config.encoding_dim,
            config.norm,
            config.coord_channels,
        )
        self.text_encoder = (
            TextEncoder(config.vocab_size, config.embedding_dim, config.text_hidden, config.encoding_dim)
            if self.joint
            else None
        )
        self.shared_encoder = SharedEncoder(
            config.encoding_dim * (2 if self.joint else 1),
            config.shared_hidden,
            config.latent_dim,
            config.logvar_min,
            config.logvar_max,
        )

    def encode(self, x: Tensor, y: LongTensor | None = None) -> tuple[Tensor, Tensor]:
        """x: (batch, 3, H, W) in [0, 1]; y: (batch, L), needed only for joint inference.

        Returns mean, logvar: (batch, latent_dim) each.
        """
        h = self.image_encoder(x)
        if self.joint:
            if y is None:
                raise ValueError("This model infers z from image and text (joint_inference); pass y too.")
            h = torch.cat([h, self.text_encoder(y)], dim=-1)
        return self.shared_encoder(h)

    def forward(self, x: Tensor, y: LongTensor | None = None) -> Distribution:
        """Same inputs as :meth:`encode` -> DiagNormal, batch (batch,), event (latent_dim,)."""
        mean, logvar = float32(self.encode(x, y))
        return DiagNormal(mean, torch.exp(0.5 * logvar))


class TextPosterior(nn.Module):
    """q_φ(z|y): text encoder -> conditional Gaussian base -> conditional coupling flow.

    Arguments:
        config: the model configuration (vocabulary, encoder sizes, latent_dim,
            flow_steps, flow_hidden, log-variance clamp).
        family: ``"flow"`` (the paper's) or ``"gaussian"`` (the base alone).

    Example:
        >>> q = TextPosterior(ModelConfig(image_size=16, latent_dim=4))
        >>> d = q(torch.randint(19, (3, 9)))
        >>> d.rsample((5,)).shape, d.log_prob(d.rsample()).shape
        (torch.Size([5, 3, 4]), torch.Size([3]))
    """

    def __init__(self, config: ModelConfig, family: str = "flow") -> None:
        super().__init__()
        _check_family(family)
        self.family = family
        self.encoder = TextEncoder(
            config.vocab_size, config.embedding_dim, config.text_hidden, config.encoding_dim
        )
        base = ConditionalDiagNormal(
            config.encoding_dim, config.latent_dim, config.logvar_min, config.logvar_max
        )
        if family == "flow":
            transforms = coupling_transforms(
                config.latent_dim, config.encoding_dim, config.flow_steps, config.flow_hidden
            )
            self.distribution = Flow(transforms, base)
        else:
            self.distribution = base

    def forward(self, y: LongTensor) -> Distribution:
        """y: (batch, L) word indices -> q_φ(z|y), batch (batch,), event (latent_dim,)."""
        return self.distribution(self.encoder(y))


class AggregatePrior(nn.Module):
    """q_φ(z): learnable diagonal Gaussian base -> unconditional coupling flow (§4.2).

    Arguments:
        config: the model configuration (latent_dim, flow_steps, flow_hidden, log-variance clamp).
        family: ``"flow"`` (the paper's) or ``"gaussian"`` (the base alone).

    Example:
        >>> prior = AggregatePrior(ModelConfig(image_size=16, latent_dim=4))
        >>> prior().rsample((5,)).shape
        torch.Size([5, 4])
    """

    def __init__(self, config: ModelConfig, family: str = "flow") -> None:
        super().__init__()
        _check_family(family)
        self.family = family
        base = LearnableDiagNormal(config.latent_dim, config.logvar_min, config.logvar_max)
        if family == "flow":
            transforms = coupling_transforms(config.latent_dim, 0, config.flow_steps, config.flow_hidden)
            self.distribution = Flow(transforms, base)
        else:
            self.distribution = base

    def forward(self) -> Distribution:
        """-> q_φ(z), event (latent_dim,)."""
        return self.distribution()
