"""One check of every output path, shared by all commands, before anything is written.

:func:`check_output_dir` (a folder a command writes into: a data set, a run, a
classifier, ``reproduce``'s output) and :func:`check_output_file` (``vlvae sample
--out``, ``vlvae data preview --out``) turn every way an output path can be
unusable into one :class:`~vlvae.errors.VLVAEError` line that names the path and
the fix: it exists as the wrong kind, it lies on a system pseudo-filesystem
(``/proc``, ``/sys``, ``/dev`` but not ``/dev/shm``), it cannot be created (e.g. a parent is a
regular file), it is not writable (read-only or immutable), it is empty (``--out ""``), one of its
names is longer than a file system allows (255 bytes), or a symbolic link on its way loops. Writability is
tried, not inferred from permission bits (root ignores those): a small probe
file is created and removed.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from vlvae.errors import VLVAEError

__all__ = [
    "PSEUDO_FILESYSTEMS",
    "MAX_NAME_BYTES",
    "check_path_usable",
    "check_output_dir",
    "check_output_file",
]

#: Mount points of kernel pseudo-filesystems: nothing a command makes belongs there.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
#: Real (memory-backed) file systems below them, which may hold output.
_ALLOWED_BELOW = (Path("/dev/shm"),)

#: Prefix of the probe files; deliberately unlike the temporary files of
#: :func:`vlvae.io.atomic_path`, which a rerun removes as stale.
_PROBE_PREFIX = ".vlvae-write-probe-"


def nonempty_path(raw: str) -> Path:
    """Parse a command-line path option; an empty one (``--out ""``, which :class:`~pathlib.Path`
    would read as the current folder) is refused (a ValueError, which the command line reports as
    one line naming the option)."""
    if raw == "":
        raise ValueError("is empty; give a path (. for the current folder)")
    return Path(raw)


#: The typer settings of every path option (``typer.Option(..., **PATH_OPTION)``): parsed by
#: :func:`nonempty_path`, shown as PATH in ``--help``.
PATH_OPTION = {"parser": nonempty_path, "metavar": "PATH"}

#: The longest name (one path component) Linux file systems accept, in bytes.
MAX_NAME_BYTES = 255


def check_path_usable(path, what: str, option: str = "--out") -> Path:
    """Refuse a path no command can use, writing nothing: an empty one (``--out ""`` would be the
    current folder), a name longer than :data:`MAX_NAME_BYTES`, or a symbolic link on its way that
    loops.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        VLVAEError: one line naming the path, the problem and the fix.
    """
    if str(path) == "":
        raise VLVAEError(f"{option} is empty; give the {what} a name (use . for the current folder)")
    path = Path(path)
    for name in path.parts:
        size = len(os.fsencode(name))
        if size > MAX_NAME_BYTES:
            raise VLVAEError(
                f"{what} {path}: the name {name[:40]}... is {size} bytes, more than the "
                f"{MAX_NAME_BYTES} a file name may have; choose a shorter {option}"
            )
    prefix = Path(os.path.abspath(path))
    for above in (*reversed(prefix.parents), prefix):
        try:
            os.stat(above)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise VLVAEError(
                    f"{what} {path}: the symbolic link {above} loops (links back to itself); "
                    f"remove or fix it, or choose another {option}"
                ) from exc
            if exc.errno == errno.ENAMETOOLONG:
                raise VLVAEError(
                    f"{what} {path} is longer than this system allows; choose a shorter {option}"
                ) from exc
            break  # missing (to be created) or below a file: the other checks name it
    return path


def _pseudo_root(path: Path) -> Path | None:
    """The pseudo-filesystem ``path`` lies on (symbolic links followed), or None."""
    resolved = Path(os.path.abspath(path)).resolve(strict=False)
    for candidate in {Path(os.path.abspath(path)), resolved}:
        if any(candidate == ok or ok in candidate.parents for ok in _ALLOWED_BELOW):
            continue
        for root in PSEUDO_FILESYSTEMS:
            if candidate == root or root in candidate.parents:
                return root
    return None


def _file_above(path: Path) -> Path | None:
    """The nearest existing folder-to-be above ``path`` that is not a folder (a regular file), if any."""
    for parent in Path(os.path.abspath(path)).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__


def _probe(folder: Path) -> None:
    """Create and remove a small file in ``folder``; OSError if that is impossible."""
    fd, name = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
        Path(name).unlink(missing_ok=True)


def check_output_dir(
    path: Path, what: str = "output folder", option: str = "--out", fix: str | None = None
) -> Path:
    """Make sure ``path`` is (or can become) a writable folder; create it.

    Args:
        path: the folder a command is about to write into.
        what: what it is, for the message (``run folder``, ``data-set folder``, ...).
        option: the command-line option that names it (``--out``, ``--run``).
        fix: what to do about it (default: choose a writable folder for ``option``).

    Returns:
        ``path`` as a :class:`~pathlib.Path` (now an existing, writable folder).

    Raises:
        VLVAEError: one line naming the path and the fix.
    """
    path = check_path_usable(path, what, option)
    fix = fix or f"choose a writable folder for {option}"
    pseudo = _pseudo_root(path)
    if pseudo is not None:
        raise VLVAEError(f"{what} {path} lies under {pseudo}, a system pseudo-filesystem, not a disk; {fix}")
    if path.exists() and not path.is_dir():
        raise VLVAEError(f"{what} {path} exists and is a file, not a folder; {fix} (or move the file away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _file_above(path)
        if blocker is not None:
            raise VLVAEError(
                f"cannot create {what} {path}: {blocker} is a file, not a folder; {fix}"
            ) from exc
        raise VLVAEError(f"cannot create {what} {path} ({_reason(exc)}); {fix}") from exc
    try:
        _probe(path)
    except OSError as exc:
        raise VLVAEError(f"cannot write to {what} {path} ({_reason(exc)}); {fix}") from exc
    return path


def check_output_file(path: Path, what: str = "output file", option: str = "--out") -> Path:
    """Make sure a file can be written at ``path``, writing nothing: its folder need not exist yet
    (the writer creates it), but the nearest existing folder above it must be writable.

    Raises:
        VLVAEError: ``path`` is a folder, lies on a pseudo-filesystem, something on its way is a
            file, the nearest existing folder cannot be written to, or :func:`check_path_usable`
            refuses it.
    """
    path = check_path_usable(path, what, option)
    pseudo = _pseudo_root(path)
    if pseudo is not None:
        raise VLVAEError(
            f"{what} {path} lies under {pseudo}, a system pseudo-filesystem, not a disk; "
            f"choose a file on a disk for {option}"
        )
    if path.is_dir():
        raise VLVAEError(f"{what} {path} is a folder; give a file name for {option}, e.g. {path / 'out.png'}")
    existing = path.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VLVAEError(
            f"cannot write {what} {path}: {existing} is a file, not a folder; "
            f"choose another path for {option}"
        )
    try:
        _probe(existing)
    except OSError as exc:
        raise VLVAEError(
            f"cannot write {what} {path} ({_reason(exc)}); choose a writable path for {option}"
        ) from exc
    return path
