"""Text-to-image and prior sampling from a run folder in one call (``vlvae sample``).

Thin wrappers over :class:`vlvae.inference.Inference`, which opens the run; open it yourself to
sample many times from one run.
"""

from __future__ import annotations

from pathlib import Path

from vlvae.errors import VLVAEError
from vlvae.inference import MAX_SAMPLES, PRIORS, TEXT_POSTERIORS, Inference, check_sample_count, to_uint8

__all__ = ["MAX_SAMPLES", "check_sample_count", "sample_from_text", "sample_from_prior", "to_uint8"]


def sample_from_text(run: Path, text: str, posterior: str = "agg", n: int = 3, seed: int = 0):
    """Images decoded from z ~ q(z|y) for a typed text, with the decoded text of each z.

    Args:
        run: a run folder with the VLVAE and the chosen text posterior trained.
        text: words separated by spaces; every word must be in the data's vocabulary
            and the text must have the data's length.
        posterior: ``agg`` (q_Agg) or ``true`` (q_True).
        n: number of samples (1 to :data:`MAX_SAMPLES`).

    Returns:
        (images uint8 (n, H, W, 3), decoded texts: list of n strings).
    """
    if posterior not in TEXT_POSTERIORS:
        raise VLVAEError(f"--posterior must be {' or '.join(map(repr, TEXT_POSTERIORS))}, got {posterior!r}")
    check_sample_count(n)
    samples = Inference.open(run).from_text(text, posterior, n, seed)
    return samples.images, samples.texts


def sample_from_prior(run: Path, prior: str = "standard", n: int = 16, seed: int = 0):
    """Images and texts decoded from z ~ N(0, I) (``standard``) or the learned q_phi(z) (``learned``)
    (:data:`vlvae.inference.PRIORS`)."""
    if prior not in PRIORS:
        raise VLVAEError(f"--prior must be {' or '.join(map(repr, PRIORS))}, got {prior!r}")
    check_sample_count(n)
    samples = Inference.open(run).from_prior(prior, n, seed)
    return samples.images, samples.texts
