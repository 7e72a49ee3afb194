"""The three training stages: freezing, resumption, run folders, DDP and bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vlvae import runs
from vlvae.config import apply_overrides, preset
from vlvae.errors import VLVAEError
from vlvae.inference import Inference
from vlvae.models.vlvae import VLVAE
from vlvae.training import run as training
from vlvae.training.tasks import AggregatePriorTask


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "run"
    training.train_vlvae(data, run, "tiny", progress=False)
    return run


def _weights(path: Path) -> dict:
    return load_file(str(path))


def test_run_folder_records_config_seed_versions_commit(trained):
    assert (trained / "config.yaml").is_file()
    info = json.loads((trained / "run.json").read_text())
    assert {"data", "seed", "versions", "git_commit", "preset"} <= set(info)
    assert info["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    metrics = json.loads((trained / "stage1" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and "val/elbo" in metrics["validation"]
    assert (trained / "stage1" / "last.ckpt").is_file()
    assert (trained / "stage1" / "logs" / "csv" / "from_step_0" / "metrics.csv").is_file()


def test_lightning_logs_the_runs_hyperparameters(trained):
    """hparams.yaml (CSV logger) holds the run's whole configuration and the stage's name and seed."""
    cfg, _ = runs.open_run(trained)
    logged = yaml.safe_load(
        (trained / "stage1" / "logs" / "csv" / "from_step_0" / "hparams.yaml").read_text()
    )
    assert logged["stage"] == "stage1" and logged["seed"] == cfg.seed
    assert logged["stage1"]["steps"] == cfg.stage1.steps == 6
    assert logged["model"]["latent_dim"] == cfg.model.latent_dim
    assert logged["method"]["name"] == cfg.method.name
    assert list((trained / "stage1" / "logs" / "tensorboard" / "from_step_0").glob("events.*"))


def test_finished_stage_is_a_no_op(trained, data, monkeypatch):
    before = (trained / "stage1" / "weights.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(L.Trainer, "fit", lambda *a, **k: pytest.fail("trained again"))
    training.train_vlvae(data, trained, "tiny", progress=False)
    assert (trained / "stage1" / "weights.safetensors").stat().st_mtime_ns == before


def _keep_loaded_vlvae(monkeypatch) -> list:
    """Record the VLVAE instances the training functions load, to inspect them after training."""
    loaded = []
    real = training.load_vlvae

    def keeping(*args, **kwargs):
        model = real(*args, **kwargs)
        loaded.append(model)
        return model

    monkeypatch.setattr(training, "load_vlvae", keeping)
    return loaded


@pytest.mark.parametrize("objective", ["agg", "true"])
def test_stage_two_leaves_the_vlvae_bit_identical(trained, objective, monkeypatch):
    saved = _weights(trained / "stage1" / "weights.safetensors")
    loaded = _keep_loaded_vlvae(monkeypatch)
    metrics = training.train_text_posterior(trained, objective, progress=False)
    assert metrics["steps"] == 6 and metrics["objective"] == objective
    (used,) = loaded  # the very model that stage 2 trained against
    after = used.state_dict()
    assert saved.keys() == after.keys()
    for key, value in saved.items():
        assert torch.equal(value, after[key]), key
    q = runs.load_text_posterior(trained, objective)
    assert sum(p.numel() for p in q.parameters()) > 0


def test_frozen_task_keeps_batch_norm_statistics(trained):
    """Lightning switches modules to train mode; the frozen VLVAE's running statistics must not move."""
    cfg, info = runs.open_run(trained)
    vlvae = runs.load_vlvae(trained, cfg)
    task = AggregatePriorTask(cfg.model, cfg.prior, info["data"], 0, vlvae)
    task.train()
    assert not task.vlvae.training and task.prior.training
    stats = {k: v.clone() for k, v in vlvae.state_dict().items() if "running" in k}
    x = torch.rand(8, 3, 16, 16)
    vlvae.image_posterior(x)
    for k, v in vlvae.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k])


def test_prior_stage_trains_only_phi(trained, monkeypatch):
    saved = _weights(trained / "stage1" / "weights.safetensors")
    loaded = _keep_loaded_vlvae(monkeypatch)
    training.train_prior(trained, progress=False)
    (used,) = loaded
    after = used.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in saved.items())
    p = runs.load_prior(trained)
    assert p().sample((5,)).shape == (5, 4)


