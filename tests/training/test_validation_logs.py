"""Stage 1's validation logs: wall-clock minutes carried across resumes, reconstruction correctness."""

import csv

import pytest
import torch

from vlvae.config import preset
from vlvae.training import run as runs
from vlvae.training.tasks import VLVAETask


def test_minutes_continue_from_the_checkpoint():
    cfg = preset("tiny")
    task = VLVAETask(cfg.model, cfg.stage1, "unused", 0)
    task.on_load_checkpoint({"training_seconds": 120.0})
    task.on_train_start()
    assert 2.0 <= task.training_minutes() < 2.1
    saved = {}
    task.on_save_checkpoint(saved)
    assert saved["training_seconds"] >= 120.0


def test_validation_logs_minutes_and_the_scorers_correctness(data, tmp_path):
    calls = []

    def scorer(images, texts):
        # A constant judge: the logged correctness must be exactly its batch mean.
        calls.append((images.shape, texts.shape))
        assert images.min() >= 0 and images.max() <= 1
        return torch.full((len(images),), 0.25)

    runs.train_vlvae(data, tmp_path / "run", "tiny", progress=False, scorer=scorer)
    assert calls and all(shape[1:] == (3, 16, 16) and t[1] == 9 for shape, t in calls)
    rows = []
    for path in sorted((tmp_path / "run" / "stage1" / "logs" / "csv").glob("*/metrics.csv")):
        with open(path) as f:
            rows += [r for r in csv.DictReader(f) if r.get("val/minutes")]
    assert len(rows) >= 2  # tiny validates every 3 of its 6 steps
    minutes = [float(r["val/minutes"]) for r in rows]
    assert all(b > a for a, b in zip(minutes, minutes[1:])) and minutes[0] > 0
    assert all(float(r["val/correctness"]) == pytest.approx(0.25) for r in rows)
