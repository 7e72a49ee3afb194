"""``vlvae reproduce``: from nothing to the report, one stage at a time.

Stages (each skipped when already finished; an interrupted one resumes):
data, classifier, VLVAE, q_True, q_Agg, aggregate prior, evaluation; with
``methods``, then each other method's stage 1 and its stages 2-3 in
``methods/<name>/`` and one comparison table (``compare.md``). The
classifier is trained before the VLVAE so that stage 1 can report the
correctness of its reconstructions as it trains. The
output folder holds ``data/`` (the data set built, unless ``data`` names a finished one),
``run/`` (the run folder with ``report.md``), ``classifier/``, and ``timings.json`` (each step's
seconds, kept across sessions; printed as a table at the end). With ``judges_from`` (an earlier
reproduce's output folder), finished judges that this run would train alike (the same data set,
settings and seed) are copied from there instead of trained again (:func:`adopt_judges`).
The options are checked before anything is written, and the output folder is locked for the whole
run (each stage also locks the sub-folder it writes).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import torch

from vlvae.config import (
    ClassifierConfig,
    apply_overrides,
    knob_of,
    record_differences,
    split_method_overrides,
    with_method,
)
from vlvae.data.format import check_dataset, read_vocabulary
from vlvae.datasets import DataSet, data_dataset, dataset_names, get_dataset, preset
from vlvae.datasets.caption_judge import JUDGE as CAPTION_JUDGE
from vlvae.datasets.caption_judge import judged_beside
from vlvae.device import resolve_device
from vlvae.errors import VLVAEError
from vlvae.evaluation.driver import (
    compare_runs,
    current_evaluation,
    evaluate_run,
    load_scorer,
    read_metrics,
    summarise_runs,
)
from vlvae.evaluation.judge import check_classifier_fits
from vlvae.io import atomic_write_json
from vlvae.locking import folder_lock
from vlvae.methods import get_method, knob_names
from vlvae.methods.stages import get_stage
from vlvae.paths import check_output_dir
from vlvae.runs import STAGE1, method_stages, stage_dir
from vlvae.seeds import stage1_replicate_seed
from vlvae.training.judges import training_settings
from vlvae.training.run import check_logger, fit_vlvae, train_stage

__all__ = ["TIMINGS", "reproduce"]

#: The file in a reproduce's output folder that keeps each step's seconds across sessions.
TIMINGS = "timings.json"


class _Clock:
    """Where a reproduce's time went, step by step, in ``OUT/timings.json``.

    A step that runs records its seconds (``how: ran``); one found finished keeps what the session
    that finished it recorded (a folder from before this file, or one whose file is unreadable:
    ``seconds`` null); copied judges and a given data set are named with no seconds. A stage killed
    and resumed counts its last session only. The table shows the steps this session ran or found;
    the file keeps every step ever recorded (an earlier run's ``run.r1`` too).
    """

    def __init__(self, out: Path):
        self.out, self.path = out, out / TIMINGS
        self.steps = _read_timings(self.path)
        self.touched: list[str] = []

    def key(self, folder: Path) -> str:
        """A step's key: its folder relative to the output folder (``run/q_agg``, ``classifier``)."""
        folder = Path(folder)
        return folder.relative_to(self.out).as_posix() if folder.is_relative_to(self.out) else str(folder)

    def record(self, key: str, label: str, seconds: float | None, how: str) -> None:
        self.steps[key] = {"label": label, "seconds": seconds, "how": how}
        self._touch(key)
        atomic_write_json(self.path, {"steps": self.steps})

    def found(self, key: str, label: str) -> None:
        """A step found finished: keep its recorded seconds, or note that none were recorded."""
        if key not in self.steps:
            self.record(key, label, None, "earlier session, not recorded")
        self._touch(key)

    def _touch(self, key: str) -> None:
        if key not in self.touched:
            self.touched.append(key)

    def table(self) -> list[str]:
        """This session's steps in the order it met them: minutes and share of their timed total."""
        steps = [self.steps[key] for key in self.touched]
        timed = [step["seconds"] for step in steps if step["seconds"] is not None]
        total = sum(timed)
        lines = [f"where the time went ({self.path}; each step's minutes from the session that ran it):"]
        for step in steps:
            if step["seconds"] is None:
                lines.append(f"  {step['label']:<28} {'–':>7}        {step['how']}")
                continue
            share = 100 * step["seconds"] / total if total else 0.0
            lines.append(f"  {step['label']:<28} {step['seconds'] / 60:7.1f} min {share:4.0f} %")
        untimed = len(steps) - len(timed)
        lines.append(
            f"  {'total of the timed steps':<28} {total / 60:7.1f} min"
            + (f" ({untimed} untimed)" if untimed else "")
        )
        return lines


def _read_timings(path: Path) -> dict:
    """The steps recorded in ``path``; empty when there is none or it is not one this module wrote
    (it is a record, not an input: a damaged one is started afresh, never trusted)."""
    try:
        steps = json.loads(path.read_text())["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(steps, dict):
        return {}
    for step in steps.values():
        if not (
            isinstance(step, dict)
            and isinstance(step.get("label"), str)
            and isinstance(step.get("how"), str)
            and "seconds" in step
            and (step["seconds"] is None or _is_seconds(step["seconds"]))
        ):
            return {}
    return steps


def _is_seconds(value: object) -> bool:
    """A duration as this module writes it: a finite, non-negative number (``bool`` is an ``int`` to
    Python, but ``true`` is no duration)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


def _line(i: int, n: int, name: str, status: str) -> None:
    _say(f"[{i}/{n}]", name, status)


def _say(tag: str, name: str, status: str, width: int = 16) -> None:
    print(f"{tag} {name:<{width}} {status}", flush=True)


def _step(tag: str, label: str, fn, key: str, clock: _Clock, kept=None, width: int = 16, note: str = ""):
    """One step of ``reproduce``: ``kept()`` (a finished result, or None) unless it is None, else ``fn()``,
    printing ``TAG label`` with running / done in N s / already done (and ``note``); ``clock`` keeps the
    step's seconds under ``key``. Returns what was kept or ``fn``'s result."""
    found = None if kept is None else kept()
    if found is not None:
        _say(tag, label, "already done" + note, width)
        clock.found(key, label)
        return found
    t = time.time()
    _say(tag, label, "running ...", width)
    result = fn()
    seconds = time.time() - t
    _say(tag, label, f"done in {seconds:.0f} s", width)
    clock.record(key, label, seconds, "ran")
    return result


def _once(tag: str, label: str, fn, done_file: Path, clock: _Clock, width: int = 16) -> None:
    """:func:`_step` for a step that is finished once ``done_file`` exists, its seconds kept under the
    key of ``done_file``'s folder."""
    _step(tag, label, fn, clock.key(done_file.parent), clock, lambda: done_file.exists() or None, width)


def _check_adoptable(source: Path, data: Path, settings: ClassifierConfig, seed: int) -> None:
    """Refuse the judge folder ``source`` unless it is the judge this run would train
    (:func:`adopt_judges`); one line naming what differs."""
    if not (source / "metrics.json").is_file():
        raise VLVAEError(
            f"--judges-from: {source} holds no finished judge (no metrics.json); finish that run first "
            "or leave --judges-from out to train the judges here"
        )
    info = check_classifier_fits(source, data, f"this run's data set {data}")
    if info.get("classifier") != training_settings(settings):
        differences = "; ".join(
            record_differences(info.get("classifier") or {}, training_settings(settings), "the folder")
        )
        raise VLVAEError(
            f"--judges-from: {source} was trained with other settings than this preset's ({differences}); "
            "leave --judges-from out to train the judges here"
        )
    if "seed" in info and info["seed"] != seed:
        raise VLVAEError(
            f"--judges-from: {source} was trained with seed {info['seed']}, this run would use {seed}; "
            "leave --judges-from out to train the judges here"
        )


def adopt_judges(judges: list[tuple[Path, Path, ClassifierConfig, int]], data: Path) -> None:
    """Copy finished judge folders where this run would train the same judges.

    A judge is a measuring instrument: trained on the same data set with the same settings and
    seed, a second one is the first again (up to the threads' floating-point order), so a run may
    take an earlier run's instead of spending its minutes (a second run of a preset with other model
    settings, say). The preset's name may differ. Every judge is checked before any is copied, and
    each is copied whole or not at all (through ``OUT.copying``).

    Args:
        judges: ``(source, out, settings, seed)`` each: a finished judge folder (``classifier/`` or
            ``caption_judge/`` of an earlier reproduce); where this run keeps it (must not exist
            yet); the config section this run would train it with (:meth:`vlvae.datasets.Judge.fit`),
            which must equal the judge's recorded settings; and the seed, checked where the judge
            records one.
        data: the data set this run trains on; every judge must have been trained on it
            (:func:`vlvae.evaluation.judge.check_classifier_fits`).

    Raises:
        VLVAEError: one line naming what differs (nothing is written then).
    """
    judges = [(Path(source), Path(out), settings, seed) for source, out, settings, seed in judges]
    for source, _, settings, seed in judges:
        _check_adoptable(source, Path(data), settings, seed)
    for source, out, _, _ in judges:
        partial_copy = out.with_name(out.name + ".copying")
        shutil.rmtree(partial_copy, ignore_errors=True)
        shutil.copytree(source, partial_copy, ignore=shutil.ignore_patterns(".lock", "*.tmp"))
        partial_copy.rename(out)


def reproduce(
    out: Path,
    preset_name: str = "cpu",
    dataset: str | None = None,
    root: Path | None = None,
    overrides: list[str] = (),
    workers: int = 2,
    progress: bool | None = None,
    replicates: int = 1,
    vlvae_replicates: int = 1,
    methods: tuple[str, ...] = (),
    data: Path | None = None,
    device: str | torch.device = "cpu",
    judges_from: Path | None = None,
) -> dict:
    """Run the whole pipeline into ``out`` and return the evaluation metrics.

    Args:
        out: output folder (created).
        preset_name: ``quick``, ``cpu`` or ``paper`` (or ``tiny`` for tests); a data set with presets
            of its own uses its preset of that scale (CelebA's ``celeba-cpu`` for ``cpu``).
        dataset: a registered data set to build (:mod:`vlvae.datasets`; default: the first
            registered); ignored with ``data``.
        root: the download the data set is built from, for a data set that reads one.
        overrides: ``key=value`` config overrides; a method's knob (``method.alpha=...``) applies
            to each method of the run that declares it.
        workers: processes for data generation.
        progress: progress bars inside stages (default: when the terminal is interactive).
        replicates: training replicates of q_True, q_Agg and the prior (each on the same VLVAE,
            with its own seed); the report gives mean ± std over them.
        vlvae_replicates: train the VLVAE this many times (seeds moved by 1,000,000 each) into
            ``run``, ``run.r1``, ...; ``summary.md`` combines their reports.
        methods: registered methods (:mod:`vlvae.methods`) to train besides the paper's VLVAE,
            each into ``methods/<name>/`` with the same preset (its stage 1, then its stages 2-3,
            e.g. q_Agg post hoc); ``compare.md`` and ``compare.json`` then put every method in one
            table (:func:`vlvae.evaluation.driver.compare_runs`).
        data: a finished data set (of any registered data set, e.g. from ``vlvae data import``) to
            use instead of building one in ``out/data``; the model is sized from its images and
            vocabulary.
        device: where the evaluation (and the comparison) runs its models
            (:func:`vlvae.device.resolve_device`); the training stages use the config's
            ``accelerator`` and ``devices`` instead. Checked before anything is written.
        judges_from: an earlier reproduce's output folder whose finished judges (``classifier/``,
            ``caption_judge/``) this run copies instead of training its own, when they were trained
            on this run's data set (give it with ``data``) with this preset's settings for that
            judge (``classifier`` or ``caption_judge``) and seed (:func:`adopt_judges`).

    Returns:
        The evaluation metrics of ``run`` (with ``vlvae_replicates`` > 1: the summary's).
    """
    device = resolve_device(device)
    out = Path(out)
    progress = sys.stderr.isatty() if progress is None else progress
    if data is not None:
        check_dataset(Path(data))  # one clear line if it is not a whole, finished data set
        spec = data_dataset(Path(data))
    else:
        spec = get_dataset(dataset or dataset_names()[0])
        if spec.build is None:
            raise VLVAEError(
                f"{spec.title} data sets are made by their own command, not by reproduce; "
                f"make one, then pass it with --data"
            )
        if spec.source is not None and root is None:
            raise VLVAEError(f"--dataset {spec.name} needs --root pointing to {spec.source}")
    name = spec.preset_name(preset_name)
    knob_overrides, overrides = split_method_overrides(list(overrides))
    cfg = apply_overrides(preset(name), overrides)
    methods = tuple(dict.fromkeys(m for m in methods if m != "vlvae"))
    for m in methods:
        get_method(m)  # an unknown name fails here, before anything is written
    # Each method of the run (the paper's first) gets the knobs it declares; one that none declares
    # is an unknown key. Every run's config is made (and checked) here, before anything is written.
    configs = {m: with_method(cfg, m, knob_overrides) for m in methods}
    cfg = with_method(cfg, cfg.method.name, knob_overrides)
    for item in knob_overrides:
        knob = knob_of(item)
        if not any(knob in knob_names(m) for m in (cfg.method.name, *methods)):
            raise VLVAEError(
                f"unknown configuration key 'method.{knob}': no method of this run declares it "
                f"({', '.join(dict.fromkeys((cfg.method.name, *methods)))})"
            )
    check_logger(cfg)  # logger=wandb or mlflow (every method's run shares it): its package is installed
    if judges_from is not None and not Path(judges_from).is_dir():
        raise VLVAEError(
            f"--judges-from {judges_from} is not a folder; give an earlier reproduce's output folder"
        )
    out = check_output_dir(out, "output folder")
    with folder_lock(out, "vlvae reproduce"):
        data = Path(data) if data is not None else out / "data"
        clock = _Clock(out)
        metrics = _reproduce(
            clock,
            out,
            data,
            cfg,
            name,
            spec,
            root,
            overrides,
            workers,
            progress,
            replicates,
            vlvae_replicates,
            device,
            None if judges_from is None else Path(judges_from),
        )
        if configs:
            _other_methods(clock, out, data, configs, progress, device, _caption_folder(out, spec))
        print("\n".join(clock.table()), flush=True)
        return metrics


def _caption_folder(out: Path, spec: DataSet) -> Path | None:
    """``OUT/caption_judge``: a data set whose own judge is not the caption judge gets the caption
    judge too, scoring the same images; None for one whose own judge it is."""
    return out / "caption_judge" if judged_beside(spec) else None


def _other_methods(
    clock: _Clock,
    out: Path,
    data: Path,
    configs: dict,
    progress: bool,
    device: torch.device = torch.device("cpu"),
    caption: Path | None = None,
) -> dict:
    """Stage 1 and stages 2-3 of each other method (name -> its run's config) in ``OUT/methods/<name>``,
    then ``OUT/compare.md``, each run scored by the caption judge ``caption`` too (as ``OUT/run``
    was); ``clock`` keeps each step's seconds."""
    cls = out / "classifier"
    runs = [out / "run"]
    for m, cfg in configs.items():
        run = out / "methods" / m
        for stage in (STAGE1, *get_method(m).stages):
            label = f"{m}: {'stage 1' if stage == STAGE1 else stage}"
            resume = (stage_dir(run, stage) / "last.ckpt").exists()
            if stage == STAGE1:
                fn = partial(fit_vlvae, data, run, cfg, resume, progress)
            else:
                fn = partial(train_stage, run, get_stage(stage), resume, progress)
            _once("[methods]", label, fn, stage_dir(run, stage) / "metrics.json", clock, width=22)
        runs.append(run)
    # Always: the table is over what is present now. run/'s evaluation was made or kept a moment ago
    # by this process (_reproduce): not computed again, whatever the checkout.
    made_now = {read_metrics(out / "run" / "metrics.json")["evaluation_id"]}
    compare = partial(
        compare_runs, runs, cls, out, progress=False, device=device, caption_judge=caption, made_now=made_now
    )
    result = _step("[methods]", "comparison", compare, "compare", clock, width=22)
    _say("[methods]", "comparison", f"table: {out / 'compare.md'}", width=22)
    return result


def _reproduce(
    clock: _Clock,
    out: Path,
    data: Path,
    cfg,
    name: str,
    spec: DataSet,
    root: Path | None,
    overrides,
    workers: int,
    progress: bool,
    replicates: int,
    vlvae_replicates: int,
    device: torch.device = torch.device("cpu"),
    judges_from: Path | None = None,
) -> dict:
    """:func:`reproduce`'s stages, with the output folder's lock held; ``clock`` keeps each step's
    seconds."""

    run, cls = out / "run", out / "classifier"
    # The stages the run's method takes (all registered ones for the paper's VLVAE).
    stages = method_stages(get_method(cfg.method.name))
    caption = _caption_folder(out, spec)
    judges = 2 if caption is not None else 1
    # data, the judge(s), stage 1, the stages on the frozen model, evaluation
    n = 3 + judges + len(stages)
    started = time.time()

    def timed(i, label, fn, done_file: Path):
        return _once(f"[{i}/{n}]", label, fn, done_file, clock)

    if data == out / "data":
        timed(
            1,
            f"data ({spec.title})",
            lambda: spec.build(data, cfg, root, workers, progress),
            data / "manifest.json",
        )
    else:
        _line(1, n, "data", f"given: {data}")
        clock.record("data", f"data (given: {data.name})", None, "given")
    # The judges come first: stage 1 then logs its reconstructions' correctness at every validation.
    adopted = set()
    if judges_from is not None:
        wanted = [(cls, spec.judge)] if caption is None else [(caption, CAPTION_JUDGE), (cls, spec.judge)]
        # The step numbers of the progress lines; judges already finished here are kept.
        wanted = [(i, *w) for i, w in enumerate(wanted, start=2) if not (w[0] / "metrics.json").exists()]
        adopt_judges(
            [(judges_from / folder.name, folder, *judge.fit(cfg)) for _, folder, judge in wanted], data
        )
        for i, folder, _ in wanted:
            adopted.add(folder)
            _line(i, n, folder.name.replace("_", " "), f"copied from {judges_from / folder.name}")
            clock.record(clock.key(folder), folder.name.replace("_", " "), None, "copied")
    if caption is not None and caption not in adopted:
        timed(
            2,
            "caption judge",
            lambda: CAPTION_JUDGE.train(data, caption, cfg, name, (caption / "last.ckpt").exists(), progress),
            caption / "metrics.json",
        )
    if cls not in adopted:
        timed(
            1 + judges,
            "classifier",
            lambda: spec.judge.train(data, cls, cfg, name, (cls / "last.ckpt").exists(), progress),
            cls / "metrics.json",
        )
    # The run folder stores the config; later stages read it from there.
    vocab = read_vocabulary(data)
    runs = [out / ("run" if v == 0 else f"run.r{v}") for v in range(vlvae_replicates)]
    all_metrics = []
    for v, run in enumerate(runs):
        tag = f" (VLVAE {v})" if vlvae_replicates > 1 else ""
        # A stride far above stage_seed's 1000 per replicate: no two fits of any run share a seed.
        run_cfg = apply_overrides(cfg, [f"seed={stage1_replicate_seed(cfg.seed, v)}"]) if v else cfg

        def resume(stage: str, r: int = 0, run: Path = run) -> bool:
            return (stage_dir(run, stage, r) / "last.ckpt").exists()

        def stage_one(run=run, run_cfg=run_cfg, resume=resume):
            scorer, _ = load_scorer(spec, cls, vocab, data)
            return fit_vlvae(data, run, run_cfg, resume(STAGE1), progress, scorer=scorer.score)

        if (stage_dir(run, STAGE1) / "metrics.json").exists():
            # Finished: this only checks that the run folder holds this configuration.
            fit_vlvae(data, run, run_cfg, False, progress)
        timed(2 + judges, "VLVAE" + tag, stage_one, stage_dir(run, STAGE1) / "metrics.json")
        for r in range(replicates):
            rtag = tag + (f" r{r}" if replicates > 1 else "")
            for i, stage in enumerate(stages, start=3 + judges):
                timed(
                    i,
                    stage.progress_label + rtag,
                    partial(train_stage, run, stage, resume(stage.name, r), progress, r),
                    stage_dir(run, stage.name, r) / "metrics.json",
                )
        all_metrics.append(
            _step(
                f"[{n}/{n}]",
                "evaluation" + tag,
                partial(
                    evaluate_run,
                    run,
                    cls,
                    progress=False,
                    replicates=replicates,
                    caption_judge=caption,
                    device=device,
                ),
                f"{clock.key(run)}/evaluation",
                clock,
                # the same models, judges, settings and code: nothing to compute
                partial(current_evaluation, run, cls, caption, replicates, device),
                note=" (its metrics.json is current)",
            )
        )
    metrics = all_metrics[0]
    if vlvae_replicates > 1:
        metrics = summarise_runs(runs, all_metrics, out)
        print(f"this session {time.time() - started:.0f} s; summary: {out / 'summary.md'}", flush=True)
    else:
        print(f"this session {time.time() - started:.0f} s; report: {runs[0] / 'report.md'}", flush=True)
    return metrics
