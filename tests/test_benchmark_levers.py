"""benchmarks/stage1_levers.py reads every validation pass of each variant's stage 1 from its CSV logs."""

import csv
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def levers(benchmark_script):
    return benchmark_script("stage1_levers")


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["epoch", "step", "train/loss", "val/correctness", "val/log_px", "val/minutes"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def test_passes_are_read_across_resumed_sessions_in_step_order(levers, tmp_path):
    run = tmp_path / "coord"
    _write(
        run / "stage1/logs/csv/from_step_0/metrics.csv",
        [
            {"epoch": 0, "step": 49, "train/loss": 5.0},  # a training row: not a pass
            {"epoch": 0, "step": 499, "val/correctness": 0.41, "val/log_px": 17000.5, "val/minutes": 1.0},
        ],
    )
    _write(
        run / "stage1/logs/csv/from_step_500/metrics.csv",
        [{"epoch": 0, "step": 999, "val/correctness": 0.45, "val/log_px": 18000.0, "val/minutes": 2.5}],
    )
    assert levers._passes(run) == [
        {"step": 499, "correctness": 0.41, "log_px": 17000.5, "minutes": 1.0},
        {"step": 999, "correctness": 0.45, "log_px": 18000.0, "minutes": 2.5},
    ]
    assert levers._passes(tmp_path / "never-started") == []


def test_variants_and_their_batch_sizes(levers):
    assert levers._variant("base=") == ("base", [])
    assert levers._variant("c=model.coord_channels=true,stage1.w_x=1.0") == (
        "c",
        ["model.coord_channels=true", "stage1.w_x=1.0"],
    )
    with pytest.raises(SystemExit, match="NAME="):
        levers._variant("=x")
    assert levers._batch_size("cpu", []) == 64
    assert levers._batch_size("cpu", ["stage1.batch_size=32"]) == 32
