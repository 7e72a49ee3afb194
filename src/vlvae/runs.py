"""Run folders: their layout, the "finished" marker, weights, and the loaders of trained stages.

A run folder ``RUN`` holds::

    RUN/config.yaml          the whole ExperimentConfig (model sized from the data)
    RUN/run.json             the data folder (relative to RUN, and absolute), the data's fingerprint,
                             its data set and vocabulary sha256, seed, package versions, git commit
    RUN/.lock                while a command writes the run (vlvae.locking; one writer at a time)
    RUN/<stage>/             one per stage: stage1, q_true, q_agg, prior
        last.ckpt            Lightning checkpoint for --resume
        weights.safetensors  the stage's final weights (trainable part only)
        metrics.json         final metrics, steps, wall time, throughput; written last
        logs/                CSV and TensorBoard logs
    RUN/<stage>.r<R>/        training replicate R >= 1 of a stage 2-3 (same layout, another seed)

Stage 1 (the VLVAE, or the stage-1 model of the run's method) is ``RUN/stage1``; run folders made
before it was named so hold it in ``RUN/vlvae``, where :func:`stage_dir` finds (and resumes) it.
A stage whose ``metrics.json`` exists is finished and is never retrained.
Every training command holds the run folder's lock while it writes; options,
data and folder are checked before the first file is written.
A run's identity is its configuration without the hardware keys (devices, num_nodes, strategy,
precision, accelerator, num_workers, logger: :data:`vlvae.config.HARDWARE_KEYS`): a folder made on one device
resumes on four, or with another precision; ``config.yaml`` then records the hardware of the latest
command that trained in it (each stage's ``metrics.json`` records its own). In a distributed fit only
the process of global rank 0 (:func:`vlvae.locking.global_rank`) writes the folder.
Replicate R of stages 2-3 is the same fit with the seed moved by 1000·R, on
the same frozen VLVAE: their spread is the spread over training runs.

A run finds its data as ``run.json`` records it: the path relative to the run folder first (a run
moved together with its data), then the absolute path (a run moved alone); a data set moved apart
from its run is given with ``--data`` (``data=`` of :func:`open_run`). Whichever folder is used must
have the fingerprint the run recorded (:func:`data_fingerprint`); when two places hold a data set,
the one with that fingerprint is used. ``vlvae train vlvae --data NEW --out RUN`` on the same data set
in a new place records the new place in ``run.json``.

This module reads and makes run folders; fitting a stage is :mod:`vlvae.training.run`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vlvae.config import (
    ExperimentConfig,
    _to_plain,
    identity_differences,
    load_config,
    save_config,
    validate_config,
    with_hardware,
)
from vlvae.data.format import (
    check_dataset,
    manifest_image_size,
    read_manifest,
    read_vocabulary,
    vocabulary_sha256,
)
from vlvae.errors import VLVAEError
from vlvae.io import atomic_path, atomic_write_json, canonical_json, canonical_sha256, read_json, sha256_file
from vlvae.locking import global_rank
from vlvae.methods import build_model, get_method
from vlvae.methods.stages import (
    PRIOR,
    TEXT_POSTERIOR,
    get_stage,
    registered_stages,
    stage_names,
    stages_fitting,
    text_posterior_stage,
)
from vlvae.models.config import feature_side
from vlvae.models.posteriors import AggregatePrior, TextPosterior
from vlvae.paths import check_output_dir
from vlvae.runinfo import run_info
from vlvae.seeds import replicate_seed

__all__ = [
    "STAGE1",
    "STAGES",
    "stage_dir",
    "stage_seed",
    "method_stages",
    "finished_replicates",
    "init_run",
    "record_hardware",
    "check_run_data",
    "data_fingerprint",
    "open_run",
    "read_run_info",
    "read_stage_metrics",
    "save_weights",
    "load_weights",
    "weights_sha256",
    "load_vlvae",
    "load_stage",
    "load_text_posterior",
    "load_prior",
]

#: Stage 1's name: its folder ``RUN/stage1`` and its config section ``stage1``.
STAGE1 = "stage1"
#: Stage 1's folder (and name) in run folders made before it was named ``stage1``.
LEGACY_STAGE1 = "vlvae"
#: Stage 1, then the stages fitted on its frozen model (:mod:`vlvae.methods.stages`), in order.
STAGES = (STAGE1, *stage_names())
#: The command that trains each stage (``{run}``: the run folder).
_MAKES = {
    STAGE1: "vlvae train vlvae --data DATA --out {run}",
    **{stage.name: stage.command for stage in registered_stages()},
}


def stage_dir(run: Path, stage: str, replicate: int = 0) -> Path:
    """``RUN/<stage>`` for the first training of a stage, ``RUN/<stage>.r<R>`` for replicate R >= 1.

    Stage 1 (:data:`STAGE1`; its old name ``vlvae`` is read as it) is ``RUN/stage1``, or ``RUN/vlvae``
    in a run folder made before it was named so (that folder exists, and ``RUN/stage1`` does not).
    """
    if replicate < 0:
        raise VLVAEError(f"a replicate number is 0 or more, got {replicate}")
    if stage in (STAGE1, LEGACY_STAGE1):
        legacy = Path(run) / LEGACY_STAGE1
        stage = LEGACY_STAGE1 if legacy.is_dir() and not (Path(run) / STAGE1).exists() else STAGE1
    return Path(run) / (stage if replicate == 0 else f"{stage}.r{replicate}")


def stage_seed(seed: int, stage: str, replicate: int = 0) -> int:
    """The seed of a stage 2-3 fit: the run's seed, the stage's offset, and 1000 per replicate
    (:func:`vlvae.seeds.replicate_seed`)."""
    return replicate_seed(seed, get_stage(stage).seed_offset, replicate)


def method_stages(method) -> tuple:
    """The registered stages 2-3 a method takes (:attr:`vlvae.methods.Method.stages`), in its order."""
    return tuple(get_stage(name) for name in method.stages)


def finished_replicates(run: Path, stages=None) -> int:
    """How many leading replicates R = 0, 1, ... of a run have every one of ``stages`` finished.

    ``stages`` (registered :class:`~vlvae.methods.stages.Stage` objects) defaults to those the
    run's method takes (:func:`method_stages`); a run whose method takes none counts 1.
    """
    if stages is None:
        stages = method_stages(get_method(open_run(run)[0].method.name))
    if not stages:
        return 1
    r = 0
    while all((stage_dir(run, stage.name, r) / "metrics.json").is_file() for stage in stages):
        r += 1
    return r


def _make(stage: str, run: Path, replicate: int = 0) -> str:
    if stage in (STAGE1, LEGACY_STAGE1):
        return _MAKES[STAGE1].format(run=run)
    return get_stage(stage).make(run, replicate)


def _sized_for(data: Path, cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with the model's image size, vocabulary size, text length and end word taken from the
    data (read only)."""
    manifest = check_dataset(data)  # the whole data set, before anything is written
    vocab = read_vocabulary(data)
    cfg.model.vocab_size = len(vocab)
    length = manifest.get("text_length", 9)
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise VLVAEError(
            f"{data}/manifest.json has text_length {length!r}, not a positive integer; rebuild the data set"
        )
    cfg.model.text_length = length
    cfg.model.end_index = vocab.end_index  # texts of variable length end with it (docs/design.md §11)
    cfg.model.image_size = manifest_image_size(manifest, data)
    feature_side(cfg.model.image_size, cfg.model.n_downsample)  # the data's size must suit the model
    return cfg


