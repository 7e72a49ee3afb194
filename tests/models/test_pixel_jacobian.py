"""The pixel-map Jacobian: log p(x|z) on mapped pixels + D·log(high − low) is the density of x ∈ [0, 1].

The reference is built with torch.distributions alone: if u ~ Beta(a, b) is the mapped
pixel, the [0, 1] pixel is x = (u − low)/(high − low), whose distribution is
TransformedDistribution(Beta(a, b), AffineTransform(−low/(high − low), 1/(high − low))).
"""

import math

import pytest
import torch
from torch.distributions import AffineTransform, Beta, Independent, TransformedDistribution

from vlvae.models.config import ModelConfig
from vlvae.models.likelihoods import ConstrainedBeta, pixel_log_jacobian
from vlvae.models.vlvae import VLVAE


@pytest.mark.parametrize("low, high", [(0.02, 0.98), (0.1, 0.6)])
def test_log_px_plus_jacobian_is_density_of_unmapped_pixels(low, high):
    torch.manual_seed(0)
    cfg = ModelConfig(
        image_size=8,
        base_channels=4,
        n_downsample=1,
        n_res_blocks=1,
        encoding_dim=16,
        embedding_dim=8,
        text_hidden=16,
        latent_dim=4,
        shared_hidden=16,
        decoder_dim=16,
        flow_hidden=8,
        flow_steps=2,
        pixel_low=low,
        pixel_high=high,
    )
    model = VLVAE(cfg).double().eval()
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64) * 0.98 + 0.01
    z = torch.randn(5, 4, dtype=torch.float64)
    D = 3 * 8 * 8

    with torch.no_grad():
        ours = model.log_px(x, z) + pixel_log_jacobian(D, low, high)
        # The Beta parameters as the model builds them (α clamped inside ConstrainedBeta).
        beta = model.image_likelihood(z).base_dist
        assert isinstance(beta, ConstrainedBeta)
        a = beta.concentration * beta.alpha
        b = beta.concentration * (1.0 - beta.alpha)
    scale = high - low
    reference = Independent(
        TransformedDistribution(Beta(a, b), AffineTransform(loc=-low / scale, scale=1.0 / scale)), 3
    )
    expected = reference.log_prob(x)

    assert ours.shape == expected.shape == (5,)
    torch.testing.assert_close(ours, expected, rtol=1e-9, atol=1e-8)
    # The correction is not negligible: without it the densities differ by exactly D·log(high − low).
    assert abs(D * math.log(scale)) > 1.0
    assert not torch.allclose(model.log_px(x, z).detach(), expected, rtol=1e-6, atol=1e-3)


def test_paper_defaults_give_D_log_096():
    D = 3 * 112 * 112
    assert pixel_log_jacobian(D, 0.02, 0.98) == pytest.approx(D * math.log(0.96), rel=1e-12)
    assert pixel_log_jacobian(D, 0.02, 0.98) == pytest.approx(-1536.213, abs=1e-3)  # 37632 · log 0.96
    assert pixel_log_jacobian(10, 0.0, 1.0) == 0.0
