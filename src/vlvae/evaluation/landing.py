"""Where samples land: the aggregate posterior's density at text-posterior samples.

The paper's mechanism (Cremer & Kushman 2018, §3 and Fig. 1): a text posterior
fitted to the true posterior, q_True(z|y), puts samples in *holes* of the
aggregate posterior of the image encoder,

    q_agg(z) = (1/N) Σ_{i=1..N} q(z|x_i) = (1/N) Σ_i N(z; μ_i, diag σ_i²),

regions where no training image puts z and where the image decoder was
therefore never trained. q_Agg(z|y) and a learned prior q_φ(z) should not.
This module measures it at any latent size:

* :func:`aggregate_log_density` — log q_agg(z), computed exactly as a mixture;
* :func:`conditional_aggregate_log_density` — log q_agg(z|y), the aggregate of
  only those images whose text has the key of y;
* :func:`sample_aggregate`, :func:`sample_conditional_aggregate` — draws from
  those mixtures (the "own" samples that calibrate what a hole is);
* :func:`landing_table`, :func:`conditional_landing_table` — per source of z
  samples, the mean and median log density and the fraction of samples "in a
  hole": below the ``percentile``-th percentile of the log densities of the
  aggregate's own samples. By construction the aggregate's own samples have a
  hole fraction ≈ percentile / 100 (reported as a sanity row).

The aggregate's own samples calibrate badly: each sits on its own mixture
component, which a code of an image *outside* the aggregate never does. At
z = 32 the codes of held-out images, which an ideal sampler would produce,
land 100 % "in holes" by that threshold, and raw log densities reward
collapse (a concentrated N(0, ¼ I) scores far above an ideal sampler). The
calibrated statistics compare every source with codes z ~ q(z|x) of held-out
images instead:

* :func:`heldout_landing_table` — per source, the fraction of samples below
  the ``percentile``-th percentile of the held-out codes' log q_agg(z)
  (bootstrap standard error), and :func:`two_sample_accuracy` against the
  held-out codes; one half of the held-out codes sets the threshold, the
  other is scored as a source (the check row: ≈ percentile / 100 and ≈ 0.5
  honestly, not by construction);
* :func:`two_sample_accuracy` — a classifier two-sample test: the
  out-of-fold accuracy of a small MLP told to separate two sets of z
  (0.5: indistinguishable).

All functions are pure (no global state; random draws only through an explicit
``torch.Generator``) and compute densities in float64; :func:`aggregate_log_density` runs with
autocast off (:func:`vlvae.objectives.full_precision`), so mixed precision leaves it exact.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vlvae.objectives import full_precision

__all__ = [
    "aggregate_log_density",
    "conditional_aggregate_log_density",
    "conditional_landing_table",
    "heldout_landing_table",
    "landing_table",
    "two_sample_accuracy",
    "sample_aggregate",
    "sample_conditional_aggregate",
    "where_samples_land",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: Default number of z rows per block.
DEFAULT_ROW_CHUNK = 2048
#: Default number of mixture components per block. A block holds
#: ``row_chunk × component_chunk`` float64 values (128 MiB with the defaults);
#: peak memory is a few blocks plus the float64 copies of the inputs.
DEFAULT_COMPONENT_CHUNK = 8192

#: Bootstrap resamples behind the standard error of a calibrated hole fraction.
BOOTSTRAP_RESAMPLES = 200
#: The two-sample classifier: an MLP z -> 64 -> 64 -> 1 (SiLU), trained full-batch with Adam.
CLASSIFIER_HIDDEN = 64
#: Its Adam steps and learning rate (on z standardised by its training fold's mean and std).
CLASSIFIER_STEPS = 300
CLASSIFIER_LR = 3e-3
#: Its folds: every z is predicted by the classifier trained on the other folds.
CLASSIFIER_FOLDS = 2
#: At most this many z of each set enter one test (a random subset beyond it).
CLASSIFIER_MAX_PER_SET = 5000

Keys = Tensor | np.ndarray | Sequence[Any]


# --------------------------------------------------------------------------- #
# Densities
# --------------------------------------------------------------------------- #


def _check_gaussians(means: Tensor, logvars: Tensor) -> None:
    if means.ndim != 2 or means.shape != logvars.shape:
        raise ValueError(
            f"means and logvars must both be (N, D); got {tuple(means.shape)} and {tuple(logvars.shape)}"
        )
    if means.shape[0] == 0:
        raise ValueError("the aggregate needs at least one component (N = 0)")


def _check_z(z: Tensor, dim: int) -> None:
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"z must be (M, {dim}); got {tuple(z.shape)}")


@full_precision
def aggregate_log_density(
    z: Tensor,
    means: Tensor,
    logvars: Tensor,
    row_chunk: int = DEFAULT_ROW_CHUNK,
    component_chunk: int = DEFAULT_COMPONENT_CHUNK,
) -> Tensor:
    r"""Log density of the aggregate posterior (an equal-weight Gaussian mixture).

    For each row z_m of ``z``,

    .. math::

        \log q_{agg}(z_m) = \operatorname{logsumexp}_{i=1}^{N}
            \log \mathcal N(z_m; \mu_i, \operatorname{diag}\sigma_i^2) - \log N,

    with :math:`\sigma_i^2 = \exp(\text{logvar}_i)` and

    .. math::

        -2 \log \mathcal N(z; \mu_i, \sigma_i^2) = Q_{mi}
            + \sum_d \log \sigma_{id}^2 + D \log 2\pi,
        \qquad
        Q_{mi} = \sum_d \frac{z_d^2}{\sigma_{id}^2}
               - 2 \sum_d \frac{z_d \mu_{id}}{\sigma_{id}^2}
               + \sum_d \frac{\mu_{id}^2}{\sigma_{id}^2}.

    The three terms of :math:`Q` are two matrix products and a per-component
    constant, computed in float64 (the expansion cancels; its absolute error
    is about :math:`10^{-16}\,(\lVert z\rVert^2 + \lVert\mu_i\rVert^2)/\sigma^2_{min}`),
    and :math:`Q` is clamped at 0 (it is a sum of squares). The logsumexp runs
    over blocks of ``row_chunk`` rows × ``component_chunk`` components,
    combined with ``logaddexp``, so the result is the exact mixture whatever
    the chunking, and memory stays at a few ``row_chunk × component_chunk``
    float64 blocks.

    Args:
        z: (M, D) points.
        means: (N, D) component means μ_i.
        logvars: (N, D) component log variances log σ_i².
        row_chunk: z rows per block.
        component_chunk: components per block.

    Returns:
        (M,) float64 tensor of log q_agg(z_m), on ``z``'s device.
    """
    _check_gaussians(means, logvars)
    _check_z(z, means.shape[1])
    if row_chunk < 1 or component_chunk < 1:
        raise ValueError("row_chunk and component_chunk must be positive")
    device = z.device
    n, dim = means.shape
    z64 = z.to(device=device, dtype=torch.float64)
    out = torch.empty(z64.shape[0], dtype=torch.float64, device=device)

    # Per-component terms, one float64 block per ``component_chunk``.
    blocks: list[tuple[Tensor, Tensor, Tensor, Tensor]] = []
    for start in range(0, n, component_chunk):
        mu = means[start : start + component_chunk].to(device=device, dtype=torch.float64)
        lv = logvars[start : start + component_chunk].to(device=device, dtype=torch.float64)
        prec = torch.exp(-lv)  # 1/σ²                     (Nc, D)
        prec_mu = mu * prec  # μ/σ²                       (Nc, D)
        mu_term = (mu * prec_mu).sum(1)  # Σ μ²/σ²        (Nc,)
        norm = lv.sum(1) + dim * _LOG_2PI  # Σ log σ² + D log 2π
        blocks.append((prec, prec_mu, mu_term, norm))

    for r0 in range(0, z64.shape[0], row_chunk):
        zr = z64[r0 : r0 + row_chunk]
        zr2 = zr * zr
        running = torch.full((zr.shape[0],), -math.inf, dtype=torch.float64, device=device)
        for prec, prec_mu, mu_term, norm in blocks:
            quad = zr2 @ prec.T  # Σ z²/σ²
            quad.addmm_(zr, prec_mu.T, alpha=-2.0)  # − 2 Σ zμ/σ²
            quad.add_(mu_term).clamp_(min=0.0)  # + Σ μ²/σ²; Q ≥ 0
            log_n = quad.add_(norm).mul_(-0.5)  # −½ (Q + Σ log σ² + D log 2π)
            running = torch.logaddexp(running, torch.logsumexp(log_n, dim=1))
        out[r0 : r0 + row_chunk] = running
    return out - math.log(n)


# --------------------------------------------------------------------------- #
# Keys (e.g. texts) and conditional aggregates
# --------------------------------------------------------------------------- #


def _hashable_keys(keys: Keys) -> list[Hashable]:
    """Turn keys into a list of hashables.

    A 1-D tensor/array gives one scalar per row, a 2-D tensor/array one tuple
    per row (e.g. token ids or a hashed int64 row); a sequence keeps its
    elements, with lists, arrays and tensors inside it turned into tuples.
    """
    if isinstance(keys, Tensor):
        keys = keys.detach().cpu().numpy()
    if isinstance(keys, np.ndarray):
        if keys.ndim == 1:
            return keys.tolist()
        if keys.ndim == 2:
            return [tuple(row) for row in keys.tolist()]
        raise ValueError(f"key arrays must be 1-D or 2-D; got shape {keys.shape}")
    out: list[Hashable] = []
    for key in keys:
        if isinstance(key, Tensor):
            key = key.detach().cpu().numpy()
        if isinstance(key, np.ndarray):
            key = key.item() if key.ndim == 0 else tuple(key.reshape(-1).tolist())
        elif isinstance(key, list):
            key = tuple(key)
        out.append(key)
    return out


def _group(keys: list[Hashable]) -> dict[Hashable, list[int]]:
    """Map each distinct key to the indices where it occurs (first-seen order)."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return groups


