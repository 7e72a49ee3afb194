"""Table 3 calibrated by held-out codes: known truths for the hole fraction and the classifier test.

The synthetic aggregate: N "training" codes, each the posterior N(μ_i, 0.2² I) of an image whose
mean μ_i is drawn from a known distribution in 16 dimensions; held-out codes come from the same
distribution with means the aggregate has never seen. An ideal sampler (more such codes) must score
≈ 1 % below the held-out 1st percentile and ≈ 0.5 classifier accuracy; a collapsed and a shifted
sampler must be told apart. Exact truths come from a one-component aggregate, where log q_agg(z) is
a function of ‖z‖² (the threshold and hole fraction follow chi-square laws, computed here with
numpy alone) and the best possible classifier accuracy between N(0, I) and N(m, I) is Φ(‖m‖/2).
"""

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from vlvae.evaluation.landing import (
    heldout_landing_table,
    landing_table,
    sample_aggregate,
    two_sample_accuracy,
    where_samples_land,
)
from vlvae.evaluation.metrics import combine_replicates
from vlvae.evaluation.report import _landing_lines

D = 16
SIGMA = 0.2


def _image_means(n: int, g: torch.Generator) -> torch.Tensor:
    """Means of image posteriors: a curved, bounded cloud (tanh of a Gaussian), not a Gaussian."""
    return torch.tanh(1.5 * torch.randn(n, D, generator=g, dtype=torch.float64))


def _codes(n: int, g: torch.Generator) -> torch.Tensor:
    """One code z ~ q(z|x) for each of n new images."""
    return _image_means(n, g) + SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def synthetic():
    g = torch.Generator().manual_seed(0)
    means = _image_means(3000, g)
    logvars = torch.full_like(means, 2 * math.log(SIGMA))
    heldout = _codes(4000, g)  # 2000 set the threshold, 1000 (as many as each source) the check row
    ideal = _codes(1000, g)
    spread = float(heldout.std())
    collapsed = 0.5 * spread * torch.randn(1000, D, generator=g, dtype=torch.float64)
    shift = torch.zeros(D, dtype=torch.float64)
    shift[0] = 1.5  # the codes span about [-1.2, 1.2] per coordinate
    shifted = _codes(1000, g) + shift
    samples = {"ideal": ideal, "collapsed": collapsed, "shifted": shifted}
    table = heldout_landing_table(
        samples, means, logvars, heldout, threshold_size=2000, generator=torch.Generator().manual_seed(1)
    )
    return means, logvars, samples, table


def _chance_se(n: int) -> float:
    return 0.5 / math.sqrt(n)


def test_heldout_codes_and_an_ideal_sampler_score_one_percent_and_chance(synthetic):
    _, _, _, table = synthetic
    json.dumps(table)  # plain numbers only
    assert table["heldout_codes"] == 4000 and table["threshold_codes"] == 2000
    # The fraction of n codes below the empirical 1st percentile of T others: its sd is about
    # sqrt(p(1-p)/n + p(1-p)/T) (sample noise plus the threshold's).
    p, n, t = 0.01, 1000, 2000
    sd = math.sqrt(p * (1 - p) / n + p * (1 - p) / t)
    for name in ("heldout", "ideal"):
        row = table["heldout"] if name == "heldout" else table["sources"][name]
        frac, acc = row["hole_fraction"], row["two_sample_accuracy"]
        assert row["n"] == 1000 and row["two_sample_n"] == 2000
        assert abs(frac["mean"] - p) < 3 * sd, (name, frac)
        assert 0.5 * sd < frac["stderr"] < 2 * sd, (name, frac)  # the bootstrap finds that sd
        assert abs(acc["mean"] - 0.5) < 3 * _chance_se(2000), (name, acc)
        assert acc["stderr"] == pytest.approx(_chance_se(2000), rel=0.05)


def test_collapsed_and_shifted_samplers_are_told_apart(synthetic):
    _, _, _, table = synthetic
    src = table["sources"]
    for name in ("collapsed", "shifted"):
        acc = src[name]["two_sample_accuracy"]
        assert acc["mean"] > 0.5 + 10 * _chance_se(2000), (name, acc)
    shifted = src["shifted"]["hole_fraction"]
    assert shifted["mean"] > 0.01 + 5 * max(shifted["stderr"], 0.003), shifted
    # What the raw log density would say: the collapsed sampler scores far above the ideal one.
    assert src["collapsed"]["median_log_density"] > src["ideal"]["median_log_density"] + 5


