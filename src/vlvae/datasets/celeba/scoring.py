"""The correctness of a text for a CelebA face, the two ways the sources define it.

:func:`correctness_paper` is the paper's (§5.4; docs/design.md §6, the headline definition): the
fraction of a text's non-blank words that the classifier gives the image probability > 0.5.
:func:`correctness_all_labels` is how the authors' code scored images (docs/design.md §6): accuracy
over every binary label, present or absent. Both take probabilities and targets as arrays; the
word probabilities and word counts they expect come from :mod:`vlvae.datasets.celeba.words`
(``word_probabilities``, ``words_present``).

References:
    On the Importance of Learning Aggregate Posteriors in Multimodal Latent
    Variable Models, Cremer & Kushman 2018, §5.4 (the correctness of a text for an image).
"""

from __future__ import annotations

import numpy as np

from vlvae.errors import VLVAEError

__all__ = ["correctness_paper", "correctness_all_labels"]


def correctness_paper(probs: np.ndarray, words_present: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """The paper's correctness of texts for images (§5.4; docs/design.md §6, the headline definition).

    The fraction of a text's non-blank words to which the classifier gives the
    image probability > 0.5; word order is ignored. A word repeated in a text
    counts once per occurrence if ``words_present`` holds counts.

    Args:
        probs: (N, 19) word probabilities (see :func:`word_probabilities`).
        words_present: (N, 19) bool, or occurrence counts (see :func:`words_present`).
        empty: the value for a text without any non-blank word (NaN by default,
            so averages must choose how to treat them, e.g. ``np.nanmean``).

    Returns:
        float64 (N,).

    Example:
        >>> p = np.full((1, 19), 0.9); p[0, 0] = 0.2
        >>> w = np.zeros((1, 19), bool); w[0, :2] = True
        >>> correctness_paper(p, w)
        array([0.5])
    """
    p = np.asarray(probs, dtype=np.float64)
    w = np.asarray(words_present).astype(np.float64)
    if p.shape != w.shape or p.ndim != 2:
        raise VLVAEError(f"probabilities {p.shape} and words {w.shape} must both be (N, 19)")
    total = w.sum(axis=1)
    hits = (w * (p > 0.5)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.maximum(total, 1), empty)


def correctness_all_labels(label_probs: np.ndarray, label_targets: np.ndarray) -> np.ndarray:
    """Correctness as the authors' code scored it: accuracy over all binary labels (docs/design.md §6).

    Every label counts, present or absent: the prediction (probability > 0.5)
    must equal the target. With the 18 labels of :data:`CELEBA_LABELS` Male/Female
    counts once; pass ``word_probabilities(p)`` and 19 word targets to count it
    twice, as 19 labels.

    Args:
        label_probs: (N, L) probabilities.
        label_targets: (N, L) 0/1 targets.

    Returns:
        float64 (N,).

    Example:
        >>> correctness_all_labels(np.array([[0.9, 0.2, 0.6, 0.4]]), np.array([[1, 0, 0, 1]]))
        array([0.5])
    """
    p = np.asarray(label_probs, dtype=np.float64)
    t = np.asarray(label_targets)
    if p.shape != t.shape or p.ndim != 2:
        raise VLVAEError(f"probabilities {p.shape} and targets {t.shape} must both be (N, labels)")
    return ((p > 0.5) == (t > 0)).mean(axis=1)
