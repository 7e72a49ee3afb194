"""Objectives and bounds (Cremer & Kushman 2018, Eqns 1-6, 9-18) against closed forms."""

import copy
import math
from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.distributions import AffineTransform, Categorical, Independent, MixtureSameFamily, Normal
from zuko.distributions import DiagNormal, NormalizingFlow

from vlvae.models import VLVAE, AggregatePrior, ModelConfig, TextPosterior
from vlvae.objectives import (
    DefensiveMixture,
    aggregate_cross_entropy,
    conditional_log_likelihood,
    importance_log_marginals,
    importance_weighted_bound,
    jmvae_kl,
    kl_normal_standard,
    kl_warmup,
    marginal_log_likelihood_image,
    marginal_log_likelihood_text,
    text_elbo,
    vlvae_elbo,
)

N_MC = 400_000


def _mc_mean(values):
    """Mean and standard error of a Monte-Carlo estimate over dim 0."""
    return values.mean(0), values.std(0) / math.sqrt(values.shape[0])


def _gaussians(seed, n, d=2):
    g = torch.Generator().manual_seed(seed)
    mean = 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    std = 0.3 + torch.rand(n, d, generator=g, dtype=torch.float64)
    return mean, std


def _mixture(mean, std):
    """Equal-weight mixture of the diagonal Gaussians N(mean[j], std[j]²)."""
    weights = Categorical(torch.ones(mean.shape[0], dtype=mean.dtype))
    return MixtureSameFamily(weights, Independent(Normal(mean, std), 1))


