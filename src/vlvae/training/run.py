"""The training entry points of ``vlvae train``: one stage fitted with Lightning, the stage loop.

Run folders (their layout, weights, loaders of trained stages) are :mod:`vlvae.runs`'s; the
names this module used to hold are imported here again so older imports keep working.
A stage whose ``metrics.json`` exists is finished and is never retrained.
Its ``last.ckpt`` is written atomically, opened without running code, refused if another stage
wrote it, and never holds non-finite weights: a fit stops at the first non-finite training loss,
and a Ctrl-C, like a full disk, ends in one line that says how to resume
(:mod:`vlvae.training.checkpoints`).
Every training command holds the run folder's lock while it writes; options,
data and folder are checked before the first file is written.
Replicate R of stages 2-3 is the same fit with the seed moved by 1000·R, on
the same frozen VLVAE: their spread is the spread over training runs.

Clusters (docs/gpus.md): a stage fits on ``devices × num_nodes`` processes (the world size, resolved
by :func:`world_size`, which asks Lightning for ``devices=auto``) with the config's ``strategy``; each
stage's ``batch_size`` is the global batch, split over the processes, and a batch that does not split
is refused before anything is written. Every process runs the command; only the process of global
rank 0 (:func:`vlvae.locking.global_rank`, then Lightning's) locks and writes folders, weights and
metrics, and the others wait for it at the end of each stage. Batch norm is synchronised over the
processes (its statistics are those of the global batch) on accelerators that support it, not on the
CPU. The judges always fit in one process (:func:`vlvae.config.single_process`).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import threading
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

from vlvae.config import (
    ExperimentConfig,
    StageConfig,
    _to_plain,
    apply_hardware_overrides,
    apply_overrides,
    check_global_batches,
    preset,
    single_process,
    stage_budget,
    world_size_of,
)
from vlvae.errors import DiskFullError, VLVAEError
from vlvae.io import as_disk_full, atomic_write_json, read_json, remove_stale_temporaries
from vlvae.locking import RANK_VARIABLES, folder_lock, global_rank, holds_lock
from vlvae.methods import configure, get_method
from vlvae.methods.stages import PRIOR, TEXT_POSTERIOR, Stage, get_stage, stages_fitting, text_posterior_stage
from vlvae.paths import check_output_dir
from vlvae.runinfo import run_info
from vlvae.runs import (
    STAGE1,
    _sized_for,
    check_run_data,
    init_run,
    load_vlvae,
    open_run,
    read_stage_metrics,
    record_hardware,
    save_weights,
    stage_dir,
    stage_seed,
)
from vlvae.seeds import STAGE1_SEED_OFFSET
from vlvae.training.checkpoints import (
    AtomicCheckpointIO,
    NonFiniteTraining,
    StageGuard,
    non_finite_tensors,
    read_checkpoint,
    stage_stamp,
    weights_problem,
)
from vlvae.training.judges import JudgeFit
from vlvae.training.tasks import STAGE_TASKS, BestWeights, CheckpointAfterValidation, VLVAETask

# The run-folder names above stay importable from here (``from vlvae.training.run import load_vlvae``);
# they belong to vlvae.runs. This module's own names:
__all__ = [
    "fit_stage",
    "check_single_process",
    "world_size",
    "check_world",
    "check_logger",
    "train_vlvae",
    "fit_vlvae",
    "train_text_posterior",
    "train_prior",
    "train_stage",
]

#: The fix for a run folder that a stage 2-3 cannot write into.
_WRITABLE_RUN = "each stage writes its folder inside the run: make it writable, or copy the run"


def _resume_hint(directory: Path, saved_step: int | None) -> str:
    """How to go on after a fit stopped early, from the step of its last checkpoint (None: none)."""
    if saved_step is None:
        return "no checkpoint was written yet: rerun the same command to start the stage again"
    return (
        f"rerun the same command with --resume to continue from step {saved_step} ({directory / 'last.ckpt'})"
    )


def _non_finite_message(what: str, directory: Path, exc: NonFiniteTraining, saved_step: int | None) -> str:
    """The line of a fit stopped by a non-finite loss or weights (nothing of it is marked finished)."""
    again = f"delete {directory} to start it again with other settings (--set)"
    if saved_step is not None:
        again = (
            f"rerun with --resume to continue from step {saved_step}, the last finite checkpoint "
            f"({directory / 'last.ckpt'}), or {again}"
        )
    return (
        f"training of {what} ({directory}) stopped at step {exc.step}: {exc.problem}; the stage is not "
        f"finished: {again}"
    )


def _run_trainer(run, what: str, directory: Path, guard: StageGuard, checkpoint_io: AtomicCheckpointIO):
    """``run()`` a Trainer's fit or validation, turning its early ends into one line each: a Ctrl-C or
    SIGTERM (on which Lightning exits the process), a non-finite loss or weights, a full disk."""
    handler = signal.getsignal(signal.SIGINT)
    try:
        return run()
    except SystemExit as exc:
        if guard.interrupted is None:
            raise
        raise VLVAEError(
            f"training of {what} ({directory}) was interrupted; "
            + _resume_hint(directory, checkpoint_io.saved_step)
        ) from exc
    except NonFiniteTraining as exc:
        raise VLVAEError(_non_finite_message(what, directory, exc, checkpoint_io.saved_step)) from exc
    except (DiskFullError, OSError) as exc:
        # The checkpoints' writer says so itself; the loggers' (CSV, TensorBoard) only give the errno.
        full = as_disk_full(exc, directory, f"the files of {what}")
        if full is None:
            raise
        if checkpoint_io.saved_step is None:
            raise full from exc
        raise DiskFullError(
            f"{full} with --resume: {directory / 'last.ckpt'} of step {checkpoint_io.saved_step} is intact"
        ) from exc
    finally:
        # Lightning ignores Ctrl-C after the first one; the process goes on, so it should count again.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, handler)


#: The strategy of a distributed fit in which some steps leave trainable parameters without a
#: gradient (stage 1's image-decoder steps): plain DDP (``auto``'s choice too) would stop there.
_UNUSED_PARAMETERS = "ddp_find_unused_parameters_true"


def _hardware(cfg: ExperimentConfig, unused_parameters: bool = False) -> dict:
    """The Trainer's arguments of where and how a fit runs, from the config's hardware keys.

    ``unused_parameters``: some steps leave trainable parameters without a gradient (stage 1 with
    ``decoder_steps``); a fit of several processes (``devices=auto`` counted by Lightning), or one told
    ``strategy=ddp``, then runs DDP told to look for them, as ``strategy=ddp_find_unused_parameters_true``
    does.
    """
    strategy = cfg.strategy
    if unused_parameters and (strategy == "ddp" or (strategy == "auto" and world_size(cfg) > 1)):
        strategy = _UNUSED_PARAMETERS
    return {
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "num_nodes": cfg.num_nodes,
        "strategy": strategy,
        "precision": cfg.precision,
    }


def world_size(cfg: ExperimentConfig) -> int:
    """The number of processes a fit of ``cfg`` runs on: ``devices × num_nodes``. With ``devices=auto``
    only Lightning knows how many devices a node has: a Trainer is built to ask it (building one
    writes nothing; it is not used to fit)."""
    known = world_size_of(cfg)
    if known is not None:
        return known
    probe = L.Trainer(
        **_hardware(cfg),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return int(probe.world_size)


def check_world(cfg: ExperimentConfig) -> int:
    """Refuse a stage ``batch_size`` that does not split over the fit's processes (one line naming both
    numbers and the fix), before anything is written; the world size is returned.

    A number of devices is checked with the configuration (:func:`vlvae.config.validate_config`);
    ``devices=auto`` only here, once Lightning has counted the devices (:func:`world_size`), which is
    why every training command calls this before its first write.
    """
    world = world_size(cfg)
    found = f" ({world // cfg.num_nodes} found)" if isinstance(cfg.devices, str) else ""
    check_global_batches(cfg, world, found)
    return world


#: The packages of the optional experiment loggers (``logger``, :data:`vlvae.config.LOGGERS`): the
#: module Lightning imports, and the package pip installs (also vlvae's extra of the logger's name).
_LOGGER_PACKAGES = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny")}


def check_logger(cfg: ExperimentConfig) -> None:
    """Refuse ``logger=wandb`` or ``logger=mlflow`` (docs/gpus.md) when its package is not installed, in
    one line that says how to install it; every training command (and ``reproduce``) calls it before
    its first write."""
    if cfg.logger not in _LOGGER_PACKAGES:
        return
    module, package = _LOGGER_PACKAGES[cfg.logger]
    if importlib.util.find_spec(module) is None:
        raise VLVAEError(
            f"logger={cfg.logger} needs the {module} package; install it with pip install "
            f"'vlvae[{cfg.logger}]' (or pip install {package}), or set logger=none"
        )


def _experiment_logger(cfg: ExperimentConfig, directory: Path, what: str, session: str) -> list:
    """The optional experiment logger of ``cfg.logger`` for the stage ``what`` in ``directory`` (a list
    of none or one), writing under ``STAGE/logs/``: W&B's offline files in ``logs/wandb/``, MLflow's
    runs in MLflow's file store ``logs/mlflow/`` unless ``MLFLOW_TRACKING_URI`` names another (a
    tracking server, a database). Lightning imports the package when the logger is made
    (:func:`check_logger` has checked that it is there)."""
    logs = directory.resolve() / "logs"
    run_folder = directory.resolve().parent
    if cfg.logger == "wandb":
        if global_rank() == 0:
            logs.mkdir(parents=True, exist_ok=True)  # wandb writes into an existing folder only
        return [
            WandbLogger(
                save_dir=logs,
                name=what,
                group=run_folder.name,
                project=os.environ.get("WANDB_PROJECT") or "vlvae",
                notes=f"{run_folder} ({session})",
            )
        ]
    if cfg.logger == "mlflow":
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not tracking_uri:
            # MLflow's file store (MLflow 3 keeps it, in maintenance mode, behind this switch): mlflow-skinny
            # has no database backend, and a stage's own folder needs no server.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            tracking_uri = (logs / "mlflow").as_uri()
        return [
            MLFlowLogger(
                experiment_name="vlvae",
                run_name=what,
                tracking_uri=tracking_uri,
                tags={"run_folder": str(run_folder), "session": session},
            )
        ]
    return []


def _close_experiment(loggers: list, failed: bool) -> None:
    """End the stage's W&B run: Lightning leaves it open, and the next stage's logger would log into it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish(exit_code=1 if failed else 0)  # a no-op in a non-zero rank


