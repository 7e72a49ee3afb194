"""A stage's ``last.ckpt``: written atomically, read without running code, and never a non-finite one.

Every Trainer of :func:`vlvae.training.run.fit_stage` (stages 1-3 and every judge) gets
:class:`AtomicCheckpointIO` and :class:`StageGuard`:

- **written atomically in its folder.** The checkpoint is serialised in memory, then written to a
  temporary file beside ``last.ckpt`` and renamed (:func:`vlvae.io.atomic_write_bytes`): a failed
  write (a full disk: :class:`vlvae.errors.DiskFullError`, a kill) leaves the previous ``last.ckpt``
  as it was. (Lightning's own writer stages the file in a temporary folder elsewhere and moves it
  across file systems, which is not atomic.)
- **read without running code.** A checkpoint is a pickle; every read here (:func:`read_checkpoint`,
  and Lightning's through :meth:`AtomicCheckpointIO.load_checkpoint`) uses ``weights_only=True``,
  which rebuilds only tensors, numbers, strings and containers, so a crafted file is refused before
  anything of it runs. Everything a resume needs (the loops, optimiser and scheduler states, the
  callbacks', :class:`vlvae.training.tasks.BestWeights`' copy, the stamp below) is of those kinds.
- **stamped with its stage.** :class:`StageGuard` records which stage wrote it (``vlvae_stage``: the
  stage, weights tag and seed), and :func:`read_checkpoint` refuses another stage's, another
  replicate's or a classifier's checkpoint (or, for one written before the stamp, one whose weights
  do not fit the task) with one line naming what it belongs to.
- **finite.** :class:`StageGuard` stops the fit at the first non-finite training loss, before its
  backward pass (so the weights stay those of the last finite step), by raising
  :class:`NonFiniteTraining`; :class:`AtomicCheckpointIO` refuses to write non-finite weights over
  ``last.ckpt``; so ``--resume`` always continues from finite weights.
- **interrupted cleanly.** Lightning answers Ctrl-C (and SIGTERM) by exiting the process itself;
  :class:`StageGuard` records it, so that :func:`vlvae.training.run.fit_stage` can say instead how
  to resume.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_bytes

__all__ = [
    "STAMP_KEY",
    "AtomicCheckpointIO",
    "StageGuard",
    "NonFiniteTraining",
    "read_checkpoint",
    "stage_stamp",
    "non_finite_tensors",
    "weights_problem",
]

#: The checkpoint's key that says which stage wrote it (:func:`stage_stamp`).
STAMP_KEY = "vlvae_stage"


def stage_stamp(stage: str, weights_tag: str, seed: int) -> dict:
    """What a checkpoint records of the fit that wrote it: stage name, weights tag, seed."""
    return {"stage": str(stage), "weights_tag": str(weights_tag), "seed": int(seed)}


class NonFiniteTraining(Exception):
    """Raised inside a fit when its loss or weights stop being finite; ``step`` (the step it happened
    at, counted from 1) and ``problem`` (what was not finite, as a clause) make the caller's message."""

    def __init__(self, step: int, problem: str):
        super().__init__(f"step {step}: {problem}")
        self.step, self.problem = step, problem


def weights_problem(names: list[str], saving: str | None = None) -> str:
    """The clause of :class:`NonFiniteTraining` for non-finite weights (``saving``: the file they were
    not written over)."""
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    kept = f", so they were not saved over {saving}" if saving else ""
    return f"the weights were not finite ({names[0]}{more}){kept}"