def _component_index(component_keys: Keys, n: int, device: torch.device) -> dict[Hashable, Tensor]:
    keys = _hashable_keys(component_keys)
    if len(keys) != n:
        raise ValueError(f"component_keys has {len(keys)} entries but there are {n} components")
    return {key: torch.tensor(idx, dtype=torch.long, device=device) for key, idx in _group(keys).items()}


def conditional_aggregate_log_density(
    z: Tensor,
    text_keys_of_z: Keys,
    means: Tensor,
    logvars: Tensor,
    component_keys: Keys,
    row_chunk: int = DEFAULT_ROW_CHUNK,
    component_chunk: int = DEFAULT_COMPONENT_CHUNK,
) -> Tensor:
    r"""Log density of the aggregate restricted to components with the row's key.

    For row z_m with key y_m (e.g. its text),

    .. math::

        \log q_{agg}(z_m \mid y_m) = \log \frac{1}{N_{y_m}}
            \sum_{i:\, k_i = y_m} \mathcal N(z_m; \mu_i, \operatorname{diag}\sigma_i^2),
        \qquad N_y = |\{i : k_i = y\}|,

    computed with :func:`aggregate_log_density` per distinct key. Rows whose key
    has no component (N_y = 0) get NaN.

    Args:
        z: (M, D) points.
        text_keys_of_z: M keys, one per row of ``z``: a sequence of hashables
            (tuples, strings, ints), a 1-D int tensor/array, or a 2-D tensor/array
            (one row per key, compared as a tuple).
        means: (N, D) component means.
        logvars: (N, D) component log variances.
        component_keys: N keys, one per component, in the same format.
        row_chunk: passed to :func:`aggregate_log_density`.
        component_chunk: passed to :func:`aggregate_log_density`.

    Returns:
        (M,) float64 tensor, NaN where the key has no component.
    """
    _check_gaussians(means, logvars)
    _check_z(z, means.shape[1])
    z_keys = _hashable_keys(text_keys_of_z)
    if len(z_keys) != z.shape[0]:
        raise ValueError(f"{len(z_keys)} keys for {z.shape[0]} rows of z")
    index = _component_index(component_keys, means.shape[0], means.device)
    out = torch.full((z.shape[0],), math.nan, dtype=torch.float64, device=z.device)
    for key, rows in _group(z_keys).items():
        comp = index.get(key)
        if comp is None:
            continue
        r = torch.tensor(rows, dtype=torch.long, device=z.device)
        out[r] = aggregate_log_density(
            z[r], means[comp], logvars[comp], row_chunk=row_chunk, component_chunk=component_chunk
        )
    return out


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #


