"""Log-densities and bounds under bfloat16 autocast (docs/mixed_precision.md).

Each term is computed inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` and compared with an
independent truth: the same formula in float64 on the same inputs (torch.distributions in
float64, ``math.lgamma``), or the same weights run in float32/float64 without autocast.

Tolerances, and why:

* A term whose inputs are given (the Beta density at given α, a KL from given means and
  log-variances, a log-sum-exp of given log weights, the aggregate density): float32 arithmetic,
  so relative 1e-5 plus a few thousandths of a nat for sums of hundreds of terms. bfloat16 keeps 8
  significant bits (relative 2⁻⁸), so the same terms in bfloat16 are off by tenths of a nat to
  hundreds of nats and fail these checks (the Beta one by ~1,000 nats on a 16 × 16 image).
* A term of a model whose layers run in bfloat16 (log p(x|z), log p(y|z), a flow's log q(z), an
  importance-weighted bound): the layers' outputs carry bfloat16 rounding that no density can
  undo, so the check is against the same weights without autocast. Sums over 768 pixel-channels:
  relative 5e-3 (measured 7e-4; the old bfloat16 lgamma gave 5e-2). Nine words: relative 1e-2. A
  flow over 4 dimensions with 4 coupling half-steps, against float64: mean 0.005, max 0.03 nats
  over 64 points (measured ≤ 0.004 and ≤ 0.021; bfloat16 log-determinants gave ≥ 0.007, ≥ 0.04).
  A defensive mixture of such a flow and N(0, I): 0.025 nats.
"""

import math

import pytest
import torch
from torch.distributions import Beta, Independent, Normal

from vlvae.config import preset
from vlvae.evaluation.landing import aggregate_log_density
from vlvae.models import VLVAE, AggregatePrior, ConstrainedBeta, TextPosterior, map_pixels
from vlvae.models.image import make_image_decoder
from vlvae.objectives import (
    DefensiveMixture,
    effective_sample_sizes,
    float32,
    full_precision,
    importance_weighted_bound,
    kl_diagonal_normals,
    kl_normal_standard,
    marginal_log_likelihood_image,
    marginal_log_likelihood_text,
    nested_log_marginals,
)
from vlvae.training import run as runs

BF16 = torch.bfloat16


def autocast():
    return torch.autocast("cpu", dtype=BF16)


@pytest.fixture(scope="module")
def config():
    return preset("tiny").model


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return VLVAE(config).eval()


def _bf16_values(*shape, low=0.0, high=1.0, seed=0):
    """Values already representable in bfloat16 (as a bfloat16 network would hand them over)."""
    g = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.float64)).to(BF16)


# --------------------------------------------------------------------------- the helper


def test_full_precision_turns_autocast_off_and_upcasts_half_inputs_only():
    seen = {}

    @full_precision
    def f(a, b, pair, scale=None):
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["dtypes"] = (a.dtype, b.dtype, [t.dtype for t in pair], scale.dtype)
        return a

    with autocast():
        out = f(
            torch.ones(2, dtype=BF16),
            torch.ones(2, dtype=torch.float64),
            [torch.ones(1, dtype=torch.float16)],
            scale=torch.ones(1, dtype=BF16),
        )
        assert torch.is_autocast_enabled("cpu")  # restored after the call
    assert seen["autocast"] is False
    assert seen["dtypes"] == (torch.float32, torch.float64, [torch.float32], torch.float32)
    assert out.dtype == torch.float32
    assert float32(3) == 3 and float32(torch.ones(1, dtype=torch.long)).dtype == torch.long


# --------------------------------------------------------------------------- the Beta likelihood


def test_beta_log_density_of_bf16_alpha_is_exact_under_autocast():
    # α as a bfloat16 decoder hands it over, saturated pixels included; pixels mapped into [0.02, 0.98].
    alpha = _bf16_values(4, 3, 16, 16, low=0.01, high=0.99, seed=1)
    x = map_pixels(torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)), 0.02, 0.98)
    a64 = alpha.double()
    truth = Independent(Beta(100.0 * a64, 100.0 * (1 - a64)), 3).log_prob(x.double())
    with autocast():
        got = Independent(ConstrainedBeta(alpha, 100.0), 3).log_prob(x)
    assert got.dtype == torch.float32
    # 768 float32 terms of size ~400 (lgamma(98)): about 1e-3 nats of rounding in the sum.
    torch.testing.assert_close(got.double(), truth, rtol=1e-5, atol=0.05)