def init_run(run: Path, data: Path, cfg: ExperimentConfig) -> ExperimentConfig:
    """Create (or reopen with the same config) a run folder for data set ``data``.

    The model's image size, vocabulary size and text length are taken from the data. The data
    (whole: :func:`vlvae.data.format.check_dataset`), the configuration and an existing folder's
    run records are checked before anything is written; call it while holding the
    run folder's lock (:func:`vlvae.locking.folder_lock`, as :func:`vlvae.training.run.train_vlvae` does).
    ``run.json`` records the data folder, its data set and its vocabulary's sha256.

    An existing folder is reopened when its configuration has the same identity (every key but the
    hardware keys, :func:`vlvae.config.identity_differences`); its ``config.yaml`` then takes the
    hardware keys of ``cfg`` (:func:`record_hardware`). Another identity is refused in one line
    naming every differing key with both values. In a non-zero rank of a distributed launch
    (:func:`vlvae.locking.global_rank`) nothing is written: the same checks, and the config returned.

    Returns:
        The run's configuration, with the hardware keys of ``cfg``.
    """
    run, data = Path(run), Path(data)
    cfg = validate_config(_sized_for(data, cfg))  # the data set checked whole (check_dataset)
    manifest = read_manifest(data)
    writer = global_rank() == 0
    if writer:
        check_output_dir(run, "run folder")
    if (run / "config.yaml").exists():
        existing = load_config(run / "config.yaml")
        differences = identity_differences(existing, cfg)
        if differences:
            raise VLVAEError(
                f"{run} holds a run with another configuration ({'; '.join(differences)}); choose another "
                "--out, or run with the run's preset and --set options"
            )
        info = read_run_info(run)
        moved = Path(info["data"]).resolve() != data.resolve()
        if moved and not _same_data(info, data):
            raise VLVAEError(f"{run} was trained on {info['data']}, not {data}; choose another --out")
        check_run_data(run, existing, {**info, "data": str(data)})
        if moved and writer:  # the same data set in another place: the run records where it is now
            atomic_write_json(run / "run.json", {**_stored_info(run), **_data_paths(run, data)})
        return record_hardware(run, existing, cfg)
    if not writer:
        return cfg  # rank 0 makes the folder
    # run.json first: config.yaml, written last, marks a made run folder (a kill between them leaves
    # a run.json that the next start overwrites).
    atomic_write_json(
        run / "run.json",
        {
            **_data_paths(run, data),
            "data_fingerprint": data_fingerprint(data),
            "seed": cfg.seed,
            "preset": cfg.name,
            "dataset": manifest.get("dataset"),
            "vocab_sha256": vocabulary_sha256(data),
            **run_info(),
        },
    )
    save_config(cfg, run / "config.yaml")
    return cfg


