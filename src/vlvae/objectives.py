r"""Every objective and bound of Cremer & Kushman (2018), as pure vectorised functions.

Equation numbers are the paper's. Shapes: ``batch`` indexes examples, ``k``
importance samples. Per-example terms are returned, never averaged over the
batch, so the caller chooses the reduction.

* VLVAE, Eqns 1-2: :func:`vlvae_elbo`, :func:`kl_normal_standard`, :func:`kl_warmup`.
* q_True(z|y), Eqn 3: :func:`text_elbo`.
* q_Agg(z|y), Eqns 4-5: :func:`aggregate_cross_entropy`; q_φ(z), §4.2:
  :func:`prior_cross_entropy`; JMVAE's term (Suzuki et al. 2016): :func:`jmvae_kl`.
* The objectives of the stages fitted on a frozen model, each with one signature (the stage
  registry, :mod:`vlvae.methods.stages`, names them): :func:`true_posterior_objective` (q_True),
  :func:`aggregate_posterior_objective` (q_Agg), :func:`aggregate_prior_objective` (q_φ(z)).
* Baselines (:mod:`vlvae.methods`): :func:`kl_diagonal_normals`,
  :func:`product_of_experts` (MVAE), :func:`jmvae_kl_objective` (JMVAE-kl),
  :func:`sum_of_elbos` (TELBO, MVAE).
* Evaluation, Eqn 6 and §4.2: :func:`importance_weighted_bound` (IWAE, Burda et
  al. 2016, https://arxiv.org/abs/1509.00519), :func:`conditional_log_likelihood`,
  :func:`marginal_log_likelihood_image`, :func:`marginal_log_likelihood_text`,
  :func:`importance_log_marginals` (from :func:`importance_log_weights`, with
  :func:`nested_log_marginals` and the weights' :func:`effective_sample_sizes`);
  always on the unweighted likelihoods, micro-batched over the k samples (as
  MMVAE's objectives do) so k = 1000 fits in memory. Bounds on log p(x) and
  log p(x|y) use q(z|x) as the proposal; the bound on log p(y) uses a proposal
  that depends on y alone (:class:`DefensiveMixture`), the same for every prior
  it compares, with a Gaussian per text fitted to the posterior under each prior
  by Eqn 3 (:func:`fit_gaussian_posterior`).
* Mixed precision (docs/mixed_precision.md): :func:`full_precision` runs a log-density or bound
  with autocast off and its half-precision inputs in float32; every function here that sums
  log-densities or takes a log-sum-exp carries it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import LongTensor, Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence

__all__ = [
    "full_precision",
    "float32",
    "kl_normal_standard",
    "kl_warmup",
    "vlvae_elbo",
    "text_elbo",
    "aggregate_cross_entropy",
    "prior_cross_entropy",
    "StageObjective",
    "true_posterior_objective",
    "aggregate_posterior_objective",
    "aggregate_prior_objective",
    "jmvae_kl",
    "kl_diagonal_normals",
    "product_of_experts",
    "jmvae_kl_objective",
    "sum_of_elbos",
    "importance_weighted_bound",
    "importance_log_weights",
    "nested_log_marginals",
    "effective_sample_sizes",
    "importance_log_marginals",
    "GaussianFit",
    "fit_gaussian_posterior",
    "DefensiveMixture",
    "conditional_log_likelihood",
    "marginal_log_likelihood_image",
    "marginal_log_likelihood_text",
]

#: Device types whose autocast :func:`full_precision` turns off (those Lightning's mixed precision uses).
AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")
_HALF = (torch.float16, torch.bfloat16)
_F = TypeVar("_F", bound=Callable)


def float32(value):
    """``value`` with every float16/bfloat16 tensor in it cast to float32, recursively through
    tuples, lists and dicts; float32/float64 tensors and anything else are returned as they are.

    Example:
        >>> float32((torch.ones(1, dtype=torch.bfloat16), torch.ones(1, dtype=torch.float64)))
        (tensor([1.]), tensor([1.], dtype=torch.float64))
    """
    if isinstance(value, Tensor):
        return value.float() if value.dtype in _HALF else value
    if isinstance(value, (tuple, list)):
        return type(value)(float32(v) for v in value)
    if isinstance(value, dict):
        return {k: float32(v) for k, v in value.items()}
    return value


def full_precision(fn: _F) -> _F:
    """Decorator: ``fn`` runs with autocast turned off and its half-precision tensor arguments
    in float32 (:func:`float32`), so a log-density or bound computed by it is float32 (float64
    where its inputs are) even inside ``torch.autocast`` / Lightning's ``bf16-mixed``.

    Why: bfloat16 keeps 8 significant bits (a relative step of 2⁻⁸ ≈ 0.4 %). lgamma, log-softmax,
    log-determinants and log-sum-exps are sums or differences of terms far larger than their
    result, so their bfloat16 rounding is nats per pixel or word; a 16 × 16 image's constrained-Beta
    log-density came out +216 nats under bfloat16 autocast where float32 gives −752. Network layers
    (convolutions, linear maps, GRUs) outside such functions keep running in low precision.

    Example:
        >>> @full_precision
        ... def log_norm(a):
        ...     return torch.lgamma(a).sum()
        >>> with torch.autocast("cpu", dtype=torch.bfloat16):
        ...     log_norm(torch.full((3,), 98.0, dtype=torch.bfloat16)).dtype
        torch.float32
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with ExitStack() as stack:
            for device in AUTOCAST_DEVICES:
                if torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*float32(args), **float32(kwargs))

    return wrapper  # type: ignore[return-value]