def test_the_in_sample_threshold_puts_an_ideal_sampler_in_holes(synthetic):
    # The miscalibration the held-out reference fixes: the aggregate's own samples each sit on
    # their own component, so codes of new images fall below their 1st percentile almost always.
    means, logvars, samples, table = synthetic
    reference = sample_aggregate(means, logvars, 2000, torch.Generator().manual_seed(2))
    old = landing_table({"ideal": samples["ideal"]}, means, logvars, reference)
    assert old["sources"]["ideal"]["hole_fraction"] > 0.5
    assert old["threshold"] > table["threshold"] + 10


def test_one_component_aggregate_against_chi_square_truth():
    # q_agg = N(0, I): log q_agg(z) = -‖z‖²/2 - D/2 log 2π, so "below the 1st percentile of N(0, I)
    # codes" is "‖z‖² above the 99th percentile of χ²_D", and a source N(m, I) lands there with
    # probability P(χ²_D(‖m‖²) > that), a noncentral chi-square; both from numpy's own draws.
    dim, t, m = 8, 20000, 2000
    g = torch.Generator().manual_seed(3)
    means, logvars = torch.zeros(1, dim, dtype=torch.float64), torch.zeros(1, dim, dtype=torch.float64)
    heldout = torch.randn(2 * t, dim, generator=g, dtype=torch.float64)
    shift = torch.full((dim,), 0.75, dtype=torch.float64)  # ‖m‖² = 4.5, ‖m‖ = 2.12
    source = torch.randn(m, dim, generator=g, dtype=torch.float64) + shift
    table = heldout_landing_table(
        {"shifted": source},
        means,
        logvars,
        heldout,
        threshold_size=t,
        check_size=t,
        generator=torch.Generator().manual_seed(4),
    )
    rng = np.random.default_rng(0)
    q99 = np.quantile(rng.chisquare(dim, 4_000_000), 0.99)
    tau = -0.5 * q99 - 0.5 * dim * math.log(2 * math.pi)
    assert table["threshold"] == pytest.approx(tau, abs=0.15)  # τ from 20,000 codes
    truth = float((rng.noncentral_chisquare(dim, float(shift @ shift), 4_000_000) > q99).mean())
    frac = table["sources"]["shifted"]["hole_fraction"]
    assert 0.05 < truth < 0.2
    assert abs(frac["mean"] - truth) < 4 * frac["stderr"] + 1e-3, (frac, truth)
    assert abs(table["heldout"]["hole_fraction"]["mean"] - 0.01) < 0.003
    # The best any classifier can do between N(0, I) and N(m, I): Φ(‖m‖ / 2).
    bayes = 0.5 * (1 + math.erf(math.sqrt(float(shift @ shift)) / 2 / math.sqrt(2)))
    acc = table["sources"]["shifted"]["two_sample_accuracy"]
    assert bayes - 0.04 < acc["mean"] < bayes + 3 * acc["stderr"], (acc, bayes)


def test_two_sample_accuracy_is_reproducible_balanced_and_checked():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(300, 4, generator=g)
    b = torch.randn(120, 4, generator=g) + 3.0
    first = two_sample_accuracy(a, b, torch.Generator().manual_seed(6))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = two_sample_accuracy(a, b, torch.Generator().manual_seed(6))
        assert torch.get_num_threads() == 2  # the caller's thread count, restored
    finally:
        torch.set_num_threads(threads)
    assert first == again  # the classifier runs on one thread whatever the caller's count
    assert first["n"] == 240  # both cut to the smaller set, so chance is 0.5
    assert first["mean"] > 0.95
    with pytest.raises(ValueError, match="at least 2 rows"):
        two_sample_accuracy(a[:1], b, g)
    with pytest.raises(ValueError, match="one D"):
        two_sample_accuracy(a, b[:, :3], g)