def test_kl_normal_standard_matches_monte_carlo():
    torch.manual_seed(0)
    mean, std = _gaussians(1, 4, d=3)
    logvar = 2 * std.log()
    q = DiagNormal(mean, std)
    z = q.sample((N_MC,))
    estimate, error = _mc_mean(q.log_prob(z) - DiagNormal(torch.zeros(3), torch.ones(3)).log_prob(z))
    analytic = kl_normal_standard(mean, logvar)
    assert analytic.shape == (4,)
    assert (abs(analytic - estimate) < 5 * error).all(), (analytic, estimate, error)
    torch.testing.assert_close(kl_normal_standard(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


def test_kl_warmup_is_linear_then_one():
    assert [kl_warmup(s, 4) for s in (0, 1, 2, 4, 10)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    assert kl_warmup(0, 0) == 1.0


def test_weighted_objectives():
    log_px, log_py, kl = torch.tensor([-10.0]), torch.tensor([-2.0]), torch.tensor([3.0])
    torch.testing.assert_close(vlvae_elbo(log_px, log_py, kl), torch.tensor([-15.0]))
    torch.testing.assert_close(
        vlvae_elbo(log_px, log_py, kl, w_x=0.1, w_y=10, kl_weight=0.5), torch.tensor([-22.5])
    )
    torch.testing.assert_close(
        text_elbo(log_py, torch.tensor([-1.0]), torch.tensor([0.5])), torch.tensor([-3.5])
    )


def test_eqn5_decomposition_on_gaussians():
    """E_x KL(q(z|x) || q_φ) = E_x KL(q(z|x) || q_y) + KL(q_y || q_φ), q_y the mixture (Eqn 5),
    and −E_x aggregate_cross_entropy = E_x KL(q(z|x) || q_φ) + E_x H[q(z|x)]."""
    torch.manual_seed(0)
    mean, std = _gaussians(2, 3)
    q_x = DiagNormal(mean, std)  # batch of the 3 images' posteriors, one text y
    q_y = _mixture(mean, std)
    q_phi = DiagNormal(
        torch.tensor([0.5, -0.5], dtype=torch.float64), torch.tensor([2.0, 1.5], dtype=torch.float64)
    )

    lhs = jmvae_kl(q_x, q_phi).mean()  # analytic
    z = q_x.sample((N_MC,))  # (N, 3, 2)
    posterior_to_aggregate, e1 = _mc_mean((q_x.log_prob(z) - q_y.log_prob(z)).mean(1))
    w = q_y.sample((N_MC,))
    aggregate_to_phi, e2 = _mc_mean(q_y.log_prob(w) - q_phi.log_prob(w))
    rhs = posterior_to_aggregate + aggregate_to_phi
    assert abs(lhs - rhs) < 5 * math.hypot(e1, e2), (lhs, rhs)

    cross_entropy = -aggregate_cross_entropy(q_phi.log_prob(z).T).mean()  # (3, N) -> (3,) -> mean
    assert abs(cross_entropy - (lhs + q_x.entropy().mean())) < 0.01


def test_eqns_9_to_18_kl_to_prior_decomposition():
    """E_x KL(q(z|x) || p(z)) = KL(q(z) || p(z)) + E_x KL(q(z|x) || q(z)), q(z) = E_x q(z|x)."""
    torch.manual_seed(1)
    mean, std = _gaussians(3, 4)
    q_x = DiagNormal(mean, std)
    q_z = _mixture(mean, std)
    p_z = DiagNormal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))

    lhs = kl_normal_standard(mean, 2 * std.log()).mean()
    w = q_z.sample((N_MC,))
    aggregate_to_prior, e1 = _mc_mean(q_z.log_prob(w) - p_z.log_prob(w))
    z = q_x.sample((N_MC,))
    posterior_to_aggregate, e2 = _mc_mean((q_x.log_prob(z) - q_z.log_prob(z)).mean(1))
    rhs = aggregate_to_prior + posterior_to_aggregate
    assert abs(lhs - rhs) < 5 * math.hypot(e1, e2), (lhs, rhs)


def test_jmvae_kl_monte_carlo_branch_matches_closed_form():
    """A flow that is an affine map of a Gaussian takes the Monte-Carlo branch; its KL is known."""
    torch.manual_seed(2)
    mean, std = _gaussians(4, 2)
    q_x = DiagNormal(mean, std)
    loc, scale = torch.tensor([1.0, -1.0], dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64)
    unit = DiagNormal(torch.zeros(2, 2, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float64))
    flow = NormalizingFlow(AffineTransform(loc, scale, event_dim=1).inv, unit)  # z = loc + scale·u
    exact = jmvae_kl(q_x, DiagNormal(loc.expand(2, 2), scale.expand(2, 2)))
    estimate = jmvae_kl(q_x, flow, n_samples=100_000)
    torch.testing.assert_close(estimate, exact, atol=0.03, rtol=0)


class LinearGaussian(nn.Module):
    """z ~ N(0, I); x|z ~ N(z, σx² I); y|z ~ N(z, σy² I), with a deliberately imperfect
    Gaussian q(z|x). Duck-types the VLVAE methods the bounds use; every log-likelihood is known."""

    SX, SY = 0.5, 0.8

    def image_posterior(self, x, y=None):
        shrink = 1 / (1 + self.SX**2)
        return DiagNormal(0.8 * shrink * x, 1.3 * math.sqrt(self.SX**2 * shrink) * torch.ones_like(x))

    def standard_prior(self):
        return DiagNormal(torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64))

    def log_px(self, x, z):
        return Normal(z, self.SX).log_prob(x).sum(-1)

    def log_py(self, y, z):
        return Normal(z, self.SY).log_prob(y).sum(-1)


@pytest.fixture(scope="module")
def toy():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(300, 2, generator=g, dtype=torch.float64)
    x = z + LinearGaussian.SX * torch.randn(300, 2, generator=g, dtype=torch.float64)
    y = z + LinearGaussian.SY * torch.randn(300, 2, generator=g, dtype=torch.float64)
    return LinearGaussian().eval(), x, y


