"""A full disk loses nothing (issue 20, item 2).

Every file the package writes goes through a temporary file beside it and a rename
(:func:`vlvae.io.atomic_path`), Lightning's checkpoints included (:class:`AtomicCheckpointIO`); a write
that runs out of space is one line naming the folder and, where known, the space the file needs,
and the final name keeps its previous file. The errors are injected (``OSError(ENOSPC)`` from the
write) and, where this machine lets us mount one, real: a small tmpfs.
"""

import contextlib
import errno
import os
import subprocess

import lightning as L
import numpy as np
import pytest
import torch

import vlvae.io as vlvae_io
from vlvae.errors import DiskFullError
from vlvae.io import (
    atomic_save_npy,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    open_npy_for_writing,
)
from vlvae.runs import save_weights
from vlvae.training.checkpoints import AtomicCheckpointIO


def one_error_line(code, err, *fragments):
    """Exit code 2 and exactly one printed line, ``error: ...``, holding every fragment."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def temporaries(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


class _HalfWriter:
    """A file whose ``write`` writes half of what it is given, then fails as a full disk does."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(bytes(memoryview(data).cast("B")[: len(memoryview(data).cast("B")) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


@pytest.fixture
def disk_fills(monkeypatch):
    """``disk_fills(select)``: from then on, writes by vlvae.io to a temporary file for which
    ``select(final_name)`` is true write half and fail with ENOSPC. Returns the list of the final
    names whose writes failed."""
    failed = []

    def arm(select):
        real_open = open

        def fake_open(path, mode="r", *args, **kwargs):
            f = real_open(path, mode, *args, **kwargs)
            name = os.path.basename(path)  # .FINAL.XXXXXXXX.tmp
            final = name[1:].rsplit(".", 2)[0] if name.endswith(".tmp") else None
            if "w" in mode and final is not None and select(final):
                failed.append(final)
                return _HalfWriter(f)
            return f

        monkeypatch.setattr(vlvae_io, "open", fake_open, raising=False)
        return failed

    return arm


# ----------------------------------------------------------------------------- the writers


@pytest.mark.parametrize(
    "write, size",
    [
        (lambda p: atomic_write_text(p, "x" * 5000), "5.0 kB"),
        (lambda p: atomic_write_json(p, {"k": "v" * 300_000}), "0.3 MB"),
        (lambda p: atomic_write_bytes(p, b"\0" * 2_000_000), "2.0 MB"),
        (lambda p: atomic_save_npy(p, np.zeros((1000, 1000), np.uint8)), "1.0 MB"),
    ],
)
def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, disk_fills, write, size):
    target = tmp_path / "out" / "file"
    target.parent.mkdir()
    target.write_text("previous")
    failed = disk_fills(lambda name: name == "file")
    with pytest.raises(DiskFullError) as exc:
        write(target)
    assert failed == ["file"]
    message = str(exc.value)
    assert "\n" not in message
    assert f"no space left in {target.parent.resolve()} to write file (it needs {size}" in message
    assert "is free" in message and "another one" in message
    assert target.read_text() == "previous" and temporaries(tmp_path) == []


def test_an_errno_lost_by_the_writer_is_still_a_full_disk(tmp_path, monkeypatch):
    """torch's zip writer and numpy's ``tofile`` drop the errno; a failed write on a disk left full is
    still reported as one."""
    monkeypatch.setattr(vlvae_io, "_free_bytes", lambda folder: 4096)
    with pytest.raises(DiskFullError, match="it needs more than the .* written, 4.1 kB is free"):
        with vlvae_io.atomic_path(tmp_path / "x.pt") as tmp:
            tmp.write_bytes(b"\0" * 300_000)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    # The same error with room to spare is not a full disk, and goes on as it was.
    monkeypatch.setattr(vlvae_io, "_free_bytes", lambda folder: 10**10)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        with vlvae_io.atomic_path(tmp_path / "x.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    assert list(tmp_path.iterdir()) == []


def test_a_reserved_map_fails_now_not_later(tmp_path, monkeypatch):
    """The memory map of open_npy_for_writing reserves its blocks: a full disk is an error at once,
    not a SIGBUS while it is filled."""

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DiskFullError, match=r"to write images\.npy \(it needs 3\.0 MB"):
        open_npy_for_writing(tmp_path / "images.npy", (1000, 1000, 3))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, disk_fills):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 2, "state_dict": {"w": torch.ones(3)}}, path)
    disk_fills(lambda name: name == "last.ckpt")
    with pytest.raises(DiskFullError, match="to write last.ckpt"):
        io.save_checkpoint({"global_step": 4, "state_dict": {"w": torch.zeros(300_000)}}, path)
    assert io.saved_step == 2
    assert io.load_checkpoint(path)["global_step"] == 2 and temporaries(tmp_path) == []