def test_beta_log_density_matches_math_lgamma_pixel_by_pixel():
    alpha = torch.tensor([0.0117, 0.5, 0.98, 0.996], dtype=BF16)
    x = torch.tensor([0.02, 0.5, 0.97, 0.98])
    with autocast():
        got = ConstrainedBeta(alpha, 100.0).log_prob(x)
    for g, a, v in zip(got.tolist(), alpha.double().tolist(), x.double().tolist()):
        a_, b_ = 100.0 * a, 100.0 * (1 - a)
        truth = (
            (a_ - 1) * math.log(v)
            + (b_ - 1) * math.log1p(-v)
            - math.lgamma(a_)
            - math.lgamma(b_)
            + math.lgamma(100.0)
        )
        assert g == pytest.approx(truth, rel=1e-5, abs=1e-4)


def test_alpha_one_in_bf16_is_still_clamped():
    # In bfloat16, 1 − 1e-4 rounds to 1: a clamp done there leaves β = 0 and lgamma(0) = inf.
    with autocast():
        got = ConstrainedBeta(torch.tensor([1.0], dtype=BF16), 100.0).log_prob(torch.tensor([0.98]))
    truth = ConstrainedBeta(torch.tensor([1.0 - 1e-4], dtype=torch.float64), 100.0).log_prob(
        torch.tensor([0.98], dtype=torch.float64)
    )
    assert torch.isfinite(got).all()
    # β = c − cα = 0.01 cancels in float32: 1e-3 nats, not the infinity of a bfloat16 clamp.
    assert got.item() == pytest.approx(truth.item(), abs=1e-3)


def test_model_log_px_under_autocast_tracks_float32(model, config):
    torch.manual_seed(3)
    x = torch.rand(8, 3, config.image_size, config.image_size)
    z = torch.randn(8, config.latent_dim)
    with torch.no_grad():
        fp32 = model.log_px(x, z)
        with autocast():
            mixed = model.log_px(x, z)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, fp32, rtol=5e-3, atol=0.0)


# --------------------------------------------------------------------------- the text likelihood


def test_text_log_likelihood_is_float32_of_the_decoders_logits(model, config):
    torch.manual_seed(4)
    y = torch.randint(config.vocab_size, (16, config.text_length))
    z = torch.randn(16, config.latent_dim)
    with torch.no_grad(), autocast():
        got = model.log_py(y, z)
        logits = model.text_decoder.logits(model.shared_decoder(z), y)  # the same network outputs
        _, generated = model.text_decoder.generate(model.shared_decoder(z))
    truth = logits.double().log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1).sum(-1)
    assert got.dtype == logits.dtype == generated.dtype == torch.float32
    # nine float32 log-softmaxes of ~20 words: a few 1e-6 nats; bfloat16 gives ~0.05.
    torch.testing.assert_close(got.double(), truth, rtol=0.0, atol=1e-3)


def test_model_log_py_under_autocast_tracks_float32(model, config):
    torch.manual_seed(5)
    y = torch.randint(config.vocab_size, (16, config.text_length))
    z = torch.randn(16, config.latent_dim)
    with torch.no_grad():
        fp32 = model.log_py(y, z)
        with autocast():
            mixed = model.log_py(y, z)
    torch.testing.assert_close(mixed, fp32, rtol=1e-2, atol=0.0)


# --------------------------------------------------------------------------- flows


@pytest.mark.parametrize("kind", ["text_posterior", "aggregate_prior"])
def test_flow_log_density_under_autocast_tracks_float64(config, kind):
    torch.manual_seed(6)
    module = (TextPosterior if kind == "text_posterior" else AggregatePrior)(config).eval()
    reference = (TextPosterior if kind == "text_posterior" else AggregatePrior)(config).eval()
    reference.load_state_dict(module.state_dict())
    reference.double()
    y = torch.randint(config.vocab_size, (64, config.text_length))
    z = torch.randn(64, config.latent_dim)

    def dist(m):
        return m(y) if kind == "text_posterior" else m()

    with torch.no_grad():
        truth = dist(reference).log_prob(z.double())
        with autocast():
            q = dist(module)
            got = q.log_prob(z)
            drawn = q.rsample((3,))
    assert got.dtype == drawn.dtype == torch.float32
    error = (got.double() - truth).abs()
    # bfloat16 hypernetworks alone: mean 0.002-0.004, max 0.01-0.02 nats over seeds; with the
    # log-determinants and base density in bfloat16 too: mean 0.007-0.012, max 0.04-0.07.
    assert error.mean() <= 0.005 and error.max() <= 0.03, (error.mean(), error.max())


