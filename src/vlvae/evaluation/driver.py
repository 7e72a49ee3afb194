"""The one evaluation path: every number of every run, for any registered method.

:func:`evaluate_run` reads what to compute from the run's method (its stage-1 model, its own
q(z|y) if it has one, the stages 2-3 it takes, :mod:`vlvae.methods`) and from the registry of
metrics (:mod:`vlvae.evaluation.registry`), and writes one versioned ``RUN/metrics.json`` and
the ``RUN/report.md`` rendered from it. :func:`compare_runs` puts runs of several methods in one
table: it evaluates each run through :func:`evaluate_run` (or reuses a ``metrics.json`` made
by the same code with the same judge, settings and weights) and renders ``compare.md`` from those metrics.
:func:`current_evaluation` tells ``reproduce`` whether a run's ``metrics.json`` would come out
the same if computed again (then it is kept). :func:`summarise_runs` combines the metrics of
independently trained stage-1 models. Every
``report.md``, ``compare.md`` and ``summary.md`` is a rendering of this one schema
(:mod:`vlvae.evaluation.report`, :mod:`vlvae.evaluation.compare`).

``metrics.json`` schema (version :data:`SCHEMA`): ``schema``, ``dataset``, ``run``, ``method``
(name, title, reference), ``distributions`` (the text posteriors and priors evaluated, name ->
label), ``classifier``, ``replicates``, ``settings``, ``inputs`` (sha256 of every weights file
read), one key per metric key of the registry (``correctness``, ``likelihood``, ``landing``,
``captions``, ...), ``figures``, ``seconds``, ``paper``, ``config_preset``, the run record
(versions, commit, machine) and ``evaluation_id``. Files without ``schema`` (version 1, written by the
VLVAE-only evaluation) are read by :func:`read_metrics`.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Collection
from pathlib import Path

import torch

from vlvae.config import check_option, decoder_from
from vlvae.data.dataset import ImageTextDataset
from vlvae.data.format import read_manifest, splits_of
from vlvae.datasets import DataSet, get_dataset, manifest_dataset
from vlvae.datasets.caption_judge import CAPTION_JUDGE, judged_beside
from vlvae.device import device_name, resolve_device
from vlvae.errors import VLVAEError
from vlvae.evaluation import figures as figs
from vlvae.evaluation.compare import render_comparison
from vlvae.evaluation.judge import check_classifier_fits, load_judge
from vlvae.evaluation.metrics import validation_batch
from vlvae.evaluation.registry import OWN_POSTERIOR, Evaluation, Subject, registered_metrics
from vlvae.evaluation.report import render_report, render_summary
from vlvae.io import atomic_write_json, atomic_write_text
from vlvae.locking import folder_lock
from vlvae.methods import get_method
from vlvae.methods.stages import STANDARD_PRIOR, TEXT_POSTERIOR
from vlvae.paths import check_output_dir
from vlvae.runinfo import run_info
from vlvae.runs import (
    STAGE1,
    check_run_data,
    finished_replicates,
    load_stage,
    load_vlvae,
    method_stages,
    open_run,
    stage_dir,
    weights_sha256,
)

__all__ = [
    "SCHEMA",
    "load_scorer",
    "evaluate_run",
    "current_evaluation",
    "compare_runs",
    "summarise_runs",
    "read_metrics",
]

#: How the report names each split the tables may score.
SPLIT_NAMES = {"test": "test", "val": "validation"}
#: The version of the ``metrics.json`` schema this module writes.
SCHEMA = 2
#: The method every version-1 ``metrics.json`` (written before the schema was versioned) describes.
VERSION_1_METHOD = "vlvae"


def load_scorer(
    dataset: DataSet, classifier_dir: Path, vocab, data: Path | None = None, whose: str | None = None
):
    """(scorer, classifier metrics) of a data set's judge; ``score(images, texts)`` gives correctness.

    With ``data`` (the data set whose images it will judge), the classifier is first checked to
    fit it (:func:`vlvae.evaluation.judge.check_classifier_fits`; ``whose`` names the data
    in its messages). The judge is the one the data set's package declares
    (:attr:`vlvae.datasets.DataSet.judge`).
    """
    if data is not None:
        check_classifier_fits(classifier_dir, data, whose)
    return load_judge(dataset.judge.key, classifier_dir, vocab)


def _subject(run: Path, cfg, method, model, stages, replicate: int, device=torch.device("cpu")) -> Subject:
    """The run's stage-1 model with its own q(z|y) (if any) and the stages 2-3 of replicate R, the
    stages moved to ``device`` (the model's)."""
    posteriors = {OWN_POSTERIOR: model.text_posterior} if method.own_text_posterior is not None else {}
    priors = {STANDARD_PRIOR.distribution: model.standard_prior}
    for stage in stages:
        target = posteriors if stage.fits == TEXT_POSTERIOR else priors
        target[stage.distribution] = load_stage(run, stage.name, cfg, replicate).to(device)
    return Subject(model=model, text_posteriors=posteriors, priors=priors, replicate=replicate)


def _to(subject: Subject, device: torch.device) -> Subject:
    """The subject with its model and fitted stages moved to ``device`` (in place)."""
    subject.model.to(device)
    for fitted in (*subject.text_posteriors.values(), *subject.priors.values()):
        if isinstance(fitted, torch.nn.Module):
            fitted.to(device)
    return subject


def _on_cpu(score):
    """A judge's score function fed CPU tensors: the judges run on the CPU, whatever device made the
    images (their networks are small; each data set's judge code builds its own tensors on the CPU)."""

    def scored(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        return score(images.cpu(), texts.cpu())

    return scored


def _labels(method, stages) -> dict:
    """The text posteriors and priors a run of ``method`` offers, name -> label, in the tables' order."""
    posteriors = {OWN_POSTERIOR: method.own_text_posterior} if method.own_text_posterior is not None else {}
    priors = {STANDARD_PRIOR.distribution: STANDARD_PRIOR.label}
    for stage in stages:
        (posteriors if stage.fits == TEXT_POSTERIOR else priors)[stage.distribution] = stage.label
    return {"text_posteriors": posteriors, "priors": priors}


def _check_judge(classifier: Path, cls_metrics: dict, min_accuracy: float | None) -> float:
    """The accuracy threshold the judge meets; one clear line if it does not."""
    threshold = cls_metrics.get("min_accuracy", 0.9) if min_accuracy is None else min_accuracy
    real = cls_metrics.get("real_accuracy", {}).get("overall")
    if real is None:
        raise VLVAEError(
            f"{classifier}/metrics.json has no real-data accuracy (its training was cut short); "
            f"rerun `vlvae train classifier --data DATA --out {classifier} --resume`"
        )
    if real < threshold:
        raise VLVAEError(
            f"the classifier in {classifier} is {real:.1%} accurate on real validation data, below "
            f"the {threshold:.0%} needed for correctness to mean much; train it longer "
            "(vlvae train classifier --set classifier.steps=...) or pass --min-accuracy"
        )
    return threshold


def scored_split(data: Path) -> str:
    """The split the tables score: ``test`` (nothing trains, stops or tunes on it) when the data set has
    one; ``val`` for a data set built without one (the report says so)."""
    return "test" if "test" in splits_of(read_manifest(data)) else "val"


def _held_out(cfg, stages) -> int:
    """Validation examples at the end of the split that early stopping of stages 2-3 chooses weights on."""
    sections = dict.fromkeys(stage.config_section for stage in stages)
    return max(
        [st.val_examples for st in (getattr(cfg, name) for name in sections) if st.patience > 0], default=0
    )


def _settings(cfg, **overrides) -> dict:
    """The evaluation settings of a run's config, each given override (None: the config's) in its place."""
    ev = cfg.evaluation
    settings = {
        "examples_requested": ev.examples,
        "k": ev.k,
        "text_k": ev.text_k,
        "seeds": ev.seeds,
        "micro_batch": ev.micro_batch,
        "landing_reference": ev.landing_reference,
    }
    given = {key: value for key, value in overrides.items() if value is not None}
    for key, value in given.items():  # bounded as the config's keys are: k = 1e11 would need terabytes
        name = key.replace("_requested", "")
        check_option(name, value, f"evaluation.{name}")
    return {**settings, **given}


def _inputs(run: Path, stages, replicates: int, classifier: Path, caption_judge: Path | None = None) -> dict:
    """sha256 of the content of every weights file an evaluation reads (:func:`vlvae.runs.weights_sha256`:
    the same tensors and metadata give the same digest whichever process saved them): a metrics.json is
    current while they match."""
    files = [stage_dir(run, STAGE1) / "weights.safetensors"]
    files += [stage_dir(run, s.name, r) / "weights.safetensors" for r in range(replicates) for s in stages]
    out = {str(f.relative_to(run)): weights_sha256(f) for f in files}
    judge = Path(classifier) / "weights.safetensors"
    out["classifier"] = weights_sha256(judge) if judge.is_file() else None
    if caption_judge is not None:
        second = Path(caption_judge) / "weights.safetensors"
        out["caption_judge"] = weights_sha256(second) if second.is_file() else None
    return out


def evaluate_run(
    run: Path,
    classifier: Path,
    examples: int | None = None,
    k: int | None = None,
    seeds: int | None = None,
    min_accuracy: float | None = None,
    figures: bool = True,
    progress: bool = True,
    replicates: int | None = None,
    text_k: int | None = None,
    caption_judge: Path | None = None,
    device: str | torch.device = "cpu",
    micro_batch: int | None = None,
    data: Path | None = None,
) -> dict:
    """Every registered metric of a run of any method: ``RUN/metrics.json`` and ``RUN/report.md``.

    Every training replicate of the method's stages 2-3 (``RUN/q_agg``, ``RUN/q_agg.r1``, ...) is
    evaluated on the same examples of the scored split (test; validation without one) with the same
    Monte-Carlo seeds; the tables give the mean ± standard deviation over replicates and, separately,
    the Monte-Carlo error of one evaluation.

    Before any work: the run's data, the classifier (made for data like the run's) and the run
    folder (writable) are checked, and the run folder's lock is taken for the whole evaluation.
    A present ``report.md`` was always rendered from the present ``metrics.json`` (both carry the
    same ``evaluation_id``): the old report is removed before the first new file is written.

    Args:
        run: a run folder whose stage 1 and the stages 2-3 of its method are finished.
        classifier: a trained classifier folder for the same data set.
        examples, k, seeds: override the run config's evaluation settings.
        min_accuracy: refuse a classifier whose real validation accuracy is lower
            (default: the threshold stored with the classifier).
        figures: also draw the figures.
        progress: print what is being computed.
        replicates: evaluate replicates 0..R-1 (default: every finished one).
        text_k: the largest k of the log p(y) estimates (default: the run's config).
        caption_judge: a caption judge trained on the same data set (docs/design.md §11), for a data
            set whose own judge is another: every generated image is also scored by it, beside the
            correctness of the data set's judge (``correctness_caption_judge``).
        device: where the models, the scored examples, the tables of q(z|x) and the importance
            samples live (:func:`vlvae.device.resolve_device`: ``auto``, ``cpu``, ``cuda``,
            ``cuda:N``); refused before anything is read when this machine lacks it. The judges
            and the figures run on the CPU. A GPU draws other random numbers than the CPU, so its
            numbers agree with the CPU's within their Monte-Carlo errors, not to the digit.
        micro_batch: importance samples of log p(x|y) and log p(x) scored at a time, for 16 images
            at a time (default: the run's ``evaluation.micro_batch``); memory, not the numbers.
        data: the run's data set where it is not where ``run.json`` says (moved apart from the run);
            checked to be the same data set (:func:`vlvae.runs.check_run_data`).
    """
    device = resolve_device(device)
    overrides = {
        "examples_requested": examples,
        "k": k,
        "seeds": seeds,
        "text_k": text_k,
        "micro_batch": micro_batch,
    }
    return _evaluate_checked(
        Path(run),
        Path(classifier),
        overrides,
        min_accuracy,
        figures,
        progress,
        replicates,
        caption_judge,
        device,
        data=data,
    )


def _evaluate_checked(
    run: Path,
    classifier: Path,
    overrides: dict,
    min_accuracy: float | None,
    figures: bool,
    progress: bool,
    replicates: int | None,
    caption_judge: Path | None = None,
    device: torch.device = torch.device("cpu"),
    data: Path | None = None,
) -> dict:
    """:func:`evaluate_run` with settings that override the run config's (None: the config's):
    the checks, then the work under the run's lock."""
    cfg, info = open_run(run, data)
    settings = _settings(cfg, **overrides)
    data = check_run_data(run, cfg, info)
    check_classifier_fits(classifier, data, f"the data of {run}")
    if caption_judge is not None:
        check_classifier_fits(caption_judge, data, f"the data of {run}")
    fix = "evaluate writes metrics.json, report.md and figures/ into it: make it writable, or copy the run"
    run = check_output_dir(run, "run folder", "--run", fix)
    with folder_lock(run, "vlvae evaluate", tidy=("", "figures")):
        if figures:
            check_output_dir(run / "figures", "figures folder", "--run", fix)
        return _evaluate(
            run,
            cfg,
            info,
            classifier,
            settings,
            min_accuracy,
            figures,
            progress,
            replicates,
            caption_judge,
            device,
        )


def _evaluate(
    run: Path,
    cfg,
    info: dict,
    classifier: Path,
    settings: dict,
    min_accuracy: float | None,
    figures: bool,
    progress: bool,
    replicates: int | None,
    caption_judge: Path | None = None,
    device: torch.device = torch.device("cpu"),
) -> dict:
    """:func:`evaluate_run`'s work, with the run folder's lock held."""
    method = get_method(cfg.method.name)
    stages = method_stages(method)
    model = load_vlvae(run, cfg).to(device)
    available = finished_replicates(run, stages)
    if replicates is not None and replicates < 1:
        raise VLVAEError(f"evaluate at least one training replicate of stages 2-3, got {replicates}")
    replicates = available if replicates is None else replicates
    if not stages and replicates > 1:
        raise VLVAEError(
            f"method {method.name!r} fits no stages 2-3, so it has one replicate, not {replicates}"
        )
    if replicates < 1 or replicates > available:
        # Loading the first missing stage raises the error that names the command to run.
        r = min(max(replicates, 1), available + 1) - 1
        for stage in stages:
            load_stage(run, stage.name, cfg, r)
    split = scored_split(Path(info["data"]))
    settings = {**settings, "replicates": replicates, "split": split}
    data = ImageTextDataset(Path(info["data"]), split)
    spec = get_dataset(manifest_dataset(data.manifest))
    scorer, cls_metrics = load_scorer(spec, classifier, data.vocab)
    threshold = _check_judge(classifier, cls_metrics, min_accuracy)
    # Scoring validation (a data set without a test split): stages 2-3 that stop early choose their
    # weights on the last validation examples; the tables score the first ones, never those.
    held = _held_out(cfg, stages) if split == "val" else 0
    examples, capped_from = settings["examples_requested"], None
    if examples > len(data) - held:
        if len(data) - held < 1:
            sections = dict.fromkeys(stage.config_section for stage in stages)
            raise VLVAEError(
                f"the validation split of {info['data']} has {len(data)} examples, all used by early "
                f"stopping of stages 2-3 (val_examples {held}); lower "
                + " and ".join(f"{name}.val_examples" for name in sections)
                + " or make more data"
            )
        capped_from, examples = examples, len(data) - held
    settings.update(examples=examples, examples_capped_from=capped_from)
    torch.manual_seed(cfg.seed)
    x_cpu, y_cpu = validation_batch(data, examples)
    x, y = x_cpu.to(device), y_cpu.to(device)
    started = time.time()
    scores = {"paper": _on_cpu(scorer.score)}
    if hasattr(scorer, "score_all_labels"):
        # A judge with a second definition of correctness (CelebA's: the paper scores the text's
        # words, the authors' code scored every binary label): both are reported, each named.
        scores["all_labels"] = _on_cpu(scorer.score_all_labels)
    second = None
    if _beside(spec, caption_judge) is not None:
        # The caption judge beside the data set's own: the same images, scored by both.
        caption_scorer, second = load_judge(CAPTION_JUDGE, caption_judge, data.vocab)
        scores["caption_judge"] = _on_cpu(caption_scorer.word_accuracy)

    def aggregate():
        train = ImageTextDataset(Path(info["data"]), "train")
        if progress:
            print(f"q(z|x) of {len(train)} training images (Table 3's aggregate posterior) ...", flush=True)
        texts = torch.stack([train.text(i) for i in range(len(train))]) if cfg.model.joint_inference else None
        # Codes of images outside the aggregate (the validation split, whichever split the tables
        # score): what an ideal sampler draws; they calibrate Table 3 (landing.heldout_landing_table).
        val = ImageTextDataset(Path(info["data"]), "val")
        val_texts = torch.stack([val.text(i) for i in range(len(val))]) if cfg.model.joint_inference else None
        # The tables are made on the model's device (posterior_table moves each batch there).
        return (
            model.posterior_table(train.images, texts=texts),
            spec.landing_keys(train),
            spec.landing_keys(data, y_cpu),
            model.posterior_table(val.images, texts=val_texts),
        )

    ev = Evaluation(
        run=run,
        cfg=cfg,
        method=method,
        stages=stages,
        x=x,
        y=y,
        scores=scores,
        settings=settings,
        aggregate=functools.cache(aggregate),  # Table 3 of every replicate shares one table
    )
    subjects = [_subject(run, cfg, method, model, stages, r, device) for r in range(replicates)]
    metrics = {
        "schema": SCHEMA,
        "dataset": spec.name,
        "run": str(run),
        "method": {"name": method.name, "title": method.title, "reference": method.reference},
        "distributions": _labels(method, stages),
    }
    metrics.update(_compute(ev, subjects, progress))
    metrics.update(
        {
            "classifier": {
                "path": str(classifier),
                "real_accuracy": cls_metrics.get("real_accuracy"),
                "real_correctness": cls_metrics.get("real_correctness"),
                "judge": spec.judge.title,
                "ceiling": cls_metrics.get("ceiling"),
                "floor": cls_metrics.get("floor"),
                "threshold": threshold,
            },
            "caption_judge": (
                None
                if second is None
                else {
                    "path": str(caption_judge),
                    "ceiling": second.get("ceiling"),
                    "floor": second.get("floor"),
                }
            ),
            "replicates": replicates,
            "settings": settings,
            "inputs": _inputs(run, stages, replicates, classifier, _beside(spec, caption_judge)),
            "seconds": time.time() - started,
            "paper": spec.paper,
            "data_summary": data.manifest.get("summary"),
            "config_preset": cfg.name,
            "device": device_name(device),
            **run_info(),
        }
    )
    # From here on files are written: first the old report goes, which no longer describes the folder.
    (run / "report.md").unlink(missing_ok=True)
    metrics["figures"] = {}
    if figures:  # a few images, drawn on the CPU (matplotlib reads CPU tensors)
        subject = _to(subjects[-1], torch.device("cpu"))
        metrics["figures"] = _figures(
            run, cfg, metrics, subject.model, subject, stages, data, x_cpu, y_cpu, scorer
        )
    metrics["evaluation_id"] = uuid.uuid4().hex
    _write_pair(run / "metrics.json", metrics, run / "report.md", render_report(metrics, cfg))
    return metrics


def _compute(ev: Evaluation, subjects: list[Subject], progress: bool) -> dict:
    """Every registered metric the run offers what it needs for, combined over training replicates."""
    out: dict = {}
    metrics = [m for m in registered_metrics() if m.needs(ev)]
    for metric in (m for m in metrics if not m.per_replicate):
        out.update(metric.compute(ev, subjects[0]))
    per_replicate = []
    for subject in subjects:
        if progress:
            st = ev.settings
            print(
                f"replicate {subject.replicate + 1}/{len(subjects)}: "
                + ", ".join(m.name for m in metrics if m.per_replicate)
                + f" on {len(ev.y)} {SPLIT_NAMES[st['split']]} texts ({st['seeds']} seeds, k = {st['k']}, "
                f"log p(y) up to k = {st['text_k']}) ...",
                flush=True,
            )
        values = {}
        for metric in (m for m in metrics if m.per_replicate):
            values.update(metric.compute(ev, subject))
        per_replicate.append(values)
    for metric in (m for m in metrics if m.per_replicate):
        for key in metric.keys:
            out[key] = metric.combine(ev, key, [values[key] for values in per_replicate])
    return out


def _figures(run: Path, cfg, metrics: dict, model, subject: Subject, stages, data, x, y, scorer) -> dict:
    """Figs. 3-4, stage 1's convergence and the stopping curves; paths relative to the run."""
    fig_dir = run / "figures"
    fig_dir.mkdir(exist_ok=True)
    paths = {}
    # The sample figures show the last replicate's fits (each replicate's numbers are in the tables).
    paths["reconstructions"] = figs.figure_reconstructions(
        model, x[:6], y[:6], data.vocab, subject.priors, fig_dir / "fig3_reconstructions.png"
    )
    if subject.text_posteriors:
        paths["conditional_samples"] = figs.figure_conditional_samples(
            model,
            subject.text_posteriors,
            y,
            data.vocab,
            fig_dir / "fig4_conditional_samples.png",
            scorer=scorer.score,
        )
    try:
        curves = figs.read_validation_curves(stage_dir(run, STAGE1))
    except VLVAEError:  # no stage 1 logs
        curves = None
    if curves is not None and len(curves["step"]):  # runs from before val/minutes have no curve
        start = decoder_from(cfg.stage1)  # the image decoder's steps are summarised apart
        paths["convergence"] = figs.figure_convergence(
            stage_dir(run, STAGE1), fig_dir / "stage1_convergence.png", curves, start
        )
        metrics["stage1_convergence"] = figs.convergence_summary(curves, decoder_from=start)
    if stages:
        paths["stopping"] = figs.figure_stopping(
            {s.name: [stage_dir(run, s.name, r) for r in range(metrics["replicates"])] for s in stages},
            fig_dir / "stages23_validation.png",
        )
    return {name: str(Path(p).relative_to(run)) for name, p in paths.items()}


def _write_pair(json_path: Path, metrics: dict, md_path: Path, text: str) -> None:
    """Write metrics and the report rendered from them so that a present report always matches the metrics.

    The old report goes first, then the metrics, then the new report (each write atomic): a kill in
    between leaves new metrics without a report, never beside an old one.
    """
    md_path.unlink(missing_ok=True)
    atomic_write_json(json_path, metrics)
    atomic_write_text(md_path, text)


def read_metrics(path: Path) -> dict:
    """A ``metrics.json`` of any schema version, as the current schema.

    Version 1 (no ``schema`` key; the VLVAE-only evaluation) gains ``schema``, ``method`` and
    ``distributions`` (read from its tables); its numbers are unchanged.
    """
    metrics = json.loads(Path(path).read_text())
    if metrics.get("schema", 1) > SCHEMA:
        raise VLVAEError(f"{path} was written by a newer vlvae (schema {metrics['schema']}); upgrade vlvae")
    if "schema" not in metrics:
        c = metrics.get("correctness") or {}
        lk = metrics.get("likelihood") or {}
        posteriors = list(c.get("conditional") or lk.get("log_p_x_given_y") or {})
        priors = list(c.get("prior") or lk.get("log_p_x") or {})
        # Version 1 was written only for the paper's VLVAE, with the stages it takes.
        vlvae = get_method(VERSION_1_METHOD)
        offered = _labels(vlvae, method_stages(vlvae))
        labels = {**offered["text_posteriors"], **offered["priors"]}
        metrics.update(
            schema=1,
            method={"name": vlvae.name, "title": vlvae.title, "reference": vlvae.reference},
            distributions={
                "text_posteriors": {n: labels.get(n, n) for n in posteriors},
                "priors": {n: labels.get(n, n) for n in priors},
            },
        )
    return metrics


def _beside(spec: DataSet, caption_judge: Path | None) -> Path | None:
    """The caption judge an evaluation scores with beside the data set's own judge: None without one,
    and where the data set's own judge is the caption judge (an imported data set's)."""
    return caption_judge if caption_judge is not None and judged_beside(spec) else None


def _same_path(stored, given: Path | None) -> bool:
    """Whether a path recorded in a metrics.json names the folder ``given`` (None: no folder)."""
    if given is None or stored is None:
        return given is None and stored is None
    return Path(stored).resolve() == Path(given).resolve()


def _current(
    run: Path,
    classifier: Path,
    settings: dict,
    caption_judge: Path | None = None,
    replicates: int | None = None,
    now: dict | None = None,
    made_now: Collection[str] = (),
) -> dict | None:
    """The run's metrics.json if it was computed with this judge and this caption judge (None: none
    beside the data set's own), these settings, ``replicates`` replicates (None: every finished one)
    and the present weights, by the code running now (:func:`_same_code` against ``now``,
    :func:`vlvae.runinfo.run_info`'s record; None: read here) unless its ``evaluation_id`` is one of
    ``made_now``, evaluations the caller made or kept a moment ago."""
    path = run / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = read_metrics(path)
        if metrics.get("schema") != SCHEMA or not _same_path(metrics["classifier"]["path"], classifier):
            return None
        now = run_info(machine=False) if now is None else now
        if not (_same_code(metrics, now) or metrics.get("evaluation_id") in made_now):
            return None  # written by other code: computed again
        caption_record = metrics.get("caption_judge") or {}
        if not _same_path(caption_record.get("path"), caption_judge):
            return None
        if any(metrics["settings"].get(key) != value for key, value in settings.items()):
            return None
        stages = method_stages(get_method(metrics["method"]["name"]))
        replicates = finished_replicates(run, stages) if replicates is None else replicates
        if metrics["replicates"] != replicates:
            return None
        inputs = _inputs(run, stages, replicates, classifier, caption_judge)
        return metrics if metrics.get("inputs") == inputs else None
    except (VLVAEError, ValueError, KeyError, TypeError, AttributeError, OSError):
        return None  # unreadable, of another method or incomplete: evaluate the run afresh


def _same_code(metrics: dict, now: dict) -> bool:
    """Whether a metrics.json was written by the code running now: the same commit of a checkout
    without uncommitted changes to tracked files (an unknown or dirty one tells nothing) and the same
    package versions. An evaluation made by other code may have computed its numbers otherwise (an
    estimator mended, a metric added), so it is not reused."""
    commit = now["git_commit"]
    if commit == "unknown" or commit.endswith("+dirty"):
        return False
    return all(metrics.get(key) == now[key] for key in ("git_commit", "versions"))


def current_evaluation(
    run: Path,
    classifier: Path,
    caption_judge: Path | None = None,
    replicates: int | None = None,
    device: str | torch.device = "cpu",
) -> dict | None:
    """The run's metrics.json if :func:`evaluate_run` with these arguments (the run config's settings,
    the judge's own accuracy threshold, figures drawn) would compute it again: the same judges,
    settings and replicates, the same weights (sha256), the same device and machine, its report (with
    its ``evaluation_id``) and figures present, and written by this very code: the same commit of a
    clean checkout (:func:`vlvae.runinfo.git_commit`, read once per process) and the same package
    versions. None otherwise, and always where the commit is unknown or the checkout has uncommitted
    changes to tracked files, whose code cannot be told apart."""
    run, device = Path(run), resolve_device(device)
    now = run_info()
    try:
        cfg, info = open_run(run)
        spec = get_dataset(manifest_dataset(read_manifest(Path(info["data"]))))
        beside = _beside(spec, None if caption_judge is None else Path(caption_judge))
        metrics = _current(run, Path(classifier), _settings(cfg), beside, replicates, now)
        if metrics is None:
            return None
        own = json.loads((Path(classifier) / "metrics.json").read_text())
        if metrics["classifier"]["threshold"] != _check_judge(Path(classifier), own, None):
            return None  # evaluated by hand with another --min-accuracy
        if metrics.get("machine") != now["machine"]:
            return None
        figures = metrics["figures"]
        if metrics.get("device") != device_name(device) or "reconstructions" not in figures:
            return None  # another device, or evaluated by hand without figures
        if metrics["evaluation_id"] not in (run / "report.md").read_text():
            return None
        return metrics if all((run / p).is_file() for p in figures.values()) else None
    except (VLVAEError, ValueError, KeyError, TypeError, AttributeError, OSError):
        return None  # unreadable or incomplete: evaluate the run afresh


def equal_time(runs: list[Path]) -> dict | None:
    """Each run's stage 1 at the same training time: its last validation pass within the shortest run's time.

    The tables compare methods at equal steps (every preset's stage 1 has a step budget); this is the
    second reading, at equal wall-clock minutes. ``T`` is the smallest last-pass time over the runs;
    for each run the last pass logged at or before ``T`` gives its step and its logged validation
    values (``val/correctness``, the reconstructions' correctness, when stage 1 was trained with a
    judge, as ``reproduce`` trains it). None when a run has no logged passes.

    Returns:
        ``{"minutes": T, "runs": {run: {"step", "minutes", "values": {name: value}}}}`` (None for a run
        with no pass within ``T``).
    """
    curves = {}
    for run in runs:
        try:
            c = figs.read_validation_curves(stage_dir(run, STAGE1))
        except VLVAEError:
            return None
        if not len(c["step"]):
            return None
        curves[str(run)] = c
    limit = min(float(c["val/minutes"][-1]) for c in curves.values())
    out = {}
    for run, c in curves.items():
        within = (c["val/minutes"] <= limit + 1e-9).nonzero()[0]
        if not len(within):  # its first pass came later than the shortest run's last
            out[run] = None
            continue
        i = int(within[-1])
        values = {key: float(v[i]) for key, v in c.items() if key.startswith("val/") and key != "val/minutes"}
        out[run] = {"step": int(c["step"][i]) + 1, "minutes": float(c["val/minutes"][i]), "values": values}
    return {"minutes": limit, "runs": out}


def compare_runs(
    runs: list[Path],
    classifier: Path,
    out: Path,
    examples: int | None = None,
    seeds: int | None = None,
    k: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    micro_batch: int | None = None,
    caption_judge: Path | None = None,
    made_now: Collection[str] = (),
) -> dict:
    """One table over runs of any methods: ``OUT/compare.json`` and ``OUT/compare.md``.

    Each run is evaluated by :func:`evaluate_run` (which writes its own ``metrics.json`` and
    ``report.md``) with the same judge and settings — the first run's, overridden by ``examples``,
    ``seeds`` and ``k`` — unless its ``metrics.json`` already holds exactly that evaluation of its
    present weights, written by the code running now (the same commit of a clean checkout and the
    same package versions), which is then reused. Every run is scored on the same texts of the test split
    (validation without one) with the same seeds. With the VLVAE under marginal and under joint
    inference among the runs, Fig. 7 (:func:`vlvae.evaluation.figures.figure_joint_vs_marginal`) is
    drawn too. ``device``, ``micro_batch`` and ``caption_judge`` are :func:`evaluate_run`'s (a
    current ``metrics.json`` is reused whichever device or machine made it; with ``caption_judge`` only one
    scored by that caption judge too, as ``reproduce`` scores its runs). ``made_now``: the
    ``evaluation_id`` of evaluations the caller made or found current with this code a moment ago
    (``reproduce``'s own ``run/``), reused where still current by judges, settings and weights even
    where the commit cannot be told (no git, uncommitted changes), so that they are not computed twice.
    """
    device = resolve_device(device)
    if not runs:
        raise VLVAEError("give at least one run folder to compare")
    runs, classifier = [Path(r) for r in runs], Path(classifier)
    opened = [open_run(r) for r in runs]
    datas = [check_run_data(r, cfg, info) for r, (cfg, info) in zip(runs, opened)]
    if len({d.resolve() for d in datas}) > 1:
        raise VLVAEError(
            "the runs were trained on different data sets ("
            + ", ".join(map(str, datas))
            + "); compare runs of one data set"
        )
    check_classifier_fits(classifier, datas[0], f"the data of {runs[0]}")
    out = check_output_dir(out, "output folder")
    cfg0 = opened[0][0]
    settings = _settings(cfg0, examples_requested=examples, k=k, seeds=seeds, micro_batch=micro_batch)
    # Every run scores the same first examples of the test split (each evaluation caps the request at
    # the split's size alike) or, without one, of validation, below the examples that early stopping of
    # any run's stages 2-3 chose its weights on: there the request is capped here, as methods hold out
    # different numbers. (Capping on the test split too would record another request than reproduce's
    # own evaluation of run/ did, which then could not be reused.)
    split = scored_split(datas[0])
    if split == "val":
        held = max(_held_out(cfg, method_stages(get_method(cfg.method.name))) for cfg, _ in opened)
        available = len(ImageTextDataset(datas[0], split)) - held
        if available >= 1:
            settings["examples_requested"] = min(settings["examples_requested"], available)
    with folder_lock(out, "vlvae compare"):
        all_metrics = []
        beside = _beside(get_dataset(manifest_dataset(read_manifest(datas[0]))), caption_judge)
        now = run_info(machine=False)
        for run, (cfg, _) in zip(runs, opened):
            method = get_method(cfg.method.name)
            metrics = _current(run, classifier, settings, beside, None, now, made_now)
            if progress:
                print(
                    f"{run}: {method.title} " + ("(its metrics.json is current)" if metrics else "..."),
                    flush=True,
                )
            if metrics is None:
                metrics = _evaluate_checked(
                    run, classifier, settings, None, True, progress, None, caption_judge, device
                )
            all_metrics.append(metrics)
        result = {
            "schema": SCHEMA,
            "dataset": all_metrics[0]["dataset"],
            "runs": [str(r) for r in runs],
            "classifier": str(classifier),
            "settings": {
                "examples": all_metrics[0]["settings"]["examples"],
                "split": all_metrics[0]["settings"].get("split", "val"),
                "seeds": settings["seeds"],
                "k": settings["k"],
            },
            "metrics": all_metrics,
            "equal_time": equal_time(runs),
            "evaluation_id": uuid.uuid4().hex,
        }
        methods = {m["method"]["name"]: run for m, run in zip(all_metrics, runs)}
        if "vlvae" in methods and "joint" in methods:
            data = ImageTextDataset(datas[0], split)
            torch.manual_seed(cfg0.seed)
            x, y = validation_batch(data, 6)
            figure = figs.figure_joint_vs_marginal(
                load_vlvae(methods["joint"]),
                load_vlvae(methods["vlvae"]),
                x,
                y,
                data.vocab,
                out / "fig7_joint_vs_marginal.png",
            )
            result["figure"] = figure.name
        _write_pair(out / "compare.json", result, out / "compare.md", render_comparison(result))
    return result


def summarise_runs(runs: list[Path], metrics: list[dict], out: Path) -> dict:
    """Mean ± std over independently trained stage-1 models: ``OUT/summary.json`` and ``OUT/summary.md``.

    Each run's figures (already averaged over its stage-2/3 replicates) count as one replicate;
    the Monte-Carlo errors are averaged over runs. Every registered metric key that combines over
    runs is carried (:attr:`vlvae.evaluation.registry.Metric.across_runs`).
    """
    first = metrics[0]
    summary = {}
    for metric in registered_metrics():
        if metric.across_runs is None:
            continue
        for key in metric.keys:
            if key in first:
                summary[key] = metric.across_runs(key, [m[key] for m in metrics])
    summary.update(
        {
            "schema": SCHEMA,
            "dataset": first["dataset"],
            "method": first["method"],
            "distributions": first["distributions"],
            "runs": [str(r) for r in runs],
            "classifier": first["classifier"],
            "replicates": len(runs),
            "vlvae_replicates": len(runs),
            "stage_replicates": first["replicates"],
            "settings": first["settings"],
            "paper": first["paper"],
            "config_preset": first["config_preset"],
            "seconds": sum(m["seconds"] for m in metrics),
            "figures": {},
            **run_info(machine=False),  # each run's metrics.json names the machine it was evaluated on
        }
    )
    summary["evaluation_id"] = uuid.uuid4().hex
    cfg, _ = open_run(runs[0])
    text = render_summary(summary, cfg, runs)
    Path(out).mkdir(parents=True, exist_ok=True)
    _write_pair(Path(out) / "summary.json", summary, Path(out) / "summary.md", text)
    return summary
