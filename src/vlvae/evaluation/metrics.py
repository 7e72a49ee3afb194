"""Tables 1-2: correctness of generated images and likelihood bounds (SPEC §6, paper §4).

Correctness (Table 1, conditional): for each validation text y, z ~ q(z|y)
(q_True or q_Agg), the decoded mean image is scored against y by the
independent classifier. Correctness (Table 2, prior): z ~ p(z) (N(0, I) or the
learned q_phi(z)), the mean image is scored against the greedily decoded text
of the same z. Reported as the mean over validation examples, with the
standard deviation over seeds (each seed redraws every z) and the standard
error over examples. The reconstruction (z ~ q(z|x) of the real image of y)
is reported beside, as the ceiling of any q(z|y).

Likelihoods are always unweighted and use q(z|x) as the proposal
(:mod:`vlvae.objectives`): log p(x|y) (Eqn 6) under q_True and q_Agg, and
log p(x), log p(y) under N(0, I) and q_phi(z), each at k = 1 (the ELBO-style
bound of Eqn 6) and at the configured k (importance weighted).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.objectives import (
    conditional_log_likelihood,
    marginal_log_likelihood_image,
    marginal_log_likelihood_text,
)

__all__ = ["validation_batch", "summarise", "paired_differences", "correctness_tables", "likelihood_tables"]


def validation_batch(data: ImageTextDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` validation images (float, (n, 3, H, W)) and texts ((n, L) long)."""
    n = min(n, len(data))
    items = [data[i] for i in range(n)]
    return (images_to_float(torch.stack([it["image"] for it in items])),
            torch.stack([it["text"] for it in items]))


def summarise(per_seed: list[np.ndarray]) -> dict:
    """Mean, std over seeds (of per-seed means) and standard error over examples."""
    per_seed = [np.asarray(v, dtype=np.float64) for v in per_seed]
    means = np.array([v.mean() for v in per_seed])
    pooled = np.concatenate(per_seed)
    return {
        "mean": float(means.mean()),
        "std_over_seeds": float(means.std(ddof=1)) if len(means) > 1 else 0.0,
        "stderr_over_examples": float(pooled.std(ddof=1) / math.sqrt(len(pooled))) if len(pooled) > 1 else 0.0,
        "per_seed": means.tolist(),
        "examples": int(len(per_seed[0])),
    }


def _chunks(n: int, size: int):
    for lo in range(0, n, size):
        yield slice(lo, min(n, lo + size))


@torch.no_grad()
def correctness_tables(model, scores: dict[str, Callable], x: torch.Tensor, y: torch.Tensor,
                       text_posteriors: dict, priors: dict, seeds: int, batch_size: int = 256) -> dict:
    """Correctness of conditional (Table 1) and prior (Table 2) generation, under each definition.

    Every image is generated once and scored by every definition in ``scores``.

    Args:
        model: the frozen VLVAE.
        scores: definition name -> (images float (N, 3, H, W), texts long (N, L)) -> (N,) in [0, 1].
        x, y: validation images and their texts.
        text_posteriors: name -> module y -> q(z|y) (e.g. {"q_true": ..., "q_agg": ...}).
        priors: name -> () -> p(z) (e.g. {"standard": model.prior, "learned": prior}).
        seeds: repetitions with fresh z.

    Returns:
        definition -> {"conditional": {name: summary}, "prior": {name: summary},
        "reconstruction": summary, "differences": paired differences} (each summary from
        :func:`summarise`, in fractions).
    """
    chunks = list(_chunks(len(y), batch_size))
    # The distributions do not depend on the seed: build them once, draw from them per seed.
    sources = {("conditional", name): (1000, [(q(y[s]), s) for s in chunks])
               for name, q in text_posteriors.items()}
    sources.update({("prior", name): (2000, [(prior(), s) for s in chunks]) for name, prior in priors.items()})
    sources[("reconstruction", None)] = (3000, [(model.image_posterior(x[s], y[s]), s) for s in chunks])
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
                runs[(table, name)][d].append(torch.cat(vals[d]).numpy())
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
    """Mean ± standard error over examples of q_agg − q_true and learned − standard.

    The two members of each pair are scored on the same validation examples, so
    the per-example difference removes the spread between examples.
    """
    out = {}
    for a, b in (("q_agg", "q_true"), ("learned", "standard")):
        if a in per_example and b in per_example:
            d = np.asarray(per_example[a], dtype=np.float64) - np.asarray(per_example[b], dtype=np.float64)
            out[f"{a} - {b}"] = {"mean": float(d.mean()),
                                 "stderr": float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0}
    return out


@torch.no_grad()
def likelihood_tables(model, x: torch.Tensor, y: torch.Tensor, text_posteriors: dict, priors: dict,
                      k: int, micro_batch: int, batch_size: int = 16, seed: int = 0) -> dict:
    """Unweighted likelihood bounds in nats per example (and per dimension).

    Returns:
        {"log_p_x_given_y": {name: {"k=1": s, "k=K": s}}, "log_p_x": {prior: ...},
         "log_p_y": {prior: ...}, "dimensions": {"x": D_x, "y": L}} with s =
        {"mean", "stderr", "per_dim"}.
    """
    n = len(y)
    dims = {"x": int(np.prod(x.shape[1:])), "y": int(y.shape[1])}

    def stats(values: torch.Tensor, dim: int) -> dict:
        v = values.double()
        return {"mean": float(v.mean()), "stderr": float(v.std() / math.sqrt(len(v))) if len(v) > 1 else 0.0,
                "per_dim": float(v.mean() / dim)}

    values = {}

    def run(fn, dim, table, name):
        result = {}
        for kk in sorted({1, k}):
            torch.manual_seed(seed)
            vals = torch.cat([fn(s, kk) for s in _chunks(n, batch_size)])
            result[f"k={kk}"] = stats(vals, dim)
            values.setdefault(f"k={kk}", {}).setdefault(table, {})[name] = vals.double().numpy()
        return result

    out = {"log_p_x_given_y": {}, "log_p_x": {}, "log_p_y": {}, "dimensions": dims, "k": k}
    for name, q in text_posteriors.items():
        out["log_p_x_given_y"][name] = run(
            lambda s, kk, q=q: conditional_log_likelihood(model, q, x[s], y[s], kk, micro_batch), dims["x"],
            "log_p_x_given_y", name)
    for name, prior in priors.items():
        out["log_p_x"][name] = run(
            lambda s, kk, p=prior: marginal_log_likelihood_image(model, p, x[s], kk, micro_batch, y=y[s]),
            dims["x"], "log_p_x", name)
        out["log_p_y"][name] = run(
            lambda s, kk, p=prior: marginal_log_likelihood_text(model, p, x[s], y[s], kk, micro_batch),
            dims["y"], "log_p_y", name)
    # The same images, texts and seed for both members of a pair: their difference is paired.
    out["differences"] = {kk: {table: paired_differences(per_name) for table, per_name in tables.items()}
                          for kk, tables in values.items()}
    return out