def record_hardware(run: Path, stored: ExperimentConfig, now: ExperimentConfig) -> ExperimentConfig:
    """The run configuration ``stored`` (read from ``RUN/config.yaml``) with the hardware keys of
    ``now``; ``config.yaml`` is rewritten with them where they differ (by global rank 0 only), so that
    it records the hardware of the latest command that trained in the run. Call it while holding the
    run folder's lock."""
    updated = validate_config(with_hardware(stored, now))
    if global_rank() == 0 and _to_plain(updated) != _to_plain(stored):
        save_config(updated, Path(run) / "config.yaml")
    return updated


def data_fingerprint(data: Path) -> str:
    """A data set's fingerprint: sha256 of its ``manifest.json`` in canonical JSON (sorted keys, no
    spaces). The manifest records the sha256 of every split's arrays, its counts, settings and seed,
    so two data sets with one fingerprint were built the same; that their arrays still match those
    checksums is ``vlvae data verify``'s check, not this one."""
    return canonical_sha256(read_manifest(Path(data)))


def _data_paths(run: Path, data: Path) -> dict:
    """``run.json``'s ``data`` (relative to the run folder; absolute where no relative path exists,
    e.g. another drive) and ``data_absolute``."""
    absolute = Path(data).resolve()
    try:
        relative = os.path.relpath(absolute, Path(run).resolve())
    except ValueError:
        relative = str(absolute)
    return {"data": relative, "data_absolute": str(absolute)}


