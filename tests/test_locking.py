"""One writer per folder (vlvae.locking): a second writer is refused, a dead holder's lock is taken over.

``holder_of`` (tests/conftest.py) starts a child process that holds a folder's lock.
"""

import os

import pytest

from vlvae.errors import VLVAEError
from vlvae.locking import LOCK_NAME, RANK_VARIABLES, folder_lock, global_rank, holds_lock, lock_holder


def test_second_writer_gets_one_line_naming_the_holder(tmp_path, holder_of):
    holder = holder_of(tmp_path, "vlvae data two-objects")
    with pytest.raises(VLVAEError) as exc:
        with folder_lock(tmp_path, "vlvae data two-objects"):
            pytest.fail("took a lock that another process holds")
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(
        f"{tmp_path} is being written by process {holder.pid} (vlvae data two-objects, started "
    )
    assert message.endswith("); wait for it or choose another folder")


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path, holder_of):
    holder = holder_of(tmp_path)
    holder.kill()  # SIGKILL: no clean-up ran, the lock file is still there with the dead pid
    assert (tmp_path / LOCK_NAME).exists()
    assert lock_holder(tmp_path)["pid"] == holder.pid
    with folder_lock(tmp_path, "vlvae evaluate"):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
        assert lock_holder(tmp_path)["command"] == "vlvae evaluate"
    assert not (tmp_path / LOCK_NAME).exists(), "the lock file is removed on release"


def test_lock_is_reentrant_within_a_process_and_released_by_the_outermost(tmp_path, holder_of):
    inner_folder = tmp_path / "run"
    inner_folder.mkdir()
    with folder_lock(tmp_path, "vlvae reproduce"):
        with folder_lock(tmp_path, "vlvae train vlvae"):  # the same folder again: no conflict with itself
            with folder_lock(inner_folder, "vlvae train vlvae"):
                assert holds_lock(inner_folder / "vlvae") and holds_lock(tmp_path)
        assert (tmp_path / LOCK_NAME).exists(), "an inner exit must not release the outer lock"
        assert not (inner_folder / LOCK_NAME).exists()
    assert not holds_lock(tmp_path) and not (tmp_path / LOCK_NAME).exists()
    holder_of(tmp_path).kill()  # another process can take it now


def test_lock_is_released_when_the_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path, "vlvae train vlvae"):
            raise RuntimeError("boom")
    assert not holds_lock(tmp_path) and sorted(os.listdir(tmp_path)) == []


@pytest.fixture
def no_rank(monkeypatch):
    """No launcher's rank in the environment (as outside a distributed launch)."""
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SLURM_JOB_NAME", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env, rank",
    [
        ({}, 0),
        ({"RANK": "0", "LOCAL_RANK": "0"}, 0),
        ({"RANK": "5", "LOCAL_RANK": "1"}, 5),  # torchrun: RANK is the global rank
        ({"RANK": "0", "LOCAL_RANK": "0", "SLURM_PROCID": "3"}, 0),  # torchrun inside a SLURM task
        ({"SLURM_PROCID": "0"}, 0),  # the batch script, or task 0 of srun
        ({"SLURM_PROCID": "6"}, 6),  # srun's task 6 (on any node; srun sets no LOCAL_RANK)
        ({"SLURM_PROCID": "0", "LOCAL_RANK": "1"}, 1),  # a child of Lightning's launcher in a SLURM shell
        ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, 0),  # Lightning's launcher, the parent after the launch
        ({"LOCAL_RANK": "3"}, 3),
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, 1),  # node 1 of Lightning's launcher: not rank 0
        ({"RANK": ""}, 0),
    ],
)
def test_the_global_rank_is_read_from_every_launchers_variables(no_rank, env, rank):
    for name, value in env.items():
        no_rank.setenv(name, value)
    assert global_rank() == rank


@pytest.mark.parametrize("variable", ["RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"])
def test_only_global_rank_zero_locks(tmp_path, holder_of, no_rank, variable):
    """Every other process of a distributed launch (torchrun's RANK, srun's SLURM_PROCID, Lightning's
    LOCAL_RANK and NODE_RANK) re-runs the command beside rank 0, which holds the lock: it skips it."""
    holder_of(tmp_path)
    no_rank.setenv(variable, "2")
    with folder_lock(tmp_path, "vlvae train vlvae"):
        assert not holds_lock(tmp_path)
    no_rank.setenv(variable, "0")
    with pytest.raises(VLVAEError, match="is being written by process"):
        with folder_lock(tmp_path, "vlvae train vlvae"):
            pass


def test_ddp_children_do_not_lock(tmp_path, holder_of, no_rank):
    """Lightning's DDP children re-run the command while their parent holds the lock."""
    monkeypatch = no_rank
    holder_of(tmp_path)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with folder_lock(tmp_path, "vlvae train vlvae"):
        pass
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(VLVAEError, match="is being written by process"):
        with folder_lock(tmp_path, "vlvae train vlvae"):
            pass


def test_taking_the_lock_removes_stale_temporaries_only(tmp_path):
    (tmp_path / "figures").mkdir()
    stale = [tmp_path / ".metrics.json.k2x_9abc.tmp", tmp_path / "figures" / ".fig3.png.abcdefgh.tmp"]
    kept = [
        tmp_path / "metrics.json",
        tmp_path / "notes.tmp",
        tmp_path / ".hidden",
        tmp_path / ".x.tmp",
        tmp_path / "figures" / "fig3.png",
    ]
    for p in stale + kept:
        p.write_text("x")
    with folder_lock(tmp_path, "vlvae evaluate", tidy=("", "figures")):
        assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
