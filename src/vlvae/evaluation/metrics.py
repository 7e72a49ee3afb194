"""Tables 1-2: correctness of generated images and likelihood bounds (docs/design.md §6, paper §4).

Correctness (Table 1, conditional): for each validation text y, z ~ q(z|y)
(q_True or q_Agg), the decoded mean image is scored against y by the
independent classifier. Correctness (Table 2, prior): z ~ p(z) (N(0, I) or the
learned q_phi(z)), the mean image is scored against the greedily decoded text
of the same z. Reported as the mean over the scored examples (the test split;
validation for a data set without one), with its Monte-Carlo error (the standard
error of the mean over seeds, each seed redrawing every z) and the standard
error over examples (of each example's mean over seeds). The reconstruction
(z ~ q(z|x) of the real image of y) is reported beside, as the ceiling of any q(z|y).

Likelihoods are always unweighted (:mod:`vlvae.objectives`): log p(x|y)
(Eqn 6) under q_True and q_Agg and log p(x) under N(0, I) and q_phi(z), with
q(z|x) as the proposal, at k = 1 (the ELBO-style bound of Eqn 6) and at the
configured k (importance weighted); log p(y) under N(0, I) and q_phi(z) with a
proposal that depends on y alone (the text posteriors, a Gaussian per text fitted
to the posterior under each prior, the priors), at k = 1, 10, ..., 1000, with
each prior's effective sample size.

Stages 2-3 may be trained several times (training replicates);
:func:`combine_replicates` turns the per-replicate tables into mean ± standard
deviation over training replicates, keeping the Monte-Carlo error of the
evaluation apart.

Every function computes on the device of the model and the tensors it is given (the evaluation
driver puts them on ``--device``) and micro-batches what grows with the number of examples or of
importance samples: correctness 256 texts at a time, log p(x|y) and log p(x) 16 images at a time
with ``micro_batch`` of their ``k`` samples scored at a time, log p(y) 50 texts at a time with 100 of
its ``text_k`` samples at a time. Memory stays bounded whatever the examples and k; the
summaries are returned on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch.distributions import Independent, Normal
from zuko.distributions import NormalizingFlow

from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.methods.stages import paired_distributions
from vlvae.models.text import text_mask
from vlvae.objectives import (
    DefensiveMixture,
    GaussianFit,
    effective_sample_sizes,
    fit_gaussian_posterior,
    importance_log_marginals,
    importance_log_weights,
    nested_log_marginals,
)
from vlvae.seeds import (
    CORRECTNESS_SEED_BASES,
    LIKELIHOOD_SEED,
    TEXT_LIKELIHOOD_SEED_OFFSET,
    TEXT_PROPOSAL_SEED_OFFSET,
)

__all__ = [
    "caption_accuracy",
    "posterior_spread",
    "validation_batch",
    "summarise",
    "mc_stderr",
    "paired_differences",
    "correctness_tables",
    "image_log_marginals",
    "likelihood_tables",
    "text_log_marginals",
    "text_proposal",
    "fitted_text_posteriors",
    "fitted_component",
    "combine_replicates",
]


def validation_batch(data: ImageTextDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` validation images (float, (n, 3, H, W)) and texts ((n, L) long)."""
    n = min(n, len(data))
    items = [data[i] for i in range(n)]
    return (
        images_to_float(torch.stack([it["image"] for it in items])),
        torch.stack([it["text"] for it in items]),
    )


def summarise(per_seed: list[np.ndarray]) -> dict:
    """One figure over S seeds × N examples (each seed redraws every z), with its two errors.

    ``per_seed`` holds S arrays of N per-example values, the same N examples for every seed.

    * ``mean``: the mean over seeds and examples.
    * ``std_over_seeds``: the sample standard deviation of the S per-seed means (ddof = 1).
    * ``mc_stderr``: the Monte-Carlo error of ``mean`` itself, the standard error of the mean of the S
      per-seed means, ``std_over_seeds / √S`` (0 for one seed): the figure averages S seeds, so one
      seed's spread would overstate its Monte-Carlo error by √S.
    * ``stderr_over_examples``: the standard error over the N examples of the per-example means over
      seeds, ``std(m_1..m_N) / √N``. The S · N values are not independent (an example's seeds share
      its text and image), so pooling them would understate it.
    """
    values = np.stack([np.asarray(v, dtype=np.float64) for v in per_seed])  # (S, N)
    means = values.mean(axis=1)
    per_example = values.mean(axis=0)
    seeds, examples = values.shape
    std = float(means.std(ddof=1)) if seeds > 1 else 0.0
    return {
        "mean": float(means.mean()),
        "std_over_seeds": std,
        "mc_stderr": std / math.sqrt(seeds),
        "stderr_over_examples": float(per_example.std(ddof=1) / math.sqrt(examples)) if examples > 1 else 0.0,
        "per_seed": means.tolist(),
        "examples": int(examples),
    }