def _stored_info(run: Path) -> dict:
    """``run.json`` as stored (its ``data`` not resolved)."""
    return read_json(Path(run) / "run.json", "the run folder is damaged; train it again")


def _same_data(info: dict, data: Path) -> bool:
    """Whether ``data`` is the data set a run recorded (its fingerprint; False for runs made before
    fingerprints were recorded, or for a folder without a readable manifest)."""
    recorded = info.get("data_fingerprint")
    if not isinstance(recorded, str) or not (Path(data) / "manifest.json").is_file():
        return False
    try:
        return recorded == data_fingerprint(data)
    except VLVAEError:  # a damaged manifest: not the recorded data set (check_dataset says what is wrong)
        return False


def _data_candidates(run: Path, info: dict) -> list[Path]:
    """Where a run's data may be, in order: ``run.json``'s ``data`` (relative to the run folder, or an
    absolute path in runs made before paths were relative), then its ``data_absolute``."""
    recorded = Path(info["data"])
    candidates = [
        recorded if recorded.is_absolute() else Path(os.path.normpath(Path(run).resolve() / recorded))
    ]
    absolute = info.get("data_absolute")
    if isinstance(absolute, str) and absolute and Path(absolute) not in candidates:
        candidates.append(Path(absolute))
    return candidates


def check_run_data(run: Path, cfg: ExperimentConfig, info: dict) -> Path:
    """The data folder of a run, checked to be what the run was made from; clear errors if not.

    ``info["data"]`` is the folder to check (:func:`read_run_info` resolved it, or ``--data`` gave
    it). Compared: the image size (with the run's model), and, where ``run.json`` records them (runs
    made since they are recorded), the data set, the vocabulary's sha256 and the data's fingerprint.
    """
    data = Path(info["data"])
    if not (data / "manifest.json").is_file():
        raise VLVAEError(
            f"the data set {run} was trained on is not at {data}; if it moved, give its new place with "
            f"--data DIR (sample, serve, evaluate, export), or record it in the run with `vlvae train "
            f"vlvae --data DIR --out {run}` (a finished stage 1 is not trained again), or put it back"
        )
    manifest = check_dataset(data)
    remedy = f"restore the data set {run} was trained on, or train a new run on this one"
    size = manifest_image_size(manifest, data)
    if size != cfg.model.image_size:
        raise VLVAEError(
            f"{run} was trained on {cfg.model.image_size} px images, but its data set {data} has "
            f"{size} px images; {remedy}"
        )
    dataset = manifest.get("dataset")
    # a manifest written before manifests recorded their data set records none: nothing to compare
    if dataset and info.get("dataset") and info["dataset"] != dataset:
        raise VLVAEError(
            f"{run} was trained on a {info['dataset']} data set, but {data} holds {dataset}; {remedy}"
        )
    if info.get("vocab_sha256") and info["vocab_sha256"] != vocabulary_sha256(data):
        raise VLVAEError(
            f"the vocabulary of {data} (vocab.json) differs from the one {run} was trained on; {remedy}"
        )
    if isinstance(info.get("data_fingerprint"), str) and not _same_data(info, data):
        raise VLVAEError(
            f"{data} is not the data set {run} was trained on (its manifest's fingerprint differs from "
            f"run.json's data_fingerprint); {remedy}"
        )
    return data


def open_run(run: Path, data: Path | None = None) -> tuple[ExperimentConfig, dict]:
    """The config and run.json of an existing run folder; ``info["data"]`` is where its data set is
    (``data`` when given, e.g. ``--data`` for a data set moved apart from its run; else
    :func:`read_run_info`'s)."""
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise VLVAEError(
            f"{run} is not a vlvae run folder (no config.yaml); make one with "
            f"`vlvae train vlvae --data DATA --out {run}`"
        )
    cfg = load_config(run / "config.yaml")
    info = read_run_info(run)
    if data is not None:
        info["data"] = str(Path(data))
    return cfg, info


