"""A judge's own precision (``classifier.precision``): the Two Objects classifier trains under it through
``vlvae train classifier``, and the presets set it where their tables were measured with it."""

import json

import pytest

from vlvae.config import RUN_PRECISION, preset


@pytest.mark.parametrize("precision", [RUN_PRECISION, "bf16-mixed"])
def test_the_classifier_trains_under_its_own_precision(data, tmp_path, vlvae, precision):
    out = tmp_path / "classifier"
    command = "train classifier --preset tiny --no-progress".split()
    code, _, err = vlvae(*command, "--data", data, "--out", out, "--set", f"classifier.precision={precision}")
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "classifier.json").read_text())
    assert metrics["hardware"]["precision"] == ("32-true" if precision == RUN_PRECISION else precision)
    assert info["classifier"].get("precision") == (None if precision == RUN_PRECISION else precision)


def test_the_presets_judges_precisions():
    """``cpu``'s classifier trains under bf16-mixed; its caption judge, and both of ``cpu-long``'s judges
    (whose tables were measured in float32), under the run's precision, as every other preset's."""
    assert preset("cpu").classifier.precision == "bf16-mixed"
    assert preset("cpu").caption_judge.precision == RUN_PRECISION
    for name in ("cpu-long", "quick", "tiny", "paper"):
        cfg = preset(name)
        assert cfg.classifier.precision == cfg.caption_judge.precision == RUN_PRECISION, name
