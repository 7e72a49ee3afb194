"""TELBO as a fair baseline (issue 19 item 5): its unimodal terms leave the decoders' buffers alone, and
its text-only ELBO has its own weight."""

import pytest
import torch

from vlvae.config import apply_overrides, preset
from vlvae.errors import VLVAEError
from vlvae.methods import build_model, method_config
from vlvae.methods.telbo import TEXT_ONLY_WEIGHT, TELBOConfig
from vlvae.models.multimodal import frozen_decoders
from vlvae.objectives import kl_normal_standard, sum_of_elbos

DECODERS = ("shared_decoder", "image_decoder", "text_decoder")


def _telbo(seed=0, **knobs):
    cfg = preset("tiny")
    torch.manual_seed(seed)
    return build_model(cfg.model, method_config("telbo", **knobs))


def _batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(19, (n, 9), generator=g)


def _decoder_buffers(model) -> dict:
    return {f"{d}.{name}": b.clone() for d in DECODERS for name, b in getattr(model, d).named_buffers()}


def _modes(model) -> dict:
    return {name: m.training for name, m in model.named_modules()}


def test_a_unimodal_pass_in_training_mode_leaves_every_decoder_buffer_bit_identical():
    model = _telbo().train()
    x, y = _batch()
    before = _decoder_buffers(model)
    assert any("running_mean" in k for k in before)  # the tiny decoders have batch norm to move
    modes = _modes(model)
    u = model.unimodal_terms(x, y)
    (-(u["log_px"] - u["kl_x"] + u["log_py"] - u["kl_y"]).mean()).backward()
    after = _decoder_buffers(model)
    for name, value in before.items():
        assert torch.equal(value, after[name]), name  # num_batches_tracked included
    assert _modes(model) == modes  # every module back in its own mode
    # The joint pass still moves them: batch norm's running statistics follow the joint posterior.
    mean, logvar = model.joint_posterior.encode(x, y)
    model.decode_terms(x, y, model.reparameterise(mean, logvar))
    moved = _decoder_buffers(model)
    assert any(not torch.equal(before[k], moved[k]) for k in before if "running_mean" in k)


def test_a_training_step_moves_the_decoder_buffers_exactly_as_its_joint_pass_alone():
    x, y = _batch()
    full, joint_only = _telbo().train(), _telbo().train()
    torch.manual_seed(5)
    full(x, y, 0.5, 0.1, 10.0).loss.backward()
    torch.manual_seed(5)  # the same joint z and dropout masks: forward draws them first
    mean, logvar = joint_only.joint_posterior.encode(x, y)
    joint_only.decode_terms(x, y, joint_only.reparameterise(mean, logvar))
    a, b = _decoder_buffers(full), _decoder_buffers(joint_only)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("training", [True, False])
def test_frozen_decoders_are_the_evaluated_decoders(training):
    """The unimodal terms see the decoders as evaluation runs them (running statistics, no dropout),
    whatever mode the model is in, and leave its modes as they were."""
    model = _telbo()
    x, y = _batch()
    for _ in range(3):  # running statistics away from their initial values
        model.train().decode_terms(x, y, torch.randn(8, model.config.latent_dim))
    model.train(training)
    z = torch.randn(8, model.config.latent_dim)
    frozen = frozen_decoders(model, x, y, z)
    assert all(m.training == training for m in model.modules())
    model.eval()
    with torch.no_grad():
        evaluated = model.decode_terms(x, y, z)
    for got, want in zip(frozen, evaluated):
        torch.testing.assert_close(got.detach(), want, rtol=0, atol=0)


def test_frozen_decoders_restore_the_modes_when_the_pass_fails():
    model = _telbo().train()
    x, y = _batch()
    with pytest.raises(RuntimeError):
        frozen_decoders(model, x, y, torch.randn(8, model.config.latent_dim + 1))  # wrong latent size
    assert all(m.training for m in model.modules())


def test_sum_of_elbos_text_only_weight_enters_the_text_only_term_alone():
    g = torch.Generator().manual_seed(0)
    terms = [torch.randn(6, generator=g, requires_grad=True) for _ in range(7)]
    lpx, lpy, kl, lpx_x, kl_x, lpy_y, kl_y = terms
    args = ((lpx, lpy, kl), (lpx_x, kl_x), (lpy_y, kl_y))
    out = sum_of_elbos(*args, w_x=0.1, w_y=20.0, kl_weight=0.5, w_y_text_only=3.0)
    grads = torch.autograd.grad(out.sum(), terms)
    expected = [0.1, 20.0, -0.5, 0.1, -0.5, 3.0, -0.5]  # d/d each term, per example
    for grad, want in zip(grads, expected):
        torch.testing.assert_close(grad, torch.full((6,), want))
    # Closed form, and without it one pair of weights for all three ELBOs (the behaviour before).
    torch.testing.assert_close(
        out,
        0.1 * lpx + 20.0 * lpy - 0.5 * kl + 0.1 * lpx_x - 0.5 * kl_x + 3.0 * lpy_y - 0.5 * kl_y,
    )
    torch.testing.assert_close(
        sum_of_elbos(*args, w_x=0.1, w_y=20.0, kl_weight=0.5),
        sum_of_elbos(*args, w_x=0.1, w_y=20.0, kl_weight=0.5, w_y_text_only=20.0),
    )


def test_telbo_text_only_weight_trains_q_z_y_alone():
    """Two TELBOs differing only in the text-only weight: the same joint ELBO, losses apart by exactly
    the weight times the text-only log-likelihood, and identical gradients everywhere but q(z|y)."""
    x, y = _batch()
    models = [_telbo(text_only_weight=w).train() for w in (1.0, 50.0)]
    outs, logs = [], []
    for model in models:
        torch.manual_seed(3)
        outs.append(model(x, y, 0.5, 0.1, 10.0))
        # The text-only log-likelihood (batch mean): its ELBO plus its KL (q(z|y) has no noise).
        kl_y = kl_normal_standard(*model.text_posterior.encode(y)).mean()
        logs.append((outs[-1].terms["elbo_text_only"] + kl_y).detach())
    torch.testing.assert_close(logs[0], logs[1])
    assert torch.equal(outs[0].elbo, outs[1].elbo) and torch.equal(outs[0].log_py, outs[1].log_py)
    torch.testing.assert_close(outs[0].loss - outs[1].loss, (50.0 - 1.0) * logs[0])
    grads = []
    for model, out in zip(models, outs):
        names, params = zip(*model.named_parameters())
        grads.append(dict(zip(names, torch.autograd.grad(out.loss, params, allow_unused=True))))
    differ = {n for n in grads[0] if not _same(grads[0][n], grads[1][n])}
    assert differ and all(n.startswith("text_posterior.") for n in differ)


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_text_only_weight_is_a_checked_knob_of_telbo():
    cfg = apply_overrides(preset("tiny"), ["method.name=telbo", "method.text_only_weight=7.5"])
    assert cfg.method == TELBOConfig(name="telbo", text_only_weight=7.5)
    assert build_model(cfg.model, cfg.method).text_only_weight == 7.5
    assert method_config("telbo").text_only_weight == TEXT_ONLY_WEIGHT
    with pytest.raises(VLVAEError, match=r"'method.text_only_weight' must be greater than 0, got 0"):
        apply_overrides(preset("tiny"), ["method.name=telbo", "method.text_only_weight=0"])
