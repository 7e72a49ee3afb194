"""The evaluation's two error bars against simulated data with a known answer (issue 19, item 4).

Correctness is a mean over S seeds × N examples where each example has its own difficulty
(shared by its seeds) and each seed adds fresh noise. The standard error over examples must be
that of the examples' means (not of the S · N pooled values, which are not independent), and the
Monte-Carlo error must be the standard error of the S-seed mean (not one seed's spread).
"""

import math

import numpy as np

from vlvae.evaluation.metrics import mc_stderr, summarise


def _simulate(rng, seeds, examples, between, within):
    difficulty = rng.normal(0.0, between, size=examples)  # fixed per example, shared by its seeds
    return [difficulty + rng.normal(0.0, within, size=examples) for _ in range(seeds)]


def test_stderr_over_examples_is_that_of_per_example_means():
    """Over many simulated evaluations the reported standard error matches the spread of the means."""
    rng = np.random.default_rng(0)
    seeds, examples, between, within = 5, 200, 2.0, 1.0
    reported, means = [], []
    for _ in range(400):
        s = summarise(_simulate(rng, seeds, examples, between, within))
        reported.append(s["stderr_over_examples"])
        means.append(s["mean"])
    # The true standard error of the mean over a new draw of examples and seeds.
    truth = math.sqrt((between**2 + within**2 / seeds) / examples)
    assert abs(np.mean(reported) / truth - 1) < 0.03
    assert abs(np.std(means, ddof=1) / truth - 1) < 0.1
    # Pooling the S·N values (the old estimate) understates it, here by half.
    pooled = np.concatenate(_simulate(rng, seeds, examples, between, within))
    assert pooled.std(ddof=1) / math.sqrt(len(pooled)) < 0.6 * truth


def test_mc_error_is_the_standard_error_of_the_seed_mean():
    """With the examples fixed, the mean over S seeds varies by std_over_seeds / √S."""
    rng = np.random.default_rng(1)
    seeds, examples, within = 4, 100, 3.0
    difficulty = rng.normal(0.0, 1.0, size=examples)  # the same examples in every evaluation
    reported, means = [], []
    for _ in range(2000):
        per_seed = [difficulty + rng.normal(0.0, within, size=examples) for _ in range(seeds)]
        s = summarise(per_seed)
        reported.append(s["mc_stderr"])
        means.append(s["mean"])
        assert s["mc_stderr"] == mc_stderr(s) == s["std_over_seeds"] / math.sqrt(seeds)
    truth = within / math.sqrt(examples * seeds)
    assert abs(np.std(means, ddof=1) / truth - 1) < 0.05
    # E[sample std] is a little below σ for S = 4 (c4 ≈ 0.921); the RMS is unbiased.
    assert abs(math.sqrt(np.mean(np.square(reported))) / truth - 1) < 0.05


def test_old_files_without_mc_stderr_read_as_the_seed_mean_error():
    s = {"mean": 0.5, "std_over_seeds": 0.02, "per_seed": [0.49, 0.51, 0.5, 0.5]}
    assert mc_stderr(s) == 0.01
