r"""The paper's affine coupling flows, expressed with zuko (Cremer & Kushman 2018, §5.1.1).

Each flow step splits z into its first and second half of indices and applies
(Eqns 7-8, after RealNVP, Dinh et al. 2016, https://arxiv.org/abs/1605.08803)

.. math::
    z_1' = z_1 \circ σ_1(z_2) + μ_1(z_2), \qquad
    z_2' = z_2 \circ σ_2(z_1') + μ_2(z_1'),

with :math:`\log|\det| = Σ \log σ_1 + Σ \log σ_2`. For q(z|y) every σ and μ
also reads the text encoding. Six steps are chained.

How this maps onto zuko (1.6):

* Each half-step is a :class:`zuko.flows.GeneralCouplingTransform` with an
  explicit half mask (``True`` marks the conditioning half) whose hypernetwork
  is zuko's MLP with one tanh hidden layer of 50 units (docs/design.md §2.1).
* zuko's flows map a sample *to* the base noise (``log_prob`` runs the
  transform forwards, ``rsample`` its inverse). The paper writes its steps in
  the sampling direction, so the coupling list is the paper's sequence
  reversed, and the univariate transform, :class:`SigmoidAffineTransform`, is
  the normalising map u = (z − μ)/σ; its inverse is the paper's z = σ·u + μ.
  ``log_prob`` then evaluates each hypernetwork once.
* σ = sigmoid(a + 3) + 1e-3, as the authors' sigmoid scale (docs/design.md §2.1), with
  two changes. The offset 3 makes a fresh hypernetwork (a ≈ 0) start near the
  identity (σ ≈ 0.95) instead of halving every coordinate at each of the twelve
  half-steps (a 1/64 contraction at initialisation). The floor 1e-3 keeps
  1/σ and log σ finite. zuko's own MonotonicAffineTransform uses σ = exp(·)
  with a soft bound, which is not the paper's σ, so it is not used.
* Guard (docs/design.md §8): inverting a flow on samples far from its training data
  divides by σ up to twelve times and overflowed to NaN in a probe. The
  normalising map clamps its output to ±1e6, so ``log_prob`` is finite (and
  hugely negative) for any finite z; below that bound it is exact.
* Mixed precision (docs/mixed_precision.md): the hypernetworks and the bases' linear map run in
  whatever autocast chooses, but each step's μ and σ, the normalised z, the log-determinants and
  the bases' parameters are float32 (:func:`vlvae.objectives.full_precision`), so ``log_prob``
  is float32 under bfloat16 autocast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Transform, constraints
from zuko.distributions import DiagNormal
from zuko.flows import GeneralCouplingTransform
from zuko.lazy import LazyDistribution, LazyTransform

from vlvae.objectives import float32, full_precision

__all__ = [
    "SigmoidAffineTransform",
    "coupling_transforms",
    "ConditionalDiagNormal",
    "LearnableDiagNormal",
]

SCALE_OFFSET = 3.0
SCALE_FLOOR = 1e-3
VALUE_BOUND = 1e6


class SigmoidAffineTransform(Transform):
    r"""Normalising direction of the paper's affine map z = σ·u + μ, i.e. u = (z − μ)/σ.

    σ = sigmoid(a + 3) + 1e-3 > 0. The output is clamped to ±1e6 (see the module
    docstring); the log-determinant is −log σ. μ and σ are kept in float32 (float64 if
    given so) whatever the hypernetwork's precision.

    Arguments:
        shift: μ, any shape.
        scale: the unconstrained a, same shape.

    Example:
        >>> t = SigmoidAffineTransform(torch.zeros(2), torch.zeros(2))
        >>> t.inv(t(torch.tensor([1.0, -2.0])))
        tensor([ 1., -2.])
    """

    domain = constraints.real
    codomain = constraints.real
    bijective = True
    sign = +1

    @full_precision
    def __init__(self, shift: Tensor, scale: Tensor, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shift = shift
        self.scale = torch.sigmoid(scale + SCALE_OFFSET) + SCALE_FLOOR

    def _call(self, z: Tensor) -> Tensor:
        return ((z - self.shift) / self.scale).clamp(-VALUE_BOUND, VALUE_BOUND)

    def _inverse(self, u: Tensor) -> Tensor:
        return u * self.scale + self.shift

    def log_abs_det_jacobian(self, z: Tensor, u: Tensor) -> Tensor:
        return -torch.log(self.scale).expand(z.shape)


def _half_masks(features: int) -> tuple[Tensor, Tensor]:
    first = torch.arange(features) < features // 2
    return first, ~first


def coupling_transforms(features: int, context: int, steps: int, hidden: int) -> list[LazyTransform]:
    """The paper's ``steps`` flow steps (Eqns 7-8) as zuko lazy transforms, normalising direction.

    Returns ``2 * steps`` couplings ordered for :class:`zuko.flows.Flow`: the
    paper's sampling sequence (z1 update, z2 update, z1 update, ...) reversed.

    Arguments:
        features: size of z (>= 2).
        context: size of the context (0 for an unconditional flow).
        steps: flow steps (pairs of half-steps).
        hidden: tanh hidden units of each hypernetwork.
    """
    first, second = _half_masks(features)
    sampling_order = []
    for _ in range(steps):
        for conditioning in (second, first):  # Eqn 7 updates z1 given z2, Eqn 8 z2 given z1'
            sampling_order.append(
                GeneralCouplingTransform(
                    features,
                    context,
                    mask=conditioning,
                    univariate=SigmoidAffineTransform,
                    shapes=((), ()),
                    hidden_features=(hidden,),
                    activation=nn.Tanh,
                )
            )
    return sampling_order[::-1]


class ConditionalDiagNormal(LazyDistribution):
    """c -> N(mean(c), diag exp(logvar(c))), a linear map of the context; the base of q(z|y).

    Arguments:
        context: size of the context.
        features: size of z.
        logvar_min, logvar_max: clamp of the log-variance.

    Example:
        >>> base = ConditionalDiagNormal(8, 4, -15.0, 10.0)
        >>> base(torch.randn(3, 8)).batch_shape, base(torch.randn(3, 8)).event_shape
        (torch.Size([3]), torch.Size([4]))
    """

    def __init__(self, context: int, features: int, logvar_min: float, logvar_max: float) -> None:
        super().__init__()
        self.linear = nn.Linear(context, 2 * features)
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, c: Tensor) -> Distribution:
        """c: (batch, context) -> DiagNormal with batch (batch,), event (features,); float32 parameters."""
        mean, logvar = float32(self.linear(c)).chunk(2, dim=-1)
        logvar = logvar.clamp(self.logvar_min, self.logvar_max)
        return DiagNormal(mean, torch.exp(0.5 * logvar))


class LearnableDiagNormal(LazyDistribution):
    """N(loc, diag exp(2·log_scale)) with learnable loc and log-scale; the base of q_φ(z).

    Starts at N(0, I). The log-scale is clamped like every log-variance
    (half of [logvar_min, logvar_max]).

    Arguments:
        features: size of z.
        logvar_min, logvar_max: clamp of the log-variance.
    """

    def __init__(self, features: int, logvar_min: float, logvar_max: float) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.logvar_min = logvar_min
        self.logvar_max = logvar_max

    def forward(self, c: Tensor | None = None) -> Distribution:
        """c is ignored -> DiagNormal with event (features,)."""
        log_scale = self.log_scale.clamp(0.5 * self.logvar_min, 0.5 * self.logvar_max)
        return DiagNormal(self.loc, log_scale.exp())
