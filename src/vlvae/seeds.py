"""Every seed stream of the project in one table: what seeds what, and why the numbers are what they are.

A run has one seed (``ExperimentConfig.seed``, ``--set seed=N``); every random stream of its
training and evaluation is that seed moved by a fixed offset below, so that no two streams that
should differ coincide, and the same run seed always gives the same numbers. The values are
part of the results: changing one changes every number that depends on it (old runs would no
longer be reproduced), so they never change; a new stream gets a new name here.

=====================================  ==================================================================
Stream                                 Seed
=====================================  ==================================================================
stage 1 (initial weights, batches)     ``seed`` (:data:`STAGE1_SEED_OFFSET` = 0)
q_True, q_Agg (stage 2)                ``seed + 1`` (:data:`TEXT_POSTERIOR_SEED_OFFSET`)
the aggregate prior (stage 3)          ``seed + 2`` (:data:`PRIOR_SEED_OFFSET`)
training replicate R of stages 2-3     ``+ 1000 R`` (:data:`REPLICATE_SEED_STRIDE`)
stage-1 replicate V (``reproduce``)    run seed ``seed + 1_000_000 V`` (:data:`STAGE1_REPLICATE_SEED_STRIDE`)
the judge (attribute classifier)       ``seed + 7`` (:data:`CLASSIFIER_SEED_OFFSET`)
the caption judge                      ``seed + 8`` (:data:`CAPTION_JUDGE_SEED_OFFSET`)
every fit's start (python, numpy)      ``seed`` (``seed_everything`` in :func:`vlvae.training.run.fit_stage`)
optimisation step t on rank r          :func:`step_seed` (``seed * 1_000_003 + r * 7_919 + t``)
a validation pass                      :func:`step_seed` at step :data:`VALIDATION_STEP` (-1)
epoch e's permutation of the data      ``seed + e`` (:class:`vlvae.data.dataset.StepSampler`)
evaluation: the validation examples    ``seed`` (the run's)
evaluation: log p(x|y), log p(x)       :data:`LIKELIHOOD_SEED` (0, whatever the run's seed)
evaluation: Table 3's draws            ``seed`` (the run's)
evaluation: log p(y)                   ``LIKELIHOOD_SEED + 1`` (:data:`TEXT_LIKELIHOOD_SEED_OFFSET`)
evaluation: log p(y)'s proposal fits   ``LIKELIHOOD_SEED + 2`` (:data:`TEXT_PROPOSAL_SEED_OFFSET`)
evaluation: captions' z ~ q(z|x)       ``seed + 1`` (:data:`CAPTION_SEED_OFFSET`)
evaluation: correctness draws          ``1000 + s``, ``2000 + s``, ``3000 + s`` for draw s of the text
                                       posteriors, the priors, the reconstructions
                                       (:data:`CORRECTNESS_SEED_BASES`)
figures' samples                       :data:`FIGURE_SEED` (0)
Two Objects data, chunk c              ``numpy.random.default_rng([data seed, c])`` (``data.seed``)
CelebA's stored texts                  ``numpy.random.default_rng(seed)`` (``vlvae data celeba --seed``)
``vlvae sample``, ``vlvae serve``      the seed of the request (``--seed``, ``seed=``)
=====================================  ==================================================================

Why these numbers:

* Stages 2-3 are fits of other networks on the frozen stage-1 model: they must not replay
  stage 1's stream (``+ 0``). q_True and q_Agg share ``+ 1``: they are the same network
  fitted to two objectives, and common random numbers make their comparison sharper. The prior
  takes ``+ 2``.
* A replicate of stages 2-3 moves the seed by 1000 (far above the stage offsets, so replicate
  R of one stage never meets replicate R' of another for R, R' < 1000). A replicate of the whole
  run (``reproduce --vlvae-replicates``) moves the run's seed by 1,000,000, far above 1000 per
  stage replicate, so no two fits of any run share a seed.
* The classifier's ``+ 7`` keeps the judge's weights and batches apart from every stage's
  stream of the same run seed (1, 2 and the replicates' 1000 R + 1, 2).
* :func:`step_seed` multiplies the seed by the prime 1,000,003 and the rank by the prime 7,919
  so that the streams of (seed, rank, step) do not collide for any practical number of steps
  and ranks; step -1 is every validation pass (common random numbers along the curve).
* The evaluation's streams are offsets of the run's seed too; its correctness draws use fixed
  bases 1000, 2000, 3000 (per table), so that every run evaluated with the same number of draws
  uses the same draws.

This module is on the lowest floor: it imports nothing of the package.
"""

from __future__ import annotations