@full_precision
def kl_normal_standard(mean: Tensor, logvar: Tensor) -> Tensor:
    r"""KL(N(mean, diag exp(logvar)) || N(0, I)), analytic (the KL of Eqn 2).

    .. math:: \tfrac12 Σ_i (e^{\text{logvar}_i} + \text{mean}_i^2 − 1 − \text{logvar}_i)

    Arguments:
        mean, logvar: (batch, latent).

    Returns:
        (batch,).
    """
    return 0.5 * (logvar.exp() + mean.pow(2) - 1.0 - logvar).sum(-1)


def kl_warmup(step: int, warmup_steps: int) -> float:
    """KL weight β_t rising linearly from 0 at step 0 to 1 at ``warmup_steps`` (§5.3), then 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, max(0.0, step / warmup_steps))


@full_precision
def vlvae_elbo(
    log_px: Tensor,
    log_py: Tensor,
    kl: Tensor,
    w_x: float = 1.0,
    w_y: float = 1.0,
    kl_weight: float = 1.0,
) -> Tensor:
    r"""The weighted VLVAE objective (Eqns 1-2, §5.3.1), to maximise.

    .. math:: w_x \log p(x|z) + w_y \log p(y|z) − β_t \, KL(q(z|x) || p(z)),
              \quad z \sim q(z|x)

    With w_x = w_y = β_t = 1 it is the ELBO of log p(x, y) (Eqn 1).

    Arguments:
        log_px, log_py: (batch,) one-sample estimates of E_q log p(x|z), E_q log p(y|z).
        kl: (batch,) KL(q(z|x) || p(z)).
        w_x, w_y: likelihood weights.
        kl_weight: β_t, see :func:`kl_warmup`.

    Returns:
        (batch,).
    """
    return w_x * log_px + w_y * log_py - kl_weight * kl


@full_precision
def text_elbo(log_py_given_z: Tensor, log_pz: Tensor, log_qz_given_y: Tensor) -> Tensor:
    r"""The text-only ELBO that trains q_True(z|y) (Eqn 3, TELBO's text term), to maximise.

    .. math:: \log p(y) \ge E_{q_φ(z|y)}[\log p(y|z) + \log p(z) − \log q_φ(z|y)]

    All three terms are evaluated at the same z ~ q_φ(z|y) (reparameterised);
    only φ is trained, the VLVAE is frozen.

    Arguments:
        log_py_given_z, log_pz, log_qz_given_y: same shape, e.g. (batch,) or (k, batch).

    Returns:
        the same shape.
    """
    return log_py_given_z + log_pz - log_qz_given_y


@full_precision
def aggregate_cross_entropy(log_q_phi: Tensor) -> Tensor:
    r"""Negative cross-entropy E_{q(z|x)}[\log q_φ(z|y)], the q_Agg objective (Eqns 4-5), to maximise.

    Eqn 5 decomposes, for the aggregate q_y(z) = E_{pD(x|y)}[q(z|x)] (Eqn 4),

    .. math:: E_{pD(x|y)} KL(q(z|x) || q_φ(z|y)) = E_{pD(x|y)} KL(q(z|x) || q_y(z))
              + KL(q_y(z) || q_φ(z|y)),

    and the first term does not depend on φ, so minimising the left side over φ
    fits q_φ(z|y) to q_y(z). As KL(q(z|x) || q_φ) = −H[q(z|x)] − E_{q(z|x)} log q_φ
    and H[q(z|x)] does not depend on φ either, this is maximising
    E_{pD(x,y)} E_{q(z|x)}[log q_φ(z|y)], the value returned here (per example).

    Arguments:
        log_q_phi: (batch,) or (batch, k): log q_φ(z|y) at z ~ q(z|x) (x, y a pair).

    Returns:
        (batch,): the Monte-Carlo mean over the samples.
    """
    return log_q_phi if log_q_phi.dim() == 1 else log_q_phi.mean(-1)


@full_precision
def prior_cross_entropy(log_q_phi: Tensor) -> Tensor:
    r"""Negative cross-entropy E_{q(z|x)}[\log q_φ(z)], the aggregate-prior objective (§4.2), to maximise.

    By the same argument as :func:`aggregate_cross_entropy` (and Eqns 9-18),
    maximising E_{pD(x)} E_{q(z|x)}[log q_φ(z)] minimises KL(q(z) || q_φ(z)) for
    the aggregate posterior q(z) = E_{pD(x)}[q(z|x)].

    Arguments:
        log_q_phi: (batch,) or (batch, k): log q_φ(z) at z ~ q(z|x).

    Returns:
        (batch,): the Monte-Carlo mean over the samples.
    """
    return log_q_phi if log_q_phi.dim() == 1 else log_q_phi.mean(-1)


#: The objective of a stage fitted on a frozen model, per example, to maximise:
#: ``(q, y, model, image_z) -> (batch,)`` for the fitted distribution ``q`` (q_φ(z|y) of the texts
#: ``y``, or q_φ(z)), the frozen stage-1 ``model``, and ``image_z()``, which draws z ~ q(z|x) for the
#: batch's images when called (an objective that does not call it draws no image noise).
StageObjective = Callable[[Distribution, Tensor, object, Callable[[], Tensor]], Tensor]


def true_posterior_objective(q: Distribution, y: Tensor, model, image_z: Callable[[], Tensor]) -> Tensor:
    """q_True's objective (Eqn 3): the text ELBO at z ~ q_φ(z|y) (reparameterised) under the frozen
    model's p(y|z) and standard prior N(0, I); no image noise is drawn."""
    z = q.rsample()
    return text_elbo(model.log_py(y, z), model.standard_prior().log_prob(z), q.log_prob(z))


def aggregate_posterior_objective(q: Distribution, y: Tensor, model, image_z: Callable[[], Tensor]) -> Tensor:
    """q_Agg's objective (Eqn 5): log q_φ(z|y) at z ~ q(z|x) of each pair's image."""
    return aggregate_cross_entropy(q.log_prob(image_z()))


def aggregate_prior_objective(q: Distribution, y: Tensor, model, image_z: Callable[[], Tensor]) -> Tensor:
    """The aggregate prior's objective (§4.2): log q_φ(z) at z ~ q(z|x) of each image."""
    return prior_cross_entropy(q.log_prob(image_z()))


@full_precision
def jmvae_kl(q_zx: Distribution, q_zy: Distribution, n_samples: int = 1) -> Tensor:
    r"""KL(q(z|x) || q_φ(z|y)), the term JMVAE (Suzuki et al. 2016) adds to Eqn 1 (§3).

    Analytic when torch knows the pair (e.g. two diagonal Gaussians); otherwise
    (q_φ a flow) the reparameterised Monte-Carlo estimate
    (1/n) Σ_i [log q(z_i|x) − log q_φ(z_i|y)], z_i ~ q(z|x), so gradients reach
    both distributions.

    Arguments:
        q_zx, q_zy: distributions with batch shape (batch,) and event (latent,).
        n_samples: Monte-Carlo samples when no closed form exists.

    Returns:
        (batch,).
    """
    try:
        return kl_divergence(q_zx, q_zy)
    except NotImplementedError:
        z = q_zx.rsample((n_samples,))
        return (q_zx.log_prob(z) - q_zy.log_prob(z)).mean(0)


@full_precision
def kl_diagonal_normals(mean_q: Tensor, logvar_q: Tensor, mean_p: Tensor, logvar_p: Tensor) -> Tensor:
    r"""KL(N(mean_q, diag e^{logvar_q}) || N(mean_p, diag e^{logvar_p})), analytic.

    .. math:: \tfrac12 Σ_i \Big(\text{logvar}_{p,i} − \text{logvar}_{q,i}
              + \frac{e^{\text{logvar}_{q,i}} + (\text{mean}_{q,i} − \text{mean}_{p,i})^2}
                     {e^{\text{logvar}_{p,i}}} − 1\Big)

    Each KL uses each distribution's *own* log-variance (a library once computed
    TELBO's unimodal KL with the joint log-variance, and its unimodal posteriors
    collapsed; docs/design.md §9).

    Arguments:
        mean_q, logvar_q, mean_p, logvar_p: (batch, latent), broadcasting.

    Returns:
        (batch,).
    """
    return 0.5 * (
        logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p).pow(2)) / logvar_p.exp() - 1.0
    ).sum(-1)


