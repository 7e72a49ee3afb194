"""The constrained Beta image likelihood (paper §5.1.2) against torch.distributions.Beta."""

import pytest
import torch
from torch.distributions import Beta

from vlvae.models import ConstrainedBeta, map_pixels, unmap_pixels
from vlvae.models.likelihoods import beta_log_prob


def test_log_prob_matches_torch_beta():
    torch.manual_seed(0)
    alpha = torch.rand(4, 3, 5, 5, dtype=torch.float64) * 0.98 + 0.01
    x = torch.rand(4, 3, 5, 5, dtype=torch.float64) * 0.96 + 0.02
    c = 100.0
    expected = Beta(c * alpha, c * (1 - alpha)).log_prob(x)
    torch.testing.assert_close(ConstrainedBeta(alpha, c).log_prob(x), expected)


def test_mean_variance_and_samples():
    torch.manual_seed(1)
    alpha = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    d = ConstrainedBeta(alpha, 100.0)
    torch.testing.assert_close(d.mean, alpha)
    torch.testing.assert_close(d.variance, Beta(100 * alpha, 100 * (1 - alpha)).variance)
    samples = d.sample((20000,))
    assert samples.shape == (20000, 3)
    # standard error of the mean is at most sqrt(0.25 / 101 / 20000) ≈ 3.5e-4
    torch.testing.assert_close(samples.mean(0), alpha, atol=2e-3, rtol=0)


def test_alpha_clamped_so_extremes_stay_finite():
    d = ConstrainedBeta(torch.tensor([0.0, 1.0]), 100.0)
    log_p = d.log_prob(torch.tensor([0.02, 0.98]))
    assert torch.isfinite(log_p).all()


def test_pixel_map_round_trip():
    x = torch.linspace(0, 1, 11)
    mapped = map_pixels(x, 0.02, 0.98)
    assert mapped.min() == 0.02 and abs(mapped.max() - 0.98) < 1e-7
    torch.testing.assert_close(unmap_pixels(mapped, 0.02, 0.98), x)
    assert unmap_pixels(torch.tensor([0.0, 1.0]), 0.02, 0.98).tolist() == [0.0, 1.0]


# ------------------------------------------------------------- the fused Beta log-density


def _reference(alpha, x, c):
    return torch.distributions.Beta(c * alpha, c * (1 - alpha)).log_prob(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_beta_log_prob_equals_torch_distributions_beta(dtype):
    torch.manual_seed(0)
    alpha = torch.cat([torch.tensor([1e-4, 1 - 1e-4, 0.5]), torch.rand(500)]).to(dtype).clamp(1e-4, 1 - 1e-4)
    x = torch.cat([torch.tensor([0.02, 0.98, 0.5]), 0.02 + 0.96 * torch.rand(500)]).to(dtype)
    got = beta_log_prob(alpha, x, 100.0)
    want = _reference(alpha.double(), x.double(), 100.0)
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    assert got.dtype == dtype and torch.allclose(got.double(), want, rtol=1e-6, atol=tol)


def test_fused_beta_gradient_in_alpha_equals_autograd_of_the_reference():
    torch.manual_seed(1)
    alpha = (0.01 + 0.98 * torch.rand(64, dtype=torch.float64)).requires_grad_()
    x = 0.02 + 0.96 * torch.rand(64, dtype=torch.float64)
    weights = torch.randn(64, dtype=torch.float64)  # a non-uniform upstream gradient
    (g_fused,) = torch.autograd.grad((beta_log_prob(alpha, x, 100.0) * weights).sum(), alpha)
    (g_ref,) = torch.autograd.grad((_reference(alpha, x, 100.0) * weights).sum(), alpha)
    assert torch.allclose(g_fused, g_ref, rtol=1e-9, atol=1e-9)
    assert torch.autograd.gradcheck(
        lambda a: beta_log_prob(a, x[:8], 7.0), (alpha[:8].detach().requires_grad_(),)
    )


def test_fused_beta_broadcasts_and_differentiates_in_the_value_when_asked():
    torch.manual_seed(2)
    alpha = (0.05 + 0.9 * torch.rand(3, 1, dtype=torch.float64)).requires_grad_()
    x = 0.02 + 0.96 * torch.rand(3, 5, dtype=torch.float64)
    got = beta_log_prob(alpha, x, 100.0)
    assert got.shape == (3, 5) and torch.allclose(got, _reference(alpha, x, 100.0))
    (g,) = torch.autograd.grad(got.sum(), alpha)
    (g_ref,) = torch.autograd.grad(_reference(alpha, x, 100.0).sum(), alpha)
    assert g.shape == (3, 1) and torch.allclose(g, g_ref)
    xs = x.clone().requires_grad_()  # a reparameterised sample: the gradient reaches the value
    (gx,) = torch.autograd.grad(beta_log_prob(alpha.detach(), xs, 100.0).sum(), xs)
    (gx_ref,) = torch.autograd.grad(_reference(alpha.detach(), xs, 100.0).sum(), xs)
    assert torch.allclose(gx, gx_ref)
