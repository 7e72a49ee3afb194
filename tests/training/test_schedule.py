"""Learning-rate schedules against their closed forms."""

import math

import pytest
import torch

from vlvae.config import StageConfig
from vlvae.training.schedule import adam_with_schedule, lr_factor


def test_exponential_is_the_papers_decay():
    for t in (0, 1, 10, 12345):
        assert lr_factor(t, "exponential", 10, decay=0.999995) == pytest.approx(0.999995**t)


def test_warmup_is_linear_from_zero():
    factors = [lr_factor(t, "cosine", 1000, warmup_steps=4) for t in range(4)]
    assert factors == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_factor(1, "exponential", 10, decay=0.5, warmup_steps=4) == pytest.approx(0.5 * 0.5**1)


def test_cosine_follows_half_a_cosine_to_the_final_factor():
    total, warm, final = 1100, 100, 0.05
    for t in (100, 350, 600, 850, 1100, 5000):
        progress = min(1.0, (t - warm) / (total - warm))
        expected = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
        assert lr_factor(t, "cosine", total, warmup_steps=warm, final_factor=final) == pytest.approx(expected)
    assert lr_factor(600, "cosine", total, warmup_steps=warm, final_factor=final) == pytest.approx(
        (1 + final) / 2
    )


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine"):
        lr_factor(0, "linear", 10)


def test_optimiser_learning_rate_follows_the_schedule():
    stage = StageConfig(steps=20, lr=1e-2, lr_schedule="cosine", lr_warmup_steps=5, lr_final_factor=0.1)
    p = torch.nn.Parameter(torch.zeros(3))
    conf = adam_with_schedule([p], stage)
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    for t in range(25):
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 * lr_factor(t, "cosine", 20, 1.0, 5, 0.1))
        p.sum().backward()
        opt.step()
        sched.step()