def mc_stderr(s: dict) -> float:
    """The Monte-Carlo error of a correctness figure: the standard error of its mean over sampling seeds.

    Files from before it was recorded hold only the seeds' standard deviation: divided by √S here.
    """
    if "mc_stderr" in s:
        return s["mc_stderr"]
    return s["std_over_seeds"] / math.sqrt(max(1, len(s.get("per_seed") or [0])))


def _chunks(n: int, size: int):
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))


@torch.no_grad()
def correctness_tables(
    model,
    scores: dict[str, Callable],
    x: torch.Tensor,
    y: torch.Tensor,
    text_posteriors: dict,
    priors: dict,
    seeds: int,
    batch_size: int = 256,
) -> dict:
    """Correctness of conditional (Table 1) and prior (Table 2) generation, under each definition.

    Every image is generated once and scored by every definition in ``scores``.

    Args:
        model: the frozen VLVAE.
        scores: definition name -> (images float (N, 3, H, W), texts long (N, L)) -> (N,) in [0, 1].
        x, y: validation images and their texts.
        text_posteriors: name -> module y -> q(z|y) (e.g. {"q_true": ..., "q_agg": ...}).
        priors: name -> () -> p(z) (e.g. {"standard": model.standard_prior, "learned": prior}).
        seeds: repetitions with fresh z.

    Returns:
        definition -> {"conditional": {name: summary}, "prior": {name: summary},
        "reconstruction": summary, "differences": paired differences} (each summary from
        :func:`summarise`, in fractions).
    """
    chunks = list(_chunks(len(y), batch_size))
    # The distributions do not depend on the seed: build them once, draw from them per seed.
    sources = {
        ("conditional", name): (CORRECTNESS_SEED_BASES["conditional"], [(q(y[s]), s) for s in chunks])
        for name, q in text_posteriors.items()
    }
    sources.update(
        {
            ("prior", name): (CORRECTNESS_SEED_BASES["prior"], [(prior(), s) for s in chunks])
            for name, prior in priors.items()
        }
    )
    sources[("reconstruction", None)] = (
        CORRECTNESS_SEED_BASES["reconstruction"],
        [(model.image_posterior(x[s], y[s]), s) for s in chunks],
    )
    runs = {key: {d: [] for d in scores} for key in sources}
    for (table, name), (base_seed, dists) in sources.items():
        for seed in range(seeds):
            torch.manual_seed(base_seed + seed)
            vals = {d: [] for d in scores}
            for dist, s in dists:
                if table == "prior":
                    z = dist.sample((s.stop - s.start,))
                    images, texts = model.image_mean(z), model.generate_text(z, greedy=True)
                else:
                    images, texts = model.image_mean(dist.sample()), y[s]
                for d, score in scores.items():
                    vals[d].append(score(images, texts))
            for d in scores:
                runs[(table, name)][d].append(torch.cat(vals[d]).cpu().numpy())
    out = {}
    for d in scores:
        tables = {"conditional": {}, "prior": {}}
        per_example = {}
        for (table, name), per_def in runs.items():
            if table == "reconstruction":
                tables["reconstruction"] = summarise(per_def[d])
            else:
                tables[table][name] = summarise(per_def[d])
                per_example[name] = np.mean(per_def[d], axis=0)
        tables["differences"] = paired_differences(per_example)
        out[d] = tables
    return out


def paired_differences(per_example: dict) -> dict:
    """Mean ± standard error over examples of each registered pair present (e.g. q_agg − q_true).

    The pairs are those the stages declare (:func:`vlvae.methods.stages.paired_distributions`).
    The two members of each pair are scored on the same examples, so
    the per-example difference removes the spread between examples.
    """
    out = {}
    for a, b in paired_distributions():
        if a in per_example and b in per_example:
            d = np.asarray(per_example[a], dtype=np.float64) - np.asarray(per_example[b], dtype=np.float64)
            out[f"{a} - {b}"] = {
                "mean": float(d.mean()),
                "stderr": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0,
            }
    return out


