"""CelebA's faces as pixels: the crop, the pooling, and decoding JPEGs in chunks.

The crop box and pooling of the authors' released code (docs/design.md §2.1): crop 128 × 128 at
(top 48, left 25) of the 178 × 218 aligned image, then mean pooling by 128 / ``size``; pooled means
are rounded half up in integer arithmetic, so the bytes are exact and platform independent
(:func:`preprocess`). :func:`_decode_chunk` decodes and preprocesses a list of files, in a process
pool when one is given; a worker reports an unreadable file as text instead of dying.

References:
    CelebA: Deep Learning Face Attributes in the Wild, Liu et al. 2015,
    https://arxiv.org/abs/1411.7766 (the data set and its file formats).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from PIL import Image

from vlvae.datasets.celeba.files import _IMAGE_DIR
from vlvae.errors import VLVAEError

__all__ = ["ALIGNED_SIZE", "CROP_BOX", "preprocess"]

ALIGNED_SIZE = (178, 218)
"""(width, height) of CelebA's aligned-and-cropped images."""
CROP_BOX = (25, 48, 153, 176)
"""(left, top, right, bottom) of the 128 × 128 face crop (docs/design.md §2.1)."""


def _pooling(size: int) -> str:
    crop = CROP_BOX[2] - CROP_BOX[0]
    return f"mean {crop // size}x{crop // size}" if crop % size == 0 else "PIL box resize"


def preprocess(image: Image.Image, size: int = 64) -> np.ndarray:
    """Crop an aligned CelebA face and shrink it (docs/design.md §2.1).

    Crops 128 × 128 at (top 48, left 25) of the 178 × 218 aligned image, then
    shrinks to ``size`` × ``size``: when ``size`` divides 128, by mean pooling
    over f × f blocks (f = 128 / size; size 64 gives the authors' 2 × 2 pooling),
    each mean rounded half up; otherwise by PIL's BOX resize (area average).

    Args:
        image: an aligned CelebA image, 178 wide and 218 high, any PIL mode.
        size: output side in pixels, 1 to 128.

    Returns:
        uint8 (size, size, 3).

    Raises:
        VLVAEError: the image is not 178 × 218, or ``size`` is out of range.

    Example:
        >>> preprocess(Image.new("RGB", (178, 218), (10, 20, 30))).shape
        (64, 64, 3)
    """
    crop = CROP_BOX[2] - CROP_BOX[0]
    if not 1 <= size <= crop:
        raise VLVAEError(
            f"image size {size} is out of range; choose a size from 1 to {crop} (the paper uses 64)"
        )
    if image.size != ALIGNED_SIZE:
        raise VLVAEError(
            f"image is {image.size[0]}x{image.size[1]}, not CelebA's aligned "
            f"{ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]}; use the img_align_celeba images, not the in-the-wild ones"
        )
    face = image.convert("RGB").crop(CROP_BOX)
    if crop % size:
        return np.asarray(face.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)
    f = crop // size
    pixels = np.asarray(face)
    total = np.zeros((size, size, 3), dtype=np.uint32)
    for i in range(f):  # strided adds: several times faster than a reshape-and-sum
        for j in range(f):
            total += pixels[i::f, j::f]
    return ((total + f * f // 2) // (f * f)).astype(np.uint8)


def _load_one(job: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    """Decode and preprocess one file; errors come back as text so a worker never dies."""
    path, size = job
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess(image, size), None
    except VLVAEError as exc:
        return None, str(exc)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _decode_chunk(paths: list[Path], size: int, pool: ProcessPoolExecutor | None) -> np.ndarray:
    """Preprocessed images of ``paths``, uint8 (len(paths), size, size, 3), decoded in ``pool`` if given."""
    jobs = [(str(p), size) for p in paths]
    try:
        results = list(pool.map(_load_one, jobs, chunksize=16) if pool is not None else map(_load_one, jobs))
    except BrokenProcessPool as exc:
        raise VLVAEError(
            f"a JPEG-decoding worker process died ({exc}); rerun with --workers 1 (or workers=1), "
            "which decodes in the main process"
        ) from exc
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, (array, error) in enumerate(results):
        if error is not None:
            raise VLVAEError(
                f"{paths[i]} is not a readable CelebA image ({error}); re-download or re-extract {_IMAGE_DIR}"
            )
        out[i] = array
    return out
