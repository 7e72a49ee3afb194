"""Correctness tables end to end on a stub model whose generated images are known.

The stub decodes z to an all-ones image when z₀ > 0 and an all-zeros image otherwise,
and decodes a text whose attribute word is 1 when z₁ > 0. The judge scores 1 when the
image's colour equals the text's attribute word. Text posteriors, priors and the image
posterior are Normals of tiny spread far from zero, so every example's correctness is
known exactly and the tables must reproduce it (with no spread over seeds); one wide
posterior checks that seeds really redraw z.
"""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from vlvae.evaluation.metrics import correctness_tables

N, SEEDS, FAR, TINY = 40, 3, 10.0, 1e-3

# Text: word 0 is the attribute t ∈ {0, 1}; word 1 flags whether q_true puts its mass on
# the matching side (a quarter of the examples); the rest is padding.
ATTRIBUTE = torch.arange(N) % 2
Q_TRUE_MATCHES = (torch.arange(N) % 4 == 1).long()
Y = torch.stack([ATTRIBUTE, Q_TRUE_MATCHES, torch.zeros(N, dtype=torch.long)], 1)
# Real images: image i matches its text unless i % 4 == 0 (reconstruction correctness 0.75).
RECON_MATCHES = (torch.arange(N) % 4 != 0).long()
X = ((ATTRIBUTE == RECON_MATCHES).float())[:, None, None, None].expand(N, 3, 2, 2).clone()


def _normal(loc):
    return Independent(Normal(loc, torch.full_like(loc, TINY)), 1)


def _side(sign):
    """Latent means (n, 2) whose first coordinate has the given sign (±1)."""
    return torch.stack([FAR * sign, torch.zeros_like(sign)], 1)


class StubModel:
    def image_mean(self, z):
        return (z[..., 0] > 0).float()[:, None, None, None].expand(-1, 3, 2, 2)

    def generate_text(self, z, greedy=True):
        assert greedy
        attribute = (z[..., 1] > 0).long()
        return torch.stack([attribute, torch.zeros_like(attribute), torch.zeros_like(attribute)], 1)

    def image_posterior(self, x, y=None):
        bright = x.mean((1, 2, 3)) > 0.5
        return _normal(_side(bright.float() * 2 - 1))


def match(images, texts):
    return (images[:, 0, 0, 0].long() == texts[:, 0]).float()


def mismatch(images, texts):
    return 1.0 - match(images, texts)


def q_true(y):
    wanted = 2.0 * y[:, 0].float() - 1.0  # the side that matches the text
    return _normal(_side(torch.where(y[:, 1] == 1, wanted, -wanted)))


def q_agg(y):
    return _normal(_side(2.0 * y[:, 0].float() - 1.0))


def q_coin(y):
    return Independent(Normal(torch.zeros(len(y), 2), torch.ones(len(y), 2)), 1)


def learned():  # image bright and text attribute 1: always correct
    return _normal(torch.tensor([FAR, FAR]))


def standard():  # image bright, text attribute 0: never correct
    return _normal(torch.tensor([FAR, -FAR]))


def _expected(per_example: np.ndarray) -> dict:
    """The summary of a deterministic per-example correctness repeated over SEEDS seeds: the standard
    error over examples is that of the N examples (each the same at every seed), not of N · SEEDS."""
    per_example = per_example.astype(np.float64)
    return {
        "mean": per_example.mean(),
        "std_over_seeds": 0.0,
        "stderr_over_examples": per_example.std(ddof=1) / math.sqrt(len(per_example)),
        "per_seed": [per_example.mean()] * SEEDS,
    }


def _check(summary: dict, per_example: np.ndarray):
    want = _expected(per_example)
    assert summary["mean"] == pytest.approx(want["mean"], abs=1e-12)
    assert summary["std_over_seeds"] == pytest.approx(0.0, abs=1e-12)
    assert summary["mc_stderr"] == pytest.approx(0.0, abs=1e-12)
    assert summary["stderr_over_examples"] == pytest.approx(want["stderr_over_examples"], abs=1e-12)
    assert summary["per_seed"] == pytest.approx(want["per_seed"], abs=1e-12)


@pytest.fixture(scope="module")
def tables():
    return correctness_tables(
        StubModel(),
        {"match": match, "mismatch": mismatch},
        X,
        Y,
        {"q_true": q_true, "q_agg": q_agg, "coin": q_coin},
        {"learned": learned, "standard": standard},
        seeds=SEEDS,
        batch_size=16,
    )


def test_every_definition_has_every_table(tables):
    assert set(tables) == {"match", "mismatch"}
    for t in tables.values():
        assert set(t["conditional"]) == {"q_true", "q_agg", "coin"}
        assert set(t["prior"]) == {"learned", "standard"}
        assert {"q_agg - q_true", "learned - standard"} <= set(t["differences"])


def test_conditional_prior_and_reconstruction_match_known_values(tables):
    q_true_c = Q_TRUE_MATCHES.numpy().astype(float)
    assert q_true_c.mean() == 0.25
    ones, zeros = np.ones(N), np.zeros(N)
    recon = RECON_MATCHES.numpy().astype(float)

    for name, flip in (("match", False), ("mismatch", True)):
        t = tables[name]
        f = (lambda v: 1.0 - v) if flip else (lambda v: v)
        _check(t["conditional"]["q_true"], f(q_true_c))
        _check(t["conditional"]["q_agg"], f(ones))
        _check(t["prior"]["learned"], f(ones))
        _check(t["prior"]["standard"], f(zeros))
        _check(t["reconstruction"], f(recon))

    m = tables["match"]
    assert m["conditional"]["q_true"]["mean"] == pytest.approx(0.25)
    assert m["conditional"]["q_agg"]["mean"] == pytest.approx(1.0)
    assert m["reconstruction"]["mean"] == pytest.approx(0.75)


def test_paired_differences_match_known_values(tables):
    d = 1.0 - Q_TRUE_MATCHES.numpy().astype(float)  # q_agg − q_true per example
    for name, sign in (("match", 1.0), ("mismatch", -1.0)):
        diffs = tables[name]["differences"]
        assert diffs["q_agg - q_true"]["mean"] == pytest.approx(sign * 0.75, abs=1e-12)
        assert diffs["q_agg - q_true"]["stderr"] == pytest.approx(d.std(ddof=1) / math.sqrt(N), abs=1e-12)
        assert diffs["learned - standard"]["mean"] == pytest.approx(sign * 1.0, abs=1e-12)
        assert diffs["learned - standard"]["stderr"] == pytest.approx(0.0, abs=1e-12)


def test_seeds_redraw_z(tables):
    """A posterior with half its mass on each side: about one half correct, varying between seeds."""
    coin = tables["match"]["conditional"]["coin"]
    assert len(coin["per_seed"]) == SEEDS
    assert coin["std_over_seeds"] > 0.0
    assert abs(coin["mean"] - 0.5) < 0.2  # 120 fair coins: the standard deviation is ≈ 0.046
    other = tables["mismatch"]["conditional"]["coin"]
    # The same images are scored by every definition.
    assert other["per_seed"] == pytest.approx([1.0 - v for v in coin["per_seed"]], abs=1e-12)
