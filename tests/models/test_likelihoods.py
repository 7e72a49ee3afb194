"""The constrained Beta image likelihood (paper §5.1.2) against torch.distributions.Beta."""

import torch
from torch.distributions import Beta

from vlvae.models import ConstrainedBeta, map_pixels, unmap_pixels


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
