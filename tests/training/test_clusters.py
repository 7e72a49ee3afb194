"""Clusters (issue 21 items 3-4): a distributed fit splits the global batch over its processes, only the
process of global rank 0 writes, and a batch that does not split is refused before anything is written.

The distributed fit is a real one: Lightning's ``ddp`` strategy with two CPU processes (gloo), launched
by a small script run as a child process (Lightning's launcher starts the second process by running
the same script again). Its task is a linear model without batch norm: batch norm is synchronised
over the processes only on GPUs (torch's SyncBatchNorm refuses CPU tensors), so on the CPU a model
with batch norm normalises each process's slice, and its numbers differ from one process's.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from vlvae.config import apply_overrides, preset
from vlvae.errors import VLVAEError
from vlvae.training import run as training

#: Run as ``python SCRIPT STAGE_DIR RECORD_DIR DATA DEVICES``: fits a linear task through fit_stage
#: and writes, per process, RECORD_DIR/rank<R>.json: each step's loss and examples, and every write
#: (seen by an audit hook) under STAGE_DIR's parent.
_SCRIPT = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path

    stage_dir, record_dir, data, devices = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    root = os.path.realpath(stage_dir.parent)
    writes = []
    WRITING = ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "os.truncate", "os.symlink")

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else (
                isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            paths = [path] if writing else []
        elif event in WRITING:
            paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for p in paths:
            if isinstance(p, int):
                continue
            p = os.fsdecode(os.fspath(p))
            if os.path.realpath(p).startswith(root):
                writes.append(f"{event} {p}")

    sys.addaudithook(audit)

    import torch
    from vlvae.config import apply_overrides, preset
    from vlvae.data.dataset import images_to_float
    from vlvae.training.run import fit_stage
    from vlvae.training.tasks import StageTask

    class LinearTask(StageTask):
        """A linear map of the image to the mean of its text's word indices (no batch norm, no noise)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            torch.manual_seed(0)
            self.net = torch.nn.Linear(3 * 16 * 16, 1)
            self.steps_seen = []

        def trainable(self):
            return self.net

        def _loss(self, batch):
            x = images_to_float(batch["image"]).flatten(1)
            return (self.net(x)[:, 0] - batch["text"].float().mean(1)).pow(2).mean()

        def training_step(self, batch, batch_idx):
            loss = self._loss(batch)
            self.steps_seen.append([self.global_step, float(loss), batch["index"].tolist()])
            return loss

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self._loss(batch), sync_dist=True)

    cfg = apply_overrides(preset("tiny"), [
        "accelerator=cpu", f"devices={devices}", "strategy=ddp" if devices > 1 else "strategy=auto",
        "stage1.steps=4", "stage1.batch_size=8", "stage1.val_every=2", "stage1.checkpoint_every=2",
        "stage1.val_examples=8", "stage1.lr_schedule=exponential",
    ])
    task = LinearTask(cfg.model, cfg.stage1, data, cfg.seed)
    metrics = fit_stage(task, stage_dir, cfg.stage1, cfg, "linear", progress=False)
    rank = task.global_rank
    record_dir.mkdir(parents=True, exist_ok=True)
    (record_dir / f"rank{rank}.json").write_text(json.dumps({
        "steps": task.steps_seen, "writes": writes, "world_size": metrics["world_size"],
    }))
