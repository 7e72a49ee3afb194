"""The baselines' objectives and networks against closed forms and Monte Carlo (issue 11)."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vlvae.config import preset
from vlvae.methods import get_method, method_config, method_names
from vlvae.objectives import (
    jmvae_kl_objective,
    kl_diagonal_normals,
    kl_normal_standard,
    product_of_experts,
    sum_of_elbos,
    vlvae_elbo,
)


def _normal(mean, logvar):
    return Independent(Normal(mean, torch.exp(0.5 * logvar)), 1)


def _model(name, seed=0):
    cfg = preset("tiny")
    cfg.method = method_config(name)  # the method's own section, with its knobs' defaults
    torch.manual_seed(seed)
    return get_method(name).model(cfg.model, cfg.method)


def _batch(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 16, 16, generator=g), torch.randint(19, (n, 9), generator=g)


def test_kl_of_diagonal_normals_matches_torch():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp = (torch.randn(5, 7, generator=g) for _ in range(4))
    expected = kl_divergence(_normal(mq, lq), _normal(mp, lp))
    torch.testing.assert_close(kl_diagonal_normals(mq, lq, mp, lp), expected)
    # Against N(0, I) it is the VLVAE's KL.
    torch.testing.assert_close(
        kl_diagonal_normals(mq, lq, torch.zeros(7), torch.zeros(7)), kl_normal_standard(mq, lq)
    )


def test_product_of_experts_is_the_normalised_product_of_densities():
    g = torch.Generator().manual_seed(0)
    means = [torch.randn(4, 3, generator=g) for _ in range(3)]
    logvars = [torch.randn(4, 3, generator=g) for _ in range(3)]
    mean, logvar = product_of_experts(means, logvars)
    z = torch.randn(50, 4, 3, generator=g) * 3
    # log N(z; product) − Σ_i log N(z; expert_i) is the log normaliser: the same for every z.
    diff = _normal(mean, logvar).log_prob(z) - sum(
        _normal(m, lv).log_prob(z) for m, lv in zip(means, logvars)
    )
    assert torch.allclose(diff, diff[:1].expand_as(diff), atol=1e-4)
    # One expert is its own product; with the N(0, I) expert, the conjugate-Gaussian closed form.
    m1, l1 = product_of_experts(means[:1], logvars[:1])
    torch.testing.assert_close((m1, l1), (means[0], logvars[0]))
    var = logvars[0].exp()
    mp, lp = product_of_experts([torch.zeros(3), means[0]], [torch.zeros(3), logvars[0]])
    torch.testing.assert_close(mp, means[0] / (1 + var))
    torch.testing.assert_close(lp.exp(), var / (1 + var))


def test_jmvae_and_sum_of_elbos_objectives_are_their_formulas():
    g = torch.Generator().manual_seed(0)
    a, b, c, d, e = (torch.randn(6, generator=g) for _ in range(5))
    got = jmvae_kl_objective(a, b, c.abs(), d.abs(), e.abs(), alpha=0.3, w_x=0.1, w_y=20.0, kl_weight=0.5)
    torch.testing.assert_close(got, 0.1 * a + 20 * b - 0.5 * c.abs() - 0.3 * (d.abs() + e.abs()))
    got = sum_of_elbos((a, b, c), (d, e), (c, a), w_x=0.1, w_y=20.0, kl_weight=0.5)
    torch.testing.assert_close(
        got, vlvae_elbo(a, b, c, 0.1, 20.0, 0.5) + 0.1 * d - 0.5 * e + 20.0 * c - 0.5 * a
    )


def test_jmvae_kl_terms_match_monte_carlo():
    model = _model("jmvae").eval()
    x, y = _batch()
    with torch.no_grad():
        out = model(x, y)
        mean, logvar = model.joint_posterior.encode(x, y)
        q_joint = _normal(mean, logvar)
        z = q_joint.sample((40_000,))
        mc_x = (q_joint.log_prob(z) - _normal(*model.posterior.encode(x)).log_prob(z)).mean(0)
        mc_y = (q_joint.log_prob(z) - _normal(*model.text_posterior.encode(y)).log_prob(z)).mean(0)
    assert abs(float(out.terms["kl_joint_image"]) - float(mc_x.mean())) < 0.05 * float(mc_x.mean()) + 0.02
    assert abs(float(out.terms["kl_joint_text"]) - float(mc_y.mean())) < 0.05 * float(mc_y.mean()) + 0.02


def test_telbo_unimodal_terms_leave_the_decoders_frozen():
    model = _model("telbo").train()
    x, y = _batch()
    u = model.unimodal_terms(x, y)
    objective = (0.1 * u["log_px"] - u["kl_x"] + 10.0 * u["log_py"] - u["kl_y"]).mean()
    decoders = [
        p for m in (model.shared_decoder, model.image_decoder, model.text_decoder) for p in m.parameters()
    ]
    encoders = list(model.posterior.parameters()) + list(model.text_posterior.parameters())
    grads = torch.autograd.grad(objective, decoders + encoders, allow_unused=True, retain_graph=True)
    assert all(g is None for g in grads[: len(decoders)])
    assert all(g is not None for g in grads[len(decoders) :]) and any(
        g.abs().sum() > 0 for g in grads[len(decoders) :]
    )
    # An optimiser step on the unimodal terms alone moves q(z|x) and q(z|y), and leaves every decoder
    # parameter bit-identical.
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt.zero_grad()
    (-objective).backward()
    opt.step()
    after = dict(model.named_parameters())
    for name, value in before.items():
        if name.split(".")[0] in ("shared_decoder", "image_decoder", "text_decoder", "joint_posterior"):
            assert torch.equal(value, after[name]), name
    assert not torch.equal(
        before["posterior.shared_encoder.out.weight"], after["posterior.shared_encoder.out.weight"]
    )
    # The full objective does train the decoders (through the joint term).
    full = model(x, y, 1.0, 0.1, 10.0).loss
    (grad,) = torch.autograd.grad(full, next(model.image_decoder.parameters()))
    assert grad.abs().sum() > 0


def test_mvae_posteriors_are_products_with_the_prior_expert():
    model = _model("mvae").eval()
    x, y = _batch()
    with torch.no_grad():
        mx, lx = model.posterior.expert(x)
        my, ly = model.text_posterior.expert(y)
        q_x = model.image_posterior(x)
        q_y = model.text_posterior(y)
        mean, logvar = model.joint_encode(x, y)
    vx, vy = lx.exp(), ly.exp()
    torch.testing.assert_close(q_x.mean, mx / (1 + vx))
    torch.testing.assert_close(q_x.variance, vx / (1 + vx))
    torch.testing.assert_close(q_y.mean, my / (1 + vy))
    precision = 1 + 1 / vx + 1 / vy
    torch.testing.assert_close(logvar.exp(), 1 / precision)
    torch.testing.assert_close(mean, (mx / vx + my / vy) / precision)


@pytest.mark.parametrize("name", [n for n in method_names() if n != "joint"])
def test_every_method_trains_one_step_and_decreases_its_loss_on_one_batch(name):
    model = _model(name).train()
    x, y = _batch(16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    first = None
    for _ in range(30):
        torch.manual_seed(0)  # the same noise at every step: the loss of a fixed function
        loss = model(x, y, 1.0, 0.1, 10.0).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) < first