def _text_prior(y):
    """q_φ(z|y) = N(0.5·y, 0.6² I), not the true p(z|y); ∫ p(x|z) q_φ(z|y) dz = N(x; 0.5·y, 0.36 + σx²)."""
    return DiagNormal(0.5 * y, 0.6 * torch.ones_like(y))


def _text_proposal(model, y):
    """A proposal that depends on y alone: ½ q_φ(z|y) (not p(z|y)) + ½ N(0, I)."""
    return DefensiveMixture([_text_prior(y), model.standard_prior()])


def _exact(toy):
    model, x, y = toy
    sx, sy = model.SX, model.SY
    return {
        "image": Normal(0.0, math.sqrt(1 + sx**2)).log_prob(x).sum(-1),
        "text": Normal(0.0, math.sqrt(1 + sy**2)).log_prob(y).sum(-1),
        "conditional": Normal(0.5 * y, math.sqrt(0.36 + sx**2)).log_prob(x).sum(-1),
    }


def _bound(which, toy, k, micro_batch=100):
    model, x, y = toy
    if which == "image":
        return marginal_log_likelihood_image(model, model.standard_prior, x, k, micro_batch)
    if which == "text":
        return marginal_log_likelihood_text(
            model, model.standard_prior, y, _text_proposal(model, y), k, micro_batch
        )
    return conditional_log_likelihood(model, _text_prior, x, y, k, micro_batch)


@pytest.mark.parametrize("which", ["image", "text", "conditional"])
def test_importance_weighted_bounds_tighten_with_k_towards_exact(which, toy):
    torch.manual_seed(6)
    exact = _exact(toy)[which]
    means = [(_bound(which, toy, k) - exact).mean().item() for k in (1, 10, 100, 1000)]
    # E[bound_k] rises with k towards log p; at k >= 100 the gaps fall below the
    # Monte-Carlo error (~0.005 nats over 300 examples), so only k = 1000 is pinned
    assert means[0] < means[1] < means[2], means
    assert means[1] < means[3] < 0.02, means
    assert abs(means[3]) < 0.05, means


def test_k1_bound_is_the_one_sample_elbo_and_matches_it_in_expectation(toy):
    model, x, _ = toy
    torch.manual_seed(7)
    bound = marginal_log_likelihood_image(model, model.standard_prior, x, k=1)
    torch.manual_seed(7)
    q = model.image_posterior(x)
    z = q.sample((1,))
    elbo = model.log_px(x, z) + model.standard_prior().log_prob(z) - q.log_prob(z)
    torch.testing.assert_close(bound, elbo[0])
    direct = importance_weighted_bound(
        (model.log_px(x, z) + model.standard_prior().log_prob(z)).T, q.log_prob(z).T
    )
    torch.testing.assert_close(direct, elbo[0])
    # closed-form ELBO: E_q log N(x; z, σx²) − KL(q || N(0, I))
    m, s = q.mean, q.stddev
    expected = (Normal(m, model.SX).log_prob(x) - s**2 / (2 * model.SX**2)).sum(-1) - kl_normal_standard(
        m, 2 * s.log()
    )
    diff = bound - expected
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff))


def test_importance_weighted_bound_is_log_mean_exp():
    log_p = torch.tensor([[0.0, math.log(3.0)]])
    torch.testing.assert_close(
        importance_weighted_bound(log_p, torch.zeros(1, 2)), torch.tensor([math.log(2.0)])
    )


# --- on a tiny VLVAE ----------------------------------------------------------------------------

VOCAB, LENGTH = 5, 3


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(8)
    config = ModelConfig(
        image_size=8,
        base_channels=2,
        n_downsample=1,
        n_res_blocks=1,
        encoding_dim=6,
        embedding_dim=4,
        text_hidden=6,
        latent_dim=4,
        shared_hidden=12,
        decoder_dim=6,
        vocab_size=VOCAB,
        text_length=LENGTH,
        flow_steps=2,
        flow_hidden=8,
    )
    # a narrow q(z|x) keeps the Monte-Carlo error of the bounds at a few nats: the untrained
    # decoder is steep, log p(x|z) moves by nats when z moves by 1e-3
    model = VLVAE(replace(config, logvar_min=-16.0, logvar_max=-14.0)).eval()
    text_prior = TextPosterior(config).eval()
    x = torch.rand(4, 3, 8, 8)
    y = torch.randint(VOCAB, (4, LENGTH))
    return model, text_prior, x, y


