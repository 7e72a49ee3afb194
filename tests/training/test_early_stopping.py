"""Stages 2-3 stop when their held-out validation objective stops improving, keeping the best weights."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from vlvae.config import load_config
from vlvae.errors import VLVAEError
from vlvae.runs import read_run_info
from vlvae.training import run as runs
from vlvae.training.tasks import AggregatePriorTask, BestWeights

STOP = [
    "text_posterior.steps=40",
    "text_posterior.val_every=2",
    "text_posterior.checkpoint_every=2",
    "text_posterior.patience=2",
    "text_posterior.min_delta=1e6",
    "prior.steps=40",
    "prior.val_every=2",
    "prior.patience=1",
    "prior.min_delta=1e6",
    "prior.val_examples=6",
]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stop") / "run"
    runs.train_vlvae(data, out, "tiny", overrides=STOP, progress=False)
    return out


def _fake_trainer(value, step):
    return SimpleNamespace(
        state=SimpleNamespace(fn="fit"),
        sanity_checking=False,
        callback_metrics={"val/x": torch.tensor(value)},
        global_step=step,
    )


def test_best_weights_keeps_the_state_of_the_highest_pass_and_survives_a_checkpoint():
    module = torch.nn.Linear(2, 1)
    holder = SimpleNamespace(trainable=lambda: module)
    best = BestWeights("val/x")
    states = {}
    for step, value in [(2, -5.0), (4, -3.0), (6, -4.0), (8, -3.5)]:
        with torch.no_grad():
            module.weight.fill_(step)
        states[step] = module.weight.clone()
        best.on_validation_end(_fake_trainer(value, step), holder)
    assert (best.best_step, best.best_value) == (4, -3.0)
    restored = BestWeights("val/x")
    restored.load_state_dict(best.state_dict())
    restored.restore(module)
    assert torch.equal(module.weight, states[4])
    # passes outside fitting (the final trainer.validate) never count
    outside = _fake_trainer(100.0, 10)
    outside.state.fn = "validate"
    best.on_validation_end(outside, holder)
    assert best.best_step == 4


@pytest.mark.parametrize("stage", ["q_agg", "prior"])
def test_stage_stops_on_patience_and_keeps_its_best_pass(run, stage):
    if stage == "prior":
        metrics = runs.train_prior(run, progress=False)
        patience, monitor = 1, "val/cross_entropy"
    else:
        metrics = runs.train_text_posterior(run, "agg", progress=False)
        patience, monitor = 2, "val/cross_entropy"
    stop = metrics["early_stopping"]
    # min_delta = 1e6: only the first pass counts as an improvement, so the stage stops after
    # 1 + patience passes, 2 steps apart, far below its 40-step cap
    assert stop["stopped_by"] == "patience" and stop["monitor"] == monitor
    assert metrics["steps"] == 2 * (1 + patience) < 40
    # validation draws the same noise at every pass: the final validation of the kept weights
    # repeats the best pass's value exactly
    assert metrics["validation"][monitor] == pytest.approx(stop["best_value"], abs=1e-5)
    assert stop["best_step"] in range(2, metrics["steps"] + 1, 2)
    saved = json.loads((runs.stage_dir(run, stage) / "metrics.json").read_text())
    assert saved["early_stopping"] == stop and "best validation pass" in saved["weights"]


def test_without_patience_the_cap_ends_training(data, tmp_path):
    out = tmp_path / "run"
    runs.train_vlvae(data, out, "tiny", progress=False)
    metrics = runs.train_text_posterior(out, "true", progress=False)
    assert metrics["early_stopping"] is None and metrics["steps"] == 6


def test_validation_is_held_out_from_the_evaluated_examples(run):
    """Stages validate on the last examples of the split; the evaluation scores the first ones."""
    cfg = load_config(run / "config.yaml")
    info = read_run_info(run)  # its data folder resolved (run.json holds it relative to the run)
    task = AggregatePriorTask(cfg.model, cfg.prior, info["data"], 0, runs.load_vlvae(run, cfg))
    indices = list(task.val_dataloader().dataset.indices)
    n = len(task.dataset("val"))
    assert cfg.prior.val_examples == 6 < n
    assert indices == list(range(n - 6, n))


def test_a_stage_resumed_mid_patience_stops_and_keeps_what_an_uninterrupted_one_does(
    data, tmp_path, killed_at
):
    """Killed at step 4 of a fit that stops by patience at step 8: the resumed fit stops at the same
    step, with the same best pass and bit-identical kept weights."""

    overrides = [
        "text_posterior.steps=40",
        "text_posterior.val_every=2",
        "text_posterior.checkpoint_every=2",
        "text_posterior.patience=3",
        "text_posterior.min_delta=1e6",
    ]
    straight = tmp_path / "straight"
    runs.train_vlvae(data, straight, "tiny", overrides=overrides, progress=False)
    killed = tmp_path / "killed"
    shutil.copytree(straight, killed)
    expected = runs.train_text_posterior(straight, "agg", progress=False)
    assert expected["steps"] == 8 and expected["early_stopping"]["stopped_by"] == "patience"

    with killed_at(4), pytest.raises(RuntimeError, match="simulated kill"):
        runs.train_text_posterior(killed, "agg", progress=False)
    with pytest.raises(VLVAEError, match="--resume"):
        runs.train_text_posterior(killed, "agg", progress=False)
    resumed = runs.train_text_posterior(killed, "agg", resume=True, progress=False)
    assert resumed["steps"] == expected["steps"]
    assert resumed["early_stopping"] == expected["early_stopping"]
    # one checkpoint per stage, no Lightning default ones beside it
    stage = runs.stage_dir(killed, "q_agg")
    assert [p.relative_to(stage).as_posix() for p in stage.rglob("*.ckpt")] == ["last.ckpt"]
    a = load_file(str(runs.stage_dir(straight, "q_agg") / "weights.safetensors"))
    b = load_file(str(runs.stage_dir(killed, "q_agg") / "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
