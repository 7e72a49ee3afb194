"""A run's identity (issue 21 item 4): its configuration without the hardware keys.

A run folder made on one device resumes on four, or with another precision; its config.yaml then
records the hardware of the latest command. Another identity is refused in one line that names every
differing key with both values, before anything is written.
"""

import contextlib
import hashlib

import lightning as L
import pytest

from vlvae import runs
from vlvae.config import apply_overrides, load_config, preset
from vlvae.errors import VLVAEError
from vlvae.training import run as training


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _tiny(*overrides):
    return apply_overrides(preset("tiny"), ["accelerator=cpu", "stage1.steps=4", *overrides])


@contextlib.contextmanager
def killed_after_step_3(monkeypatch):
    """Every Trainer made inside raises "simulated kill" after step 3 (the checkpoint of step 2 kept)."""

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                raise RuntimeError("simulated kill")

    real_trainer = L.Trainer

    def crashing_trainer(*args, **kwargs):
        return real_trainer(*args, **{**kwargs, "callbacks": [*kwargs.get("callbacks", []), Crash()]})

    monkeypatch.setattr(L, "Trainer", crashing_trainer)
    try:
        yield
    finally:
        monkeypatch.setattr(L, "Trainer", real_trainer)


def test_a_run_made_on_one_device_reopens_on_four_and_records_it(data, tmp_path):
    run = tmp_path / "run"
    made = runs.init_run(run, data, _tiny())
    assert made.devices == 1 and load_config(run / "config.yaml").devices == 1
    moved = runs.init_run(
        run, data, _tiny("devices=4", "num_nodes=2", "strategy=ddp", "precision=bf16-mixed", "num_workers=2")
    )
    assert (moved.devices, moved.num_nodes, moved.strategy, moved.precision, moved.num_workers) == (
        4,
        2,
        "ddp",
        "bf16-mixed",
        2,
    )
    stored = load_config(run / "config.yaml")
    assert stored == moved, "config.yaml records the hardware of the latest command"
    assert stored.stage1 == made.stage1 and stored.model == made.model


def test_another_identity_is_refused_naming_every_key_with_both_values(data, tmp_path):
    run = tmp_path / "run"
    runs.init_run(run, data, _tiny())
    before = _snapshot(run)
    with pytest.raises(VLVAEError) as exc:
        runs.init_run(run, data, _tiny("stage1.steps=5", "seed=3", "model.latent_dim=6", "devices=2"))
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{run} holds a run with another configuration (")
    for difference in ("seed: 0 in the run, 3 now", "model.latent_dim: 4 in the run, 6 now"):
        assert difference in message
    assert "stage1.steps: 4 in the run, 5 now" in message
    assert "devices" not in message, "a hardware key is never a difference"
    assert _snapshot(run) == before, "nothing was written"


def test_a_killed_stage_resumes_with_another_precision(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with killed_after_step_3(monkeypatch), pytest.raises(RuntimeError, match="simulated kill"):
        training.fit_vlvae(data, run, _tiny("stage1.checkpoint_every=2"), progress=False)
    assert (run / "stage1" / "last.ckpt").is_file()
    resumed = _tiny("stage1.checkpoint_every=2", "precision=bf16-mixed")
    metrics = training.fit_vlvae(data, run, resumed, resume=True, progress=False)
    assert metrics["steps"] == 4 and metrics["hardware"]["precision"] == "bf16-mixed"
    assert (run / "stage1" / "logs" / "csv" / "from_step_2").is_dir(), "it resumed from step 2"
    assert load_config(run / "config.yaml").precision == "bf16-mixed"


def test_stages_2_3_take_hardware_overrides_only(data, tmp_path):
    run = tmp_path / "run"
    training.fit_vlvae(data, run, _tiny("stage1.steps=2"), progress=False)
    with pytest.raises(VLVAEError, match="--set text_posterior.steps would change what the run computes"):
        training.train_text_posterior(run, "agg", progress=False, hardware=["text_posterior.steps=3"])
    metrics = training.train_text_posterior(
        run, "agg", progress=False, hardware=["precision=bf16-mixed", "num_workers=0"]
    )
    assert metrics["hardware"]["precision"] == "bf16-mixed"
    assert load_config(run / "config.yaml").precision == "bf16-mixed"
