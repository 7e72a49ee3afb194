"""Learning-rate schedules: the paper's exponential decay, and linear warm-up with cosine decay.

``exponential`` (docs/design.md §2.1, the authors' code): lr_t = lr · decay^t.
``cosine``: lr rises linearly from 0 over ``warmup_steps`` (Goyal et al. 2017,
https://arxiv.org/abs/1706.02677), then follows half a cosine from lr down to
``final_factor`` · lr at ``total_steps`` (SGDR without restarts, Loshchilov &
Hutter 2017, https://arxiv.org/abs/1608.03983).
"""

from __future__ import annotations

import math

import torch

from vlvae.config import LR_SCHEDULES, StageConfig, decoder_from

__all__ = ["SCHEDULES", "lr_factor", "stage_lr_factor", "adam_with_schedule"]

#: The schedules' names (defined with the config that chooses one, :data:`vlvae.config.LR_SCHEDULES`).
SCHEDULES = LR_SCHEDULES


def lr_factor(
    step: int,
    schedule: str,
    total_steps: int,
    decay: float = 1.0,
    warmup_steps: int = 0,
    final_factor: float = 0.0,
) -> float:
    """The multiplier of the base learning rate at optimisation step ``step`` (0-based).

    Arguments:
        step: the step about to be taken.
        schedule: ``exponential`` or ``cosine``.
        total_steps: the stage's step budget (the cosine reaches ``final_factor`` there).
        decay: per-step factor of the exponential schedule.
        warmup_steps: steps of linear warm-up (both schedules).
        final_factor: the cosine's last multiplier.

    Example:
        >>> lr_factor(0, "cosine", 100, warmup_steps=10), lr_factor(9, "cosine", 100, warmup_steps=10)
        (0.1, 1.0)
        >>> round(lr_factor(100, "cosine", 100, warmup_steps=10, final_factor=0.05), 6)
        0.05
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "exponential":
        return warm * decay**step
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0, step - warmup_steps) / span)
    return warm * (final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def stage_lr_factor(step: int, stage: StageConfig) -> float:
    """The multiplier of ``stage.lr`` at step ``step`` of a stage.

    The stage's schedule runs over its ``steps``; over stage 1's ``decoder_steps`` after them (the
    image decoder trained alone) it starts again from its beginning, without the warm-up. With
    ``decoder_steps = 0`` this is :func:`lr_factor` over ``steps`` at every step.

    Example:
        >>> stage = StageConfig(steps=60, lr_schedule="cosine", lr_final_factor=0.05, decoder_steps=40)
        >>> [round(stage_lr_factor(s, stage), 3) for s in (0, 59, 60, 100)]
        [1.0, 0.051, 1.0, 0.05]
    """
    schedule, decay, final = stage.lr_schedule, stage.lr_decay, stage.lr_final_factor
    start = decoder_from(stage)
    if start is None or step < start:
        return lr_factor(step, schedule, stage.steps, decay, stage.lr_warmup_steps, final)
    return lr_factor(step - start, schedule, stage.decoder_steps, decay, 0, final)


def adam_with_schedule(parameters, stage) -> dict:
    """Adam with the stage's learning rate, weight decay and schedule (:func:`stage_lr_factor`), in
    Lightning's optimiser format.

    ``stage`` is a :class:`vlvae.config.StageConfig`; the schedule steps once per optimisation step.
    """
    opt = torch.optim.Adam(parameters, lr=stage.lr, weight_decay=stage.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: stage_lr_factor(step, stage))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