def _default_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """The given generator, or a fresh one seeded 0 (never the global RNG)."""
    if generator is not None:
        return generator
    return torch.Generator(device=device).manual_seed(0)


def _draw(means: Tensor, logvars: Tensor, component: Tensor, generator: torch.Generator) -> Tensor:
    mu = means[component].to(torch.float64)
    std = torch.exp(0.5 * logvars[component].to(torch.float64))
    eps = torch.randn(mu.shape, generator=generator, dtype=torch.float64, device=mu.device)
    return mu + std * eps


def sample_aggregate(
    means: Tensor, logvars: Tensor, n: int, generator: torch.Generator | None = None
) -> Tensor:
    r"""Draw ``n`` samples from the aggregate posterior.

    .. math::

        i \sim \mathcal U\{1..N\},\qquad z = \mu_i + \sigma_i \odot \varepsilon,
        \quad \varepsilon \sim \mathcal N(0, I).

    Args:
        means: (N, D) component means.
        logvars: (N, D) component log variances.
        n: number of samples.
        generator: source of randomness, on ``means``' device; ``None`` uses a
            fresh generator seeded 0.

    Returns:
        (n, D) float64 samples.
    """
    _check_gaussians(means, logvars)
    gen = _default_generator(generator, means.device)
    component = torch.randint(means.shape[0], (n,), generator=gen, device=means.device, dtype=torch.long)
    return _draw(means, logvars, component, gen)