def _k_ladder(k_max: int) -> list[int]:
    """1, 10, 100, ... up to ``k_max`` (and ``k_max`` itself)."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 10
    return ks + [k_max]


def _stats(values: torch.Tensor, dim: int) -> dict:
    v = values.double()
    return {
        "mean": float(v.mean()),
        "stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
        "per_dim": float(v.mean() / dim),
    }


def text_proposal(
    text_posteriors: dict, priors: dict, y: torch.Tensor, fitted: tuple = ()
) -> DefensiveMixture:
    """The proposal of log p(y): an equal mixture of every text posterior q(z|y), every fitted posterior
    and every prior.

    It depends on y alone and is the same for every prior it compares (docs/design.md §6). ``fitted``
    holds, per prior, a Gaussian per text fitted to the posterior under that prior
    (:func:`fitted_text_posteriors`), each batched like ``y``. Each prior is a component so that the
    posterior under each, p(y|z) p(z) / p(y), has a broad part of the proposal near it; the fitted
    posteriors put samples where p(y|z) p(z) is high under each prior alike; the text posteriors
    where p(y|z) is high.
    """
    return DefensiveMixture(
        [q(y) for q in text_posteriors.values()] + list(fitted) + [p() for p in priors.values()]
    )


#: Draws per text of the text posteriors' mixture whose robust moments start each fitted posterior.
_FIT_START_DRAWS = 128


def _to_base(p_z):
    """The map from z to the prior's base coordinates u: a flow's normalising transform (zuko's
    :class:`~zuko.distributions.NormalizingFlow`, u = f(z)), None (u = z) for any other prior."""
    return p_z.transform if isinstance(p_z, NormalizingFlow) else None


def _base_of(p_z):
    """The prior's density over its base coordinates u: a flow's base, any other prior itself."""
    return p_z.base if isinstance(p_z, NormalizingFlow) else p_z


def fitted_component(p_z, mean: torch.Tensor, std: torch.Tensor):
    """The fitted posterior under prior ``p_z`` as a distribution over z: N(mean, diag std²) over the
    prior's base coordinates u, pushed through its flow (z = f⁻¹(u)) if it is one; batch (N,)."""
    gaussian = Independent(Normal(mean, std), 1)
    transform = _to_base(p_z)
    return gaussian if transform is None else NormalizingFlow(transform, gaussian)


@torch.no_grad()
def fitted_text_posteriors(
    model, y: torch.Tensor, text_posteriors: dict, priors: dict, fit: GaussianFit = GaussianFit()
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    r"""Per prior, a Gaussian per text fitted to the posterior under that prior by Eqn 3.

    .. math:: q_p(z|y) = \arg\max_q E_{q}[\log p(y|z) + \log p(z) − \log q(z|y)]

    for p(z) = each prior (N(0, I), q_φ(z)): q_True's objective with that prior in place of N(0, I),
    free parameters per text instead of an encoder, the VLVAE frozen
    (:func:`vlvae.objectives.fit_gaussian_posterior`). q ranges over diagonal Gaussians in the
    prior's base coordinates: u = z for N(0, I); for a flow prior z = f⁻¹(u), u ~ N(μ_y, σ_y²)
    (:func:`fitted_component`), where the prior is the flow's Gaussian base p_u, so that the fit is
    the same problem under every prior; the flow's Jacobian cancels from the bound, which becomes
    E_{N(u; μ_y, σ_y²)}[log p(y|f⁻¹(u)) + log p_u(u)] + H. (A Gaussian in z itself could not follow a
    learned prior's density and fitted its posterior worse than the prior did.) Each fit starts
    from the robust moments (median, 1.4826 × median absolute deviation) of the text posteriors'
    equal mixture at y mapped into the prior's base coordinates (of the prior itself when there is
    no text posterior). Fitted ``fit.batch_size`` texts at a time; draws from torch's global
    generator (seed it first).

    Returns:
        {prior: (mean, std)} in the prior's base coordinates, each (N, latent).
    """
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in priors}
    for s in _chunks(len(y), fit.batch_size):
        if text_posteriors:
            draws = DefensiveMixture([q(y[s]) for q in text_posteriors.values()]).sample((_FIT_START_DRAWS,))
        for name, prior in priors.items():
            p_z = prior()
            transform, base = _to_base(p_z), _base_of(p_z)
            if not text_posteriors:
                u = base.sample((_FIT_START_DRAWS, s.stop - s.start))
            else:
                u = draws if transform is None else transform(draws)
            centre = u.median(0).values
            spread = 1.4826 * (u - centre).abs().median(0).values

            def log_joint(u, s=s, transform=transform, base=base):
                z = u if transform is None else transform.inv(u)
                return model.log_py(y[s], z) + base.log_prob(u)

            q = fit_gaussian_posterior(log_joint, centre, spread.clamp_min(1e-3), fit)
            out[name][0].append(q.mean)
            out[name][1].append(q.stddev)
    return {name: (torch.cat(means), torch.cat(stds)) for name, (means, stds) in out.items()}