def read_run_info(run: Path) -> dict:
    """A run folder's ``run.json``, checked to be an object that names the run's data folder.

    ``data`` of the returned record is the data folder as a path usable from here: of ``run.json``'s
    relative and absolute paths, the first that holds the recorded data set (by fingerprint), else the
    first that holds a data set, else the first (:func:`check_run_data` then says where it was looked
    for). ``run.json`` itself is not changed.
    """
    path = Path(run) / "run.json"
    fix = f"the run folder {run} is damaged; delete it and train it again, or choose another folder"
    info = read_json(path, fix)
    if not isinstance(info, dict):
        raise VLVAEError(f"{path} holds a JSON {type(info).__name__}, not an object; {fix}")
    if not isinstance(info.get("data"), str) or not info["data"]:
        raise VLVAEError(f"{path} does not name the data folder the run was trained on ('data'); {fix}")
    candidates = _data_candidates(Path(run), info)
    # the first holding the recorded data set; without a fingerprint, the first holding a data set
    same = [c for c in candidates if _same_data(info, c)]
    found = next(iter(same), next((c for c in candidates if (c / "manifest.json").is_file()), candidates[0]))
    return {**info, "data": str(found)}


def weights_sha256(path: Path) -> str:
    """sha256 of a safetensors file's content: its header in canonical JSON (sorted keys), then its
    tensor bytes. The writer orders the header's metadata as its hash map happens to (another order in
    each process), so two saves of the same tensors and metadata can differ as files; this digest does
    not. A file that is not safetensors is hashed whole."""
    path = Path(path)
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
        try:
            header = json.loads(f.read(length)) if length <= path.stat().st_size - 8 else None
        except (ValueError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict):
            return sha256_file(path)
        digest = hashlib.sha256(canonical_json(header))
        while block := f.read(1 << 22):  # the tensor bytes, streamed
            digest.update(block)
    return digest.hexdigest()


def _arch_of(module: torch.nn.Module) -> str | None:
    """The image-network family of a module that has one (a VLVAE, a classifier), else None."""
    config = getattr(module, "config", None)
    return getattr(config, "arch", None) or getattr(module, "arch", None)


#: The metadata key of a weights file's tag; files written before hold it as ``kind``.
WEIGHTS_TAG_KEY = "tag"
_LEGACY_WEIGHTS_TAG_KEY = "kind"