def test_conditional_likelihood_micro_batching_changes_nothing(tiny):
    model, text_prior, x, y = tiny
    torch.manual_seed(9)
    whole = conditional_log_likelihood(model, text_prior, x, y, k=12, micro_batch=12)
    torch.manual_seed(9)
    chunked = conditional_log_likelihood(model, text_prior, x, y, k=12, micro_batch=5)
    torch.testing.assert_close(chunked, whole)
    for prior_bound in (
        lambda mb: marginal_log_likelihood_image(model, model.standard_prior, x, 12, mb),
        lambda mb: marginal_log_likelihood_text(
            model,
            model.standard_prior,
            y,
            DefensiveMixture([text_prior(y), model.standard_prior().expand((len(y),))]),
            12,
            mb,
        ),
    ):
        torch.manual_seed(10)
        a = prior_bound(12)
        torch.manual_seed(10)
        torch.testing.assert_close(prior_bound(5), a)


def test_conditional_likelihood_batched_equals_per_example(tiny):
    model, text_prior, x, y = tiny
    torch.manual_seed(11)
    batched = conditional_log_likelihood(model, text_prior, x, y, k=20, micro_batch=7)
    single = torch.cat(
        [
            conditional_log_likelihood(model, text_prior, x[i : i + 1], y[i : i + 1], k=20, micro_batch=7)
            for i in range(len(x))
        ]
    )
    assert batched.shape == (4,) and torch.isfinite(batched).all()
    # different noise (seed-to-seed spread ~2 nats), same estimand; the four examples' bounds
    # differ by hundreds of nats, so a misaligned batch would fail by far
    assert (batched.max() - batched.min()) > 100
    torch.testing.assert_close(batched, single, atol=10.0, rtol=0)


def test_bounds_require_eval_mode(tiny):
    model, text_prior, x, y = tiny
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            conditional_log_likelihood(model, text_prior, x, y, k=2)
    finally:
        model.eval()


# --- log p(y) with a proposal that depends on y alone -------------------------------------------


def test_defensive_mixture_density_matches_torch_mixture():
    torch.manual_seed(20)
    means, stds = torch.randn(3, 4, 2, dtype=torch.float64), torch.rand(3, 4, 2, dtype=torch.float64) + 0.2
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    mine = DefensiveMixture([DiagNormal(means[c], stds[c]) for c in range(3)], weights.tolist())
    ref = MixtureSameFamily(
        Categorical(weights.expand(4, 3)),
        Independent(Normal(means.permute(1, 0, 2), stds.permute(1, 0, 2)), 1),
    )
    z = torch.randn(7, 4, 2, dtype=torch.float64)
    torch.testing.assert_close(mine.log_prob(z), ref.log_prob(z), rtol=0, atol=1e-6)


def test_defensive_mixture_samples_each_component_by_its_weight():
    torch.manual_seed(21)
    far = [DiagNormal(torch.full((3, 1), c * 100.0), torch.ones(3, 1)) for c in range(3)]
    z = DefensiveMixture(far, [0.6, 0.3, 0.1]).sample((20_000,))
    assert z.shape == (20_000, 3, 1)
    which = (z / 100).round().long()
    for c, w in enumerate([0.6, 0.3, 0.1]):
        frac = (which == c).double().mean().item()
        assert abs(frac - w) < 4 * math.sqrt(w * (1 - w) / 60_000), (c, frac)