__all__ = [
    "STAGE1_SEED_OFFSET",
    "TEXT_POSTERIOR_SEED_OFFSET",
    "PRIOR_SEED_OFFSET",
    "REPLICATE_SEED_STRIDE",
    "STAGE1_REPLICATE_SEED_STRIDE",
    "CLASSIFIER_SEED_OFFSET",
    "CAPTION_JUDGE_SEED_OFFSET",
    "caption_judge_seed",
    "STEP_SEED_FACTOR",
    "STEP_RANK_FACTOR",
    "STEP_SEED_MODULUS",
    "VALIDATION_STEP",
    "LIKELIHOOD_SEED",
    "TEXT_LIKELIHOOD_SEED_OFFSET",
    "TEXT_PROPOSAL_SEED_OFFSET",
    "CAPTION_SEED_OFFSET",
    "CORRECTNESS_SEED_BASES",
    "FIGURE_SEED",
    "replicate_seed",
    "stage1_replicate_seed",
    "classifier_seed",
    "step_seed",
]

#: Stage 1 (the VLVAE or a baseline) is seeded with the run's seed itself.
STAGE1_SEED_OFFSET = 0
#: Stage 2 (q_True and q_Agg alike): the run's seed plus this.
TEXT_POSTERIOR_SEED_OFFSET = 1
#: Stage 3 (the aggregate prior q_φ(z)): the run's seed plus this.
PRIOR_SEED_OFFSET = 2
#: Training replicate R of a stage 2-3 moves its seed by R times this.
REPLICATE_SEED_STRIDE = 1000
#: ``reproduce``'s stage-1 replicate V (``run.r<V>``) moves the run's seed by V times this.
STAGE1_REPLICATE_SEED_STRIDE = 1_000_000
#: The judge (attribute classifier): the run's (preset's) seed plus this.
CLASSIFIER_SEED_OFFSET = 7
#: The caption judge's seed: the run (preset) seed plus this.
CAPTION_JUDGE_SEED_OFFSET = 8

#: :func:`step_seed`'s multiplier of the seed (a prime).
STEP_SEED_FACTOR = 1_000_003
#: :func:`step_seed`'s multiplier of the process rank (a prime).
STEP_RANK_FACTOR = 7_919
#: torch seeds are taken modulo this.
STEP_SEED_MODULUS = 2**63 - 1
#: The step whose seed every validation pass uses (common random numbers along the curve).
VALIDATION_STEP = -1

#: Evaluation: the draws of log p(y)'s estimator: the run's seed plus this (log p(x|y) and
#: log p(x) use the run's seed itself).
#: The evaluation's likelihood bounds draw their q(z|x) samples from this seed, the same for every
#: run (as the evaluation always has: a run's seed does not move them).
LIKELIHOOD_SEED = 0
TEXT_LIKELIHOOD_SEED_OFFSET = 1
#: Evaluation: the fits of log p(y)'s proposal (a Gaussian per text fitted to the posterior under each
#: prior, :func:`vlvae.evaluation.metrics.fitted_text_posteriors`): the likelihood seed plus this.
TEXT_PROPOSAL_SEED_OFFSET = 2
#: Evaluation: the captions' draws of z ~ q(z|x): the run's seed plus this.
CAPTION_SEED_OFFSET = 1
#: Evaluation: draw s of the correctness tables is seeded ``base + s``, per table.
CORRECTNESS_SEED_BASES = {"conditional": 1000, "prior": 2000, "reconstruction": 3000}
#: The figures' samples (reconstructions, conditional samples) are drawn with this seed.
FIGURE_SEED = 0


def replicate_seed(seed: int, offset: int, replicate: int = 0) -> int:
    """The seed of training replicate R of a stage 2-3 whose offset is ``offset``.

    >>> replicate_seed(0, TEXT_POSTERIOR_SEED_OFFSET), replicate_seed(0, PRIOR_SEED_OFFSET, 2)
    (1, 2002)
    """
    return seed + offset + REPLICATE_SEED_STRIDE * replicate


def stage1_replicate_seed(seed: int, replicate: int) -> int:
    """The run seed of ``reproduce``'s stage-1 replicate V (``run.r<V>``); V = 0 is the run's own.

    >>> stage1_replicate_seed(0, 0), stage1_replicate_seed(3, 2)
    (0, 2000003)
    """
    return seed + STAGE1_REPLICATE_SEED_STRIDE * replicate


def caption_judge_seed(seed: int) -> int:
    """The seed of the caption judge trained with run (preset) seed ``seed``.

    >>> caption_judge_seed(0)
    8
    """
    return seed + CAPTION_JUDGE_SEED_OFFSET


def classifier_seed(seed: int) -> int:
    """The seed of the judge trained with run (preset) seed ``seed``.

    >>> classifier_seed(0)
    7
    """
    return seed + CLASSIFIER_SEED_OFFSET


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of optimisation step ``step`` on process ``rank`` (:data:`VALIDATION_STEP`:
    every validation pass).

    >>> step_seed(0, 0, 5), step_seed(1, 1, 0)
    (5, 1007922)
    """
    return (seed * STEP_SEED_FACTOR + rank * STEP_RANK_FACTOR + step) % STEP_SEED_MODULUS