# ----------------------------------------------------------------------------- training


def test_training_on_a_full_disk_stops_in_one_line_and_resumes(vlvae, data, tmp_path, disk_fills):
    run = tmp_path / "run"
    ckpt = run / "stage1" / "last.ckpt"
    writes = []

    def second_checkpoint(name):  # the tiny preset checkpoints every 2 steps: steps 2, 4, 6
        writes.append(name) if name == "last.ckpt" else None
        return name == "last.ckpt" and len(writes) == 2

    disk_fills(second_checkpoint)
    code, _, err = vlvae("train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress")
    one_error_line(
        code,
        err,
        f"no space left in {ckpt.parent.resolve()} to write last.ckpt (it needs",
        f"with --resume: {ckpt} of step 2 is intact",
    )
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["global_step"] == 2 and temporaries(run) == []
    assert (
        not (run / "stage1" / "metrics.json").exists()
        and not (run / "stage1" / "weights.safetensors").exists()
    )

    code, stdout, err = vlvae(
        "train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress", "--resume"
    )
    assert code == 0, err
    assert "VLVAE: 6 steps" in stdout and (run / "stage1" / "metrics.json").is_file()


# ----------------------------------------------------------------------------- a real small disk


@contextlib.contextmanager
def small_tmpfs(folder, megabytes):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
    except OSError as exc:
        pytest.skip(f"mount is not available here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_real_full_tmpfs_writers(tmp_path):
    with small_tmpfs(tmp_path / "disk", 2) as disk:
        (disk / "weights.safetensors").write_text("previous")
        (disk / "last.ckpt").write_text("previous")
        module = torch.nn.Linear(1000, 1000)  # 4 MB of weights
        with pytest.raises(
            DiskFullError, match=f"no space left in {disk.resolve()} to write weights.safetensors"
        ):
            save_weights(module, disk / "weights.safetensors", "vlvae")
        with pytest.raises(DiskFullError, match=r"to write last.ckpt \(it needs 4\.0 MB"):
            AtomicCheckpointIO().save_checkpoint(
                {"global_step": 1, "state_dict": module.state_dict()}, disk / "last.ckpt"
            )
        with pytest.raises(DiskFullError, match=r"to write images.npy \(it needs 4\.0 MB"):
            atomic_save_npy(disk / "images.npy", np.zeros(4_000_000, np.uint8))
        with pytest.raises(DiskFullError, match=r"to write map.npy \(it needs 4\.0 MB"):
            open_npy_for_writing(disk / "map.npy", (4_000_000,))
        assert (disk / "weights.safetensors").read_text() == "previous"
        assert (disk / "last.ckpt").read_text() == "previous"
        assert sorted(p.name for p in disk.iterdir()) == ["last.ckpt", "weights.safetensors"]


def test_real_full_tmpfs_training_keeps_its_last_checkpoint(vlvae, data, tmp_path, monkeypatch):
    """Stage 1 on a 40 MB tmpfs that a ballast file fills after the first checkpoint (step 2): the
    fit stops in one line, and the checkpoint of step 2 still loads."""

    class Ballast(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                fd = os.open(disk / "ballast", os.O_CREAT | os.O_WRONLY)
                try:
                    st = os.statvfs(disk)
                    os.posix_fallocate(fd, 0, st.f_bfree * st.f_frsize - 200_000)
                finally:
                    os.close(fd)

    real_trainer = L.Trainer

    def trainer_with_ballast(*args, **kwargs):
        kwargs["callbacks"] = list(kwargs.get("callbacks", [])) + [Ballast()]
        return real_trainer(*args, **kwargs)

    with small_tmpfs(tmp_path / "disk", 40) as disk:
        run = disk / "run"
        monkeypatch.setattr(L, "Trainer", trainer_with_ballast)
        code, _, err = vlvae(
            "train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress"
        )
        monkeypatch.setattr(L, "Trainer", real_trainer)
        one_error_line(
            code, err, f"no space left in {(run / 'stage1').resolve()}", "with --resume", "step 2 is intact"
        )
        assert torch.load(run / "stage1" / "last.ckpt", weights_only=True)["global_step"] == 2
        assert temporaries(run) == [] and not (run / "stage1" / "metrics.json").exists()
