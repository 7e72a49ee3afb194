"""benchmarks/train_throughput.py measures every stage through the real training tasks."""

import math

import pytest


@pytest.fixture(scope="module")
def throughput(benchmark_script):
    return benchmark_script("train_throughput")


def test_every_stage_reports_throughput_and_table_seconds(throughput, tmp_path):
    printed = []
    rows = throughput.benchmark(
        ["tiny"],
        seconds=0.1,
        n=64,
        data=tmp_path,
        workers=1,
        warmup=1,
        on_row=lambda row: printed.append(throughput.format_row(row)),
    )
    assert [r["stage"] for r in rows] == list(throughput.STAGES)
    assert len(printed) == len(rows)
    for row in rows:
        assert row["preset"] == "tiny" and row["batch"] > 0 and row["steps"] >= 1
        assert math.isfinite(row["examples_per_s"]) and row["examples_per_s"] > 0, row
        if row["stage"] in ("q_agg", "prior"):  # q_True never draws z ~ q(z|x), so never tabulates it
            assert row["table_s"] is not None and math.isfinite(row["table_s"]) and row["table_s"] > 0, row
        else:
            assert row["table_s"] is None, row
    assert (tmp_path / "two_objects_16px" / "manifest.json").is_file()  # the data set is kept for reuse


def test_precisions_are_measured_in_turn_for_a_fixed_number_of_steps(throughput, tmp_path):
    rows = throughput.benchmark(
        ["tiny"],
        stages=["vlvae"],
        n=64,
        data=tmp_path,
        workers=1,
        warmup=1,
        precisions=["32-true", "bf16-mixed"],
        steps=2,
    )
    assert [(r["stage"], r["precision"], r["steps"]) for r in rows] == [
        ("vlvae", "32-true", 2),
        ("vlvae", "bf16-mixed", 2),
    ]
    assert all(math.isfinite(r["examples_per_s"]) and r["examples_per_s"] > 0 for r in rows)
    assert "bf16-mixed" in throughput.format_row(rows[1])
