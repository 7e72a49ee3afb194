"""compare's second reading: every method's stage 1 at the same wall-clock minutes, from its logged passes."""

import csv

import pytest

from vlvae.evaluation.compare import _equal_time_lines
from vlvae.evaluation.driver import equal_time
from vlvae.runs import STAGE1, stage_dir


def _log(run, rows):
    folder = stage_dir(run, STAGE1) / "logs" / "csv" / "from_step_0"
    folder.mkdir(parents=True)
    with open(folder / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "step", "val/minutes", "val/correctness", "val/log_px"])
        w.writeheader()
        for step, minutes, correct, log_px in rows:
            w.writerow(
                {
                    "epoch": 0,
                    "step": step,
                    "val/minutes": minutes,
                    "val/correctness": correct,
                    "val/log_px": log_px,
                }
            )


def test_each_run_is_read_at_its_last_pass_within_the_shortest_runs_time(tmp_path):
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    _log(fast, [(99, 1.0, 0.30, -900.0), (199, 2.0, 0.50, -800.0), (299, 3.0, 0.60, -700.0)])
    _log(slow, [(99, 2.5, 0.40, -850.0), (199, 5.0, 0.55, -750.0)])
    eq = equal_time([fast, slow])
    assert eq["minutes"] == pytest.approx(3.0)  # the slow run's training time ends at 5; the fast one's at 3
    assert eq["runs"][str(fast)]["step"] == 300 and eq["runs"][str(fast)]["values"]["val/correctness"] == 0.60
    # The slow run at 3 minutes: its pass at 2.5 minutes (step 100), not the one at 5.
    assert eq["runs"][str(slow)] == {
        "step": 100,
        "minutes": 2.5,
        "values": {"val/correctness": 0.40, "val/log_px": -850.0},
    }
    result = {
        "runs": [str(fast), str(slow)],
        "metrics": [{"method": {"title": "Fast"}}, {"method": {"title": "Slow"}}],
        "equal_time": eq,
    }
    text = "\n".join(_equal_time_lines(result))
    assert "within 3.0 minutes" in text and "| Slow | 100 | 2.5 | 40.0 % | -850.0 |" in text


def test_a_run_whose_first_pass_comes_later_has_no_reading_at_that_time(tmp_path):
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    _log(fast, [(99, 1.0, 0.30, -900.0)])
    _log(slow, [(99, 2.5, 0.40, -850.0)])
    eq = equal_time([fast, slow])
    assert eq["runs"][str(slow)] is None and eq["runs"][str(fast)]["step"] == 100
    result = {"runs": [str(fast), str(slow)], "metrics": [{"method": {"title": t}} for t in ("F", "S")]}
    assert "| S | no validation pass within that time |" in "\n".join(
        _equal_time_lines({**result, "equal_time": eq})
    )


def test_a_run_without_logged_passes_gives_no_reading(tmp_path):
    run = tmp_path / "run"
    stage_dir(run, STAGE1).mkdir(parents=True)
    assert equal_time([run]) is None
    assert _equal_time_lines({"equal_time": None}) == []