# --------------------------------------------------------------------------- KL terms


def test_kl_terms_of_bf16_statistics_are_float32_exact():
    mean_q, logvar_q = (
        _bf16_values(8, 64, low=-2, high=2, seed=7),
        _bf16_values(8, 64, low=-3, high=1, seed=8),
    )
    mean_p, logvar_p = (
        _bf16_values(8, 64, low=-2, high=2, seed=9),
        _bf16_values(8, 64, low=-3, high=1, seed=10),
    )
    q64 = Independent(Normal(mean_q.double(), (0.5 * logvar_q.double()).exp()), 1)
    p64 = Independent(Normal(mean_p.double(), (0.5 * logvar_p.double()).exp()), 1)
    std64 = Independent(Normal(torch.zeros(64, dtype=torch.float64), torch.ones(64, dtype=torch.float64)), 1)
    with autocast():
        kl_std = kl_normal_standard(mean_q, logvar_q)
        kl_pair = kl_diagonal_normals(mean_q, logvar_q, mean_p, logvar_p)
    assert kl_std.dtype == kl_pair.dtype == torch.float32
    torch.testing.assert_close(
        kl_std.double(), torch.distributions.kl_divergence(q64, std64), rtol=1e-5, atol=1e-4
    )
    torch.testing.assert_close(
        kl_pair.double(), torch.distributions.kl_divergence(q64, p64), rtol=1e-5, atol=1e-4
    )


def test_model_posterior_and_kl_are_float32_under_autocast(model, config):
    torch.manual_seed(11)
    x = torch.rand(8, 3, config.image_size, config.image_size)
    y = torch.randint(config.vocab_size, (8, config.text_length))
    with torch.no_grad():
        fp32 = model(x, y)
        with autocast():
            q = model.image_posterior(x)
            mixed = model(x, y)
    assert q.mean.dtype == q.stddev.dtype == torch.float32
    assert all(v.dtype == torch.float32 for v in (mixed.kl, mixed.log_px, mixed.log_py, mixed.elbo))
    torch.testing.assert_close(mixed.kl, fp32.kl, rtol=1e-2, atol=0.0)


# --------------------------------------------------------------------------- log-sum-exp and bounds


def test_log_sum_exps_of_bf16_log_weights_are_float32_exact():
    # log weights the size of an image's log p(x|z): bfloat16's step there is 4 nats.
    log_w = _bf16_values(50, 6, low=-760, high=-740, seed=12)
    w64 = log_w.double()
    with autocast():
        iw = importance_weighted_bound(log_w.T, torch.zeros(6, 50, dtype=BF16))
        nested = nested_log_marginals(log_w, [1, 10, 50])
        ess = effective_sample_sizes(log_w, [50])
    assert iw.dtype == nested[50].dtype == ess[50].dtype == torch.float32
    torch.testing.assert_close(iw.double(), torch.logsumexp(w64, 0) - math.log(50), rtol=0.0, atol=1e-3)
    for k in (1, 10, 50):
        torch.testing.assert_close(
            nested[k].double(), torch.logsumexp(w64[:k], 0) - math.log(k), rtol=0.0, atol=1e-3
        )
    truth_ess = torch.exp(2 * torch.logsumexp(w64, 0) - torch.logsumexp(2 * w64, 0))
    torch.testing.assert_close(ess[50].double(), truth_ess, rtol=1e-4, atol=0.0)


def test_image_bound_under_autocast_tracks_float32(model, config):
    x = torch.rand(4, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(13))
    torch.manual_seed(14)
    fp32 = marginal_log_likelihood_image(model, model.standard_prior, x, k=10, micro_batch=5)
    with autocast():
        torch.manual_seed(14)
        mixed = marginal_log_likelihood_image(model, model.standard_prior, x, k=10, micro_batch=5)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, fp32, rtol=5e-3, atol=0.0)


