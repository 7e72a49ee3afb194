"""Stage 1 convergence: validation curves from Lightning's CSV logs over resumed sessions; their figure."""

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from vlvae.config import apply_overrides, decoder_from, preset
from vlvae.errors import VLVAEError
from vlvae.evaluation.figures import convergence_summary, figure_convergence, read_validation_curves
from vlvae.evaluation.report import _convergence_line


def _train(step, loss):
    return step, {"epoch": 0, "train/loss": loss, "train/elbo": -loss}


def _val(step, minutes, log_px, kl, correctness=None):
    metrics = {
        "epoch": 0,
        "val/elbo": log_px - kl - 20.0,
        "val/log_px": log_px,
        "val/log_py": -20.0,
        "val/kl": kl,
        "val/minutes": minutes,
    }
    if correctness is not None:
        metrics["val/correctness"] = correctness
    return step, metrics


def _write_session(stage: Path, start: int, rows) -> Path:
    """One training session's metrics.csv, written by Lightning's own CSVLogger as the trainer drives it
    (``log_metrics(metrics, step)`` then ``save()`` per call; new keys rewrite the header, other cells
    blank)."""
    logger = CSVLogger(stage / "logs", name="csv", version=f"from_step_{start}")
    for step, metrics in rows:
        logger.log_metrics(metrics, step=step)
        logger.save()
    return Path(logger.log_dir) / "metrics.csv"


@pytest.fixture
def resumed_stage(tmp_path):
    """Stage 1 trained 70 steps, killed, and resumed from its checkpoint after 40 steps to step 100.

    As Lightning logs them, steps are 0-based batch indices: validation every 20 steps is logged at
    steps 19, 39, 59, ... Session 1 validates at 19, 39, 59; session 2 (from_step_40) redoes batches
    40-69 (its pass at 59 replaces session 1's), validates at 59, 79, 99, and ends with
    ``trainer.validate`` (logged one step later, without val/minutes).
    """
    stage = tmp_path / "run" / "vlvae"
    first = [
        _train(9, 9.0),
        _train(19, 8.0),
        _val(19, 1.0, -500.0, 10.0, 0.25),
        _train(29, 7.0),
        _train(39, 6.5),
        _val(39, 2.0, -400.0, 12.0, 0.5),
        _train(49, 6.0),
        _train(59, 5.5),
        _val(59, 3.0, -350.0, 13.0, 0.625),
        _train(69, 5.0),
    ]
    second = [
        _train(49, 6.1),
        _train(59, 5.6),
        _val(59, 2.9, -345.0, 13.5, 0.75),
        _train(69, 5.1),
        _train(79, 4.5),
        _val(79, 3.9, -320.0, 14.0, 0.8),
        _train(89, 4.2),
        _train(99, 4.0),
        _val(99, 4.9, -310.0, 14.5, 0.875),
        (
            100,
            {
                "epoch": 1,
                "val/elbo": -345.0,
                "val/log_px": -311.0,
                "val/log_py": -20.0,
                "val/kl": 14.4,
                "val/correctness": 0.86,
            },
        ),
    ]
    _write_session(stage, 0, first)
    _write_session(stage, 40, second)
    return stage


EXPECTED = {
    "step": [19, 39, 59, 79, 99],
    "val/minutes": [1.0, 2.0, 2.9, 3.9, 4.9],
    "val/log_px": [-500.0, -400.0, -345.0, -320.0, -310.0],
    "val/kl": [10.0, 12.0, 13.5, 14.0, 14.5],
    "val/correctness": [0.25, 0.5, 0.75, 0.8, 0.875],
    "val/log_py": [-20.0] * 5,
}


def test_fixture_is_what_lightning_writes(resumed_stage):
    with open(resumed_stage / "logs" / "csv" / "from_step_0" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"epoch", "step", "train/loss", "val/log_px", "val/minutes"} <= set(rows[0])
    assert rows[0]["step"] == "9" and rows[0]["val/log_px"] == "" and rows[2]["train/loss"] == ""


def test_read_validation_curves_resumed_session_wins(resumed_stage):
    curves = read_validation_curves(resumed_stage)
    assert set(curves) == set(EXPECTED) | {"val/elbo"}
    assert list(curves)[:2] == ["step", "val/minutes"]
    assert curves["step"].dtype == np.int64
    for key, expected in EXPECTED.items():
        np.testing.assert_array_equal(curves[key], np.array(expected), err_msg=key)
    expected_elbo = np.array(EXPECTED["val/log_px"]) - np.array(EXPECTED["val/kl"]) - 20.0
    np.testing.assert_allclose(curves["val/elbo"], expected_elbo)


