"""One image file of an imported data set, read into a square uint8 RGB array.

:func:`read_image` decodes the whole file (so that a cut-off file is found here, not during
training), turns it upright by its EXIF orientation, converts any Pillow mode to 8-bit RGB, takes
the central square and shrinks it to ``size`` x ``size``. What goes wrong is told apart by the class
of the exception, so that the import can count each kind of bad file (:data:`ImageProblem.kind`):

* :class:`MissingImage`: no such file;
* :class:`EmptyImage`: the file has zero bytes;
* :class:`UnreadableImage`: Pillow does not recognise the file as an image (or it is a folder);
* :class:`TruncatedImage`: Pillow recognises it, but decoding its pixels fails (a cut-off PNG or JPEG,
  a corrupt stream).

Colour conversion:

* ``RGB`` is kept; ``L`` (grey), ``1`` (black and white), ``CMYK``, ``YCbCr`` and the other modes go
  through Pillow's own conversion to ``RGB``;
* 16- and 32-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I``) is brought to 8 bits by dividing by 257
  and rounding (65535 -> 255, 0 -> 0), then made grey RGB; ``F`` (float grey) is clipped to 0-255;
* images with transparency (``RGBA``, ``LA``, ``PA``, a palette or grey/RGB image with a transparent
  colour) are composited over white: a fully transparent pixel becomes white, an opaque one keeps its
  colour. Palette images (``P``) are converted through ``RGBA`` for this reason.
"""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageProblem",
    "MissingImage",
    "EmptyImage",
    "UnreadableImage",
    "TruncatedImage",
    "check_file",
    "to_rgb",
    "square",
    "read_image",
]

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageProblem(Exception):
    """An image file that cannot be used; ``kind`` names the kind of problem (an import's skip key)."""

    kind = "unreadable_image"


class MissingImage(ImageProblem):
    kind = "missing_image"


class EmptyImage(ImageProblem):
    kind = "empty_image"


class UnreadableImage(ImageProblem):
    kind = "unreadable_image"


class TruncatedImage(ImageProblem):
    kind = "truncated_image"


def check_file(path: Path) -> os.stat_result:
    """The file's status, or the problem that makes it unusable before it is opened.

    Raises:
        MissingImage: there is no such file.
        UnreadableImage: it is not a regular file (a folder, a device).
        EmptyImage: it has zero bytes.
    """
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise MissingImage(f"{path} does not exist") from exc
    except OSError as exc:
        raise UnreadableImage(f"{path} cannot be read ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImage(f"{path} is not a regular file")
    if st.st_size == 0:
        raise EmptyImage(f"{path} is empty (0 bytes)")
    return st


def _over_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of ``image``, whatever its mode (see the module's docstring).

    Example:
        >>> to_rgb(Image.new("LA", (1, 1), (0, 0))).getpixel((0, 0))
        (255, 255, 255)
        >>> to_rgb(Image.new("I;16", (1, 1), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float64)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in _ALPHA or mode == "P" or "transparency" in image.info:
        return _over_white(image)
    return image.convert("RGB")


def square(image: Image.Image, size: int) -> np.ndarray:
    """The central square of an RGB image (side min(width, height)), resized to ``size`` x ``size``
    with Lanczos filtering; an image whose central square already is ``size`` x ``size`` keeps its
    pixels exactly.

    Example:
        >>> square(Image.new("RGB", (30, 10), (1, 2, 3)), 4).shape
        (4, 4, 3)
    """
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if side != width or side != height:
        image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, 3)


def _upright(image: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation; a damaged EXIF block is ignored."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error):
        return image


def read_image(path: Path, size: int) -> np.ndarray:
    """Decode an image file fully and return uint8 (size, size, 3): upright, RGB, central square.

    Raises:
        ImageProblem: one of its subclasses (:class:`MissingImage`, :class:`EmptyImage`,
            :class:`UnreadableImage`, :class:`TruncatedImage`), with a message naming the file.
    """
    path = Path(path)
    check_file(path)
    try:
        image = Image.open(path)
    except FileNotFoundError as exc:
        raise MissingImage(f"{path} does not exist") from exc
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"{path} is not an image Pillow can read ({exc})") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as exc:
        raise UnreadableImage(f"{path} cannot be opened as an image ({exc})") from exc
    with image:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, zlib.error) as exc:
            raise TruncatedImage(f"{path} is cut off or corrupt ({type(exc).__name__}: {exc})") from exc
        return square(to_rgb(_upright(image)), size)
