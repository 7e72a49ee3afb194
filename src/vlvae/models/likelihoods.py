"""The constrained Beta image likelihood p(x|z) (Cremer & Kushman 2018, §5.1.2).

The image decoder outputs α ∈ (0, 1) per pixel and channel; the likelihood is
Beta(c·α, c·(1 − α)) with c = 100, so its mean is α and c sets its variance.

Pixels are mapped affinely into [low, high] = [0.02, 0.98] before the density
is evaluated. The Beta log-density diverges at 0 and 1: with the authors' clamp
to [1e-5, 1 − 1e-5], saturated pixels (e.g. a yellow object's red channel at
255) give enormous log-densities whose size swings from batch to batch, and a
probe here saw the posterior collapse (docs/design.md §2 caution, §8). Likelihoods are
therefore densities of the *mapped* pixels; the map is applied identically in
training and evaluation, and reported likelihoods name it.

Mixed precision: α is cast to float32 and the log-density is computed with autocast off
(:func:`vlvae.objectives.full_precision`). In bfloat16 the clamp 1 − 1e-4 rounds to 1 and
lgamma(cα) loses nats per pixel (docs/mixed_precision.md).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Beta, Distribution, constraints

from vlvae.objectives import full_precision

__all__ = ["ConstrainedBeta", "beta_log_prob", "map_pixels", "pixel_log_jacobian", "unmap_pixels"]

ALPHA_EPS = 1e-4


def map_pixels(x: Tensor, low: float, high: float) -> Tensor:
    """Map pixels from [0, 1] affinely into [low, high] (same shape)."""
    return low + (high - low) * x


def unmap_pixels(x: Tensor, low: float, high: float) -> Tensor:
    """Invert :func:`map_pixels` and clamp the result into [0, 1] (same shape)."""
    return ((x - low) / (high - low)).clamp(0.0, 1.0)


def pixel_log_jacobian(num_dims: int, pixel_low: float, pixel_high: float) -> float:
    """log |d mapped / d x| of :func:`map_pixels` over ``num_dims`` pixel-channels: D·log(high − low).

    Add it to a log-density of mapped pixels (what the Beta likelihood gives) to
    obtain the log-density of the same pixels on their [0, 1] scale:
    log p(x) = log p_mapped(low + (high − low)·x) + D·log(high − low).

    Example:
        >>> round(pixel_log_jacobian(2, 0.02, 0.98), 6) == round(2 * math.log(0.96), 6)
        True
    """
    if not 0.0 <= pixel_low < pixel_high:
        raise ValueError(f"need 0 <= pixel_low < pixel_high, got [{pixel_low}, {pixel_high}]")
    return num_dims * math.log(pixel_high - pixel_low)


class _BetaLogProb(torch.autograd.Function):
    """log Beta(x; cα, c(1 − α)) with a hand-written gradient in α (docs/design.md §8.2).

    Forward: (a − 1)·log x + (b − 1)·log(1 − x) − lgamma(a) − lgamma(b) + lgamma(c), a = cα, b = c − a.
    Backward: ∂/∂α = c·(log x − log(1 − x) − ψ(a) + ψ(b)), ψ the digamma function. The same
    arithmetic as autograd through the expression, in two in-place passes instead of a graph of
    ten tensors; log x and log(1 − x) are computed once, outside, and no gradient flows to x.
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, log_x: Tensor, log_1mx: Tensor, concentration: float) -> Tensor:
        a = alpha * concentration
        b = concentration - a
        ctx.save_for_backward(a, log_x, log_1mx)
        ctx.concentration = concentration
        out = torch.lgamma(a).add_(torch.lgamma(b)).neg_().add_(math.lgamma(concentration))
        return out.addcmul_(a - 1.0, log_x).addcmul_(b - 1.0, log_1mx)

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, log_x, log_1mx = ctx.saved_tensors
        c = ctx.concentration
        d_alpha = (log_x - log_1mx).sub_(torch.digamma(a)).add_(torch.digamma(c - a)).mul_(grad * c)
        return d_alpha, None, None, None


def beta_log_prob(alpha: Tensor, value: Tensor, concentration: float) -> Tensor:
    """Element-wise log Beta(value; cα, c(1 − α)) for α already clamped into (0, 1), any shape
    (broadcast); differentiable in α and, when ``value`` needs a gradient, in ``value`` too.

    Example:
        >>> a, x = torch.tensor([0.3, 0.8]), torch.tensor([0.25, 0.9])
        >>> torch.allclose(beta_log_prob(a, x, 100.0), Beta(100 * a, 100 * (1 - a)).log_prob(x))
        True
    """
    if value.requires_grad:  # e.g. a reparameterised sample: the plain expression, through autograd
        a = concentration * alpha
        b = concentration - a
        log_norm = torch.lgamma(a) + torch.lgamma(b) - math.lgamma(concentration)
        return (a - 1.0) * torch.log(value) + (b - 1.0) * torch.log1p(-value) - log_norm
    alpha, value = torch.broadcast_tensors(alpha, value)
    return _BetaLogProb.apply(alpha, torch.log(value), torch.log1p(-value), float(concentration))


class ConstrainedBeta(Distribution):
    r"""Element-wise Beta(c·α, c·(1 − α)), whose mean is α.

    .. math:: \log p(x) = (cα − 1) \log x + (c(1 − α) − 1) \log(1 − x)
              − \log Γ(cα) − \log Γ(c(1 − α)) + \log Γ(c)

    α is clamped into [1e-4, 1 − 1e-4] so that both Beta parameters stay positive
    in floating point. α and the log-density are float32 (float64 if α is) even
    under autocast. Batch shape is α's shape, event shape is ``()``; wrap in
    :class:`torch.distributions.Independent` for images.

    Arguments:
        alpha: the mean α, any shape, values in (0, 1).
        concentration: c = α + β of the unconstrained Beta (the paper's 100).

    Example:
        >>> d = ConstrainedBeta(torch.full((2,), 0.3), 100.0)
        >>> d.log_prob(torch.tensor([0.3, 0.9])).shape
        torch.Size([2])
    """

    arg_constraints = {"alpha": constraints.unit_interval}
    support = constraints.unit_interval
    has_rsample = True

    @full_precision
    def __init__(self, alpha: Tensor, concentration: float, validate_args: bool | None = None):
        self.alpha = alpha.clamp(ALPHA_EPS, 1.0 - ALPHA_EPS)
        self.concentration = float(concentration)
        super().__init__(self.alpha.shape, validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return self.alpha

    @property
    def variance(self) -> Tensor:
        return self.alpha * (1.0 - self.alpha) / (self.concentration + 1.0)

    def expand(self, batch_shape: torch.Size, _instance: Distribution | None = None) -> ConstrainedBeta:
        return ConstrainedBeta(self.alpha.expand(batch_shape), self.concentration)

    @full_precision
    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return beta_log_prob(self.alpha, value, self.concentration)

    @full_precision
    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        a = self.concentration * self.alpha
        return Beta(a, self.concentration - a).rsample(sample_shape)