def _ess_summary(ess: torch.Tensor) -> dict:
    """Mean (± standard error), median and minimum over texts of the per-text effective sample size.

    Each statistic is its own ``{"mean": ...}`` summary, so :func:`combine_replicates` keeps all three.
    """
    v = ess.double()
    return {
        "mean": {
            "mean": float(v.mean()),
            "stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
        },
        "median": {"mean": float(v.median())},
        "min": {"mean": float(v.min())},
    }


@torch.no_grad()
def text_log_marginals(
    model,
    y: torch.Tensor,
    text_posteriors: dict,
    priors: dict,
    ks: list[int],
    micro_batch: int = 100,
    batch_size: int = 50,
    seed: int = LIKELIHOOD_SEED,
    fit: GaussianFit | None = GaussianFit(),
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    r"""Per-text estimates of log p(y) under each prior, and their effective sample sizes.

    .. math:: \log p(y) \approx \log \frac1k Σ_{i=1}^k \frac{p(y|z_i)\, p(z_i)}{r(z_i|y)},
              \quad z_i \sim r(z|y) = \text{:func:`text_proposal`}

    One proposal and one set of ``max(ks)`` samples per text serve every prior (paired), nested in k.
    With ``fit`` (the default), the proposal holds, besides the text posteriors and the priors, a
    Gaussian per text fitted to the posterior under each prior (:func:`fitted_text_posteriors`,
    seeded ``seed +`` :data:`~vlvae.seeds.TEXT_PROPOSAL_SEED_OFFSET`); ``fit=None`` leaves them out
    (the proposal before them, whose only component fitted to a posterior was q_True's, fitted
    under N(0, I): it underestimated log p(y) under q_φ(z) at finite k). The samples are drawn with
    seed ``seed +`` :data:`~vlvae.seeds.TEXT_LIKELIHOOD_SEED_OFFSET`.

    Returns:
        ``({"<prior>/k=<k>": (N,) nats}, {"<prior>/k=<k>": (N,) effective sample size})``.
    """
    fitted = {}
    if fit is not None:
        torch.manual_seed(seed + TEXT_PROPOSAL_SEED_OFFSET)
        fitted = fitted_text_posteriors(model, y, text_posteriors, priors, fit)
    torch.manual_seed(seed + TEXT_LIKELIHOOD_SEED_OFFSET)
    values: dict[str, list[torch.Tensor]] = {}
    sizes: dict[str, list[torch.Tensor]] = {}
    for s in _chunks(len(y), batch_size):
        dists = {name: prior() for name, prior in priors.items()}

        def targets(z, s=s, dists=dists):
            log_py = model.log_py(y[s], z)
            return {name: log_py + d.log_prob(z) for name, d in dists.items()}

        components = [fitted_component(dists[name], mean[s], std[s]) for name, (mean, std) in fitted.items()]
        proposal = text_proposal(text_posteriors, priors, y[s], tuple(components))
        for name, log_w in importance_log_weights(targets, proposal, max(ks), micro_batch).items():
            for kk, v in nested_log_marginals(log_w, ks).items():
                values.setdefault(f"{name}/k={kk}", []).append(v)
            for kk, v in effective_sample_sizes(log_w, ks).items():
                sizes.setdefault(f"{name}/k={kk}", []).append(v)
    return (
        {key: torch.cat(parts) for key, parts in values.items()},
        {key: torch.cat(parts) for key, parts in sizes.items()},
    )


@torch.no_grad()
def image_log_marginals(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    text_posteriors: dict,
    priors: dict,
    ks: list[int],
    micro_batch: int,
    batch_size: int = 16,
) -> dict[str, torch.Tensor]:
    """Per-example bounds on log p(x|y) (each text posterior) and log p(x) (each prior), sharing samples.

    Every image's k samples from q(z|x) and their log p(x|z) are drawn and evaluated once and
    weighed under every distribution (nested in k: the bound at k uses the first k samples), so
    any two entries are paired. Draws from torch's global generator (seed it first).

    Returns:
        ``{"log_p_x_given_y/<name>/k=<k>": (N,), "log_p_x/<prior>/k=<k>": (N,)}`` in nats (pixels
        mapped as the likelihood sees them).
    """
    values: dict[str, list[torch.Tensor]] = {}
    for s in _chunks(len(y), batch_size):
        dists = {f"log_p_x_given_y/{name}": q(y[s]) for name, q in text_posteriors.items()}
        dists.update({f"log_p_x/{name}": prior() for name, prior in priors.items()})

        def targets(z, s=s, dists=dists):
            log_px = model.log_px(x[s], z)
            return {key: log_px + d.log_prob(z) for key, d in dists.items()}

        est = importance_log_marginals(targets, model.image_posterior(x[s], y[s]), ks, micro_batch)
        for key, per_k in est.items():
            for kk, v in per_k.items():
                values.setdefault(f"{key}/k={kk}", []).append(v)
    return {key: torch.cat(parts) for key, parts in values.items()}


@torch.no_grad()
def likelihood_tables(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    text_posteriors: dict,
    priors: dict,
    k: int,
    micro_batch: int,
    batch_size: int = 16,
    seed: int = LIKELIHOOD_SEED,
    text_k: int = 1000,
    text_batch_size: int = 50,
    text_micro_batch: int = 100,
    text_fit: GaussianFit | None = GaussianFit(),
) -> dict:
    """Unweighted likelihood bounds in nats per example (and per dimension).

    log p(x|y) (Eqn 6, under each text posterior) and log p(x) (under each prior) share one set of
    k samples from q(z|x) per image and one evaluation of log p(x|z), at k = 1 and k = ``k``.
    log p(y) (under each prior) uses a proposal that depends on y alone (:func:`text_log_marginals`:
    the text posteriors, a Gaussian per text fitted to the posterior under each prior by Eqn 3
    unless ``text_fit`` is None, and the priors), ``text_k`` samples per text, reported at
    k = 1, 10, 100, ..., ``text_k`` (nested: the estimate at k uses the first k samples), with the
    effective sample size of each prior's weights at each k. At k = 1 the difference between two
    priors is log p_1(z) − log p_2(z) at the shared sample, free of the text decoder; only k > 1
    weighs the samples by p(y|z), so read log p(y) at the largest k, check its convergence in k
    and its effective sample size.

    Returns:
        {"log_p_x_given_y": {name: {"k=1": s, "k=K": s}}, "log_p_x": {prior: ...},
         "log_p_y": {prior: {"k=1": s, "k=10": s, ...}}, "dimensions": {"x": D_x, "y": L},
         "k": K, "text_k": [1, 10, ...], "differences": {"k=1": {table: pairs}, "k=K": ...},
         "log_p_y_differences": {"k=1": pairs, ...},
         "log_p_y_fitted": [prior, ...] (the priors whose fitted posterior is in the proposal),
         "log_p_y_ess": {prior: {"k=1": e, ...}}} with s = {"mean", "stderr", "per_dim"},
        pairs from :func:`paired_differences` and e = {"mean": {"mean", "stderr"}, "median":
        {"mean"}, "min": {"mean"}}, the effective sample size (Σw)² / Σw² of each text's weights
        (between 1 and k) over texts.
    """
    dims = {"x": int(np.prod(x.shape[1:])), "y": int(y.shape[1])}
    torch.manual_seed(seed)
    image_values = image_log_marginals(
        model, x, y, text_posteriors, priors, sorted({1, k}), micro_batch, batch_size
    )
    text_ks = _k_ladder(text_k)
    text_values, text_ess = text_log_marginals(
        model, y, text_posteriors, priors, text_ks, text_micro_batch, text_batch_size, seed, text_fit
    )
    out = {"log_p_x_given_y": {}, "log_p_x": {}, "log_p_y": {}, "dimensions": dims, "k": k, "text_k": text_ks}
    per_example: dict = {}
    for key, vals in image_values.items():
        table, name, kk = key.split("/")
        out[table].setdefault(name, {})[kk] = _stats(vals, dims["x"])
        per_example.setdefault(kk, {}).setdefault(table, {})[name] = vals.double().cpu().numpy()
    text_per_example: dict = {}
    for key, vals in text_values.items():
        name, kk = key.split("/")
        out["log_p_y"].setdefault(name, {})[kk] = _stats(vals, dims["y"])
        text_per_example.setdefault(kk, {})[name] = vals.double().cpu().numpy()
    # The same images, texts and samples for both members of a pair: their difference is paired.
    out["differences"] = {
        kk: {table: paired_differences(per_name) for table, per_name in tables.items()}
        for kk, tables in per_example.items()
    }
    out["log_p_y_differences"] = {
        kk: paired_differences(per_name) for kk, per_name in text_per_example.items()
    }
    out["log_p_y_fitted"] = [] if text_fit is None else list(priors)
    out["log_p_y_ess"] = {}
    for key, ess in text_ess.items():
        name, kk = key.split("/")
        out["log_p_y_ess"].setdefault(name, {})[kk] = _ess_summary(ess)
    return out


#: Fields of a summary that measure the Monte-Carlo error of one evaluation (not training spread).
_MC_FIELDS = ("std_over_seeds", "mc_stderr", "stderr_over_examples", "stderr")


def combine_replicates(tables: list, floats: bool = False):
    """Mean ± standard deviation over training replicates of per-replicate result trees.

    ``tables`` holds the same nested structure once per replicate (e.g. the output of
    :func:`correctness_tables` or :func:`likelihood_tables`). Every summary (a dict with
    ``mean``) becomes ``{"mean": mean over replicates, "std_over_replicates": sample std
    (ddof = 1; 0 for one replicate), "replicates": R, "per_replicate": [...]}`` plus each
    Monte-Carlo error field of the replicates (std over seeds, standard errors), averaged over
    replicates: the spread of the evaluation's sampling, reported beside the training spread (which,
    being the spread of per-replicate estimates, also contains that sampling noise).
    With ``floats``, every other number (e.g. Table 3's fractions) becomes ``{"mean",
    "std_over_replicates", "per_replicate"}`` too; otherwise other values are taken from the
    first replicate.
    """
    first = tables[0]
    if floats and isinstance(first, float) and not isinstance(first, bool):
        values = np.array([t for t in tables], dtype=np.float64)
        return {
            "mean": float(values.mean()),
            "std_over_replicates": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "per_replicate": values.tolist(),
        }
    if isinstance(first, dict) and "mean" in first and isinstance(first["mean"], float):
        means = np.array([t["mean"] for t in tables], dtype=np.float64)
        out = {
            "mean": float(means.mean()),
            "std_over_replicates": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
            "replicates": len(tables),
            "per_replicate": means.tolist(),
        }
        for key in _MC_FIELDS:
            if key in first:
                out[key] = float(np.mean([t[key] for t in tables]))
        for key in ("per_dim", "examples"):
            if key in first:
                out[key] = type(first[key])(np.mean([t[key] for t in tables]))
        return out
    if isinstance(first, dict):
        return {key: combine_replicates([t[key] for t in tables], floats) for key in first}
    return first


def _mean_se(values: torch.Tensor) -> dict:
    """Mean and standard error over examples of one value per example."""
    v = values.double()
    return {"mean": float(v.mean()), "stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0}


@torch.no_grad()
def caption_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> dict:
    """Image → text: greedy captions of z ~ q(z|x) (q(z|x, y) for joint inference) against the true texts.

    Draws from torch's global generator (seed it first).

    Returns:
        ``{"words": {"mean", "stderr"}, "texts": {"mean", "stderr"}}``: the fraction of the true
        text's words (up to and including its end word, docs/design.md §11) decoded right, and of
        texts decoded right in every position (per example,
        then mean and standard error over examples).
    """
    words, texts = [], []
    for s in _chunks(len(y), batch_size):
        z = model.image_posterior(x[s], y[s]).sample()
        right = (model.generate_text(z, greedy=True) == y[s]).float()
        # The words of each true text: every slot of a fixed text; a free text's up to its end word.
        inside = text_mask(y[s], model.config.end_index)
        words.append((right * inside).sum(-1) / inside.sum(-1))
        texts.append(right.min(-1).values)
    return {name: _mean_se(torch.cat(v)) for name, v in (("words", words), ("texts", texts))}


@torch.no_grad()
def posterior_spread(model, x: torch.Tensor, y: torch.Tensor, own=None) -> dict:
    """The mean standard deviation of q(z|x) and, if given, of the method's own q(z|y).

    A collapsed unimodal posterior (as one library's TELBO had) shows as a value near 0.

    Returns:
        ``{"q_z_x": float}``, plus ``"own_q_z_y"`` when ``own`` (y -> q(z|y)) is given.
    """
    out = {"q_z_x": float(model.image_posterior(x, y).stddev.mean())}
    if own is not None:
        out["own_q_z_y"] = float(own(y).stddev.mean())
    return out