@full_precision
def product_of_experts(means: Sequence[Tensor], logvars: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    r"""The normalised product of diagonal Gaussian experts (MVAE, Wu & Goodman 2018, §2 and App. A).

    .. math:: \prod_i N(z; μ_i, σ_i^2) ∝ N\Big(z;\ \frac{Σ_i μ_i/σ_i^2}{Σ_i 1/σ_i^2},\
              \frac{1}{Σ_i 1/σ_i^2}\Big)

    The prior expert N(0, I) is passed like any other (mean 0, log-variance 0).

    Arguments:
        means, logvars: one (batch, latent) tensor per expert (broadcasting).

    Returns:
        mean, logvar of the product: (batch, latent) each.
    """
    precisions = [torch.exp(-lv) for lv in logvars]
    total = torch.stack(torch.broadcast_tensors(*precisions)).sum(0)
    weighted = torch.stack(torch.broadcast_tensors(*[m * t for m, t in zip(means, precisions)])).sum(0)
    return weighted / total, -torch.log(total)


@full_precision
def jmvae_kl_objective(
    log_px: Tensor,
    log_py: Tensor,
    kl_prior: Tensor,
    kl_to_image: Tensor,
    kl_to_text: Tensor,
    alpha: float,
    w_x: float = 1.0,
    w_y: float = 1.0,
    kl_weight: float = 1.0,
) -> Tensor:
    r"""JMVAE-kl's objective (Suzuki et al. 2016, Eqn 5 there), with the VLVAE's weights, to maximise.

    .. math:: w_x \log p(x|z) + w_y \log p(y|z) − β_t KL(q(z|x,y) || p(z))
              − α [KL(q(z|x,y) || q(z|x)) + KL(q(z|x,y) || q(z|y))],\quad z \sim q(z|x,y)

    The first three terms are the joint ELBO (Eqn 1 with joint inference); the α terms pull the
    unimodal posteriors q(z|x) and q(z|y) towards the joint one.

    Arguments:
        log_px, log_py: (batch,) at z ~ q(z|x, y).
        kl_prior: (batch,) KL(q(z|x,y) || N(0, I)).
        kl_to_image, kl_to_text: (batch,) KL(q(z|x,y) || q(z|x)), KL(q(z|x,y) || q(z|y)).
        alpha: weight of the two unimodal KL terms.
        w_x, w_y, kl_weight: as in :func:`vlvae_elbo`.

    Returns:
        (batch,).
    """
    return vlvae_elbo(log_px, log_py, kl_prior, w_x, w_y, kl_weight) - alpha * (kl_to_image + kl_to_text)


@full_precision
def sum_of_elbos(
    joint: tuple[Tensor, Tensor, Tensor],
    image_only: tuple[Tensor, Tensor],
    text_only: tuple[Tensor, Tensor],
    w_x: float = 1.0,
    w_y: float = 1.0,
    kl_weight: float = 1.0,
    w_y_text_only: float | None = None,
) -> Tensor:
    r"""ELBO(x, y) + ELBO(x) + ELBO(y), each weighted like :func:`vlvae_elbo`, to maximise.

    TELBO (Vedantam et al. 2018, Eqn 3 there) with q(z|x,y), q(z|x), q(z|y) as three inference
    networks; MVAE (Wu & Goodman 2018, Eqn 4 there, all subsets of two modalities) with their
    products of experts.

    .. math:: [w_x \log p(x|z) + w_y \log p(y|z) − β_t KL]_{q(z|x,y)}
              + [w_x \log p(x|z) − β_t KL]_{q(z|x)} + [w'_y \log p(y|z) − β_t KL]_{q(z|y)}

    Arguments:
        joint: (log p(x|z), log p(y|z), KL to the prior) at z from the joint posterior, (batch,) each.
        image_only: (log p(x|z), KL) at z from the image posterior.
        text_only: (log p(y|z), KL) at z from the text posterior.
        w_x, w_y, kl_weight: as in :func:`vlvae_elbo`.
        w_y_text_only: w'_y, the text weight of the text-only ELBO alone (Vedantam et al. weight it
            apart from the joint ELBO's); None: ``w_y``, one pair of weights for all three.

    Returns:
        (batch,).
    """
    log_px, log_py, kl = joint
    return (
        vlvae_elbo(log_px, log_py, kl, w_x, w_y, kl_weight)
        + w_x * image_only[0]
        - kl_weight * image_only[1]
        + (w_y if w_y_text_only is None else w_y_text_only) * text_only[0]
        - kl_weight * text_only[1]
    )


@full_precision
def importance_weighted_bound(log_p_joint: Tensor, log_q: Tensor) -> Tensor:
    r"""The importance-weighted bound (Burda et al. 2016) over the last dimension.

    .. math:: \log \frac1k Σ_{i=1}^k \exp(\log p_i − \log q_i)

    For k = 1 it is the one-sample ELBO; its expectation increases with k.

    Arguments:
        log_p_joint: (batch, k) log of the target (e.g. log p(x|z_i) + log p(z_i)).
        log_q: (batch, k) log of the proposal at the same z_i.

    Returns:
        (batch,).
    """
    log_w = log_p_joint - log_q
    return torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])


