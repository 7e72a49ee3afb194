"""Helpers shared by the training tests (the tiny data set itself is in tests/conftest.py)."""

import contextlib

import lightning as L
import pytest


@pytest.fixture
def killed_at(monkeypatch):
    """``with killed_at(step): ...``: every Trainer made inside raises "simulated kill" after that step."""

    class Crash(L.Callback):
        def __init__(self, step):
            self.step = step

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == self.step:
                raise RuntimeError("simulated kill")

    @contextlib.contextmanager
    def arm(step: int):
        real_trainer = L.Trainer

        def crashing_trainer(*args, **kwargs):
            kwargs["callbacks"] = list(kwargs.get("callbacks", [])) + [Crash(step)]
            return real_trainer(*args, **kwargs)

        monkeypatch.setattr(L, "Trainer", crashing_trainer)
        try:
            yield
        finally:
            monkeypatch.setattr(L, "Trainer", real_trainer)

    return arm
