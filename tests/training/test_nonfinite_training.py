"""A fit ends early in one line that says how to go on (issue 20, items 3 and 4).

- **non-finite training stops**: at the first non-finite training loss the fit stops before that
  step's update, with one line (stage, step, what was not finite), writes no ``metrics.json`` or
  weights, and ``--resume`` continues from the last checkpoint, whose weights are finite; weights
  that became non-finite with a finite loss (a non-finite gradient) are never saved as ``last.ckpt``;
- **Ctrl-C**: a KeyboardInterrupt during the fit (on which Lightning exits the process) ends in the
  project's line saying how to resume, with a non-zero exit, and the resumed fit finishes.

The faults are injected by a callback added to every Trainer the command makes.
"""

import contextlib
import signal

import lightning as L
import pytest
import torch

from vlvae.training.checkpoints import non_finite_tensors


def one_error_line(code, err, *fragments):
    """Exit code 2 and exactly one printed line, ``error: ...``, holding every fragment."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def with_callback(monkeypatch):
    """``with with_callback(cb): ...``: every Trainer made inside also runs ``cb``."""

    @contextlib.contextmanager
    def arm(callback):
        real_trainer = L.Trainer

        def trainer(*args, **kwargs):
            kwargs["callbacks"] = list(kwargs.get("callbacks", [])) + [callback]
            return real_trainer(*args, **kwargs)

        monkeypatch.setattr(L, "Trainer", trainer)
        try:
            yield
        finally:
            monkeypatch.setattr(L, "Trainer", real_trainer)

    return arm


class PoisonWeights(L.Callback):
    """Before the step at ``global_step == at`` (the step numbered at + 1), a weight becomes NaN."""

    def __init__(self, at):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            with torch.no_grad():
                next(pl_module.trainable().parameters()).view(-1)[0] = float("nan")


class PoisonGradient(L.Callback):
    """At the step at ``global_step == at`` the loss is finite but a gradient is NaN."""

    def __init__(self, at):
        self.at = at

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == self.at:
            grad = next(p.grad for p in pl_module.trainable().parameters() if p.grad is not None)
            grad.view(-1)[0] = float("nan")


class CtrlC(L.Callback):
    """A Ctrl-C after the step at ``global_step == at``."""

    def __init__(self, at):
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at:
            raise KeyboardInterrupt


def train(vlvae, data, run, *more):
    return vlvae("train", "vlvae", "--data", data, "--out", run, "--preset", "tiny", "--no-progress", *more)


def last_checkpoint(run):
    return torch.load(run / "stage1" / "last.ckpt", weights_only=True)


def resumes_to_the_end(vlvae, data, run):
    code, stdout, err = train(vlvae, data, run, "--resume")
    assert code == 0, err
    assert "VLVAE: 6 steps" in stdout
    assert (run / "stage1" / "metrics.json").is_file() and (run / "stage1" / "weights.safetensors").is_file()
    assert non_finite_tensors(last_checkpoint(run)["state_dict"]) == []


def test_a_non_finite_loss_stops_the_fit(vlvae, data, tmp_path, with_callback):
    run = tmp_path / "run"
    with with_callback(PoisonWeights(at=3)):  # the tiny preset checkpoints at steps 2, 4, 6
        code, _, err = train(vlvae, data, run)
    one_error_line(
        code,
        err,
        f"training of stage1 ({run / 'stage1'}) stopped at step 4: the training loss was nan (",
        "train/loss = nan",
        "the stage is not finished",
        "--resume to continue from step 2, the last finite checkpoint",
    )
    assert (
        not (run / "stage1" / "metrics.json").exists()
        and not (run / "stage1" / "weights.safetensors").exists()
    )
    checkpoint = last_checkpoint(run)
    assert checkpoint["global_step"] == 2 and non_finite_tensors(checkpoint["state_dict"]) == []
    resumes_to_the_end(vlvae, data, run)


def test_non_finite_weights_are_never_saved_as_the_last_checkpoint(vlvae, data, tmp_path, with_callback):
    run = tmp_path / "run"
    with with_callback(PoisonGradient(at=3)):  # step 4's update makes a weight NaN; its loss was finite
        code, _, err = train(vlvae, data, run)
    line = one_error_line(
        code,
        err,
        "stopped at step 4: the weights were not finite (model.",
        "so they were not saved over last.ckpt",
    )
    assert "--resume to continue from step 2" in line
    assert last_checkpoint(run)["global_step"] == 2
    assert non_finite_tensors(last_checkpoint(run)["state_dict"]) == []
    assert not (run / "stage1" / "metrics.json").exists()
    resumes_to_the_end(vlvae, data, run)


def test_a_non_finite_loss_before_any_checkpoint_says_to_start_again(vlvae, data, tmp_path, with_callback):
    run = tmp_path / "run"
    with with_callback(PoisonWeights(at=0)):
        code, _, err = train(vlvae, data, run)
    line = one_error_line(code, err, "stopped at step 1", f"delete {run / 'stage1'} to start it again")
    assert "--resume" not in line and not (run / "stage1" / "last.ckpt").exists()


@pytest.mark.parametrize(
    "at, resume_from", [(3, "continue from step 2"), (1, "no checkpoint was written yet")]
)
def test_ctrl_c_prints_how_to_resume(vlvae, data, tmp_path, with_callback, at, resume_from):
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    with with_callback(CtrlC(at)):
        code, _, err = train(vlvae, data, run)
    one_error_line(code, err, f"training of stage1 ({run / 'stage1'}) was interrupted", resume_from)
    assert signal.getsignal(signal.SIGINT) is handler, "Ctrl-C must count again after the fit"
    assert not (run / "stage1" / "metrics.json").exists()
    resumes_to_the_end(vlvae, data, run)