def _rank_source() -> str:
    """The environment variables that make this process a non-zero rank, for messages."""
    return ", ".join(f"{name}={os.environ[name]}" for name in RANK_VARIABLES if os.environ.get(name))


def check_single_process(directory: Path, what: str) -> None:
    """Refuse to fit ``what`` (a judge, which fits in one process) into ``directory`` in a non-zero
    rank of a distributed launch: every process of the launch would fit, and write, its own. Call it
    before anything is written, where the fit is not finished."""
    rank = global_rank()
    if rank != 0:
        raise VLVAEError(
            f"{what} ({directory}) trains in one process, but this is process {rank} of a distributed "
            f"launch ({_rank_source()}); train it with a one-process command first (outside srun, or "
            "srun --ntasks=1), then run this one again"
        )


def _finished_metrics(directory: Path) -> dict:
    """The ``metrics.json`` of a finished stage folder, checked to be a JSON object (one line if not)."""
    path = directory / "metrics.json"
    fix = f"delete {directory} and train the stage again"
    metrics = read_json(path, fix)
    if not isinstance(metrics, dict):
        raise VLVAEError(f"{path} holds a JSON {type(metrics).__name__}, not a stage's metrics; {fix}")
    return metrics


def fit_stage(
    task,
    directory: Path,
    stage: StageConfig,
    cfg: ExperimentConfig,
    weights_tag: str,
    resume: bool = False,
    progress: bool = True,
    extra: dict | None = None,
    posterior_family: str | None = None,
    stage_name: str | None = None,
) -> dict:
    """Train one stage with Lightning, or do nothing if it is finished.

    The budget is ``stage.steps`` (and stage 1's ``decoder_steps`` after them: :func:`stage_budget`);
    ``stage.max_minutes`` (0 = none) is an opt-in wall-clock safety
    that makes the result depend on the machine's speed and load, so ``metrics.json`` records what
    stopped the fit (``stopped_by``: ``steps``, ``patience`` or ``max_minutes``) and the report flags
    a stage the clock stopped.

    Args:
        task: the stage's LightningModule (with ``trainable()``).
        directory: the stage folder.
        stage: its optimisation settings.
        cfg: the whole config (its hardware keys and seed); a judge (:class:`JudgeFit`) fits in one
            process whatever they say, under its own precision where its section names one
            (:func:`vlvae.config.single_process`).
        weights_tag: tag stored with the weights (``vlvae``, ``text_posterior``, ``aggregate_prior``).
        posterior_family: the family of the distribution a stage 2-3 fits (recorded; None otherwise).
        resume: continue from ``last.ckpt`` of a killed run.
        progress: show Lightning's progress bar.
        extra: more fields for metrics.json.
        stage_name: what the checkpoints say wrote them (default: ``weights_tag``); ``--resume`` refuses
            a checkpoint stamped with another stage, weights tag or seed.

    Returns:
        The stage's metrics (also in ``directory/metrics.json``).
    """
    directory = Path(directory)
    if (directory / "metrics.json").is_file():
        return _finished_metrics(directory)
    rank = global_rank()
    check_logger(cfg)  # for the judges' commands; the others have checked it before their first write
    if isinstance(task, JudgeFit):
        cfg = single_process(cfg, task.config.precision)
        check_single_process(directory, weights_tag)
    if rank == 0:  # the other processes of a distributed fit write nothing
        check_output_dir(directory, "stage folder")
    if holds_lock(directory):  # no other vlvae process writes here: earlier killed writes' files are stale
        remove_stale_temporaries(directory)
    ckpt = directory / "last.ckpt"
    ckpt_path = None
    what = stage_name or weights_tag
    stamp = stage_stamp(what, weights_tag, task.seed)
    checkpoint_io = AtomicCheckpointIO()
    if ckpt.exists():
        if not resume:
            raise VLVAEError(
                f"{directory} holds an unfinished stage ({ckpt.name}); pass --resume to "
                f"continue it, or delete {directory} to start it again"
            )
        ckpt_path = str(ckpt)
        task.start_step = checkpoint_io.saved_step = int(read_checkpoint(ckpt, stamp, task)["global_step"])
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    monitor = getattr(task, "monitor", None)
    stopping = best = None
    patience = stage.patience > 0 and monitor is not None and stage.val_examples > 0
    # With early stopping the checkpoint is written after each validation pass (a checkpoint every
    # checkpoint_every steps comes before that step's validation): a resumed fit then neither skips
    # nor repeats a pass, and stops where an uninterrupted one would.
    callbacks = (
        []
        if patience
        else [
            ModelCheckpoint(
                dirpath=directory, save_top_k=0, save_last=True, every_n_train_steps=stage.checkpoint_every
            )
        ]
    )
    if patience:
        stopping = EarlyStopping(
            monitor=monitor,
            mode="max",
            patience=stage.patience,
            min_delta=stage.min_delta,
            check_on_train_epoch_end=False,
            strict=True,
        )
        best = BestWeights(monitor)
        callbacks += [stopping, best, CheckpointAfterValidation(ckpt)]
    guard = StageGuard(stamp)
    callbacks.append(guard)
    # Each training session (the first, and every --resume) logs into its own folder, so
    # resuming never overwrites the earlier session's CSV.
    session = f"from_step_{task.start_step}"
    # The CSV log (read by the report's convergence figures) and TensorBoard's always; W&B's or MLflow's
    # with logger=wandb or mlflow.
    loggers = [
        CSVLogger(directory / "logs", name="csv", version=session),
        TensorBoardLogger(directory / "logs", name="tensorboard", version=session, default_hp_metric=False),
        *_experiment_logger(cfg, directory, what, session),
    ]
    # The run's whole configuration and this stage's name and seed: hparams.yaml beside the CSV log,
    # TensorBoard's hyperparameter tab, the optional logger's parameters (each writes from global rank 0
    # only).
    hyperparameters = {"stage": what, "stage_seed": task.seed, "weights_tag": weights_tag, **_to_plain(cfg)}
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)
    failed = True
    try:
        budget = stage_budget(stage)
        hardware = _hardware(cfg, unused_parameters=stage.decoder_steps > 0)
        trainer = L.Trainer(
            max_steps=budget,
            max_time={"minutes": stage.max_minutes} if stage.max_minutes > 0 else None,
            **hardware,
            callbacks=callbacks,
            plugins=[checkpoint_io],
            logger=loggers,
            val_check_interval=min(stage.val_every, budget),
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            log_every_n_steps=max(1, min(50, budget // 10)),
            deterministic=False,
        )
        world = trainer.world_size
        if stage.batch_size % world:  # refused with the config already; this fit's world may say otherwise
            raise VLVAEError(
                f"{what}: the global batch_size {stage.batch_size} does not split over the {world} processes "
                f"of this fit; set its batch_size to a multiple of {world}, or change devices or num_nodes"
            )
        if world > 1 and not isinstance(trainer.accelerator, CPUAccelerator):
            # Batch norm over the global batch, as on one device (torch synchronises it on GPUs, not on
            # the CPU); the module's weights and buffers keep their names.
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(task.trainable())
        started = time.time()
        _run_trainer(
            lambda: trainer.fit(task, ckpt_path=ckpt_path, weights_only=True),
            what,
            directory,
            guard,
            checkpoint_io,
        )
        seconds = time.time() - started
        if trainer.interrupted:
            raise VLVAEError(
                f"training of {what} ({directory}) was interrupted at step {trainer.global_step}; "
                + _resume_hint(directory, checkpoint_io.saved_step)
            )
        steps_done = trainer.global_step - task.start_step
        train_last = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        stopping_info = {}
        patience_stopped = best is not None and stopping.wait_count >= stage.patience
        stopped_by = (
            "patience" if patience_stopped else ("steps" if trainer.global_step >= budget else "max_minutes")
        )
        if best is not None:
            stopping_info = {
                "monitor": monitor,
                "patience": stage.patience,
                "min_delta": stage.min_delta,
                "stopped_by": stopped_by,
                "best_step": best.best_step,
                "best_value": best.best_value,
            }
            best.restore(task.trainable())
        bad = non_finite_tensors(task.trainable().state_dict())
        if bad:
            problem = NonFiniteTraining(trainer.global_step, weights_problem(bad))
            raise VLVAEError(_non_finite_message(what, directory, problem, checkpoint_io.saved_step))
        final = (
            _run_trainer(
                lambda: trainer.validate(task, verbose=False), what, directory, guard, checkpoint_io
            )[0]
            if stage.val_examples > 0
            else {}
        )
        metrics = {
            "weights_tag": weights_tag,
            **({"posterior_family": posterior_family} if posterior_family is not None else {}),
            "steps": trainer.global_step,
            "steps_budget": budget,
            "max_minutes": stage.max_minutes,
            "stopped_by": stopped_by,
            "world_size": world,
            # the hardware of the session that finished the stage (docs/gpus.md)
            "hardware": {
                "accelerator": type(trainer.accelerator).__name__,
                "devices": trainer.num_devices,
                "num_nodes": trainer.num_nodes,
                "strategy": hardware["strategy"],
                "precision": cfg.precision,
                "batch_per_process": stage.batch_size // world,
            },
            "seconds_this_session": seconds,
            "examples_per_second": steps_done * stage.batch_size / max(seconds, 1e-9),
            "validation": {k: float(v) for k, v in final.items()},
            "train_last": train_last,
            "weights": (
                f"weights.safetensors (the weights of the best validation pass, step {best.best_step})"
                if best is not None and best.best_step is not None
                else "weights.safetensors (the last step's weights; no selection by validation)"
            ),
            "early_stopping": stopping_info or None,
            **(extra or {}),
            **run_info(),
        }
        if trainer.is_global_zero:
            save_weights(task.trainable(), directory / "weights.safetensors", weights_tag)
            atomic_write_json(directory / "metrics.json", metrics)
        if world > 1:
            # The other processes go on (to the next stage, which reads these weights) once they are written.
            trainer.strategy.barrier("vlvae-stage-written")
        failed = False
    finally:
        _close_experiment(loggers, failed)
    return metrics


def _config_for(preset_name: str, steps: int | None, overrides: list[str]) -> ExperimentConfig:
    cfg = preset(preset_name)
    if steps is not None:
        overrides = [f"stage1.steps={steps}"] + list(overrides)
    return apply_overrides(cfg, overrides) if overrides else cfg


def train_vlvae(
    data: Path,
    out: Path,
    preset_name: str = "cpu",
    steps: int | None = None,
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
    scorer=None,
) -> dict:
    """Stage 1 from a preset's name and ``key=value`` overrides (``vlvae train vlvae``): the config is
    built and checked here, then :func:`fit_vlvae` trains it.

    ``steps`` overrides ``stage1.steps``; ``scorer`` as for :func:`fit_vlvae`.
    """
    return fit_vlvae(data, out, _config_for(preset_name, steps, overrides), resume, progress, scorer)


def fit_vlvae(
    data: Path,
    out: Path,
    cfg: ExperimentConfig,
    resume: bool = False,
    progress: bool = True,
    scorer=None,
) -> dict:
    """Stage 1: train the VLVAE (or the method of ``cfg.method``) on ``data`` into run folder ``out``.

    ``cfg`` is not changed (a copy is sized from the data and configured by its method).
    ``scorer`` (images, texts) -> correctness, if given, adds the reconstructions' correctness
    to every validation pass (``val/correctness`` in the logs).
    """
    # Everything is checked (options, data, the world's batch split, the folder) before anything is written.
    cfg = configure(_sized_for(Path(data), copy.deepcopy(cfg)))
    check_world(cfg)
    check_logger(cfg)
    if global_rank() == 0:  # the other processes of a distributed fit write nothing
        out = check_output_dir(out, "run folder")
    with folder_lock(out, "vlvae train vlvae"):
        cfg = init_run(out, data, cfg)
        # The initial weights are a function of the seed.
        torch.manual_seed(cfg.seed + STAGE1_SEED_OFFSET)
        task = VLVAETask(
            cfg.model,
            cfg.stage1,
            str(Path(data).resolve()),
            cfg.seed,
            cfg.num_workers,
            scorer=scorer,
            method=cfg.method,
        )
        return fit_stage(
            task,
            stage_dir(out, STAGE1),
            cfg.stage1,
            cfg,
            get_method(cfg.method.name).weights_tag,
            resume,
            progress,
            extra={"method": cfg.method.name},
            stage_name=STAGE1,
        )


def _fit_on_frozen_vlvae(
    run: Path,
    stage: Stage,
    replicate: int,
    make_task,
    resume: bool,
    progress: bool,
    extra: dict,
    hardware: list[str] = (),
) -> dict:
    """Fit a stage 2-3 (replicate R) on the run's frozen VLVAE: ``make_task(cfg, info, seed, vlvae)``.

    ``hardware``: ``key=value`` overrides of the run's hardware keys for this fit (recorded in its
    ``config.yaml``); any other key is refused.
    """
    stored, info = open_run(run)
    cfg = apply_hardware_overrides(stored, list(hardware)) if hardware else stored
    seed = stage_seed(cfg.seed, stage.name, replicate)
    directory = stage_dir(run, stage.name, replicate)
    if (directory / "metrics.json").is_file():
        return read_stage_metrics(run, stage.name, replicate, stage.weights_tag)
    check_run_data(run, cfg, info)
    check_world(cfg)
    check_logger(cfg)
    if global_rank() == 0:  # the other processes of a distributed fit write nothing
        run = check_output_dir(run, "run folder", "--run", _WRITABLE_RUN)
    with folder_lock(run, stage.lock_command):
        cfg = record_hardware(run, stored, cfg)
        vlvae = load_vlvae(run, cfg)
        torch.manual_seed(seed)
        task = make_task(cfg, info, seed, vlvae)
        return fit_stage(
            task,
            directory,
            getattr(cfg, stage.config_section),
            cfg,
            stage.weights_tag,
            resume,
            progress,
            extra={**extra, "replicate": replicate, "seed": seed},
            posterior_family=getattr(cfg, stage.config_section).posterior_family,
            stage_name=stage.name,
        )


def train_stage(
    run: Path,
    name: str | Stage,
    resume: bool = False,
    progress: bool = True,
    replicate: int = 0,
    hardware: list[str] = (),
) -> dict:
    """Fit the registered stage 2-3 called ``name`` (:mod:`vlvae.methods.stages`), replicate R, on the
    frozen VLVAE, with the task for what it fits (:data:`vlvae.training.tasks.STAGE_TASKS`).

    ``replicate`` R >= 1 trains another replicate into ``RUN/<name>.r<R>`` with its own seed.
    ``hardware``: ``key=value`` overrides of the run's hardware keys only (``devices=4``,
    ``precision=bf16-mixed``; :data:`vlvae.config.HARDWARE_KEYS`), recorded in its ``config.yaml``.
    """
    stage = name if isinstance(name, Stage) else get_stage(name)

    def make(cfg, info, seed, vlvae):
        section = getattr(cfg, stage.config_section)
        return STAGE_TASKS[stage.fits](stage, cfg.model, section, info["data"], seed, vlvae, cfg.num_workers)

    extra = {"objective": stage.choice} if stage.fits == TEXT_POSTERIOR else {}
    return _fit_on_frozen_vlvae(run, stage, replicate, make, resume, progress, extra, hardware)


def train_text_posterior(
    run: Path,
    objective: str,
    resume: bool = False,
    progress: bool = True,
    replicate: int = 0,
    hardware: list[str] = (),
) -> dict:
    """Stage 2: the text posterior fitted with ``--objective objective`` (``true``: q_True, ``agg``:
    q_Agg), with the VLVAE frozen (replicate R and ``hardware`` as for :func:`train_stage`)."""
    return train_stage(run, text_posterior_stage(objective).name, resume, progress, replicate, hardware)


def train_prior(
    run: Path, resume: bool = False, progress: bool = True, replicate: int = 0, hardware: list[str] = ()
) -> dict:
    """Stage 3: the aggregate prior q_phi(z), with the VLVAE frozen (replicate R and ``hardware`` as
    for stage 2)."""
    prior = stages_fitting(PRIOR)[0].name  # the learned prior
    return train_stage(run, prior, resume, progress, replicate, hardware)
