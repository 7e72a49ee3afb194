"""The metrics of an evaluation, as one ordered registry that the evaluation driver loops over.

A :class:`Metric` says what it needs from a run (a judge, text posteriors, priors, the training
images' posteriors), how it is computed (on one training replicate of the stages 2-3, or once per
run), how its values combine over training replicates, and how they combine over independently
trained stage-1 models (the cross-run summary). Each writes one or more top-level keys of
``metrics.json``; the renderers (:mod:`vlvae.evaluation.report`, :mod:`vlvae.evaluation.compare`)
read those keys. A new metric is one entry in :data:`_REGISTRY`: the driver computes it for every
run of every method that offers what it needs, and the summary over runs carries it.

The computations themselves are :mod:`vlvae.evaluation.metrics`'s and
:mod:`vlvae.evaluation.landing`'s; this module only wires them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlvae.evaluation.landing import where_samples_land
from vlvae.evaluation.metrics import (
    caption_accuracy,
    combine_replicates,
    correctness_tables,
    likelihood_tables,
    posterior_spread,
)
from vlvae.models.likelihoods import pixel_log_jacobian
from vlvae.runs import STAGE1, stage_dir
from vlvae.seeds import CAPTION_SEED_OFFSET

__all__ = [
    "OWN_POSTERIOR",
    "Subject",
    "Evaluation",
    "Metric",
    "registered_metrics",
    "metric_keys",
    "SPREAD_EXAMPLES",
]

#: The name of a method's own q(z|y) (JMVAE, TELBO, MVAE) among a run's text posteriors.
OWN_POSTERIOR = "own"
#: How many validation examples the posterior spread averages over.
SPREAD_EXAMPLES = 512


@dataclass
class Subject:
    """What one training replicate of a run offers: its stage-1 model and the distributions fitted on it.

    Attributes:
        model: the frozen stage-1 model (any registered method's).
        text_posteriors: name -> (y -> q(z|y)): the method's own (:data:`OWN_POSTERIOR`) and the
            finished stages fitting q(z|y), in the order the tables list them.
        priors: name -> (() -> p(z)): N(0, I) and the finished learned priors.
        replicate: the training replicate R of the stages 2-3.
    """

    model: Any
    text_posteriors: dict[str, Any]
    priors: dict[str, Callable]
    replicate: int = 0


@dataclass
class Evaluation:
    """Everything a metric may read about the run being evaluated (built once by the driver).

    Attributes:
        run, cfg, method: the run folder, its config and its registered method.
        stages: the stages 2-3 of the run's method that are evaluated.
        x, y: the scored validation images (float, (N, 3, H, W)) and texts ((N, L) long).
        scores: correctness definition -> (images, texts) -> (N,) in [0, 1]; empty without a judge.
        settings: examples, k, text_k, seeds, micro_batch, landing_reference, replicates.
        aggregate: () -> (posterior table of the training images, their Table-3 keys, the
            validation texts' keys); the driver caches it, so it is computed on first use only.
    """

    run: Path
    cfg: Any
    method: Any
    stages: tuple
    x: torch.Tensor
    y: torch.Tensor
    scores: dict[str, Callable]
    settings: dict
    aggregate: Callable[[], tuple]


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: its name (``--metrics`` and progress lines).
        keys: the top-level keys of ``metrics.json`` it writes.
        description: one line on what it measures.
        compute: ``(Evaluation, Subject) -> {key: value}``.
        per_replicate: computed on every training replicate of the stages 2-3 (else once, on the
            stage-1 model of the first).
        combine: ``(Evaluation, key, [value per replicate]) -> value``.
        across_runs: ``(key, [value per run]) -> value`` for the summary over independently trained
            stage-1 models, or None when the key has no meaning there.
        needs: ``Evaluation -> bool``: whether the run offers what it needs (e.g. a judge).
    """

    name: str
    keys: tuple[str, ...]
    description: str
    compute: Callable[[Evaluation, Subject], dict]
    per_replicate: bool = True
    combine: Callable[[Evaluation, str, list], Any] = lambda ev, key, values: combine_replicates(values)
    across_runs: Callable[[str, list], Any] | None = lambda key, values: combine_replicates(values)
    needs: Callable[[Evaluation], bool] = lambda ev: True


# ----------------------------------------------------------------------------- correctness


def _correctness(ev: Evaluation, s: Subject) -> dict:
    tables = correctness_tables(
        s.model, ev.scores, ev.x, ev.y, s.text_posteriors, s.priors, ev.settings["seeds"]
    )
    return {
        "correctness": tables["paper"],
        "correctness_all_labels": tables.get("all_labels"),
        "correctness_caption_judge": tables.get("caption_judge"),
    }


def _combine_unless_none(key: str, values: list):
    """:func:`combine_replicates`, or None for a key the run has no value of (e.g. all-labels correctness)."""
    return None if values[0] is None else combine_replicates(values)


# ----------------------------------------------------------------------------- likelihoods


def _likelihood(ev: Evaluation, s: Subject) -> dict:
    st = ev.settings
    table = likelihood_tables(
        s.model, ev.x, ev.y, s.text_posteriors, s.priors, st["k"], st["micro_batch"], text_k=st["text_k"]
    )
    return {"likelihood": table}


def _combine_likelihood(ev: Evaluation, key: str, values: list) -> dict:
    """Over replicates, then as densities of pixels in [0, 1] (docs/design.md §2).

    The likelihood sees pixels mapped affinely into [pixel_low, pixel_high]; the change of
    variables adds D log(pixel_high − pixel_low) to every image log-density.
    """
    likelihood = combine_replicates(values)
    d = likelihood["dimensions"]["x"]
    jac = pixel_log_jacobian(d, ev.cfg.model.pixel_low, ev.cfg.model.pixel_high)
    for table_name in ("log_p_x_given_y", "log_p_x"):
        for per_k in likelihood[table_name].values():
            for s in per_k.values():
                s["mean"] += jac
                s["per_replicate"] = [v + jac for v in s["per_replicate"]]
                s["per_dim"] = s["mean"] / d
    likelihood["pixel_jacobian_nats"] = jac
    return likelihood


def _likelihood_across_runs(key: str, values: list) -> dict:
    out = combine_replicates(values)
    out["pixel_jacobian_nats"] = values[0]["pixel_jacobian_nats"]
    return out


# ----------------------------------------------------------------------------- Table 3


def _landing(ev: Evaluation, s: Subject) -> dict:
    """Table 3 of one replicate; calibrated by held-out codes when the aggregate offers them.

    ``ev.aggregate()`` gives (the training images' posterior table, their keys, the scored texts'
    keys) and, fourth, the posterior table of held-out (validation) images, whose codes calibrate
    the hole fraction and the classifier test (``landing["calibrated"]``). Every draw comes from
    the run's seed (Table 3's stream, :mod:`vlvae.seeds`), the same for every replicate, so the
    replicates differ only by their fits.
    """
    table, train_keys, y_keys, *rest = ev.aggregate()
    landing = where_samples_land(
        table,
        train_keys,
        ev.y,
        y_keys,
        s.text_posteriors,
        s.priors,
        reference=ev.settings["landing_reference"],
        seed=ev.cfg.seed,
        heldout=rest[0] if rest else None,
    )
    return {"landing": landing}


# ----------------------------------------------------------------------------- once per run


def _captions(ev: Evaluation, s: Subject) -> dict:
    torch.manual_seed(ev.cfg.seed + CAPTION_SEED_OFFSET)
    return {"captions": caption_accuracy(s.model, ev.x, ev.y)}


def _spread(ev: Evaluation, s: Subject) -> dict:
    n = SPREAD_EXAMPLES
    own = s.text_posteriors.get(OWN_POSTERIOR)
    return {"posterior_std": posterior_spread(s.model, ev.x[:n], ev.y[:n], own)}


def _stage1(ev: Evaluation, s: Subject) -> dict:
    """Stage 1's steps, wall time and throughput, from its metrics.json."""
    m = json.loads((stage_dir(ev.run, STAGE1) / "metrics.json").read_text())
    record = {
        "steps": m.get("steps"),
        "seconds": m.get("seconds_this_session"),
        "examples_per_second": m.get("examples_per_second"),
        # What ended it: its step budget, or the opt-in wall-clock cap (the report flags that).
        "steps_budget": m.get("steps_budget"),
        "max_minutes": m.get("max_minutes"),
        "stopped_by": m.get("stopped_by"),
    }
    return {"stage1": record}


def _stage_records(ev: Evaluation, s: Subject) -> dict:
    """Per stage 2-3 and replicate: steps, how it ended, the best pass, wall time (its metrics.json)."""
    out = {}
    for stage in ev.stages:
        rows = []
        for r in range(ev.settings["replicates"]):
            m = json.loads((stage_dir(ev.run, stage.name, r) / "metrics.json").read_text())
            stop = m.get("early_stopping") or {}
            rows.append(
                {
                    "replicate": r,
                    "steps": m.get("steps"),
                    "seconds": m.get("seconds_this_session"),
                    "stopped_by": stop.get("stopped_by", "steps"),
                    "best_step": stop.get("best_step"),
                    "best_value": stop.get("best_value"),
                    "monitor": stop.get("monitor"),
                    "validation": m.get("validation", {}),
                }
            )
        out[stage.name] = rows
    return {"stages": out}


def _first(ev: Evaluation, key: str, values: list):
    return values[0]


def _floats(key: str, values: list):
    return combine_replicates(values, floats=True)


#: The registered metrics, in the order they are computed. Metrics computed once per run come
#: first: each metric seeds its own draws, so the order changes no number.
_REGISTRY = (
    Metric(
        name="captions",
        keys=("captions",),
        description="image → text: greedy captions of z ~ q(z|x) against the true texts (words, texts)",
        compute=_captions,
        per_replicate=False,
        combine=_first,
    ),
    Metric(
        name="posterior_std",
        keys=("posterior_std",),
        description="mean standard deviation of q(z|x) and of the method's own q(z|y) (≈ 0: collapsed)",
        compute=_spread,
        per_replicate=False,
        combine=_first,
        across_runs=_floats,
    ),
    Metric(
        name="stage1",
        keys=("stage1",),
        description="stage 1's training steps, wall time and throughput",
        compute=_stage1,
        per_replicate=False,
        combine=_first,
        across_runs=None,
    ),
    Metric(
        name="stages",
        keys=("stages",),
        description="per stage 2-3 fit and replicate: steps, how it stopped, its best validation pass",
        compute=_stage_records,
        per_replicate=False,
        combine=_first,
        across_runs=None,
    ),
    Metric(
        name="correctness",
        keys=("correctness", "correctness_all_labels", "correctness_caption_judge"),
        description="Tables 1-2: the judge's correctness of images from each q(z|y), each prior, and q(z|x)",
        compute=_correctness,
        combine=lambda ev, key, values: _combine_unless_none(key, values),
        across_runs=_combine_unless_none,
        needs=lambda ev: bool(ev.scores),
    ),
    Metric(
        name="likelihood",
        keys=("likelihood",),
        description="log p(x|y) per q(z|y), log p(x) and log p(y) per prior (unweighted, IW bounds)",
        compute=_likelihood,
        combine=_combine_likelihood,
        across_runs=_likelihood_across_runs,
    ),
    Metric(
        name="landing",
        keys=("landing",),
        description="Table 3: the aggregate posterior's density where samples of each q(z|y) and prior land",
        compute=_landing,
        combine=lambda ev, key, values: combine_replicates(values, floats=True),
        across_runs=_floats,
    ),
)


def registered_metrics() -> tuple[Metric, ...]:
    """The registered metrics, in the order they are computed."""
    return _REGISTRY


def metric_keys() -> tuple[str, ...]:
    """Every ``metrics.json`` key the registered metrics write, in order."""
    return tuple(key for metric in _REGISTRY for key in metric.keys)