def sample_conditional_aggregate(
    keys: Keys,
    means: Tensor,
    logvars: Tensor,
    component_keys: Keys,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""One sample from the conditional aggregate q_agg(z | y) per entry of ``keys``.

    For key y: :math:`i \sim \mathcal U\{i : k_i = y\}`, then
    :math:`z = \mu_i + \sigma_i \odot \varepsilon`. Repeat a key to get several
    samples for it. Rows whose key has no component are NaN.

    Args:
        keys: M keys (format as in :func:`conditional_aggregate_log_density`).
        means: (N, D) component means.
        logvars: (N, D) component log variances.
        component_keys: N keys, one per component.
        generator: source of randomness; ``None`` uses a fresh one seeded 0.

    Returns:
        (M, D) float64 samples.
    """
    _check_gaussians(means, logvars)
    gen = _default_generator(generator, means.device)
    wanted = _hashable_keys(keys)
    index = _component_index(component_keys, means.shape[0], means.device)
    out = torch.full((len(wanted), means.shape[1]), math.nan, dtype=torch.float64, device=means.device)
    for key, rows in _group(wanted).items():
        comp = index.get(key)
        if comp is None:
            continue
        pick = torch.randint(comp.numel(), (len(rows),), generator=gen, device=means.device)
        r = torch.tensor(rows, dtype=torch.long, device=means.device)
        out[r] = _draw(means, logvars, comp[pick], gen)
    return out


# --------------------------------------------------------------------------- #
# Tables
# --------------------------------------------------------------------------- #


def _quantile(values: Tensor, percentile: float) -> float:
    # torch.quantile refuses very large inputs; numpy's default is the same
    # linear interpolation.
    return float(np.percentile(values.detach().cpu().numpy(), percentile))


def _stats(log_density: Tensor, threshold: float) -> dict[str, float | int]:
    values = log_density.detach().cpu().to(torch.float64)
    return {
        "n": int(values.numel()),
        "mean_log_density": float(values.mean()),
        "median_log_density": float(np.median(values.numpy())),
        "q10_log_density": float(np.percentile(values.numpy(), 10)),
        "q90_log_density": float(np.percentile(values.numpy(), 90)),
        "hole_fraction": float((values < threshold).to(torch.float64).mean()),
    }


def _check_percentile(percentile: float) -> None:
    if not 0.0 < percentile < 100.0:
        raise ValueError(f"percentile must be in (0, 100); got {percentile}")


def landing_table(
    samples: Mapping[str, Tensor],
    means: Tensor,
    logvars: Tensor,
    reference_samples: Tensor,
    percentile: float = 1.0,
    row_chunk: int = DEFAULT_ROW_CHUNK,
    component_chunk: int = DEFAULT_COMPONENT_CHUNK,
) -> dict[str, Any]:
    r"""Where each source's z samples land in the aggregate posterior.

    With :math:`\ell(z) = \log q_{agg}(z)` (:func:`aggregate_log_density`) and
    the threshold :math:`\tau = \operatorname{percentile}_p\{\ell(z^{ref}_j)\}`
    over the aggregate's own samples (``reference_samples``, e.g. from
    :func:`sample_aggregate`), each source s reports

    .. math::

        \text{hole fraction}_s = \frac{1}{M_s} \sum_m [\ell(z^s_m) < \tau],

    and the mean and median of :math:`\ell(z^s_m)`. The reference row has
    hole fraction ≈ p / 100 by construction (a sanity check).

    Args:
        samples: source name (e.g. ``"q_true"``, ``"q_agg"``, ``"standard"``,
            ``"learned"``) → (M_s, D) z samples.
        means: (N, D) component means of the aggregate.
        logvars: (N, D) component log variances.
        reference_samples: (R, D) samples of the aggregate itself.
        percentile: p, in percent (1.0 means the 1st percentile).
        row_chunk: passed to :func:`aggregate_log_density`.
        component_chunk: passed to :func:`aggregate_log_density`.

    Returns:
        JSON-serialisable dict: ``percentile``, ``threshold`` (τ),
        ``n_components``, ``latent_dim``, ``reference`` and ``sources``
        (name → ``{n, mean_log_density, median_log_density, hole_fraction}``).
    """
    _check_percentile(percentile)

    def density(z: Tensor) -> Tensor:
        return aggregate_log_density(z, means, logvars, row_chunk=row_chunk, component_chunk=component_chunk)

    densities = {name: density(z) for name, z in samples.items()}
    return _marginal_table(density(reference_samples), densities, percentile, tuple(means.shape))


def _marginal_table(
    ref: Tensor, densities: Mapping[str, Tensor], percentile: float, shape: tuple[int, int]
) -> dict[str, Any]:
    """:func:`landing_table` from the log densities of the reference and of each source."""
    threshold = _quantile(ref, percentile)
    return {
        "percentile": float(percentile),
        "threshold": threshold,
        "n_components": int(shape[0]),
        "latent_dim": int(shape[1]),
        "reference": _stats(ref, threshold),
        "sources": {name: _stats(values, threshold) for name, values in densities.items()},
    }


def conditional_landing_table(
    samples_by_source: Mapping[str, Tensor],
    keys_of_samples: Keys | Mapping[str, Keys],
    means: Tensor,
    logvars: Tensor,
    component_keys: Keys,
    own_per_key: int = 200,
    percentile: float = 1.0,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    r"""Where samples land in the aggregate of images that share their text.

    For each key y among the samples' keys with :math:`N_y \ge 1` components
    (images whose text has key y), with
    :math:`\ell_y(z) = \log q_{agg}(z \mid y)`
    (:func:`conditional_aggregate_log_density`):

    * draw ``own_per_key`` samples from q_agg(z | y) and set
      :math:`\tau_y = \operatorname{percentile}_p\{\ell_y(z^{own}_j)\}`;
    * for each source s with samples of key y,
      :math:`h_{s,y} = \frac{1}{M_{s,y}} \sum_m [\ell_y(z^s_m) < \tau_y]`.

    A source's ``hole_fraction`` is :math:`h_{s,y}` averaged over its keys (each
    key weighs the same); ``hole_fraction_pooled`` weighs each sample the same.
    Keys without components are skipped and counted. The ``reference`` row is
    the own samples scored the same way (≈ p / 100 by construction).

    Args:
        samples_by_source: source name → (M_s, D) z samples.
        keys_of_samples: the keys of the samples: one key sequence shared by
            all sources (each of length M_s = M), or source name → its keys.
            Formats as in :func:`conditional_aggregate_log_density`.
        means: (N, D) component means.
        logvars: (N, D) component log variances.
        component_keys: N keys, one per component.
        own_per_key: samples drawn from each key's conditional aggregate to
            set its threshold.
        percentile: p, in percent.
        generator: randomness for the own samples; ``None`` uses a fresh
            generator seeded 0.

    Returns:
        JSON-serialisable dict: ``percentile``, ``own_per_key``, ``n_keys``
        (distinct keys among all samples), ``n_keys_with_components``,
        ``n_keys_skipped``, ``mean_components_per_key`` (over keys with
        components), ``reference`` and ``sources`` (name → ``{n,
        n_skipped, n_keys, mean_log_density, median_log_density,
        hole_fraction, hole_fraction_pooled}``).
    """
    _check_percentile(percentile)
    _check_gaussians(means, logvars)
    if own_per_key < 1:
        raise ValueError("own_per_key must be positive")
    gen = _default_generator(generator, means.device)
    index = _component_index(component_keys, means.shape[0], means.device)

    # Per source: key → row indices.
    by_source: dict[str, dict[Hashable, list[int]]] = {}
    for name, z in samples_by_source.items():
        _check_z(z, means.shape[1])
        raw = keys_of_samples[name] if isinstance(keys_of_samples, Mapping) else keys_of_samples
        keys = _hashable_keys(raw)
        if len(keys) != z.shape[0]:
            raise ValueError(f"source {name!r}: {len(keys)} keys for {z.shape[0]} samples")
        by_source[name] = _group(keys)

    all_keys: dict[Hashable, None] = {}
    for groups in by_source.values():
        all_keys.update(dict.fromkeys(groups))

    per_key: dict[str, list[float]] = {name: [] for name in by_source}
    values: dict[str, list[Tensor]] = {name: [] for name in by_source}
    holes: dict[str, list[Tensor]] = {name: [] for name in by_source}
    ref_per_key: list[float] = []
    ref_values: list[Tensor] = []
    ref_holes: list[Tensor] = []
    n_components: list[int] = []

    for key in all_keys:
        comp = index.get(key)
        if comp is None:
            continue
        mu, lv = means[comp], logvars[comp]
        n_components.append(int(comp.numel()))
        pick = torch.randint(comp.numel(), (own_per_key,), generator=gen, device=means.device)
        own = aggregate_log_density(_draw(mu, lv, pick, gen), mu, lv).cpu()
        tau = _quantile(own, percentile)
        ref_per_key.append(float((own < tau).to(torch.float64).mean()))
        ref_values.append(own)
        ref_holes.append(own < tau)
        for name, groups in by_source.items():
            rows = groups.get(key)
            if not rows:
                continue
            z = samples_by_source[name]
            r = torch.tensor(rows, dtype=torch.long, device=z.device)
            ell = aggregate_log_density(z[r], mu, lv).cpu()
            below = ell < tau
            per_key[name].append(float(below.to(torch.float64).mean()))
            values[name].append(ell)
            holes[name].append(below)

    def summary(
        n_total: int, fractions: list[float], vals: list[Tensor], below: list[Tensor]
    ) -> dict[str, float | int | None]:
        if not vals:
            return {
                "n": n_total,
                "n_skipped": n_total,
                "n_keys": 0,
                "mean_log_density": None,
                "median_log_density": None,
                "hole_fraction": None,
                "hole_fraction_pooled": None,
            }
        v = torch.cat(vals)
        b = torch.cat(below)
        return {
            "n": n_total,
            "n_skipped": n_total - int(v.numel()),
            "n_keys": len(fractions),
            "mean_log_density": float(v.mean()),
            "median_log_density": float(np.median(v.numpy())),
            "hole_fraction": float(np.mean(fractions)),
            "hole_fraction_pooled": float(b.to(torch.float64).mean()),
        }

    n_ref = own_per_key * len(n_components)
    return {
        "percentile": float(percentile),
        "own_per_key": int(own_per_key),
        "n_keys": len(all_keys),
        "n_keys_with_components": len(n_components),
        "n_keys_skipped": len(all_keys) - len(n_components),
        "mean_components_per_key": float(np.mean(n_components)) if n_components else None,
        "reference": summary(n_ref, ref_per_key, ref_values, ref_holes),
        "sources": {
            name: summary(int(samples_by_source[name].shape[0]), per_key[name], values[name], holes[name])
            for name in by_source
        },
    }


# --------------------------------------------------------------------------- #
# Calibrated by held-out codes
# --------------------------------------------------------------------------- #


@contextmanager
def _one_thread():
    """torch on one thread inside, the caller's thread count restored after.

    The classifier's tensors are tiny: on two OpenMP threads of a busy 2-core machine each of its
    steps took 25x longer (about 100 ms instead of 4), and one thread also makes its numbers the
    same whatever the machine's thread count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_mlp(dim: int, hidden: int, generator: torch.Generator) -> list[Tensor]:
    """Weights of an MLP dim -> hidden -> hidden -> 1, drawn from ``generator`` (never the global RNG)."""
    params = []
    for n_in, n_out in ((dim, hidden), (hidden, hidden), (hidden, 1)):
        w = torch.randn(n_in, n_out, generator=generator) / math.sqrt(n_in)
        params += [w.requires_grad_(), torch.zeros(n_out, requires_grad=True)]
    return params