def test_check_row_does_not_depend_on_the_sources():
    g = torch.Generator().manual_seed(7)
    means = torch.randn(200, 4, generator=g, dtype=torch.float64)
    logvars = torch.full_like(means, -2.0)
    heldout = torch.randn(400, 4, generator=g, dtype=torch.float64)
    one = torch.randn(100, 4, generator=g, dtype=torch.float64)

    def table(samples):
        return heldout_landing_table(
            samples, means, logvars, heldout, generator=torch.Generator().manual_seed(0)
        )

    alone = table({"one": one})
    both = table({"one": one, "two": 2 * one})
    assert alone["heldout"] == both["heldout"] and alone["threshold"] == both["threshold"]
    assert alone["sources"]["one"] == both["sources"]["one"]
    with pytest.raises(ValueError, match="at least 4 held-out codes"):
        heldout_landing_table({"one": one}, means, logvars, heldout[:3])


def _run_table(seed: int, heldout_images: int = 300):
    """where_samples_land on a toy run: texts are keys 0..3, each text's images around its own centre."""
    g = torch.Generator().manual_seed(100)
    centres = 2 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    train_keys = [i % 4 for i in range(400)]
    means = centres[train_keys] + 0.3 * torch.randn(400, 6, generator=g, dtype=torch.float64)
    logvars = torch.full_like(means, 2 * math.log(0.3))
    h_keys = [i % 4 for i in range(heldout_images)]
    h_means = centres[h_keys] + 0.3 * torch.randn(heldout_images, 6, generator=g, dtype=torch.float64)
    y = torch.tensor([[i % 4] for i in range(200)])
    y_keys = [int(k) for k in y[:, 0]]

    def posterior(scale):
        return lambda texts: Independent(Normal(centres[texts[:, 0]], scale * torch.ones(len(texts), 6)), 1)

    def standard():
        return Independent(Normal(torch.zeros(6), torch.ones(6)), 1)

    return where_samples_land(
        (means, logvars),
        train_keys,
        y,
        y_keys,
        {"q_true": posterior(1.0), "q_agg": posterior(0.5)},
        {"standard": standard},
        reference=150,
        own_per_key=50,
        seed=seed,
        heldout=(h_means, torch.full_like(h_means, 2 * math.log(0.3))),
    )


@pytest.fixture(scope="module")
def run_tables():
    """Table 3 of two replicates of the toy run (the second with another seed)."""
    return [_run_table(0), _run_table(1)]


def test_where_samples_land_adds_the_calibrated_table_and_keeps_the_old_one(run_tables):
    landing = run_tables[0]
    cal = landing["calibrated"]
    assert set(cal["sources"]) == {"q_true", "q_agg", "standard"}
    assert cal["threshold_codes"] == 150 and cal["heldout"]["n"] == 150
    assert set(landing) == {"marginal", "conditional", "calibrated"}
    assert landing["marginal"]["sources"]["q_true"]["n"] == 200
    json.dumps(landing)
    # N(0, I) is far from the four text clusters: told apart, and mostly in holes.
    assert cal["sources"]["standard"]["two_sample_accuracy"]["mean"] > 0.8
    assert cal["sources"]["standard"]["hole_fraction"]["mean"] > 0.5
    assert _run_table(0) == landing  # every draw seeded
    without = _run_table(0, heldout_images=3)
    assert without["calibrated"] is None  # too few held-out images to split
    assert without["marginal"] == landing["marginal"]  # the held-out codes change no old number


def test_replicates_combine_and_render(run_tables):
    combined = combine_replicates(run_tables, floats=True)
    row = combined["calibrated"]["sources"]["q_true"]
    for stat in ("hole_fraction", "two_sample_accuracy"):
        s = row[stat]
        assert s["replicates"] == 2 and len(s["per_replicate"]) == 2
        each = [r["calibrated"]["sources"]["q_true"][stat]["stderr"] for r in run_tables]
        assert s["stderr"] == pytest.approx(np.mean(each))  # the evaluation's own error, averaged
    assert row["two_sample_n"] == 300
    labels = {"q_true": "q_True(z|y)", "q_agg": "q_Agg(z|y)", "standard": "p(z) = N(0, I)"}
    text = "\n".join(_landing_lines(combined, 2, labels))
    assert "held-out codes (check)" in text and "below the held-out 1st percentile" in text
    assert "in a hole" in text  # the in-sample table stays below
    # an old metrics.json (no calibrated table) still renders
    old = {k: v for k, v in combined.items() if k != "calibrated"}
    assert "held-out" not in "\n".join(_landing_lines(old, 2, labels))