def test_defensive_mixture_refuses_components_of_other_shapes():
    with pytest.raises(ValueError, match="batch shape"):
        DefensiveMixture(
            [DiagNormal(torch.zeros(3, 2), torch.ones(3, 2)), DiagNormal(torch.zeros(4, 2), torch.ones(4, 2))]
        )
    with pytest.raises(ValueError, match="differ in shape"):
        DefensiveMixture(
            [DiagNormal(torch.zeros(3, 2), torch.ones(3, 2)), DiagNormal(torch.zeros(3), torch.ones(3))]
        )


def test_defensive_mixture_with_an_unbatched_component_matches_the_expanded_one():
    torch.manual_seed(25)
    q = DiagNormal(torch.randn(5, 2), torch.rand(5, 2) + 0.5)
    prior = DiagNormal(torch.zeros(2), torch.ones(2))
    a, b = DefensiveMixture([q, prior]), DefensiveMixture([q, prior.expand((5,))])
    z = a.sample((7,))
    assert z.shape == (7, 5, 2)
    torch.testing.assert_close(a.log_prob(z), b.log_prob(z))


def test_nested_k_estimates_share_samples_and_reach_the_exact_log_py(toy):
    """k = 1, 10, 100, 1000 from one draw: the mean estimate rises to the closed form
    log N(y; 0, (1 + σy²) I) as k grows."""
    model, _, y = toy
    exact = _exact(toy)["text"]
    torch.manual_seed(22)
    est = importance_log_marginals(
        lambda z: {"p": model.log_py(y, z) + model.standard_prior().log_prob(z)},
        _text_proposal(model, y),
        [1, 10, 100, 1000],
        micro_batch=128,
    )["p"]
    gaps = [(est[k] - exact).mean().item() for k in (1, 10, 100, 1000)]
    assert gaps[0] < gaps[1] < gaps[2] and gaps[0] < -0.05, gaps
    assert abs(gaps[3]) < 0.02, gaps
    # asking for the smaller k too changes nothing about the largest one's samples
    torch.manual_seed(22)
    alone = marginal_log_likelihood_text(
        model, model.standard_prior, y, _text_proposal(model, y), 1000, micro_batch=300
    )
    torch.testing.assert_close(alone, est[1000])


def test_log_py_difference_between_priors_depends_on_the_text_decoder(tiny):
    """With q(z|x) as the proposal, the learned-minus-standard difference of log p(y) tracked the
    log p(x) difference whatever the text decoder did. With a proposal that depends on y alone, the
    importance-weighted (k > 1) difference moves when only the text decoder changes. At k = 1 the
    shared sample makes the difference log q_φ(z) − log N(z; 0, I), free of the decoder for any
    proposal: only k > 1 measures the text."""

    model, text_prior, _, y = tiny
    torch.manual_seed(23)
    learned = AggregatePrior(replace(model.config, logvar_min=-4.0, logvar_max=4.0)).eval()
    with torch.no_grad():
        learned.distribution.base.loc.add_(1.0)  # a prior far from N(0, I)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.text_decoder.parameters():
            p.add_(2 * torch.randn_like(p))

    def difference(m):
        torch.manual_seed(24)
        proposal = DefensiveMixture([text_prior(y), m.standard_prior().expand((len(y),))])
        est = importance_log_marginals(
            lambda z: {
                "standard": m.log_py(y, z) + m.standard_prior().log_prob(z),
                "learned": m.log_py(y, z) + learned().log_prob(z),
            },
            proposal,
            [1, 100],
            micro_batch=50,
        )
        return {k: (est["learned"][k] - est["standard"][k]) for k in (1, 100)}

    before, after = difference(model), difference(other)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=1e-3)  # float32 rounding of log p(y|z)
    assert (after[100] - before[100]).abs().mean() > 0.1, (before, after)
    # only the text decoder differs: the image side is untouched
    for (name, a), b in zip(model.named_parameters(), other.parameters()):
        assert torch.equal(a, b) or name.startswith("text_decoder"), name
