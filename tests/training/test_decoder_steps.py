"""Stage 1's image-decoder steps (``stage1.decoder_steps``): the last steps train the image decoder
alone, with the schedule restarted; everything else is held where the whole-model steps left it."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from vlvae.config import StageConfig, apply_overrides, preset
from vlvae.errors import VLVAEError
from vlvae.models.vlvae import VLVAE
from vlvae.training import run as training
from vlvae.training.schedule import lr_factor, stage_lr_factor


def test_schedule_runs_over_the_steps_then_restarts_without_warm_up():
    stage = StageConfig(
        steps=700, lr_schedule="cosine", lr_warmup_steps=50, lr_final_factor=0.05, decoder_steps=300
    )
    for t in range(0, 700, 37):
        assert stage_lr_factor(t, stage) == lr_factor(t, "cosine", 700, warmup_steps=50, final_factor=0.05)
    for t in range(700, 1000, 29):
        cosine = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (t - 700) / 300))
        assert stage_lr_factor(t, stage) == pytest.approx(cosine)
    exponential = StageConfig(steps=10, lr_schedule="exponential", lr_decay=0.5, decoder_steps=5)
    assert [stage_lr_factor(t, exponential) for t in (9, 10, 12)] == [0.5**9, 1.0, 0.25]
    none = StageConfig(steps=1000, lr_schedule="cosine", lr_warmup_steps=50, lr_final_factor=0.05)
    # past the budget too (the scheduler's last step), as the plain schedule
    assert [stage_lr_factor(t, none) for t in range(0, 1100, 31)] == [
        lr_factor(t, "cosine", 1000, warmup_steps=50, final_factor=0.05) for t in range(0, 1100, 31)
    ]


def test_decoder_only_log_px_is_log_px_at_a_posterior_sample_and_reaches_the_image_decoder_only():
    model = VLVAE(preset("tiny").model).eval()
    x = torch.rand(5, 3, 16, 16)
    torch.manual_seed(3)
    value = model.log_px_decoder_only(x)
    torch.manual_seed(3)
    z = model.image_posterior(x).sample()
    assert torch.equal(value.detach(), model.log_px(x, z).detach())
    value.sum().backward()
    decoder = {id(p) for p in model.image_decoder.parameters()}
    for name, p in model.named_parameters():
        if id(p) in decoder:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_refused_outside_stage_1_of_the_vlvae_with_q_z_given_x():
    cfg = preset("tiny")
    with pytest.raises(VLVAEError, match="'prior.decoder_steps' applies to stage 1 only"):
        apply_overrides(cfg, ["prior.decoder_steps=2"])
    with pytest.raises(VLVAEError, match="for the VLVAE \\(method vlvae\\), not 'jmvae'"):
        apply_overrides(cfg, ["method.name=jmvae", "stage1.decoder_steps=2"])
    with pytest.raises(VLVAEError, match="needs q\\(z\\|x\\), not joint inference"):
        apply_overrides(cfg, ["model.joint_inference=true", "stage1.decoder_steps=2"])
    with pytest.raises(VLVAEError, match="'stage1.decoder_steps' must be at least 0"):
        apply_overrides(cfg, ["stage1.decoder_steps=-1"])
    # any number of whole-model steps goes with them (they come after)
    assert apply_overrides(cfg, ["stage1.decoder_steps=50", "stage1.steps=2"]).stage1.decoder_steps == 50


def test_the_cpu_presets_add_decoder_steps_and_no_other_preset_has_them():
    assert (preset("cpu").stage1.steps, preset("cpu").stage1.decoder_steps) == (10_000, 4_000)
    assert (preset("cpu-long").stage1.steps, preset("cpu-long").stage1.decoder_steps) == (30_000, 8_000)
    for name in ("quick", "tiny", "paper"):
        assert preset(name).stage1.decoder_steps == 0, name


def _held(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("image_decoder.")}


def test_the_last_steps_move_the_image_decoder_alone(data, tmp_path):
    """Six whole-model steps then three on the image decoder leave every other weight and batch-norm
    statistic exactly where a six-step run of the whole model leaves it (the batches of step t and
    the whole-model schedule, a warm-up and a cosine, are the same in both); the image decoder moves
    on, its own batch-norm statistics too (it trains in training mode)."""
    # the strided networks with batch norm everywhere (the cpu preset's), a warm-up and a cosine
    schedule = [
        "model.arch=strided",
        "model.norm=batch",
        "stage1.lr_schedule=cosine",
        "stage1.lr_warmup_steps=1",
        "stage1.lr_final_factor=0.1",
    ]
    both = tmp_path / "both"
    training.train_vlvae(data, both, "tiny", overrides=[*schedule, "stage1.decoder_steps=3"], progress=False)
    whole = tmp_path / "whole"
    training.train_vlvae(data, whole, "tiny", overrides=schedule, progress=False)
    assert json.loads((both / "stage1" / "metrics.json").read_text())["steps"] == 9
    a = load_file(str(both / "stage1" / "weights.safetensors"))
    b = load_file(str(whole / "stage1" / "weights.safetensors"))
    assert a.keys() == b.keys()
    held_a, held_b = _held(a), _held(b)
    assert len(held_a) < len(a)
    for key in held_a:
        assert torch.equal(held_a[key], held_b[key]), key
    moved = {k for k in a if k.startswith("image_decoder.") and not torch.equal(a[k], b[k])}
    assert any(k.endswith(".weight") for k in moved) and any(k.endswith("running_mean") for k in moved)


def test_two_processes_train_the_image_decoder_alone(data, tmp_path):
    """In a 2-process DDP fit the image-decoder steps leave the other parameters without a gradient;
    the fit asks DDP to look for such parameters (which plain DDP expects every step to use) and runs."""
    run = tmp_path / "ddp"
    args = ["--set", "devices=2", "--set", "accelerator=cpu", "--set", "stage1.decoder_steps=3"]
    cmd = [sys.executable, "-m", "vlvae.cli", "train", "vlvae", "--data", str(data), "--out", str(run)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd += ["--preset", "tiny", *args, "--no-progress"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert metrics["steps"] == 9 and metrics["world_size"] == 2
    assert metrics["hardware"]["strategy"] == "ddp_find_unused_parameters_true"


def test_one_process_keeps_the_configured_strategy():
    cfg = apply_overrides(preset("tiny"), ["stage1.decoder_steps=3"])
    assert training._hardware(cfg, unused_parameters=True)["strategy"] == "auto"
    two = apply_overrides(cfg, ["devices=2"])
    assert training._hardware(two, unused_parameters=True)["strategy"] == "ddp_find_unused_parameters_true"
    assert training._hardware(two)["strategy"] == "auto"
    plain_ddp = apply_overrides(cfg, ["strategy=ddp"])
    assert (
        training._hardware(plain_ddp, unused_parameters=True)["strategy"] == "ddp_find_unused_parameters_true"
    )
