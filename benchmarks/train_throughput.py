"""Training throughput (examples/s) of each stage, timed on the code path that training runs.

For each preset (and ``--set`` overrides) this builds a small real Two Objects
data set of the preset's image size and zoom, then, for each stage, the same
task object that ``vlvae train`` builds (src/vlvae/training/run.py and
``train_classifier`` in src/vlvae/training/judges.py):

    vlvae       VLVAETask                         stage 1, weighted ELBO with KL warm-up
    q_true      TextPosteriorTask(objective=true) stage 2, the VLVAE frozen
    q_agg       TextPosteriorTask(objective=agg)  stage 2, z drawn from the q(z|x) table
    prior       AggregatePriorTask                stage 3, z drawn from the q(z|x) table
    classifier  ClassifierTask                    the Two Objects attribute classifier

and fits it with a real ``lightning.Trainer`` set up as ``fit_stage`` sets it
up (the config's accelerator and precision, one device) but with no logger,
checkpoints or validation. So each timed step is exactly a training step:
the task's own data loader (step sampler, data set, collation), its
``on_train_batch_start`` seeding, ``training_step`` (``images_to_float`` where
the batch carries images, the loss), backward, and the step of the optimizer and schedule from
``configure_optimizers``. A callback marks the end of the first ``--warmup``
steps, then stops the fit once ``--seconds`` have passed (or, with ``--steps``,
once that many steps are timed); examples/s = timed steps x batch size / timed
seconds (the device is synchronised at both marks). ``--precision`` (repeatable)
measures each stage under each of Lightning's precisions in turn, e.g.
``32-true`` and ``bf16-mixed`` (docs/mixed_precision.md), same seed and data.

q_Agg and the prior tabulate q(z|x) of every training image once, at their first
step (the frozen-VLVAE mixin's ``posterior_table``; q_True never draws z ~ q(z|x));
that one-off cost falls in the warm-up, is timed separately and printed in its own
column; on a GPU the last column is the peak memory allocated while the stage ran
(``torch.cuda.max_memory_allocated``). Not timed: building the data set, the models and the Trainer,
opening the data set, validation, writing logs and checkpoints.

The frozen VLVAE of stages 2-3 has fresh (untrained) weights, which do not
change the cost of a step. The only change made to the preset's stage settings
is the step budget, raised so that the clock and not the budget ends a fit
(nothing in a step depends on the budget).

    python benchmarks/train_throughput.py --preset cpu --preset paper --threads 2
    python benchmarks/train_throughput.py --preset cpu --set model.arch=cyclegan --stage vlvae
    python benchmarks/train_throughput.py --preset cpu --set method.name=telbo --stage vlvae
    python benchmarks/train_throughput.py --preset cpu --stage vlvae --steps 300 \
        --precision 32-true --precision bf16-mixed

The data set is made in a temporary folder and deleted afterwards unless
``--data DIR`` is given: DIR is used as is if it is a data set of the preset's
image size, and otherwise holds one cached data set per size (DIR/two_objects_<size>px).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch

from vlvae.config import ExperimentConfig, apply_overrides, preset
from vlvae.data.format import read_manifest, read_vocabulary
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.datasets.two_objects.judge import ATTRIBUTE_SLOTS, RELATION_SLOT, ClassifierTask
from vlvae.errors import VLVAEError
from vlvae.methods import configure
from vlvae.models.vlvae import VLVAE
from vlvae.runs import init_run, stage_seed
from vlvae.seeds import classifier_seed
from vlvae.training.judges import judge_stage
from vlvae.training.tasks import AggregatePriorTask, TextPosteriorTask, VLVAETask

STAGES = ("vlvae", "q_true", "q_agg", "prior", "classifier")
TABULATING = ("q_agg", "prior")  # the stages whose first step tabulates q(z|x) (q_True never draws it)
_LONG = 10**9  # step budget of a timed fit: the clock stops it long before


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock(L.Callback):
    """Times the training steps after the first ``warmup`` and stops the fit after ``seconds``, or
    after ``steps`` timed steps when that is given."""

    def __init__(self, seconds: float, warmup: int, steps: int | None = None):
        self.seconds, self.warmup, self.max_steps = seconds, max(1, warmup), steps
        self.steps, self.start, self.elapsed, self.timed_steps = 0, None, None, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1
        if self.steps < self.warmup:
            return
        if self.start is None:  # the end of the warm-up
            _sync(pl_module.device)
            self.start = time.perf_counter()
        elif (
            self.steps - self.warmup >= self.max_steps
            if self.max_steps
            else time.perf_counter() - self.start >= self.seconds
        ):
            self._stop(pl_module)
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module):
        if self.elapsed is None and self.start is not None:  # the step budget ran out first
            self._stop(pl_module)

    def _stop(self, pl_module):
        _sync(pl_module.device)
        self.elapsed = time.perf_counter() - self.start
        self.timed_steps = self.steps - self.warmup


def _time_posterior_table(task: L.LightningModule) -> dict:
    """Wrap the task's ``posterior_table`` (built by the first step that draws z ~ q(z|x)) to record
    the seconds of the call that builds it in the returned dict."""
    timing = {}
    original = task.posterior_table

    def posterior_table():
        if "seconds" in timing:
            return original()
        start = time.perf_counter()
        table = original()
        _sync(task.device)
        timing["seconds"] = time.perf_counter() - start
        return table

    task.posterior_table = posterior_table  # the task looks the method up on the instance
    return timing


def _image_size(folder: Path) -> int | None:
    """The image size of the finished data set in ``folder``, or None if it holds none."""
    if not (folder / "manifest.json").is_file():
        return None
    return int(read_manifest(folder)["image_size"])


def dataset_for(cfg: ExperimentConfig, n: int, folder: Path, workers: int = 1) -> Path:
    """A Two Objects data set of ``cfg.data``'s size and zoom with ``n`` pairs, made once.

    ``folder`` is returned if it is a data set of that size; otherwise the set lives in
    ``folder/two_objects_<size>px``, reused if already there (whatever its ``n``).
    """
    folder, size = Path(folder), cfg.data.size
    found = _image_size(folder)
    if found is not None:
        if found == size:
            return folder
        raise VLVAEError(
            f"{folder} holds a data set of {found} px but preset {cfg.name!r} needs {size} px; "
            "pass a --data folder that is not itself a data set to cache one set per size"
        )
    out = folder / f"two_objects_{size}px"
    if _image_size(out) != size:
        d = cfg.data
        settings = TwoObjectsSettings(
            n=n, size=size, val_fraction=d.val_fraction, seed=d.seed, zoom=d.zoom, supersample=d.supersample
        )
        generate_two_objects(settings, out, workers=workers, progress=False)
    return out


def _frozen_vlvae(cfg: ExperimentConfig):
    """A VLVAE as ``load_vlvae`` returns it (evaluation mode, no gradients), with fresh weights."""
    torch.manual_seed(cfg.seed)
    return VLVAE(cfg.model).eval().requires_grad_(False)


def _long(stage_config):
    return replace(stage_config, steps=max(stage_config.steps, _LONG))


def _make_task(stage: str, cfg: ExperimentConfig, data: str) -> tuple[L.LightningModule, str]:
    """The stage's task, built as ``vlvae train`` builds it, and the architecture it trains."""
    if stage == "vlvae":  # train_vlvae: the model of the config's method (--set method.name=telbo)
        cfg = configure(cfg)
        torch.manual_seed(cfg.seed)
        return (
            VLVAETask(cfg.model, _long(cfg.stage1), data, cfg.seed, cfg.num_workers, method=cfg.method),
            cfg.model.arch,
        )
    if stage in ("q_true", "q_agg"):  # train_text_posterior
        vlvae = _frozen_vlvae(cfg)
        torch.manual_seed(stage_seed(cfg.seed, stage))
        return TextPosteriorTask(
            cfg.model,
            _long(cfg.text_posterior),
            data,
            stage_seed(cfg.seed, stage),
            vlvae,
            stage[2:],
            cfg.num_workers,
        ), cfg.model.arch
    if stage == "prior":  # train_prior
        vlvae = _frozen_vlvae(cfg)
        torch.manual_seed(stage_seed(cfg.seed, "prior"))
        return AggregatePriorTask(
            cfg.model, _long(cfg.prior), data, stage_seed(cfg.seed, "prior"), vlvae, cfg.num_workers
        ), cfg.model.arch
    if stage == "classifier":  # train_classifier
        vocab = read_vocabulary(Path(data))
        torch.manual_seed(classifier_seed(cfg.seed))
        task = ClassifierTask(
            cfg.classifier,
            _long(judge_stage(cfg.classifier)),
            data,
            classifier_seed(cfg.seed),
            int(read_manifest(Path(data))["image_size"]),
            [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS],
            len(vocab.slots[RELATION_SLOT]),
        )
        return task, cfg.classifier.arch
    raise VLVAEError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def measure_stage(
    stage: str, cfg: ExperimentConfig, data: Path, seconds: float, warmup: int = 3, steps: int | None = None
) -> dict:
    """Fit one stage's real task for ``warmup`` steps plus ``seconds`` (or ``steps`` timed steps) under
    ``cfg.precision``; its throughput as a row."""
    task, arch = _make_task(stage, cfg, str(Path(data).resolve()))
    table = _time_posterior_table(task) if stage in TABULATING else None
    clock = _Clock(seconds, warmup, steps)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    trainer = L.Trainer(
        max_steps=task.stage.steps,
        accelerator=cfg.accelerator,
        devices=1,
        precision=cfg.precision,
        callbacks=[clock],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        use_distributed_sampler=False,
        deterministic=False,
    )
    with warnings.catch_warnings():
        # Expected here: the frozen VLVAE is in eval mode on purpose, the loaders have no workers,
        # and Lightning's own deprecation notice about torch's LeafSpec.
        warnings.filterwarnings("ignore", message=r"Found .* module\(s\) in eval mode")
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        warnings.filterwarnings("ignore", message=r".*LeafSpec")
        trainer.fit(task)
    if not clock.timed_steps:
        raise VLVAEError(f"stage {stage} stopped after {clock.steps} steps, before any was timed")
    batch = task.stage.batch_size
    device = trainer.strategy.root_device
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "preset": cfg.name,
        "arch": arch,
        "stage": stage,
        "precision": cfg.precision,
        "device": str(device),
        "batch": batch,
        "steps": clock.timed_steps,
        "seconds": clock.elapsed,
        "examples_per_s": clock.timed_steps * batch / clock.elapsed,
        "table_s": table.get("seconds") if table is not None else None,
        "peak_gib": peak,
    }