def test_sessions_in_step_order_and_discarded_history_dropped(tmp_path):
    """Sessions sort by starting step (from_step_119 after from_step_40, not by name). A resume from the
    checkpoint after N steps drops what earlier sessions logged at steps >= N (batch index N onwards),
    even where it logs no pass at that step; the pass logged at N - 1 saw the checkpoint's weights."""
    stage = tmp_path / "vlvae"
    _write_session(stage, 0, [_val(19, 1.0, -5.0, 1.0), _val(39, 2.0, -4.0, 1.5), _val(59, 3.0, -3.5, 1.7)])
    _write_session(
        stage,
        40,
        [
            _val(59, 2.8, -3.4, 1.8),
            _val(79, 3.8, -3.2, 1.9),
            _val(99, 4.8, -3.0, 2.0),
            _val(118, 5.7, -2.95, 2.05),
            _val(119, 5.8, -2.9, 2.1),
            _val(139, 6.8, -2.8, 2.2),
        ],
    )
    _write_session(stage, 119, [_train(129, 1.0), _val(159, 7.6, -2.7, 2.3)])
    curves = read_validation_curves(stage)
    np.testing.assert_array_equal(curves["step"], [19, 39, 59, 79, 99, 118, 159])
    np.testing.assert_array_equal(curves["val/minutes"], [1.0, 2.0, 2.8, 3.8, 4.8, 5.7, 7.6])
    np.testing.assert_array_equal(curves["val/log_px"], [-5.0, -4.0, -3.4, -3.2, -3.0, -2.95, -2.7])
    assert "val/correctness" not in curves


def test_convergence_summary_last_quarter(resumed_stage):
    s = convergence_summary(read_validation_curves(resumed_stage))
    assert s["last"] == {"step": 99, "minutes": 4.9, "log_px": -310.0, "kl": 14.5, "correctness": 0.875}
    # The last quarter of 99 steps starts at 74.25; the last pass at or before it is step 59 (2.9 min).
    assert s["since_step"] == pytest.approx(0.75 * 99)
    assert s["change"]["log_px"] == {
        "from_step": 59,
        "from_minutes": 2.9,
        "to_step": 99,
        "to_minutes": 4.9,
        "change": pytest.approx(35.0),
    }
    assert s["change"]["correctness"]["change"] == pytest.approx(0.125)
    line = _convergence_line(s, SimpleNamespace(model=SimpleNamespace(pixel_low=0.001, pixel_high=0.999)))
    for fragment in (
        "step 99",
        "4.9 min",
        "log p(x|z) -310.00",
        "KL 14.50",
        "correctness 87.50 %",
        "from step 59, 2.9 min",
        "log p(x|z) +35.00",
        "correctness +12.50 points",
    ):
        assert fragment in line


def test_figure_convergence_png_and_json(resumed_stage, tmp_path):
    out = figure_convergence(resumed_stage, tmp_path / "figures" / "stage1_convergence.png")
    assert out == tmp_path / "figures" / "stage1_convergence.png"
    with Image.open(out) as image:
        image.load()
        assert image.format == "PNG" and image.width > 0 and image.height > 0
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "a temporary file was left"
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["x"] == "val/minutes"
    assert saved["curves"] == {
        key: values.tolist() for key, values in read_validation_curves(resumed_stage).items()
    }
    for key, expected in EXPECTED.items():
        assert saved["curves"][key] == expected, key
    assert saved["summary"]["last"]["step"] == 99


def test_figure_convergence_without_correctness(tmp_path):
    stage = tmp_path / "vlvae"
    _write_session(stage, 0, [_train(5, 3.0), _val(10, 0.5, -9.0, 2.0), _val(20, 1.0, -8.0, 2.5)])
    out = figure_convergence(stage, tmp_path / "conv.png")
    with Image.open(out) as image:
        assert image.width > 0 and image.height > 0
    saved = json.loads(out.with_suffix(".json").read_text())
    assert "val/correctness" not in saved["curves"]
    assert (
        saved["summary"]["last"]["correctness"] is None and saved["summary"]["change"]["correctness"] is None
    )


def test_no_logs_raise(tmp_path):
    with pytest.raises(VLVAEError, match="missing_stage"):
        read_validation_curves(tmp_path / "missing_stage")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VLVAEError, match="empty"):
        figure_convergence(tmp_path / "empty", tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_logs_without_minutes_have_no_curve(tmp_path):
    """Runs from before val/minutes was logged: no passes, and the figure says why instead of drawing."""
    stage = tmp_path / "old" / "vlvae"
    _write_session(stage, 0, [_train(10, 2.0), (10, {"epoch": 0, "val/log_px": -3.0, "val/kl": 1.0})])
    curves = read_validation_curves(stage)
    assert len(curves["step"]) == 0 and len(curves["val/minutes"]) == 0
    with pytest.raises(VLVAEError, match="val/minutes"):
        figure_convergence(stage, tmp_path / "out.png")


def test_the_window_is_in_steps_whatever_the_clock_did():
    """A last stretch slowed by load (4 → 20 minutes) moves no step of the window: it starts at the last
    pass at or before 75 % of the last step (step 60), as on an idle machine."""
    steps = np.array([20, 40, 60, 80, 100])
    curves = {"step": steps, "val/log_px": np.array([1.0, 2.0, 3.0, 4.0, 5.0])}
    idle = convergence_summary({**curves, "val/minutes": np.array([1.0, 2.0, 3.0, 4.0, 5.0])})
    busy = convergence_summary({**curves, "val/minutes": np.array([1.0, 2.0, 3.0, 4.0, 20.0])})
    for s in (idle, busy):
        assert s["since_step"] == 75 and s["change"]["log_px"]["from_step"] == 60
        assert s["change"]["log_px"]["change"] == 2.0
    assert busy["change"]["log_px"]["to_minutes"] == 20.0


def _two_phase_curves():
    """Whole-model passes at steps 10, 20, 30; the image decoder alone from step 40 (passes 40-60)."""
    return {
        "step": np.array([10, 20, 30, 40, 50, 60]),
        "val/minutes": np.array([1.0, 2.0, 3.0, 3.5, 4.0, 4.5]),
        "val/log_px": np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0]),
        "val/kl": np.array([5.0, 6.0, 7.0, 7.0, 7.0, 7.0]),
        "val/correctness": np.array([0.1, 0.2, 0.3, 0.5, 0.6, 0.7]),
    }


