"""Images in and out of the API: PNG data URLs made in memory, and uploads checked and resized."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlvae.errors import VLVAEError

__all__ = [
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOAD_PIXELS",
    "UploadRefused",
    "png_bytes",
    "png_data_url",
    "read_upload",
]

#: The largest upload accepted (a 2 MB JPEG is a large photograph; the model reads 64 x 64).
MAX_UPLOAD_BYTES = 2 * 1024 * 1024
#: The most pixels an upload may decode to: a small PNG of one colour can hold a huge image.
MAX_UPLOAD_PIXELS = 25_000_000
_FORMATS = ("PNG", "JPEG")


class UploadRefused(VLVAEError):
    """An upload that is not a PNG or JPEG image (``status`` 415) or is too large (413)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file bytes of a uint8 (H, W, 3) image, encoded in memory."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(image: np.ndarray) -> str:
    """``data:image/png;base64,...`` of a uint8 (H, W, 3) image."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def read_upload(data: bytes, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """An uploaded PNG or JPEG as the model's input: the central square, resized to ``size``.

    Returns:
        (uint8 (size, size, 3), the upload's (width, height)).

    Raises:
        UploadRefused: empty, over :data:`MAX_UPLOAD_BYTES` or :data:`MAX_UPLOAD_PIXELS`, or not
            a readable PNG or JPEG.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadRefused(
            f"the upload has {len(data):,} bytes, more than the limit of {MAX_UPLOAD_BYTES:,}; "
            "send a smaller PNG or JPEG",
            413,
        )
    if not data:
        raise UploadRefused("the upload is empty; send a PNG or JPEG image", 415)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _FORMATS:
                raise UploadRefused(f"the upload is a {image.format} image; send a PNG or JPEG", 415)
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise UploadRefused(
                    f"the upload is {width} x {height} pixels, more than {MAX_UPLOAD_PIXELS:,}; "
                    "send a smaller image",
                    413,
                )
            rgb = image.convert("RGB")
    except UploadRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UploadRefused(
            f"the upload is not a readable PNG or JPEG image ({type(exc).__name__}); send a PNG or JPEG", 415
        ) from exc
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    resized = square.resize(
        (size, size), Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC
    )
    return np.asarray(resized, dtype=np.uint8).copy(), (width, height)