''')


def _fit(tmp_path, data, name: str, devices: int) -> dict:
    """Run the script with ``devices`` CPU processes: {rank: its record}, and the stage folder."""
    script = tmp_path / "fit_linear.py"
    script.write_text(_SCRIPT)
    stage, records = tmp_path / name / "run" / "stage", tmp_path / name / "records"
    env = {
        k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
    }
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(script), str(stage), str(records), str(data), str(devices)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    if devices > 1 and result.returncode != 0 and "gloo" in result.stderr.lower():
        pytest.skip(f"no 2-process gloo run here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = {int(p.stem[4:]): json.loads(p.read_text()) for p in records.glob("rank*.json")}
    return found, stage


def test_two_processes_with_global_batch_b_repeat_one_process_and_only_rank_0_writes(data, tmp_path):
    one, one_stage = _fit(tmp_path, data, "one", 1)
    two, two_stage = _fit(tmp_path, data, "two", 2)
    assert sorted(one) == [0] and sorted(two) == [0, 1], "each process records its steps"
    assert one[0]["world_size"] == 1 and two[0]["world_size"] == 2 == two[1]["world_size"]
    single = {step: (loss, examples) for step, loss, examples in one[0]["steps"]}
    ranks = [{step: (loss, examples) for step, loss, examples in two[r]["steps"]} for r in (0, 1)]
    assert sorted(single) == sorted(ranks[0]) == sorted(ranks[1]) == [0, 1, 2, 3]
    for step, (loss, examples) in single.items():
        # Step t's global batch of 8 is the same 8 examples: rank r takes the r-th half.
        assert ranks[0][step][1] + ranks[1][step][1] == examples, step
        assert len(ranks[0][step][1]) == 4
        # Each process's loss is the mean over its half: their mean is the loss of the global batch.
        assert (ranks[0][step][0] + ranks[1][step][0]) / 2 == pytest.approx(loss, rel=1e-5, abs=1e-6), step
    weights_one = load_file(str(one_stage / "weights.safetensors"))
    weights_two = load_file(str(two_stage / "weights.safetensors"))
    for key, value in weights_one.items():
        torch.testing.assert_close(weights_two[key], value, rtol=1e-5, atol=1e-6)
    metrics = json.loads((two_stage / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["hardware"]["batch_per_process"] == 4
    # Only rank 0 wrote (the stage folder, its checkpoints, logs, weights and metrics); rank 1 nothing.
    assert two[1]["writes"] == [], two[1]["writes"]
    written = " ".join(two[0]["writes"])
    assert "weights.safetensors" in written and "metrics.json" in written and "last.ckpt" in written


def test_a_batch_that_does_not_split_is_refused_before_anything_is_written(vlvae, data, tmp_path):
    out = tmp_path / "run"
    code, _, err = vlvae(
        "train", "vlvae", "--data", data, "--out", out, "--preset", "tiny", "--no-progress",
        "--set", "accelerator=cpu", "--set", "devices=3",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "'stage1.batch_size' is the global batch, split over 3 processes" in err
    assert "but 8 is not a multiple of 3; set stage1.batch_size to a multiple of 3 (e.g. 6 or 9)" in err
    assert not out.exists()


def test_devices_auto_is_counted_by_lightning_before_anything_is_written(data, tmp_path):
    """devices=auto: only a Trainer knows the number; the world is resolved before the first write."""
    cfg = apply_overrides(preset("tiny"), ["accelerator=cpu", "devices=auto", "num_nodes=3"])
    assert training.world_size(cfg) == 3  # one CPU device per node, three nodes
    out = tmp_path / "run"
    with pytest.raises(VLVAEError) as exc:
        training.fit_vlvae(data, out, cfg, progress=False)
    assert "split over 3 processes (devices=auto (1 found) x num_nodes=3), but 8 is not a multiple" in str(
        exc.value
    )
    assert not out.exists()
    fine = apply_overrides(cfg, ["num_nodes=1"])
    assert training.check_world(fine) == 1


def test_a_judge_is_refused_in_a_non_zero_rank_before_it_writes(monkeypatch, tmp_path):
    """A judge fits in one process: in process 3 of an srun launch it would fit (and write) a copy."""
    monkeypatch.setenv("SLURM_PROCID", "3")
    with pytest.raises(VLVAEError, match=r"trains in one process, but this is process 3 .*SLURM_PROCID=3"):
        training.check_single_process(tmp_path / "judge", "the caption judge")
    assert not (tmp_path / "judge").exists()