def test_text_bound_and_mixture_under_autocast_track_float32(model, config):
    torch.manual_seed(15)
    q_text = TextPosterior(config).eval()
    prior = AggregatePrior(config).eval()
    y = torch.randint(config.vocab_size, (4, config.text_length))

    def bound():
        torch.manual_seed(16)
        with torch.no_grad():
            proposal = DefensiveMixture([q_text(y), model.standard_prior()])
            z = proposal.sample((5,))
            return proposal.log_prob(z), marginal_log_likelihood_text(model, prior, y, proposal, k=10)

    fp32_mix, fp32 = bound()
    with autocast():
        mixed_mix, mixed = bound()
    assert mixed_mix.dtype == mixed.dtype == torch.float32
    torch.testing.assert_close(mixed_mix, fp32_mix, rtol=0.0, atol=0.025)
    torch.testing.assert_close(mixed, fp32, rtol=1e-2, atol=0.0)


# --------------------------------------------------------------------------- the aggregate density (Table 3)


def test_aggregate_density_under_autocast_is_the_float64_mixture():
    means, logvars = (
        _bf16_values(30, 4, low=-2, high=2, seed=17),
        _bf16_values(30, 4, low=-4, high=0, seed=18),
    )
    z = _bf16_values(12, 4, low=-3, high=3, seed=19)
    components = Independent(Normal(means.double(), (0.5 * logvars.double()).exp()), 1)
    truth = torch.logsumexp(components.log_prob(z.double().unsqueeze(1)), dim=1) - math.log(30)
    with autocast():
        got = aggregate_log_density(z, means, logvars, row_chunk=5, component_chunk=7)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, truth, rtol=0.0, atol=1e-9)


# --------------------------------------------------------------------------- training


def test_bf16_mixed_training_logs_what_float32_training_logs(data, tmp_path):
    """Stage 1 of the tiny preset, 60 steps, through the project's own entry point: Lightning's
    bf16-mixed validation log p(x|z) and log p(y|z) track float32's (same seed) within 5 %.
    Before the densities were float32, bf16-mixed logged val/log_px 1,330 against float32's 303
    after 30 steps of this run."""
    logged = {}
    for precision in ("32-true", "bf16-mixed"):
        metrics = runs.train_vlvae(
            data,
            tmp_path / precision,
            "tiny",
            steps=60,
            overrides=[f"precision={precision}", "stage1.val_every=60", "stage1.kl_warmup_steps=10"],
            progress=False,
        )
        logged[precision] = metrics["validation"]
    for key in ("val/log_px", "val/log_py"):
        fp32, mixed = logged["32-true"][key], logged["bf16-mixed"][key]
        assert math.copysign(1, fp32) == math.copysign(1, mixed), (key, fp32, mixed)
        assert abs(mixed - fp32) <= 0.05 * abs(fp32), (key, fp32, mixed)


@pytest.mark.parametrize("arch", ["strided", "cyclegan"])
def test_the_decoders_alpha_is_float32_under_autocast_and_unchanged_without(arch):
    """The decoder's last convolution and sigmoid run in float32 inside autocast (α feeds the Beta
    density); without autocast the decoder is its plain layers, bit for bit."""
    torch.manual_seed(0)
    decoder = make_image_decoder(arch, 8, 16, 3, 8, 2, 0).eval()
    h = torch.randn(4, 8)
    inputs = []
    decoder.body[0].register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
    with torch.no_grad():
        plain = decoder(h)
        reference = torch.nn.Sequential.forward(decoder.body, inputs[0])  # every layer as it is
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = decoder(h)
            before = torch.nn.Sequential.forward(decoder.body, inputs[-1])  # the old path: all bfloat16
    assert torch.equal(plain, reference)
    assert plain.dtype == torch.float32 and mixed.dtype == torch.float32 and before.dtype == torch.bfloat16
    # the layers before the head ran in bfloat16, so α moves a little, but it is not rounded to 8 bits
    assert (mixed - plain).abs().max() < 0.05
    assert not torch.equal(mixed, mixed.to(torch.bfloat16).float())