def _mlp(params: list[Tensor], x: Tensor) -> Tensor:
    w1, b1, w2, b2, w3, b3 = params
    h = F.silu(x @ w1 + b1)
    h = F.silu(h @ w2 + b2)
    return (h @ w3 + b3).squeeze(1)


def two_sample_accuracy(
    a: Tensor,
    b: Tensor,
    generator: torch.Generator,
    hidden: int = CLASSIFIER_HIDDEN,
    steps: int = CLASSIFIER_STEPS,
    lr: float = CLASSIFIER_LR,
    folds: int = CLASSIFIER_FOLDS,
    max_per_set: int = CLASSIFIER_MAX_PER_SET,
) -> dict[str, float | int]:
    r"""Classifier two-sample test: how well a small MLP tells z of ``a`` from z of ``b``.

    Both sets are cut to the same size :math:`n = \min(|a|, |b|, \text{max\_per\_set})` (random
    subsets), so chance is exactly 0.5. Each set is split at random into ``folds`` equal folds;
    for each fold an MLP z -> ``hidden`` -> ``hidden`` -> 1 (SiLU) is trained on the other folds
    (z standardised by their mean and standard deviation; full-batch Adam, ``steps`` steps,
    logistic loss) and predicts the fold. The accuracy is over all 2n out-of-fold predictions,

    .. math::

        \text{acc} = \frac{1}{2n} \sum_j [\hat c_j = c_j],\qquad
        \text{se} = \sqrt{\text{acc}\,(1 - \text{acc}) / 2n}

    (the binomial standard error). 0.5 means the classifier finds no difference; a classifier
    can only find differences, so an accuracy well above 0.5 proves the sets differ, while 0.5
    says only that this classifier saw none. It runs on one torch thread (restored after).

    Args:
        a, b: (M_a, D) and (M_b, D) z; at least ``folds`` rows each.
        generator: every random choice (subsets, folds, initial weights), on the CPU.
        hidden, steps, lr, folds, max_per_set: the classifier and its fit.

    Returns:
        ``{"mean": accuracy, "stderr": binomial standard error, "n": 2n}``.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (M, D) with one D; got {tuple(a.shape)} and {tuple(b.shape)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2; got {folds}")
    n = min(a.shape[0], b.shape[0], max_per_set)
    if n < folds:
        raise ValueError(
            f"each set needs at least {folds} rows (one per fold); got {a.shape[0]} and {b.shape[0]}"
        )
    a = a.detach().cpu()[torch.randperm(a.shape[0], generator=generator)[:n]]
    b = b.detach().cpu()[torch.randperm(b.shape[0], generator=generator)[:n]]
    x = torch.cat([a, b]).to(torch.float32)
    label = torch.cat([torch.ones(n), torch.zeros(n)])
    # Stratified folds: each set's rows in a random order, dealt round-robin.
    fold = torch.cat([torch.randperm(n, generator=generator) % folds for _ in range(2)])
    correct = 0
    with torch.enable_grad(), _one_thread():
        for f in range(folds):
            train, test = fold != f, fold == f
            center = x[train].mean(0)
            scale = x[train].std(0).clamp_min(1e-12)
            xs = (x - center) / scale
            params = _init_mlp(x.shape[1], hidden, generator)
            opt = torch.optim.Adam(params, lr=lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = F.binary_cross_entropy_with_logits(_mlp(params, xs[train]), label[train])
                loss.backward()
                opt.step()
            with torch.no_grad():
                guess = (_mlp(params, xs[test]) > 0).to(torch.float32)
            correct += int((guess == label[test]).sum())
    acc = correct / (2 * n)
    return {"mean": acc, "stderr": math.sqrt(acc * (1.0 - acc) / (2 * n)), "n": 2 * n}


def _bootstrap_fraction(values: np.ndarray, thresholds: np.ndarray, generator: torch.Generator) -> float:
    """The bootstrap std of the fraction of ``values`` below τ: resample b of them against τ_b."""
    idx = torch.randint(len(values), (len(thresholds), len(values)), generator=generator).numpy()
    fractions = (values[idx] < thresholds[:, None]).mean(1)
    return float(fractions.std(ddof=1)) if len(thresholds) > 1 else 0.0


def heldout_landing_table(
    samples: Mapping[str, Tensor],
    means: Tensor,
    logvars: Tensor,
    heldout: Tensor,
    percentile: float = 1.0,
    threshold_size: int | None = None,
    check_size: int | None = None,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    generator: torch.Generator | None = None,
    source_log_densities: Mapping[str, Tensor] | None = None,
    row_chunk: int = DEFAULT_ROW_CHUNK,
    component_chunk: int = DEFAULT_COMPONENT_CHUNK,
) -> dict[str, Any]:
    r"""Where each source's z land, calibrated by codes of held-out images.

    ``heldout`` holds one code z ~ q(z|x) per image that is *not* among the aggregate's N
    components (e.g. the validation images): what an ideal sampler of the image codes would
    draw. Its rows, in a random order, are cut into a threshold set (the first
    ``threshold_size``, default half) and a check set (the next ``check_size``, default the
    largest source's size, at most the rest); their images differ. With
    :math:`\ell(z) = \log q_{agg}(z)` (:func:`aggregate_log_density`) and
    :math:`\tau = \operatorname{percentile}_p\{\ell(z)\}` over the threshold set, each
    source s (and the check set, the ``heldout`` row) reports

    * ``hole_fraction``: :math:`\frac{1}{M_s}\sum_m [\ell(z^s_m) < \tau]`, with the bootstrap
      standard error over ``bootstrap`` joint resamples of the source's and the threshold set's
      log densities (so it includes the threshold's own uncertainty; 0 when every or no sample
      is below τ). The check row is ≈ p / 100 within its error, honestly: its codes are not
      those that set τ.
    * ``two_sample_accuracy``: :func:`two_sample_accuracy` of the source against the check set
      (the check row: against the threshold set), with its binomial standard error; 0.5 means
      indistinguishable from held-out codes.
    * the mean and median of :math:`\ell` (in the source's own terms; unlike the fraction and
      the accuracy they reward collapse onto dense regions).

    Args:
        samples: source name -> (M_s, D) z samples.
        means, logvars: (N, D) components of the aggregate (e.g. the training images' q(z|x)).
        heldout: (H, D) codes of held-out images, one per image; H ≥ 4.
        percentile: p, in percent.
        threshold_size: codes that set τ (default H // 2; at most H // 2).
        check_size: codes of the check row (default the largest M_s; at most the rest).
        bootstrap: resamples behind the fraction's standard error.
        generator: every random choice (split, bootstrap, classifiers); ``None`` uses a fresh
            generator seeded 0.
        source_log_densities: ℓ at each source's samples, when already computed.
        row_chunk, component_chunk: passed to :func:`aggregate_log_density`.

    Returns:
        JSON-serialisable dict: ``percentile``, ``threshold`` (τ), ``heldout_codes`` (H),
        ``threshold_codes``, ``bootstrap``, ``classifier`` (its settings), ``heldout`` (the check
        row) and ``sources``; each row ``{n, mean_log_density, median_log_density,
        hole_fraction: {mean, stderr}, two_sample_accuracy: {mean, stderr}, two_sample_n}``
        (``two_sample_n``: the out-of-fold predictions behind the accuracy; the accuracy is None
        for a source with fewer samples than classifier folds).
    """
    _check_percentile(percentile)
    _check_gaussians(means, logvars)
    _check_z(heldout, means.shape[1])
    if heldout.shape[0] < 4:
        raise ValueError(f"need at least 4 held-out codes (two per set); got {heldout.shape[0]}")
    if bootstrap < 1:
        raise ValueError("bootstrap must be positive")
    gen = _default_generator(generator, torch.device("cpu"))

    def density(z: Tensor) -> Tensor:
        return aggregate_log_density(
            z, means, logvars, row_chunk=row_chunk, component_chunk=component_chunk
        ).cpu()

    h = heldout.shape[0]
    n_threshold = h // 2 if threshold_size is None else max(2, min(int(threshold_size), h // 2))
    largest = max((int(z.shape[0]) for z in samples.values()), default=h - n_threshold)
    n_check = min(h - n_threshold, largest if check_size is None else int(check_size))
    order = torch.randperm(h, generator=gen).to(heldout.device)
    threshold_codes = heldout[order[:n_threshold]]
    check_codes = heldout[order[n_threshold : n_threshold + n_check]]

    ref = density(threshold_codes).numpy()
    threshold = float(np.percentile(ref, percentile))
    resampled = torch.randint(len(ref), (bootstrap, len(ref)), generator=gen).numpy()
    thresholds = np.percentile(ref[resampled], percentile, axis=1)

    def row(z: Tensor, values: Tensor, against: Tensor) -> dict[str, Any]:
        v = values.detach().cpu().to(torch.float64).numpy()
        enough = min(z.shape[0], against.shape[0]) >= CLASSIFIER_FOLDS
        test = two_sample_accuracy(z, against, gen) if enough else {"mean": None, "stderr": None, "n": 0}
        return {
            "n": int(len(v)),
            "mean_log_density": float(v.mean()),
            "median_log_density": float(np.median(v)),
            "hole_fraction": {
                "mean": float((v < threshold).mean()),
                "stderr": _bootstrap_fraction(v, thresholds, gen),
            },
            "two_sample_accuracy": {"mean": test["mean"], "stderr": test["stderr"]} if enough else None,
            "two_sample_n": test["n"],
        }

    # The check row first: its numbers do not depend on which sources follow.
    check = row(check_codes, density(check_codes), threshold_codes)
    known = source_log_densities or {}
    sources = {}
    for name, z in samples.items():
        _check_z(z, means.shape[1])
        sources[name] = row(z, known[name] if name in known else density(z), check_codes)
    return {
        "percentile": float(percentile),
        "threshold": threshold,
        "heldout_codes": int(h),
        "threshold_codes": int(n_threshold),
        "bootstrap": int(bootstrap),
        "classifier": {
            "hidden": CLASSIFIER_HIDDEN,
            "steps": CLASSIFIER_STEPS,
            "folds": CLASSIFIER_FOLDS,
            "max_per_set": CLASSIFIER_MAX_PER_SET,
        },
        "heldout": check,
        "sources": sources,
    }


# --------------------------------------------------------------------------- #
# Table 3 of a run
# --------------------------------------------------------------------------- #


@torch.no_grad()
def where_samples_land(
    table: tuple[Tensor, Tensor],
    train_keys: Sequence[Hashable],
    y: Tensor,
    y_keys: Sequence[Hashable],
    text_posteriors: Mapping[str, Any],
    priors: Mapping[str, Any],
    reference: int = 2000,
    own_per_key: int = 200,
    percentile: float = 1.0,
    seed: int = 0,
    heldout: tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """Table 3: where z from each text posterior and each prior lands in the aggregate posterior.

    One z per scored text from each q(z|y), as many z from each prior, scored under the
    aggregate of q(z|x) over all N training images (``table`` = their means and log-variances)
    and, for the text posteriors, under the aggregate of the training images whose text has
    the same key as y (:func:`conditional_landing_table`). With ``heldout`` (the q(z|x) of
    images outside the aggregate, e.g. the validation images), also the calibrated statistics
    of :func:`heldout_landing_table` against one code z ~ q(z|x) per held-out image.

    Args:
        table: (means, logvars), (N, D) each, of q(z|x) for the training images.
        train_keys: the N training texts' keys (:meth:`vlvae.datasets.DataSet.landing_keys`).
        y: (M, L) scored texts; ``y_keys`` their keys.
        text_posteriors: name -> y -> q(z|y); priors: name -> () -> p(z).
        reference: samples of the aggregate itself that set the in-sample hole threshold, and
            the held-out codes that set the calibrated one.
        own_per_key, percentile: as in :func:`conditional_landing_table`.
        seed: seeds every draw (the sources through torch's global generator, which the
            distributions sample from; the rest through one ``torch.Generator``).
        heldout: (means, logvars), (H, D) each, of q(z|x) for the held-out images.

    Returns:
        {"marginal": :func:`landing_table`'s dict, "conditional":
        :func:`conditional_landing_table`'s, and with ``heldout`` "calibrated":
        :func:`heldout_landing_table`'s (None with fewer than 4 held-out images)}.
    """
    means, logvars = (t.double().cpu() for t in table)
    torch.manual_seed(seed)
    samples = {name: q(y).sample().double().cpu() for name, q in text_posteriors.items()}
    conditional = dict(samples)
    samples.update({name: p().sample((len(y),)).double().cpu() for name, p in priors.items()})
    g = torch.Generator().manual_seed(seed)
    ref = sample_aggregate(means, logvars, reference, generator=g)
    densities = {name: aggregate_log_density(z, means, logvars) for name, z in samples.items()}
    out = {
        "marginal": _marginal_table(
            aggregate_log_density(ref, means, logvars), densities, percentile, tuple(means.shape)
        ),
        "conditional": conditional_landing_table(
            conditional,
            list(y_keys),
            means,
            logvars,
            list(train_keys),
            own_per_key=own_per_key,
            percentile=percentile,
            generator=g,
        ),
    }
    if heldout is not None:
        # One code per held-out image, drawn after the draws above from the same generator.
        h_means, h_logvars = (t.double().cpu() for t in heldout)
        if h_means.shape[0] < 4:  # too few held-out images to split into threshold and check codes
            out["calibrated"] = None
            return out
        _check_gaussians(h_means, h_logvars)
        codes = _draw(h_means, h_logvars, torch.arange(h_means.shape[0]), g)
        out["calibrated"] = heldout_landing_table(
            samples,
            means,
            logvars,
            codes,
            percentile=percentile,
            threshold_size=reference,
            generator=g,
            source_log_densities=densities,
        )
    return out