def test_the_image_decoder_steps_are_summarised_apart():
    """The window covers the whole model's passes (the last quarter of step 30 starts at 22.5: from
    step 20); the decoder's phase runs from the last whole-model pass (30) to the last pass (60)."""
    curves = _two_phase_curves()
    s = convergence_summary(curves, decoder_from=40)
    assert s["last"] == {"step": 60, "minutes": 4.5, "log_px": 12.0, "kl": 7.0, "correctness": 0.7}
    assert s["since_step"] == pytest.approx(22.5)
    assert s["change"]["log_px"] == {
        "from_step": 20,
        "from_minutes": 2.0,
        "to_step": 30,
        "to_minutes": 3.0,
        "change": 1.0,
    }
    assert s["change"]["correctness"]["change"] == pytest.approx(0.1)
    assert s["decoder"]["from_step"] == 40
    assert s["decoder"]["change"]["log_px"] == {
        "from_step": 30,
        "from_minutes": 3.0,
        "to_step": 60,
        "to_minutes": 4.5,
        "change": 9.0,
    }
    assert s["decoder"]["change"]["correctness"]["change"] == pytest.approx(0.4)
    line = _convergence_line(s, SimpleNamespace(model=SimpleNamespace(pixel_low=0.02, pixel_high=0.98)))
    for fragment in (
        "step 60, 4.5 min",
        "last 25 % of the whole model's steps (from step 20, 2 min, to step 30, 3 min): log p(x|z) +1.00, "
        "correctness +10.00",
        "image decoder alone (from step 30, 3 min, to step 60, 4.5 min): log p(x|z) +9.00, "
        "correctness +40.00 points",
    ):
        assert fragment in line
    # Without the boundary the window mixes the phases: the last quarter of step 60 starts at step 40.
    mixed = convergence_summary(curves)
    assert mixed["decoder"] is None and mixed["change"]["log_px"]["from_step"] == 40
    assert "image decoder" not in _convergence_line(
        mixed, SimpleNamespace(model=SimpleNamespace(pixel_low=0.02, pixel_high=0.98))
    )


@pytest.mark.parametrize("decoder_from", [10, 5, 61, 1000])
def test_a_boundary_without_passes_on_both_sides_is_one_phase(decoder_from):
    curves = _two_phase_curves()
    assert convergence_summary(curves, decoder_from=decoder_from) == convergence_summary(curves)


def test_figure_convergence_marks_the_decoder_phase(tmp_path):
    stage = tmp_path / "stage1"
    rows = [
        _val(step, minutes, lp, 7.0, c)
        for step, minutes, lp, c in zip(
            [9, 19, 29, 39, 49],
            [1.0, 2.0, 3.0, 3.5, 4.0],
            [1.0, 2.0, 3.0, 10.0, 11.0],
            [0.1, 0.2, 0.3, 0.5, 0.6],
        )
    ]
    _write_session(stage, 0, rows)
    out = figure_convergence(stage, tmp_path / "conv.png", decoder_from=30)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["summary"]["decoder"]["change"]["log_px"]["change"] == 8.0  # 11 at step 49 - 3 at 29
    assert saved["summary"]["change"]["log_px"]["from_step"] == 19  # 0.75 * 29 = 21.75: from step 19
    plain = figure_convergence(stage, tmp_path / "plain.png")
    assert json.loads(plain.with_suffix(".json").read_text())["summary"]["decoder"] is None
    with Image.open(out) as a, Image.open(plain) as b:
        assert np.asarray(a).shape == np.asarray(b).shape and (np.asarray(a) != np.asarray(b)).any()


def test_the_evaluation_splits_where_the_preset_trains_the_decoder_alone():
    """cpu: 10,000 whole-model steps then 4,000 on the image decoder (passes below step 10,000 are the
    whole model's); quick trains no decoder steps, and neither does cpu with them set to 0."""
    assert decoder_from(preset("cpu").stage1) == 10_000
    assert decoder_from(apply_overrides(preset("cpu"), ["stage1.steps=6000"]).stage1) == 6_000
    assert decoder_from(preset("cpu-long").stage1) == 30_000
    assert decoder_from(preset("quick").stage1) is None
    assert decoder_from(apply_overrides(preset("cpu"), ["stage1.decoder_steps=0"]).stage1) is None