def _proposal_bound(
    model: torch.nn.Module,
    x: Tensor,
    y: LongTensor | None,
    k: int,
    micro_batch: int,
    log_target: Callable[[Tensor], Tensor],
) -> Tensor:
    """IW bound of log ∫ target(z) dz with proposal q(z|x) (q(z|x, y) for joint inference).

    All k samples are drawn at once (k × batch × latent is small), then the
    target is scored ``micro_batch`` samples at a time; so the result does not
    depend on ``micro_batch``.
    """
    if model.training:
        raise ValueError(
            "Likelihood bounds need model.eval(): batch norm in training mode makes them depend on the batch."
        )
    if k < 1 or micro_batch < 1:
        raise ValueError(f"k ({k}) and micro_batch ({micro_batch}) must be positive.")
    with torch.no_grad():
        q = model.image_posterior(x, y)
        z = q.sample((k,))  # (k, batch, latent)
        log_p, log_q = [], []
        for chunk in z.split(micro_batch):
            log_p.append(log_target(chunk))
            log_q.append(q.log_prob(chunk))
        return importance_weighted_bound(torch.cat(log_p).T, torch.cat(log_q).T)


def conditional_log_likelihood(
    model: torch.nn.Module,
    text_prior: Callable[[LongTensor], Distribution],
    x: Tensor,
    y: LongTensor,
    k: int,
    micro_batch: int = 100,
) -> Tensor:
    r"""Importance-weighted lower bound on log p(x|y) with q_φ(z|y) as the prior (Eqn 6).

    .. math:: \log p(x|y) \ge \log \frac1k Σ_{i=1}^k
              \frac{p(x|z_i)\, q_φ(z_i|y)}{q(z_i|x)}, \quad z_i \sim q(z|x)

    The proposal is the image posterior q(z|x) (q(z|x, y) for a joint-inference
    model), never q_φ(z|y) (far looser, docs/design.md §6). p(x|z) is the unweighted
    constrained-Beta likelihood of the mapped pixels. k = 1 is Eqn 6's
    one-sample estimate. No gradients.

    Arguments:
        model: a :class:`~vlvae.models.VLVAE` in eval mode (or anything with
            ``image_posterior(x, y)`` and ``log_px(x, z)``).
        text_prior: y -> q_φ(z|y), e.g. a :class:`~vlvae.models.TextPosterior`.
        x: (batch, 3, H, W) images in [0, 1].
        y: (batch, L) texts paired with x.
        k: importance samples.
        micro_batch: samples scored at a time.

    Returns:
        (batch,) nats.
    """
    with torch.no_grad():
        q_phi = text_prior(y)
    return marginal_log_likelihood_image(model, lambda: q_phi, x, k, micro_batch, y=y)


