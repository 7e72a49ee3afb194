"""q(z|x), q_φ(z|y) and q_φ(z) (paper §3-§4, §5.1.1), including a toy with a known bimodal aggregate."""

import math

import pytest
import torch

from vlvae.models import AggregatePrior, ImagePosterior, ModelConfig, TextPosterior
from vlvae.objectives import aggregate_cross_entropy, prior_cross_entropy

MODE, STD = 3.0, 0.5  # q(z|x) for the two images: N(±(3, 3), 0.5² I)


def _config(**kw):
    return ModelConfig(
        image_size=16,
        base_channels=4,
        n_res_blocks=1,
        encoding_dim=8,
        embedding_dim=4,
        text_hidden=8,
        latent_dim=2,
        shared_hidden=16,
        vocab_size=3,
        text_length=2,
        **kw,
    )


def _aggregate_samples(n, generator):
    """Samples of q_y(z) = ½ N((3, 3), 0.25 I) + ½ N(−(3, 3), 0.25 I), the aggregate of two q(z|x)."""
    sign = torch.randint(2, (n, 1), generator=generator) * 2.0 - 1.0
    return sign * MODE + STD * torch.randn(n, 2, generator=generator)


def _mixture_entropy(generator, n=200_000):
    z = _aggregate_samples(n, generator)
    component = torch.distributions.Normal(torch.tensor([[MODE, MODE], [-MODE, -MODE]]), STD)
    log_q = torch.logsumexp(component.log_prob(z[:, None]).sum(-1), dim=1) - math.log(2)
    return -log_q.mean().item()


def _best_gaussian_cross_entropies():
    """Closed-form minimal cross-entropies ½ log det(2πe Σ) over full and over diagonal Gaussians.

    The minimiser of E_q[−log N(z; m, Σ)] is the moment-matched Gaussian, whose
    cross-entropy is its entropy; restricted to diagonal Σ it keeps the marginal variances.
    """
    cov = torch.tensor([[STD**2 + MODE**2, MODE**2], [MODE**2, STD**2 + MODE**2]], dtype=torch.float64)
    full = 0.5 * torch.logdet(2 * math.pi * math.e * cov).item()
    diagonal = 0.5 * torch.logdet(2 * math.pi * math.e * torch.diag(cov.diagonal())).item()
    return full, diagonal


def _fit(make_distribution, module, steps=400, batch=256, seed=0):
    """Maximise E_q(z|x)[log q_φ] (Eqn 5 / §4.2) on samples; return the cross-entropy on fresh ones."""
    g = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        z = _aggregate_samples(batch, g)
        loss = -make_distribution(batch).log_prob(z).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        z = _aggregate_samples(20_000, g)
        return -make_distribution(20_000).log_prob(z).mean().item()


@pytest.fixture(scope="module")
def reference():
    g = torch.Generator().manual_seed(123)
    return (_mixture_entropy(g), *_best_gaussian_cross_entropies())


@pytest.mark.parametrize("which", ["text_posterior", "aggregate_prior"])
def test_flow_fits_bimodal_aggregate_but_gaussian_cannot(which, reference):
    """Both images have the same text y, so q_y is the bimodal mixture of their posteriors."""
    entropy, best_full, best_diagonal = reference
    assert best_full - entropy > 1.4  # no Gaussian, even with full covariance, comes close
    results = {}
    for kind in ("flow", "gaussian"):
        torch.manual_seed(0)
        if which == "text_posterior":
            module = TextPosterior(_config(flow_steps=6, flow_hidden=50), family=kind)
            y = torch.tensor([[1, 2]])
            results[kind] = _fit(lambda n, module=module, y=y: module(y.expand(n, 2)), module)
        else:
            module = AggregatePrior(_config(flow_steps=6, flow_hidden=50), family=kind)
            results[kind] = _fit(lambda n, module=module: module(), module)
    # a cross-entropy is never below the entropy; MC error of each estimate is ~0.01 nats
    assert results["flow"] > entropy - 0.05
    assert results["flow"] < entropy + 0.35, (results, entropy)
    assert results["flow"] < best_full - 1.0, (results, best_full)
    # kind="gaussian" is diagonal: it reaches, and cannot beat, the best diagonal Gaussian
    assert abs(results["gaussian"] - best_diagonal) < 0.1, (results, best_diagonal)


def test_cross_entropy_objectives_are_sample_means():
    log_q = torch.tensor([[1.0, 3.0], [0.0, -2.0]])
    torch.testing.assert_close(aggregate_cross_entropy(log_q), torch.tensor([2.0, -1.0]))
    torch.testing.assert_close(prior_cross_entropy(log_q[:, 0]), log_q[:, 0])


def test_image_posterior_is_diagonal_gaussian_with_clamped_logvar():
    torch.manual_seed(0)
    posterior = ImagePosterior(_config(logvar_min=-1.0, logvar_max=0.5)).eval()
    x = torch.rand(3, 3, 16, 16)
    q = posterior(x)
    assert isinstance(q, torch.distributions.Independent)
    assert isinstance(q.base_dist, torch.distributions.Normal)
    assert q.batch_shape == (3,) and q.event_shape == (2,)
    mean, logvar = posterior.encode(x)
    torch.testing.assert_close(q.mean, mean)
    assert logvar.min() >= -1.0 and logvar.max() <= 0.5


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="posterior_family"):
        TextPosterior(_config(), family="mixture")