def save_weights(module: torch.nn.Module, path: Path, tag: str) -> None:
    """Save a module's state dict with safetensors (atomically), with its tag (what it is:
    ``vlvae``, ``text_posterior``, ``attribute_classifier``, ...) and image architecture."""
    # Cloned: a flow's masks share storage between steps, which safetensors refuses to save.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    metadata = {WEIGHTS_TAG_KEY: tag}
    if _arch_of(module) is not None:
        metadata["arch"] = _arch_of(module)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def load_weights(module: torch.nn.Module, path: Path, tag: str, remedy: str) -> torch.nn.Module:
    """Load weights saved by :func:`save_weights` (with tag ``tag``) into ``module``; clear errors on
    mismatch. Files written before the tag's key was named so hold it as ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise VLVAEError(f"{path} is missing; make it with `{remedy}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        saved_tag = metadata.get(WEIGHTS_TAG_KEY, metadata.get(_LEGACY_WEIGHTS_TAG_KEY))
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise VLVAEError(f"{path} is corrupt ({exc}); retrain it with `{remedy}`") from exc
    if saved_tag != tag:
        raise VLVAEError(
            f"{path} holds a {saved_tag or 'foreign'} checkpoint, not a {tag}; "
            f"point to the right run or retrain with `{remedy}`"
        )
    expected = _arch_of(module)
    # Weights saved before architectures were named are all of the paper's CycleGAN-style family.
    saved_arch = metadata.get("arch", "cyclegan")
    if expected is not None and saved_arch != expected:
        raise VLVAEError(
            f"{path} holds {tag} weights of the {saved_arch!r} image architecture, but its config "
            f"describes {expected!r}; use the config it was trained with, or retrain with `{remedy}`"
        )
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise VLVAEError(
                f"{path} holds non-finite values (NaN or infinity) in tensor {name!r}: the training "
                f"diverged; retrain it (e.g. with a lower learning rate or likelihood weight) with `{remedy}`"
            )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise VLVAEError(
            f"{path} does not match the {tag} described by its configuration "
            f"({str(exc).splitlines()[0]}); retrain it with `{remedy}`"
        ) from exc
    return module


def read_stage_metrics(run: Path, stage: str, replicate: int = 0, tag: str | None = None) -> dict:
    """The ``metrics.json`` of a finished stage, checked: a JSON object, of a stage with weights tag
    ``tag`` where it records one. One line naming the file and the fix otherwise."""
    d = stage_dir(run, stage, replicate)
    path = d / "metrics.json"
    what = f"stage {stage!r}" + (f" (replicate {replicate})" if replicate else "")
    make = _make(stage, run, replicate)
    if not path.is_file():
        raise VLVAEError(f"{what} of {run} is not finished; run `{make}`")
    fix = f"delete {d} and retrain it with `{make}`"
    metrics = read_json(path, fix)
    if not isinstance(metrics, dict):
        raise VLVAEError(f"{path} holds a JSON {type(metrics).__name__}, not a stage's metrics; {fix}")
    saved = metrics.get("weights_tag")
    if tag is not None and saved is not None and saved != tag:
        raise VLVAEError(f"{path} describes a {saved} stage, not the {tag} of {what}; {fix}")
    return metrics


def _require(run: Path, stage: str, replicate: int = 0, tag: str | None = None) -> Path:
    read_stage_metrics(run, stage, replicate, tag)
    return stage_dir(run, stage, replicate)


def load_vlvae(run: Path, cfg: ExperimentConfig | None = None):
    """The trained, frozen stage-1 model of a run (the VLVAE or the run's method's), in evaluation mode."""
    cfg = cfg or open_run(run)[0]
    tag = get_method(cfg.method.name).weights_tag
    d = _require(run, STAGE1, tag=tag)
    model = load_weights(
        build_model(cfg.model, cfg.method),
        d / "weights.safetensors",
        tag,
        _MAKES[STAGE1].format(run=run),
    )
    return model.eval().requires_grad_(False)


def load_stage(run: Path, name: str, cfg: ExperimentConfig | None = None, replicate: int = 0):
    """The trained, frozen module of the registered stage 2-3 ``name`` (training replicate R) of a run.

    A text posterior q(z|y) for a stage that fits one, else an aggregate prior q(z); clear errors
    (naming the command to run) if it is not finished or its weights do not fit.
    """
    stage = get_stage(name)
    cfg = cfg or open_run(run)[0]
    metrics = read_stage_metrics(run, stage.name, replicate, stage.weights_tag)
    d = stage_dir(run, stage.name, replicate)
    # The family it was fitted with (``kind`` in metrics.json files written before it was named so).
    family = (
        metrics.get("posterior_family", metrics.get("kind"))
        or getattr(cfg, stage.config_section).posterior_family
    )
    module = (TextPosterior if stage.fits == TEXT_POSTERIOR else AggregatePrior)(cfg.model, family=family)
    fitted = load_weights(module, d / "weights.safetensors", stage.weights_tag, stage.make(run, replicate))
    return fitted.eval().requires_grad_(False)


def load_text_posterior(run: Path, objective: str, cfg: ExperimentConfig | None = None, replicate: int = 0):
    """The trained q_True (``objective="true"``) or q_Agg (``"agg"``) of a run (training replicate R)."""
    return load_stage(run, text_posterior_stage(objective).name, cfg, replicate)


def load_prior(run: Path, cfg: ExperimentConfig | None = None, replicate: int = 0):
    """The trained aggregate prior q_phi(z) of a run (training replicate R)."""
    return load_stage(run, stages_fitting(PRIOR)[0].name, cfg, replicate)  # the one learned prior
