"""One writer per folder: an exclusive lock held while a command writes into a folder.

:func:`folder_lock` takes ``fcntl.flock(LOCK_EX | LOCK_NB)`` on ``FOLDER/.lock``
and writes the holder's process id, start time and command into it. A second
writer does not wait: it gets one line, "FOLDER is being written by process N
(vlvae ..., started HH:MM:SS); wait for it or choose another folder". The
kernel releases a flock when its process ends, however it ends, so the lock of
a killed process is free at once: the next command takes it over (and rewrites
the holder's details). The lock file is removed when the lock is released;
an acquirer checks that the file it locked is still the one at ``FOLDER/.lock``,
so a file removed in between is never mistaken for the lock.

Who locks what: data generation its data-set folder, every training command
its run folder (stages 1-3) or classifier folder, ``evaluate`` its run folder,
``reproduce`` its output folder (and, through the commands it calls, each
sub-folder in turn).

Re-entrancy. Two flocks on two descriptors of one file conflict even inside
one process, so a process that already holds a folder's lock (``reproduce``
or ``figure latent2d`` calling ``train vlvae`` on their own folders) must not
take it again. This module keeps a small registry of the locks this process
holds, keyed by the folder's resolved path, with a depth count: an inner
:func:`folder_lock` on a held folder only counts, and the outermost one
releases. The registry is this module's only state; :func:`holds_lock` reads it.

Distributed training: only the process of global rank 0 locks (and writes); every other process
of a distributed launch re-runs the command beside it and skips locking. :func:`global_rank` reads
the rank from the environment, before Lightning has set anything up: ``RANK`` (torchrun and other
launchers), ``SLURM_PROCID`` (each task of ``srun``), and ``LOCAL_RANK`` with ``NODE_RANK``
(the children of Lightning's own launcher, which re-run the command while their parent holds the lock).

On taking a lock (the outermost time), stale temporary files of earlier killed
writes (the ``.NAME.XXXXXXXX.tmp`` files of :func:`vlvae.io.atomic_path`)
are removed from the folder and the sub-folders named in ``tidy``: while the
lock is held, no other vlvae process can be writing them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from vlvae.errors import VLVAEError
from vlvae.io import remove_stale_temporaries

__all__ = ["LOCK_NAME", "RANK_VARIABLES", "folder_lock", "global_rank", "holds_lock", "lock_holder"]

LOCK_NAME = ".lock"

#: Locks held by this process: resolved folder -> [file descriptor, depth].
_HELD: dict[Path, list[int]] = {}


#: The environment variables that say a process's rank in a distributed launch (:func:`global_rank`).
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def _rank_variable(name: str) -> int:
    """The environment variable ``name`` as a rank: 0 when unset, empty or not a whole number."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else 0


def global_rank() -> int:
    """This process's global rank in a distributed launch, from its environment; 0 outside one.

    ``RANK`` where a launcher sets it (torchrun, ``torch.distributed`` launchers). Otherwise the larger
    of ``SLURM_PROCID`` (the task's rank under ``srun``) and the rank of Lightning's own launcher
    (``LOCAL_RANK`` of its children, on node ``NODE_RANK``): in a SLURM job whose name makes
    Lightning launch its own children (``bash``, ``interactive``), every child inherits the
    shell's ``SLURM_PROCID=0``, and its ``LOCAL_RANK`` says which it is. On node n > 0 of
    Lightning's own launcher without ``RANK`` the value is ``n + LOCAL_RANK``: not the exact rank
    (the environment does not say how many processes a node runs) but, as every rank here, 0 only
    for the process that writes.
    """
    if os.environ.get("RANK", "").strip().isdigit():
        return _rank_variable("RANK")
    launcher = _rank_variable("NODE_RANK") + _rank_variable("LOCAL_RANK")
    return max(_rank_variable("SLURM_PROCID"), launcher)


def _ddp_child() -> bool:
    """Whether this process is a non-zero rank of a distributed launch (it neither locks nor writes)."""
    return global_rank() != 0


def holds_lock(path: Path) -> bool:
    """Whether this process holds the lock of ``path`` or of a folder above it."""
    resolved = Path(path).resolve()
    return any(folder == resolved or folder in resolved.parents for folder in _HELD)


def lock_holder(folder: Path) -> dict | None:
    """The details (pid, started, command) written into ``folder``'s lock file, if readable."""
    try:
        info = json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _busy(folder: Path) -> VLVAEError:
    info = lock_holder(folder) or {}
    pid, command, started = info.get("pid"), info.get("command"), info.get("started")
    if pid is None:
        who = "another process"
    else:
        when = ""
        if isinstance(started, (int, float)):
            fmt = "%H:%M:%S" if time.time() - started < 20 * 3600 else "%Y-%m-%d %H:%M:%S"
            when = f", started {time.strftime(fmt, time.localtime(started))}"
        who = f"process {pid} ({command or 'vlvae'}{when})"
    return VLVAEError(f"{folder} is being written by {who}; wait for it or choose another folder")


def _acquire(folder: Path, command: str) -> int:
    path = folder / LOCK_NAME
    for _ in range(20):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise VLVAEError(
                f"cannot create the lock file {path} ({exc.strerror}); choose a writable folder"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(folder) from None
        except OSError as exc:  # e.g. a file system without locks
            os.close(fd)
            raise VLVAEError(f"cannot lock {path} ({exc.strerror}); choose a folder on a local disk") from exc
        try:
            current = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            current = False
        if current:
            details = json.dumps({"pid": os.getpid(), "started": time.time(), "command": command})
            os.ftruncate(fd, 0)
            os.pwrite(fd, (details + "\n").encode(), 0)
            return fd
        # The holder released (and removed) the file between our open and our flock: try again.
        os.close(fd)
    raise _busy(folder)


def _release(folder: Path, fd: int) -> None:
    path = folder / LOCK_NAME
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            path.unlink()  # removed while still locked, so no one can lock a file that is gone
    except OSError:
        pass
    fcntl.flock(fd, fcntl.LOCK_UN)  # also for children that inherited the descriptor
    os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: Path, command: str, tidy: Iterable[str] = ("",)) -> Iterator[Path]:
    """Hold the exclusive write lock of an existing ``folder`` for the block.

    Args:
        folder: the folder about to be written (created by :func:`vlvae.paths.check_output_dir`).
        command: what writes it (``vlvae train vlvae``), shown to a second writer.
        tidy: sub-folders (relative; ``""`` is the folder itself) whose stale temporary files of
            killed writes are removed once the lock is taken.

    Raises:
        VLVAEError: another process holds the lock (one line naming it), or the lock file
            cannot be made.
    """
    folder = Path(folder)
    if _ddp_child():
        yield folder
        return
    key = folder.resolve()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield folder
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(folder, command)
    _HELD[key] = [fd, 1]
    try:
        for sub in tidy:
            remove_stale_temporaries(folder / sub)
        yield folder
    finally:
        del _HELD[key]
        _release(folder, fd)