def marginal_log_likelihood_image(
    model: torch.nn.Module,
    prior: Callable[[], Distribution],
    x: Tensor,
    k: int,
    micro_batch: int = 100,
    y: LongTensor | None = None,
) -> Tensor:
    r"""Importance-weighted lower bound on log p(x) under a prior over z (§4.2, Table 2).

    .. math:: \log p(x) \ge \log \frac1k Σ_{i=1}^k
              \frac{p(x|z_i)\, p(z_i)}{q(z_i|x)}, \quad z_i \sim q(z|x)

    p(z) is ``prior()``: ``model.standard_prior`` for N(0, I) or an
    :class:`~vlvae.models.AggregatePrior` for q_φ(z). p(x|z) is the unweighted
    likelihood of the mapped pixels. No gradients.

    Arguments:
        model: a :class:`~vlvae.models.VLVAE` in eval mode.
        prior: () -> p(z).
        x: (batch, 3, H, W) images in [0, 1].
        k: importance samples.
        micro_batch: samples scored at a time.
        y: (batch, L) texts, needed only by a joint-inference model's proposal q(z|x, y).

    Returns:
        (batch,) nats.
    """
    with torch.no_grad():
        p_z = prior()
    return _proposal_bound(model, x, y, k, micro_batch, lambda z: model.log_px(x, z) + p_z.log_prob(z))


