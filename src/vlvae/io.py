"""The house's generic file I/O: atomic writes, JSON reading with clear errors, file checksums.

Every file the package writes (data sets, run folders, weights, figures, reports) goes to a
temporary name in the same folder and is then renamed (:func:`atomic_path`), so an interrupted
write never leaves a truncated file under a final name; the temporaries of killed writes are
removed by :func:`remove_stale_temporaries` while the folder's lock is held
(:func:`vlvae.locking.folder_lock`).

This module sits on the lowest floor: it imports nothing of the package but :mod:`vlvae.errors`.
What is specific to the data-set format lives in :mod:`vlvae.data.format`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from vlvae.errors import VLVAEError

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_save_npy",
    "open_npy_for_writing",
    "remove_stale_temporaries",
    "read_json",
    "sha256_file",
]

#: The names of :func:`_tmp_path`'s temporary files: ``.NAME.XXXXXXXX.tmp`` (mkstemp's 8 characters).
_TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _tmp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    Whatever writes the temporary file (json, numpy, safetensors, matplotlib), a
    failure leaves ``path`` as it was and removes the temporary file.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write text to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: Path, obj) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(obj, indent=1))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array as .npy through a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())


def open_npy_for_writing(path: Path, shape, dtype=np.uint8):
    """A writable memory map at a temporary name; call ``commit()`` on the result to rename it.

    Returns:
        (array, commit): fill ``array``, then ``commit()`` flushes and renames it to ``path``.
    """
    path = Path(path)
    tmp = _tmp_path(path)
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))

    def commit():
        array.flush()
        os.replace(tmp, path)

    return array, commit


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
