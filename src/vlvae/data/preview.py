"""``vlvae data preview``: a grid of images with their texts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vlvae.data.format import load_images, read_manifest, read_records, record_words, splits_of
from vlvae.errors import VLVAEError
from vlvae.io import atomic_path

__all__ = ["preview_grid", "image_text_grid"]


def image_text_grid(
    images: np.ndarray, texts: list[str], out: Path, columns: int = 4, title: str | None = None
) -> Path:
    """Save a grid of uint8 images (N, H, W, 3), each captioned with its text."""
    import matplotlib  # noqa: PLC0415  deferred: matplotlib and its backend are chosen only when a grid is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415  deferred: after the backend is chosen

    n = len(images)
    columns = min(columns, n)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text in zip(axes.flat, images, texts):
        ax.imshow(image, interpolation="nearest")
        words = text.split()
        caption = " ".join(words[:5]) + ("\n" + " ".join(words[5:]) if len(words) > 5 else "")
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return out


def preview_grid(root: Path, out: Path, n: int = 16, split: str = "train") -> Path:
    """Save the first ``n`` images of a split with their drawn texts."""
    splits = splits_of(read_manifest(root))
    if split not in splits:
        raise VLVAEError(f"--split must be one of {', '.join(splits)}, got {split!r}")
    images = load_images(root, split)
    records = read_records(root, split)
    n = min(n, len(images))
    texts = [" ".join(record_words(r)) for r in records[:n]]
    return image_text_grid(np.asarray(images[:n]), texts, out)
