"""Text-to-image and prior sampling from a trained run (``vlvae sample``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vlvae.data.format import read_vocabulary
from vlvae.errors import VLVAEError

__all__ = ["MAX_SAMPLES", "check_sample_count", "sample_from_text", "sample_from_prior", "to_uint8"]

#: The most samples one request may ask for (``vlvae sample --n``; a grid of 256 images is already
#: larger than a screen, and the memory of one request stays bounded).
MAX_SAMPLES = 256


def check_sample_count(n: int) -> None:
    """Refuse a number of samples outside 1..:data:`MAX_SAMPLES` with one clear line."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SAMPLES:
        raise VLVAEError(f"--n must be between 1 and {MAX_SAMPLES} (the most samples one request may ask for), "
                         f"got {n!r}; ask several times with other --seed values for more")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1] -> uint8 (N, H, W, 3)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
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
    from vlvae.training.run import check_run_data, load_text_posterior, load_vlvae, open_run

    if posterior not in ("agg", "true"):
        raise VLVAEError(f"--posterior must be 'agg' or 'true', got {posterior!r}")
    check_sample_count(n)
    cfg, info = open_run(run)
    vocab = read_vocabulary(check_run_data(run, cfg, info))
    ids = vocab.encode(text)
    if len(ids) != cfg.model.text_length:
        raise VLVAEError(f"the text has {len(ids)} words, the model reads {cfg.model.text_length} "
                         f"(layout: {' '.join(vocab.slot_names) or 'see vocab.json'})")
    model = load_vlvae(run, cfg)
    q = load_text_posterior(run, posterior, cfg)
    torch.manual_seed(seed)
    y = torch.tensor([ids] * n)
    z = q(y).sample()
    return to_uint8(model.image_mean(z)), [" ".join(vocab.decode(t)) for t in model.generate_text(z)]


@torch.no_grad()
def sample_from_prior(run: Path, prior: str = "standard", n: int = 16, seed: int = 0):
    """Images and texts decoded from z ~ N(0, I) (``standard``) or the learned q_phi(z) (``learned``)."""
    from vlvae.training.run import check_run_data, load_prior, load_vlvae, open_run

    if prior not in ("standard", "learned"):
        raise VLVAEError(f"--prior must be 'standard' or 'learned', got {prior!r}")
    check_sample_count(n)
    cfg, info = open_run(run)
    vocab = read_vocabulary(check_run_data(run, cfg, info))
    model = load_vlvae(run, cfg)
    dist = model.prior() if prior == "standard" else load_prior(run, cfg)()
    torch.manual_seed(seed)
    z = dist.sample((n,))
    return to_uint8(model.image_mean(z)), [" ".join(vocab.decode(t)) for t in model.generate_text(z)]
