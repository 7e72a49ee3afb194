"""Optional experiment loggers (issue 21 item 5): ``logger=wandb`` or ``logger=mlflow`` beside the CSV and
TensorBoard logs of every stage.

The key says how a run is recorded, not what it computes: it is not part of a run's identity. A logger
whose package is not installed is refused in one line before anything is written. Where the package is
installed (it is not in the ``test`` extra), a tiny stage 1 writes its files under ``STAGE/logs/`` and
logs the run's hyperparameters to it.
"""

import hashlib
import importlib.util

import pytest
import yaml

from vlvae import runs
from vlvae.config import (
    HARDWARE_KEYS,
    LOGGERS,
    apply_hardware_overrides,
    apply_overrides,
    identity_differences,
    load_config,
    preset,
    with_hardware,
)
from vlvae.errors import VLVAEError
from vlvae.recipes.reproduce import reproduce
from vlvae.training import run as training


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture
def missing(monkeypatch):
    """``missing(name)``: the package ``name`` is reported not installed (importlib.util.find_spec)."""
    real = importlib.util.find_spec
    gone = set()

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] in gone else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return gone.add


# ----------------------------------------------------------------------------- the key


def test_logger_is_a_choice_refused_in_one_line_outside_it():
    assert LOGGERS == ("none", "wandb", "mlflow")
    assert preset("tiny").logger == preset("paper").logger == "none"
    with pytest.raises(VLVAEError) as exc:
        apply_overrides(preset("tiny"), ["logger=foo"])
    assert str(exc.value) == "configuration key 'logger' must be one of none, wandb, mlflow, got 'foo'"


def test_logger_is_not_part_of_a_runs_identity(data, tmp_path):
    assert "logger" in HARDWARE_KEYS
    tiny = preset("tiny")
    logged = apply_overrides(tiny, ["logger=mlflow"])
    assert identity_differences(tiny, logged) == []
    assert with_hardware(tiny, logged).logger == "mlflow"
    assert apply_hardware_overrides(tiny, ["logger=wandb"]).logger == "wandb", "allowed for an existing run"
    run = tmp_path / "run"
    runs.init_run(run, data, tiny)
    reopened = runs.init_run(run, data, logged)
    assert reopened.logger == "mlflow"
    assert load_config(run / "config.yaml").logger == "mlflow", "config.yaml records the latest logger"


# ----------------------------------------------------------------------------- a missing package


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_a_missing_package_is_refused_before_anything_is_written(data, tmp_path, missing, logger):
    missing(logger)
    package = {"wandb": "wandb", "mlflow": "mlflow-skinny"}[logger]
    expected = (
        f"logger={logger} needs the {logger} package; install it with pip install 'vlvae[{logger}]' "
        f"(or pip install {package}), or set logger=none"
    )
    run = tmp_path / "run"
    with pytest.raises(VLVAEError) as exc:
        training.train_vlvae(data, run, "tiny", overrides=[f"logger={logger}"], progress=False)
    assert str(exc.value) == expected
    assert not run.exists(), "nothing was written"
    out = tmp_path / "reproduce"
    with pytest.raises(VLVAEError, match=f"^logger={logger} needs the {logger} package"):
        reproduce(out, "tiny", data=data, overrides=[f"logger={logger}"], progress=False)
    assert not out.exists(), "nothing was written"


def test_a_missing_package_is_refused_for_stages_2_3(data, tmp_path, missing):
    missing("wandb")
    run = tmp_path / "run"
    runs.init_run(run, data, preset("tiny"))
    before = _snapshot(run)
    with pytest.raises(VLVAEError, match="^logger=wandb needs the wandb package"):
        training.train_text_posterior(run, "agg", progress=False, hardware=["logger=wandb"])
    assert _snapshot(run) == before, "nothing was written"


def test_the_command_line_says_it_in_one_line(data, tmp_path, missing, vlvae):
    missing("wandb")
    out = tmp_path / "run"
    args = ("--data", data, "--out", out, "--preset", "tiny", "--no-progress", "--set", "logger=wandb")
    code, _, err = vlvae("train", "vlvae", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: logger=wandb needs the wandb package; install it with pip install")
    assert not out.exists()


# ----------------------------------------------------------------------------- with the package


def test_mlflow_logs_the_stage_under_its_logs_folder(data, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient  # noqa: PLC0415  only where the optional package is installed

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # set by the fit, removed after the test
    run = tmp_path / "run"
    metrics = training.train_vlvae(data, run, "tiny", overrides=["logger=mlflow"], progress=False)
    assert metrics["steps"] == 6
    store = run / "stage1" / "logs" / "mlflow"
    assert store.is_dir() and (run / "stage1" / "logs" / "csv" / "from_step_0" / "metrics.csv").is_file()
    client = MlflowClient(store.resolve().as_uri())
    experiment = client.get_experiment_by_name("vlvae")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_name == "stage1"
    assert logged.data.params["stage"] == "stage1" and logged.data.params["stage1/steps"] == "6"
    assert logged.data.params["logger"] == "mlflow"
    assert any(key.startswith("train/") for key in logged.data.metrics), logged.data.metrics
    assert any(key.startswith("val/") for key in logged.data.metrics), logged.data.metrics


def test_wandb_logs_the_stage_offline_under_its_logs_folder(data, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    metrics = training.train_vlvae(data, run, "tiny", overrides=["logger=wandb"], progress=False)
    assert metrics["steps"] == 6
    (offline,) = (run / "stage1" / "logs" / "wandb").glob("offline-run-*")
    config = offline / "files" / "config.yaml"
    if config.is_file():  # wandb before 0.19 or so writes the config there in offline mode
        logged = yaml.safe_load(config.read_text())
        assert logged["stage"]["value"] == "stage1"
        assert logged["stage1"]["value"]["steps"] == 6
    else:  # newer wandb keeps it in the run's transaction log only (read by `wandb sync`)
        (transactions,) = offline.glob("run-*.wandb")
        raw = transactions.read_bytes()
        for item in (b"stage_seed", b'"stage1"', b'"steps":6', b"train/", b"val/"):
            assert item in raw, item
