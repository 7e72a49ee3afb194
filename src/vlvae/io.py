"""The house's generic file I/O: atomic writes, JSON reading with clear errors, file checksums.

Every file the package writes (data sets, run folders, weights, figures, reports) goes to a
temporary name in the same folder and is then renamed (:func:`atomic_path`), so an interrupted
write never leaves a truncated file under a final name; the temporaries of killed writes are
removed by :func:`remove_stale_temporaries` while the folder's lock is held
(:func:`vlvae.locking.folder_lock`).

A write that runs out of space (``ENOSPC``, a quota, or a writer's own error on a disk left full)
raises :class:`vlvae.errors.DiskFullError`: one line naming the folder, the space free and, where
known, the space the file needs; the final name keeps its previous file.

This module sits on the lowest floor: it imports nothing of the package but :mod:`vlvae.errors`.
What is specific to the data-set format lives in :mod:`vlvae.data.format`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from vlvae.errors import DiskFullError, VLVAEError

__all__ = [
    "atomic_path",
    "as_disk_full",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save_npy",
    "open_npy_for_writing",
    "remove_stale_temporaries",
    "read_json",
    "sha256_file",
    "canonical_json",
    "canonical_sha256",
]

#: The names of :func:`_tmp_path`'s temporary files: ``.NAME.XXXXXXXX.tmp`` (mkstemp's 8 characters).
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


#: The errnos of a write that found no space: the disk is full, or the user's quota is spent.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: How writers that do not keep the errno (safetensors, torch's zip writer) word a full disk.
_NO_SPACE_WORDS = ("no space left on device", "os error 28", "disk quota exceeded", "os error 122")
#: A writer's error without an errno is put down to a full disk only when less than this is left.
_NEARLY_FULL_BYTES = 1 << 20


def _free_bytes(folder: Path) -> int | None:
    """The bytes this process may still write in ``folder``'s file system (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    # root may write into the blocks reserved for it; everyone else may not.
    blocks = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _is_disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space in ``folder``."""
    if isinstance(exc, VLVAEError) or not isinstance(exc, Exception):
        return False
    if getattr(exc, "errno", None) in _NO_SPACE_ERRNOS:
        return True
    text = str(exc).lower()
    if any(words in text for words in _NO_SPACE_WORDS):
        return True
    # numpy ("N requested and M written") and torch ("unexpected pos") lose the errno: a write
    # error on a file system left (nearly) full is put down to the space.
    free = _free_bytes(folder)
    return isinstance(exc, (OSError, RuntimeError)) and free is not None and free < _NEARLY_FULL_BYTES


def _disk_full_error(path: Path, needed: int | None, written: int | None) -> DiskFullError:
    """The one line of a write of ``path`` that ran out of space."""
    folder = path.parent.resolve()
    free = _free_bytes(folder)
    if needed is not None:
        size = f"it needs {_megabytes(needed)}"
    elif written:
        size = f"it needs more than the {_megabytes(written)} written"
    else:
        size = "it did not fit"
    left = f", {_megabytes(free)} is free" if free is not None else ""
    return DiskFullError(
        f"no space left in {folder} to write {path.name} ({size}{left}); free space on that disk "
        "or write to a folder on another one, then run the command again"
    )


def as_disk_full(exc: BaseException, folder: Path, what: str = "its files") -> DiskFullError | None:
    """The :class:`~vlvae.errors.DiskFullError` of a write into ``folder`` (by a writer outside this
    module: a logger, a library) that failed with ``exc`` for want of space; None if it failed
    otherwise."""
    if isinstance(exc, DiskFullError):
        return exc
    if not _is_disk_full(exc, Path(folder)):
        return None
    free = _free_bytes(Path(folder))
    left = f" ({_megabytes(free)} is free)" if free is not None else ""
    return DiskFullError(
        f"no space left in {Path(folder).resolve()} to write {what}{left}; free space on that disk "
        "or write to a folder on another one, then run the command again"
    )


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _tmp_path(path: Path, needed: int | None = None) -> Path:
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if _is_disk_full(exc, path.parent):
            raise _disk_full_error(path, needed, None) from exc
        raise
    os.close(fd)
    # mkstemp makes the file private; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: Path, needed: int | None = None):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Whatever writes the temporary file (json, numpy, safetensors, matplotlib), a
    failure leaves ``path`` as it was and removes the temporary file. A failure for want of
    space raises :class:`~vlvae.errors.DiskFullError` instead (``needed``: the file's size in
    bytes, if the caller knows it, for the message).
    """
    path = Path(path)
    tmp = _tmp_path(path, needed)
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if _is_disk_full(exc, path.parent):
            raise _disk_full_error(path, needed, _size_of(tmp)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files that killed writes of :func:`atomic_path` left in ``folder``.

    Only plain files named like :func:`_tmp_path`'s (``.NAME.XXXXXXXX.tmp``) are removed, and
    only directly in ``folder``. Call it only while holding the folder's lock
    (:func:`vlvae.locking.folder_lock` does), so that no live write's file is taken.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # missing or unreadable: nothing of ours to tidy
        return removed
    for entry in entries:
        if _TMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Write bytes to ``path`` through a temporary file and a rename (flushed to the disk)."""
    with atomic_path(path, memoryview(data).nbytes) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` through a temporary file and a rename."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(obj, indent=1))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array as .npy through a temporary file and a rename."""
    array = np.asanyarray(array)
    with atomic_path(path, array.nbytes + 128) as tmp, open(tmp, "wb") as f:  # 128: the .npy header
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def open_npy_for_writing(path: Path, shape, dtype=np.uint8):
    """A writable memory map at a temporary name; call ``commit()`` on the result to rename it.

    Returns:
        (array, commit): fill ``array``, then ``commit()`` flushes and renames it to ``path``.
    """
    path = Path(path)
    needed = int(np.prod(shape)) * np.dtype(dtype).itemsize + 128  # 128: the .npy header
    tmp = _tmp_path(path, needed)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        # The map's file is sparse: writing it on a full disk would kill the process (SIGBUS), so
        # its blocks are reserved now, where a full disk is an error.
        _reserve(tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(exc, path.parent):
            raise _disk_full_error(path, needed, None) from exc
        raise

    def commit():
        array.flush()
        os.replace(tmp, path)

    return array, commit


def _reserve(path: Path) -> None:
    """Allocate every block of ``path`` (where the file system can; elsewhere nothing happens)."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno in _NO_SPACE_ERRNOS:
            raise
        # EOPNOTSUPP, EINVAL: the file system cannot reserve; the map is written as before.
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj) -> bytes:
    """``obj`` as JSON with sorted keys and no spaces: the same bytes for the same content, whatever
    order its dicts were built in."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def canonical_sha256(obj) -> str:
    """Hex sha256 of :func:`canonical_json` of ``obj``: the identity of a JSON record (a vocabulary, a
    data set's manifest)."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def read_json(path: Path, what: str):
    """Load a JSON file, or raise a VLVAEError that names it and the fix."""
    path = Path(path)
    if not path.is_file():
        raise VLVAEError(f"{path} is missing; {what}")
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VLVAEError(f"{path} is corrupt ({exc}); {what}") from exc