def test_resumed_run_equals_uninterrupted(data, tmp_path, killed_at):
    straight = tmp_path / "straight"
    training.train_vlvae(data, straight, "tiny", progress=False)
    killed = tmp_path / "killed"
    with killed_at(4), pytest.raises(RuntimeError, match="simulated kill"):
        training.train_vlvae(data, killed, "tiny", progress=False)
    assert not (killed / "stage1" / "metrics.json").exists()
    with pytest.raises(VLVAEError, match="--resume"):
        training.train_vlvae(data, killed, "tiny", progress=False)
    resumed = training.train_vlvae(data, killed, "tiny", resume=True, progress=False)
    assert resumed["steps"] == 6
    a = _weights(straight / "stage1" / "weights.safetensors")
    b = _weights(killed / "stage1" / "weights.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bad_input_gets_clear_errors(data, trained, tmp_path):
    with pytest.raises(VLVAEError, match="does not exist"):
        training.train_vlvae(tmp_path / "nowhere", tmp_path / "r", "tiny", progress=False)
    with pytest.raises(VLVAEError, match="unknown configuration key 'stage1.stepz'"):
        training.train_vlvae(data, tmp_path / "r2", "tiny", overrides=["vlvae.stepz=3"], progress=False)
    with pytest.raises(VLVAEError, match="not a vlvae run folder"):
        training.train_text_posterior(tmp_path, "agg", progress=False)
    with pytest.raises(VLVAEError, match="another configuration"):
        training.train_vlvae(data, trained, "tiny", overrides=["vlvae.steps=7"], progress=False)
    # A checkpoint of another model: the prior's weights where the VLVAE's belong.

    cfg, _ = runs.open_run(trained)
    with pytest.raises(VLVAEError, match="not a vlvae"):
        runs.load_weights(VLVAE(cfg.model), trained / "q_agg" / "weights.safetensors", "vlvae", "retrain")
    # The same kind of model with another architecture.
    bigger = apply_overrides(cfg, ["model.latent_dim=6"]).model
    with pytest.raises(VLVAEError, match="does not match"):
        runs.load_weights(VLVAE(bigger), trained / "stage1" / "weights.safetensors", "vlvae", "retrain")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(VLVAEError, match="corrupt"):
        runs.load_weights(VLVAE(cfg.model), corrupt, "vlvae", "retrain")


def test_missing_stage_names_the_command(data, tmp_path):
    run = tmp_path / "fresh"
    runs.init_run(run, data, preset("tiny"))
    with pytest.raises(VLVAEError, match="vlvae train vlvae --data"):
        runs.load_vlvae(run)


def test_ddp_two_processes_on_cpu(data, tmp_path):
    """A 2-process DDP (gloo) run of the tiny preset through the command line."""
    run = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "vlvae.cli",
        "train",
        "vlvae",
        "--data",
        str(data),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--set",
        "devices=2",
        "--set",
        "accelerator=cpu",
        "--no-progress",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["world_size"] == 2


def _make_old_style(run: Path) -> None:
    """Turn a run folder into one as it was written before the renames: stage 1 in RUN/vlvae with the
    config section ``vlvae``, every method section with JMVAE's ``alpha``, stages' ``kind`` (their
    posterior family) in config.yaml and metrics.json, and weights tagged under the metadata key
    ``kind``."""
    (run / "stage1").rename(run / "vlvae")
    text = (run / "config.yaml").read_text()
    assert "\nstage1:\n" in text and "posterior_family: flow" in text
    text = text.replace("\nstage1:\n", "\nvlvae:\n").replace("posterior_family:", "kind:")
    (run / "config.yaml").write_text(
        text.replace("method:\n  name: vlvae\n", "method:\n  name: vlvae\n  alpha: 0.1\n")
    )
    for folder in [p for p in run.iterdir() if (p / "weights.safetensors").is_file()]:
        weights = folder / "weights.safetensors"
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata()
        metadata["kind"] = metadata.pop("tag")
        save_file(load_file(str(weights)), str(weights), metadata=metadata)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics = {("kind" if k == "posterior_family" else k): v for k, v in metrics.items()}
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_an_old_style_run_folder_keeps_loading_and_resuming(trained, data, tmp_path):

    run = tmp_path / "old"
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns(".lock"))
    training.train_text_posterior(run, "agg", progress=False)
    _make_old_style(run)
    assert runs.stage_dir(run, runs.STAGE1) == run / "vlvae" and not (run / "stage1").exists()
    cfg, _ = runs.open_run(run)
    assert cfg.stage1.steps == preset("tiny").stage1.steps and cfg.text_posterior.posterior_family == "flow"
    assert cfg.method.name == "vlvae"
    new = _weights(trained / "stage1" / "weights.safetensors")
    old = runs.load_vlvae(run, cfg).state_dict()
    assert all(torch.equal(v, old[k]) for k, v in new.items())
    assert runs.load_text_posterior(run, "agg", cfg) is not None
    # Reopening it with the same preset finds the same configuration and the finished stage 1.
    assert training.train_vlvae(data, run, "tiny", progress=False)["steps"] == 6
    assert not (run / "stage1").exists()
    inference = Inference.open(run)
    assert (
        inference.stages()["q_agg"] is None
        and inference.from_text(inference.validation_example(0)[1], "agg", n=2).images.shape[0] == 2
    )
    # The old names of --set keys are read as the new ones.
    assert apply_overrides(preset("tiny"), ["vlvae.steps=9", "prior.kind=gaussian"]).stage1.steps == 9