def non_finite_tensors(tree, prefix: str = "") -> list[str]:
    """The names (``a.b.c``) of the floating-point tensors in a nest of dicts and lists that hold a
    NaN or an infinity."""
    if isinstance(tree, torch.Tensor):
        finite = not tree.is_floating_point() or bool(torch.isfinite(tree).all())
        return [] if finite else [prefix or "tensor"]
    items = (
        tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list | tuple) else ()
    )
    return [name for k, v in items for name in non_finite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, written atomically beside its target and read with ``weights_only``.

    ``saved_step`` is the step of the last checkpoint this fit wrote (or found, if set by the caller).
    """

    def __init__(self, saved_step: int | None = None):
        super().__init__()
        self.saved_step = saved_step

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            step = int(checkpoint.get("global_step", 0))
            raise NonFiniteTraining(step, weights_problem(bad, Path(path).name))
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(path), buffer.getbuffer())
        self.saved_step = int(checkpoint.get("global_step", 0))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        # Always weights_only: a checkpoint may come from anywhere, and a pickle can run code.
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)


class StageGuard(L.Callback):
    """Stamps the checkpoints of a fit, stops it at the first non-finite training loss, and records an
    interruption (Ctrl-C or SIGTERM), which Lightning turns into the process's exit.

    Args:
        stamp: the fit's :func:`stage_stamp`.
    """

    def __init__(self, stamp: dict):
        self.stamp = dict(stamp)
        self.interrupted: BaseException | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[STAMP_KEY] = dict(self.stamp)

    def on_before_backward(self, trainer, pl_module, loss):
        finite = bool(torch.isfinite(loss.detach()).all())
        # Every rank stops together (one rank's loss alone may be non-finite).
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        terms = sorted(
            f"{k} = {float(v)}"
            for k, v in trainer.callback_metrics.items()
            if k.startswith("train/") and isinstance(v, torch.Tensor) and not bool(torch.isfinite(v).all())
        )
        value = float(loss.detach().float().mean()) if not finite else "not finite on another process"
        problem = f"the training loss was {value}" + (f" ({', '.join(terms)})" if terms else "")
        raise NonFiniteTraining(trainer.global_step + 1, problem)

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt | SIGTERMException):
            self.interrupted = exception


def _describe(stamp: dict) -> str:
    stage, tag = stamp.get("stage"), stamp.get("weights_tag")
    return f"the {tag}" if stage == tag else f"stage {stage} ({tag})"


def _guess_owner(state: dict) -> str:
    """What a checkpoint written before the stamp belongs to, from its weights' names."""
    prefixes = {str(k).split(".", 1)[0] for k in state}
    if "posterior" in prefixes:
        return "a text posterior (stage 2)"
    if "prior" in prefixes:
        return "the prior (stage 3)"
    if prefixes == {"model"}:
        return "stage 1 or a classifier"
    return "another model"


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _unpickler_detail(exc: BaseException) -> str:
    """The reason in torch's many-line refusal of a pickle under ``weights_only`` (or its first words)."""
    text = " ".join(str(exc).split())
    found = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Check the documentation|$)", text)
    return _one_line(found.group(1).rstrip(". ") if found else exc)


def read_checkpoint(path: Path, stamp: dict, module: torch.nn.Module) -> dict:
    """Open ``path`` (a ``last.ckpt`` to resume) without running code, and check it is this fit's.

    Args:
        path: the checkpoint.
        stamp: this fit's :func:`stage_stamp`.
        module: the fit's LightningModule (its weights' names and shapes must match the checkpoint's).

    Returns:
        The checkpoint.

    Raises:
        VLVAEError: one line naming the file and the fix, if it is unreadable, holds anything but
            tensors and plain data, or belongs to another stage, replicate, model or classifier.
    """
    path = Path(path)
    fix = f"delete {path} to start the stage again"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if detail.startswith("Unsupported global"):
            raise VLVAEError(
                f"{path} holds Python objects besides tensors and plain data ({detail}); it was not "
                f"opened, since opening it could run code. Only a checkpoint this stage wrote can be "
                f"resumed: {fix}"
            ) from exc
        raise VLVAEError(f"{path} is not a readable checkpoint ({detail}); {fix}") from exc
    except Exception as exc:  # a truncated or foreign file
        raise VLVAEError(f"{path} is not a readable checkpoint ({_one_line(exc)}); {fix}") from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise VLVAEError(f"{path} is not a Lightning checkpoint; {fix}")
    if "global_step" not in checkpoint:
        raise VLVAEError(f"{path} is not a Lightning checkpoint (it has no step); {fix}")
    ours = _describe(stamp)
    theirs = checkpoint.get(STAMP_KEY)
    if isinstance(theirs, dict):
        if (theirs.get("stage"), theirs.get("weights_tag")) != (stamp["stage"], stamp["weights_tag"]):
            raise VLVAEError(
                f"{path} is a checkpoint of {_describe(theirs)}, not of {ours}; only a stage's own "
                f"last.ckpt can be resumed: {fix}"
            )
        if theirs.get("seed") != stamp["seed"]:
            raise VLVAEError(
                f"{path} is a checkpoint of {ours} with seed {theirs.get('seed')}, not this fit's seed "
                f"{stamp['seed']} (another replicate's or run's); {fix}"
            )
    state, expected = checkpoint["state_dict"], module.state_dict()
    fits = state.keys() == expected.keys() and all(
        isinstance(state[k], torch.Tensor) and state[k].shape == v.shape for k, v in expected.items()
    )
    if not fits:
        owner = _describe(theirs) if isinstance(theirs, dict) else _guess_owner(state)
        raise VLVAEError(
            f"{path} holds the weights of {owner}, which do not fit {ours} as configured; "
            f"only a stage's own last.ckpt can be resumed: {fix}"
        )
    return checkpoint