class DefensiveMixture(Distribution):
    r"""A mixture of distributions over z that share batch and event shapes.

    .. math:: r(z) = Σ_c w_c\, r_c(z)

    Used as an importance-sampling proposal that depends on y alone for log p(y)
    (e.g. ⅓ q_Agg(z|y) + ⅓ q_True(z|y) + ⅓ N(0, I)): each component may be far
    from p(z|y), but the mixture's density is never much below that of its best
    component (at most log 1/w_c nats), and a broad "defensive" component such as
    N(0, I) keeps the importance weights bounded where the others are narrow
    (Hesterberg 1995, "Weighted average importance sampling and defensive
    mixture distributions").

    Arguments:
        components: distributions with the same ``event_shape`` and the same ``batch_shape``
            or none (an unbatched one, e.g. a prior, serves every batch entry).
        weights: mixture weights (default: equal); normalised here.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, components: Sequence[Distribution], weights: Sequence[float] | None = None) -> None:
        if not components:
            raise ValueError("A mixture needs at least one component.")
        batch = max((c.batch_shape for c in components), key=len)
        event = components[0].event_shape
        for c in components:
            if c.batch_shape not in (batch, torch.Size()) or c.event_shape != event:
                raise ValueError(
                    f"Mixture components differ in shape: {tuple(c.batch_shape)}{tuple(c.event_shape)} vs "
                    f"{tuple(batch)}{tuple(event)}; each must have batch shape {tuple(batch)} or none."
                )
        weights = (
            torch.full((len(components),), 1.0 / len(components))
            if weights is None
            else torch.as_tensor(weights, dtype=torch.float64)
        )
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"Mixture weights must be non-negative with a positive sum, got {weights.tolist()}."
            )
        self.components = list(components)
        self.log_weights = (weights / weights.sum()).log().float()
        super().__init__(batch_shape=batch, event_shape=event, validate_args=False)

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """Draw a component per (sample, batch) entry from the weights, then z from it."""
        sample_shape = torch.Size(sample_shape)
        draws = torch.stack(
            [
                c.sample(
                    sample_shape if c.batch_shape == self.batch_shape else sample_shape + self.batch_shape
                )
                for c in self.components
            ]
        )  # (C, *sample, *batch, *event)
        choice = torch.multinomial(
            self.log_weights.exp(), sample_shape.numel() * self.batch_shape.numel(), replacement=True
        ).view(*sample_shape, *self.batch_shape)
        index = choice.view(1, *choice.shape, *(1,) * len(self.event_shape))
        index = index.expand(1, *choice.shape, *self.event_shape).to(draws.device)
        return draws.gather(0, index).squeeze(0)

    @full_precision
    def log_prob(self, z: Tensor) -> Tensor:
        """log Σ_c w_c r_c(z): (*sample, *batch), in float32 under autocast."""
        logs = torch.stack([w + c.log_prob(z) for w, c in zip(self.log_weights.tolist(), self.components)])
        return torch.logsumexp(logs, dim=0)


def importance_log_weights(
    log_targets: Callable[[Tensor], dict[str, Tensor]],
    proposal: Distribution,
    k: int,
    micro_batch: int = 100,
) -> dict[str, Tensor]:
    r"""Log importance weights of several targets at one set of k proposal samples.

    .. math:: \log w_i = \log \text{target}(z_i) − \log r(z_i), \quad z_i \sim r,\ i = 1..k

    The k samples are drawn at once, then scored ``micro_batch`` at a time (the result does not
    depend on it). Every target is weighed at the same samples, so any two are paired. No gradients.

    Arguments:
        log_targets: z (k', batch, latent) -> {name: (k', batch) log target}.
        proposal: r, batch (batch,), event (latent,).
        k: the number of samples (≥ 1).
        micro_batch: samples scored at a time.

    Returns:
        {name: (k, batch) log w}.
    """
    if k < 1 or micro_batch < 1:
        raise ValueError(f"k ({k}) and micro_batch ({micro_batch}) must be positive.")
    with torch.no_grad():
        z = proposal.sample((k,))  # (k, batch, latent)
        log_w: dict[str, list[Tensor]] = {}
        for chunk in z.split(micro_batch):
            log_r = proposal.log_prob(chunk)
            for name, log_t in log_targets(chunk).items():
                log_w.setdefault(name, []).append(float32(log_t) - float32(log_r))
        return {name: torch.cat(parts) for name, parts in log_w.items()}


@full_precision
def nested_log_marginals(log_w: Tensor, k_values: Sequence[int]) -> dict[int, Tensor]:
    r"""The importance-weighted estimate from the first k of the weights, for each k.

    .. math:: \hat L_k = \log \frac1k Σ_{i=1}^k w_i

    Arguments:
        log_w: (K, batch) log weights (:func:`importance_log_weights`), K ≥ max(k_values).
        k_values: the numbers of samples to report (each ≥ 1).

    Returns:
        {k: (batch,)}.
    """
    return {k: torch.logsumexp(log_w[:k], dim=0) - math.log(k) for k in sorted(set(k_values))}


@full_precision
def effective_sample_sizes(log_w: Tensor, k_values: Sequence[int]) -> dict[int, Tensor]:
    r"""Kish's effective sample size of the first k of the weights, for each k.

    .. math:: \text{ESS}_k = \frac{(Σ_{i=1}^k w_i)^2}{Σ_{i=1}^k w_i^2} \in [1, k]

    k when every weight is equal (the proposal is the target's normalised density), 1 when one
    weight dominates. A small ESS at the largest k says that the estimate rests on a few samples
    and is likely below the exact value (an importance-weighted bound falls short in expectation
    by about the variance of the normalised weights over 2k); its convergence in k is then not
    to be trusted either. Computed from log weights (no overflow).

    Arguments:
        log_w: (K, batch) log weights, K ≥ max(k_values).
        k_values: the numbers of samples to report (each ≥ 1).

    Returns:
        {k: (batch,)}.
    """
    return {
        k: torch.exp(2 * torch.logsumexp(log_w[:k], dim=0) - torch.logsumexp(2 * log_w[:k], dim=0))
        for k in sorted(set(k_values))
    }


def importance_log_marginals(
    log_targets: Callable[[Tensor], dict[str, Tensor]],
    proposal: Distribution,
    k_values: Sequence[int],
    micro_batch: int = 100,
) -> dict[str, dict[int, Tensor]]:
    r"""Importance-weighted estimates of several log ∫ target(z) dz from one set of proposal samples.

    .. math:: \hat L_k = \log \frac1k Σ_{i=1}^k \frac{\text{target}(z_i)}{r(z_i)},
              \quad z_i \sim r

    With ``K = max(k_values)`` samples drawn once, the estimate for each k uses the
    first k of them (nested), so the estimates' convergence in k is visible and the
    targets (e.g. p(y|z) p(z) under two priors) share their samples: their
    difference is paired. Each is a stochastic lower bound whose expectation rises
    with k to the exact log marginal (Burda et al. 2016). No gradients.
    :func:`importance_log_weights` gives the weights themselves (e.g. for
    :func:`effective_sample_sizes`); :func:`nested_log_marginals` turns them into these.

    Arguments:
        log_targets: z (k', batch, latent) -> {name: (k', batch) log target}.
        proposal: r, batch (batch,), event (latent,); it must not depend on what the
            targets compare (e.g. the same proposal for both priors).
        k_values: the numbers of samples to report (each ≥ 1).
        micro_batch: samples scored at a time (the result does not depend on it).

    Returns:
        {name: {k: (batch,) nats}}.
    """
    if not k_values or min(k_values) < 1 or micro_batch < 1:
        raise ValueError(f"k values ({list(k_values)}) and micro_batch ({micro_batch}) must be positive.")
    log_w = importance_log_weights(log_targets, proposal, max(k_values), micro_batch)
    return {name: nested_log_marginals(w, k_values) for name, w in log_w.items()}


@dataclass(frozen=True)
class GaussianFit:
    """How :func:`fit_gaussian_posterior` fits: Adam steps, reparameterised samples per step, learning
    rate (decayed to a tenth along a cosine) and how many examples are fitted at a time (memory).

    The defaults cost about 600 evaluations of log p(y|z)'s forward pass per example (200 draws,
    each with its backward pass), less than log p(y)'s 1,000 importance samples.
    """

    steps: int = 100
    samples: int = 2
    lr: float = 0.05
    batch_size: int = 500


def fit_gaussian_posterior(
    log_joint: Callable[[Tensor], Tensor],
    mean: Tensor,
    std: Tensor,
    fit: GaussianFit = GaussianFit(),
) -> Distribution:
    r"""A diagonal Gaussian per example fitted to the posterior ∝ exp(log_joint) by Eqn 3.

    .. math:: \max_{μ, σ}\ E_{z \sim N(μ, σ^2)}[\log p(y|z) + \log p(z)] + H[N(μ, σ^2)]
              = E_q[\log p(y|z) + \log p(z) − \log q(z|y)] \le \log p(y)

    — q_True's objective (:func:`text_elbo`), with any prior p(z) in ``log_joint``, free
    parameters per example instead of an encoder (no amortisation gap), and the entropy in
    closed form. Maximising it minimises KL(q || p(z|y)) over diagonal Gaussians. torch.optim.Adam on
    (μ, log σ) from (``mean``, ``std``), ``fit.samples`` reparameterised draws per example and
    step from torch's global generator (seed it first); the examples are independent, so the fit
    of each does not depend on the others. log_joint's own parameters get no gradients.

    Arguments:
        log_joint: z (S, batch, latent) -> (S, batch) log p(y|z) + log p(z), differentiable in z.
        mean, std: (batch, latent) the start.
        fit: steps, samples per step, learning rate.

    Returns:
        N(μ, diag σ²), batch (batch,), event (latent,), detached.
    """
    if fit.steps < 0 or fit.samples < 1 or fit.lr <= 0:
        raise ValueError(f"A Gaussian fit needs steps ≥ 0, samples ≥ 1 and lr > 0, got {fit}.")
    params = [mean.detach().clone().requires_grad_(True), std.detach().log().requires_grad_(True)]  # μ, log σ
    optimiser = torch.optim.Adam(params, lr=fit.lr)
    # The step size decays along a cosine to a tenth of fit.lr.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda t: 0.1 + 0.45 * (1 + math.cos(math.pi * t / max(fit.steps, 1)))
    )
    for _ in range(fit.steps):
        with torch.enable_grad():
            mu, log_sigma = params
            z = mu + log_sigma.exp() * torch.randn((fit.samples, *mu.shape), dtype=mu.dtype, device=mu.device)
            elbo = log_joint(z).mean(0) + log_sigma.sum(-1)  # + H[q] up to a constant
            # Gradients for (μ, log σ) only: log_joint's own parameters are left untouched.
            grads = torch.autograd.grad(-elbo.sum(), params)
        for p, g in zip(params, grads):
            p.grad = g
        optimiser.step()
        schedule.step()
    mu, log_sigma = params
    return Independent(Normal(mu.detach(), log_sigma.detach().exp()), 1)


def marginal_log_likelihood_text(
    model: torch.nn.Module,
    prior: Callable[[], Distribution],
    y: LongTensor,
    proposal: Distribution,
    k: int,
    micro_batch: int = 100,
) -> Tensor:
    r"""Importance-weighted lower bound on log p(y) under a prior over z (§4.2, Table 2).

    .. math:: \log p(y) \ge \log \frac1k Σ_{i=1}^k
              \frac{p(y|z_i)\, p(z_i)}{r(z_i|y)}, \quad z_i \sim r(z|y)

    The proposal r must depend on y alone and be the same for the priors being
    compared. A proposal built from the paired image, q(z|x), would make the
    k = 1 difference between two priors E_q(z|x)[log p_1(z) − log p_2(z)] — the
    log p(x) difference, whatever the text decoder does. The evaluation uses
    an equal mixture of q_Agg(z|y), q_True(z|y), N(0, I) and q_φ(z)
    (:class:`DefensiveMixture`).
    p(y|z) is the text decoder's teacher-forced likelihood. No gradients.

    Arguments:
        model: a :class:`~vlvae.models.VLVAE` in eval mode (anything with ``log_py(y, z)``).
        prior: () -> p(z): ``model.standard_prior`` or an :class:`~vlvae.models.AggregatePrior`.
        y: (batch, L) texts.
        proposal: r(z|y), batch (batch,), event (latent,).
        k: importance samples.
        micro_batch: samples scored at a time.

    Returns:
        (batch,) nats.
    """
    if model.training:
        raise ValueError(
            "Likelihood bounds need model.eval(): batch norm in training mode makes them depend on the batch."
        )
    with torch.no_grad():
        p_z = prior()
    return importance_log_marginals(
        lambda z: {"p": model.log_py(y, z) + p_z.log_prob(z)}, proposal, [k], micro_batch
    )["p"][k]
