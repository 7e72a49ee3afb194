"""Where samples land: mixture densities vs torch.distributions; hole fractions on known cases."""

import json
import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from vlvae.evaluation.landing import (
    aggregate_log_density,
    conditional_aggregate_log_density,
    conditional_landing_table,
    landing_table,
    sample_aggregate,
    sample_conditional_aggregate,
)


def reference_mixture(means: torch.Tensor, logvars: torch.Tensor) -> MixtureSameFamily:
    """The independent truth: an equal-weight diagonal Gaussian mixture."""
    means, logvars = means.double(), logvars.double()
    weights = Categorical(logits=torch.zeros(means.shape[0], dtype=torch.float64))
    return MixtureSameFamily(weights, Independent(Normal(means, torch.exp(0.5 * logvars)), 1))


def random_aggregate(n: int = 37, dim: int = 5, m: int = 23, seed: int = 0):
    """Components with log variances spanning [-12, 2] (σ from 0.0025 to 2.7),
    and points both near components (so tiny ones dominate) and at random."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, dim, generator=g, dtype=torch.float64) * 2
    logvars = torch.empty(n, dim, dtype=torch.float64).uniform_(-12.0, 2.0, generator=g)
    logvars[:5] = -12.0  # some uniformly tiny components
    jitter = 1e-3 * torch.randn(m // 2, dim, generator=g, dtype=torch.float64)
    near = means[torch.arange(m // 2) % n] + jitter
    far = torch.randn(m - m // 2, dim, generator=g, dtype=torch.float64) * 3
    return torch.cat([near, far]), means, logvars


def two_blobs(sigma: float = 0.1):
    """A 2-D aggregate of two tight Gaussians at (±5, 0)."""
    means = torch.tensor([[-5.0, 0.0], [5.0, 0.0]], dtype=torch.float64)
    logvars = torch.full_like(means, 2 * math.log(sigma))
    return means, logvars


# --------------------------------------------------------------------------- #
# Densities
# --------------------------------------------------------------------------- #


def test_aggregate_log_density_matches_torch_mixture():
    z, means, logvars = random_aggregate()
    truth = reference_mixture(means, logvars).log_prob(z)
    got = aggregate_log_density(z, means, logvars)
    assert got.dtype == torch.float64 and got.shape == (z.shape[0],)
    torch.testing.assert_close(got, truth, rtol=1e-10, atol=1e-8)


def test_aggregate_log_density_chunking_does_not_change_result():
    z, means, logvars = random_aggregate(n=50, m=31, seed=1)
    whole = aggregate_log_density(z, means, logvars)
    for row_chunk, component_chunk in [(1, 1), (3, 4), (7, 50), (100, 13)]:
        chunked = aggregate_log_density(
            z, means, logvars, row_chunk=row_chunk, component_chunk=component_chunk
        )
        torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-8)  # rounding only


def test_aggregate_log_density_accepts_float32_and_is_computed_in_float64():
    z, means, logvars = random_aggregate(seed=2)
    z32, m32, l32 = z.float(), means.float(), logvars.float()
    truth = reference_mixture(m32.double(), l32.double()).log_prob(z32.double())
    torch.testing.assert_close(aggregate_log_density(z32, m32, l32), truth, rtol=1e-10, atol=1e-8)


def test_aggregate_log_density_single_component_is_gaussian_far_away():
    mean = torch.zeros(1, 3, dtype=torch.float64)
    logvar = torch.full((1, 3), -10.0, dtype=torch.float64)
    z = torch.tensor([[4.0, -3.0, 1.0]], dtype=torch.float64)  # ~1e5 σ away: no underflow to -inf
    truth = Independent(Normal(mean[0], math.exp(-5.0)), 1).log_prob(z)
    got = aggregate_log_density(z, mean, logvar)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, truth, rtol=1e-12, atol=0.0)


def test_aggregate_log_density_rejects_bad_shapes():
    means = torch.zeros(4, 3)
    with pytest.raises(ValueError):
        aggregate_log_density(torch.zeros(2, 2), means, torch.zeros(4, 3))
    with pytest.raises(ValueError):
        aggregate_log_density(torch.zeros(2, 3), means, torch.zeros(4, 2))
    with pytest.raises(ValueError):
        aggregate_log_density(torch.zeros(2, 3), torch.zeros(0, 3), torch.zeros(0, 3))


@pytest.mark.parametrize("key_format", ["tuples", "tensor2d", "ints"])
def test_conditional_aggregate_log_density_matches_per_row_mixture(key_format):
    z, means, logvars = random_aggregate(n=30, m=20, seed=3)
    g = torch.Generator().manual_seed(3)
    comp_codes = torch.randint(0, 4, (30,), generator=g)  # keys 0..3 for components
    z_codes = torch.randint(0, 5, (20,), generator=g)  # key 4 has no component
    z_codes[0] = 4

    def fmt(codes):
        if key_format == "tuples":
            return [("text", int(c)) for c in codes]
        if key_format == "tensor2d":
            return torch.stack([codes, codes * 7 + 1], dim=1)
        return codes

    got = conditional_aggregate_log_density(z, fmt(z_codes), means, logvars, fmt(comp_codes))
    for m in range(z.shape[0]):
        members = comp_codes == z_codes[m]
        if not members.any():
            assert math.isnan(got[m])
            continue
        truth = reference_mixture(means[members], logvars[members]).log_prob(z[m])
        torch.testing.assert_close(got[m], truth, rtol=1e-10, atol=1e-8)
    assert math.isnan(got[0])


# --------------------------------------------------------------------------- #
# Sampling
# --------------------------------------------------------------------------- #


def test_sample_aggregate_picks_components_uniformly_and_is_reproducible():
    means, logvars = two_blobs()
    z = sample_aggregate(means, logvars, 4000, torch.Generator().manual_seed(0))
    assert z.shape == (4000, 2)
    right = (z[:, 0] > 0).double().mean()
    assert abs(right - 0.5) < 4 * math.sqrt(0.25 / 4000)
    # within ~5 σ of its own component
    nearest = torch.where(z[:, :1] > 0, means[1], means[0])
    assert ((z - nearest).abs() < 0.5).all()
    again = sample_aggregate(means, logvars, 4000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, again)
    default = sample_aggregate(means, logvars, 10)  # generator=None: fresh, seeded 0
    torch.testing.assert_close(default, sample_aggregate(means, logvars, 10))


def test_sample_aggregate_moments():
    means = torch.tensor([[0.0], [4.0]], dtype=torch.float64)
    logvars = torch.log(torch.tensor([[1.0], [0.25]], dtype=torch.float64))
    z = sample_aggregate(means, logvars, 20000, torch.Generator().manual_seed(1))
    # mixture mean 2, variance E[σ²] + Var[μ] = 0.625 + 4 = 4.625
    assert abs(z.mean() - 2.0) < 4 * math.sqrt(4.625 / 20000)
    assert abs(z.var() - 4.625) < 0.15


def test_sample_conditional_aggregate_stays_within_its_key():
    means, logvars = two_blobs()
    keys = ["left", "right", "left", "nothing", "right"] * 100
    gen = torch.Generator().manual_seed(0)
    z = sample_conditional_aggregate(keys, means, logvars, ["left", "right"], gen)
    for i, key in enumerate(keys):
        if key == "nothing":
            assert torch.isnan(z[i]).all()
        else:
            assert (z[i, 0] > 0) == (key == "right")


# --------------------------------------------------------------------------- #
# Landing tables
# --------------------------------------------------------------------------- #


def test_landing_table_known_2d_case():
    means, logvars = two_blobs(sigma=0.1)
    g = torch.Generator().manual_seed(0)
    reference = sample_aggregate(means, logvars, 20000, g)
    own = sample_aggregate(means, logvars, 4000, g)
    midpoint = 0.05 * torch.randn(500, 2, generator=g, dtype=torch.float64)  # between blobs
    broad = torch.randn(2000, 2, generator=g, dtype=torch.float64) * 5
    table = landing_table(
        {"midpoint": midpoint, "own": own, "broad": broad},
        means,
        logvars,
        reference,
        percentile=1.0,
    )
    json.dumps(table)  # plain floats only
    assert table["n_components"] == 2 and table["latent_dim"] == 2
    assert table["percentile"] == 1.0
    # threshold: the 1st percentile of log q_agg under q_agg itself
    truth = reference_mixture(means, logvars).log_prob(reference).quantile(0.01)
    assert table["threshold"] == pytest.approx(float(truth), abs=1e-8)
    assert table["reference"]["hole_fraction"] == pytest.approx(0.01, abs=1e-4)
    src = table["sources"]
    assert src["midpoint"]["hole_fraction"] == 1.0
    assert abs(src["own"]["hole_fraction"] - 0.01) < 4 * math.sqrt(0.01 * 0.99 / 4000) + 0.002
    assert src["broad"]["hole_fraction"] > 0.95
    assert src["midpoint"]["mean_log_density"] < src["own"]["mean_log_density"]
    ref_median = table["reference"]["median_log_density"]
    assert src["own"]["median_log_density"] == pytest.approx(ref_median, abs=0.1)


def test_landing_table_broad_normal_on_tiny_components_is_mostly_holes():
    g = torch.Generator().manual_seed(5)
    means = torch.randn(50, 2, generator=g, dtype=torch.float64)
    logvars = torch.full_like(means, 2 * math.log(0.01))
    reference = sample_aggregate(means, logvars, 5000, g)
    standard = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    table = landing_table({"standard": standard}, means, logvars, reference)
    assert table["sources"]["standard"]["hole_fraction"] > 0.9


def test_conditional_landing_table_two_keys():
    # key "a": images at (-3, 0); key "b": images at (+3, 0); key "c": no image.
    means = torch.tensor([[-3.0, 0.0], [-3.0, 0.2], [3.0, 0.0]], dtype=torch.float64)
    logvars = torch.full_like(means, 2 * math.log(0.1))
    component_keys = ["a", "a", "b"]
    g = torch.Generator().manual_seed(0)
    keys = ["a"] * 1500 + ["b"] * 1500 + ["c"] * 10
    right = sample_conditional_aggregate(keys[:3000], means, logvars, component_keys, g)
    right = torch.cat([right, torch.zeros(10, 2, dtype=torch.float64)])
    # swapped: each key's samples sit in the OTHER key's images -- in the
    # unconditional aggregate, but in a hole of their own text's aggregate.
    swapped = torch.cat([right[1500:3000], right[:1500], torch.zeros(10, 2, dtype=torch.float64)])
    table = conditional_landing_table(
        {"right": right, "swapped": swapped},
        keys,
        means,
        logvars,
        component_keys,
        own_per_key=2000,
        percentile=1.0,
        generator=torch.Generator().manual_seed(1),
    )
    json.dumps(table)
    assert table["n_keys"] == 3
    assert table["n_keys_with_components"] == 2
    assert table["n_keys_skipped"] == 1
    assert table["mean_components_per_key"] == 1.5
    assert table["reference"]["hole_fraction"] == pytest.approx(0.01, abs=1e-3)
    src = table["sources"]
    assert src["right"]["n"] == 3010 and src["right"]["n_skipped"] == 10
    assert src["right"]["n_keys"] == 2
    # binomial tolerance (per key 1500 samples; threshold from 2000 own samples)
    assert abs(src["right"]["hole_fraction"] - 0.01) < 0.008
    assert src["swapped"]["hole_fraction"] == 1.0
    assert src["swapped"]["hole_fraction_pooled"] == 1.0
    assert src["swapped"]["mean_log_density"] < src["right"]["mean_log_density"]
    # unconditionally the swapped samples are not in holes
    reference = sample_aggregate(means, logvars, 5000, g)
    plain = landing_table({"swapped": swapped[:3000]}, means, logvars, reference)
    assert plain["sources"]["swapped"]["hole_fraction"] < 0.05


def test_conditional_landing_table_per_source_keys_and_no_match():
    means, logvars = two_blobs()
    z = torch.zeros(4, 2, dtype=torch.float64)
    table = conditional_landing_table(
        {"one": z[:2], "none": z},
        {"one": ["left", "right"], "none": ["x", "x", "y", "y"]},
        means,
        logvars,
        ["left", "right"],
        own_per_key=50,
    )
    json.dumps(table)
    assert table["n_keys"] == 4 and table["n_keys_with_components"] == 2
    assert table["sources"]["one"]["hole_fraction"] == 1.0  # (0, 0) is a hole of each blob
    assert table["sources"]["none"]["hole_fraction"] is None
    assert table["sources"]["none"]["n_skipped"] == 4