def benchmark(
    presets: Sequence[str] = ("cpu",),
    overrides: Sequence[str] = (),
    stages: Sequence[str] = STAGES,
    seconds: float = 10.0,
    n: int = 2048,
    data: Path | None = None,
    workers: int = 1,
    warmup: int = 3,
    on_row: Callable[[dict], None] | None = None,
    precisions: Sequence[str] = (),
    steps: int | None = None,
) -> list[dict]:
    """Throughput rows of every (preset, stage, precision), each also passed to ``on_row`` as soon as
    it is measured; ``precisions`` empty: the config's own."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="vlvae-throughput-") as tmp:
        cache = Path(data) if data is not None else Path(tmp) / "data"
        for i, name in enumerate(presets):
            cfg = apply_overrides(preset(name), list(overrides)) if overrides else preset(name)
            root = dataset_for(cfg, n, cache, workers)
            # As `vlvae train vlvae` does: size the model from the data (image size, vocabulary, text length).
            cfg = init_run(Path(tmp) / f"run{i}", root, cfg)
            for stage in stages:
                for precision in precisions or [cfg.precision]:
                    run_cfg = replace(cfg, precision=precision)
                    rows.append(measure_stage(stage, run_cfg, root, seconds, warmup, steps))
                    if on_row is not None:
                        on_row(rows[-1])
    return rows


_COLUMNS = (
    ("preset", "<12"),
    ("arch", "<9"),
    ("stage", "<11"),
    ("precision", "<10"),
    ("device", "<7"),
    ("batch", ">5"),
    ("steps", ">6"),
    ("examples/s", ">10"),
    ("q(z|x) table s", ">14"),
    ("peak GiB", ">8"),
)


def _format(values: Sequence[str]) -> str:
    return "  ".join(f"{v:{align}}" for v, (_, align) in zip(values, _COLUMNS))


def format_row(row: dict) -> str:
    table = "-" if row["table_s"] is None else f"{row['table_s']:.2f}"
    peak = "-" if row.get("peak_gib") is None else f"{row['peak_gib']:.2f}"
    return _format(
        [
            row["preset"],
            row["arch"],
            row["stage"],
            row["precision"],
            row["device"],
            str(row["batch"]),
            str(row["steps"]),
            f"{row['examples_per_s']:.1f}",
            table,
            peak,
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        action="append",
        metavar="NAME",
        help="preset to measure; repeat for several (default: cpu)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="config override applied to every preset, e.g. model.arch=cyclegan or "
        "accelerator=cpu; repeatable",
    )
    parser.add_argument(
        "--stage", action="append", choices=STAGES, help="stage to measure; repeat for several (default: all)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per stage (default 10)")
    parser.add_argument(
        "--steps", type=int, default=None, help="time this many steps per stage instead of --seconds"
    )
    parser.add_argument(
        "--precision",
        action="append",
        default=[],
        metavar="PRECISION",
        help="Lightning precision to measure, e.g. 32-true or bf16-mixed; repeat to compare "
        "(default: the preset's)",
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps before the clock starts (default 3)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--n", type=int, default=2048, help="image-text pairs in the data set made (default 2048)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the data set here and reuse it next time (default: a temporary folder)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="rendering processes for the data set (default: up to 2)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no "GPU available: ..." lines
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.n} Two Objects pairs; "
        + (f"{args.steps} steps" if args.steps else f"{args.seconds:g} s")
        + f" timed per stage after {max(1, args.warmup)} warm-up steps"
        + (f"; --set {' '.join(args.overrides)}" if args.overrides else "")
    )
    print(_format([name for name, _ in _COLUMNS]))
    try:
        benchmark(
            args.preset or ["cpu"],
            args.overrides,
            args.stage or STAGES,
            args.seconds,
            args.n,
            args.data,
            args.workers,
            args.warmup,
            on_row=lambda row: print(format_row(row), flush=True),
            precisions=args.precision,
            steps=args.steps,
        )
    except VLVAEError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
