"""From linear radiance to pixel values: the exposure and the sRGB encoding.

Light is accumulated in Blender-like units -- an area lamp of strength P watts is a one-sided
Lambertian emitter of radiant intensity P / pi along its axis, the sun gives irradiance
0.45 W/m^2 (docs/design.md §10, **Lights**) -- and multiplied by :data:`EXPOSURE`; the finished
image is sRGB-encoded (docs/design.md §10, **Colours**). With ``EXPOSURE = 1.25`` and
:data:`vlvae.datasets.two_objects.batch.GROUND_ALBEDO` 0.5 the unshadowed ground at the origin of
the un-jittered scene is linear 0.21, sRGB 126 (CLEVR's floor near the objects is about
120-140); the far ground and backdrop, lit by the sun only, are sRGB 80.

The sRGB transfer function is applied through a table of 2^16 linear bins built once in float64
NumPy, so a pixel's code comes from exact comparisons and an index, never from a transcendental
kernel whose rounding could differ between machines or batches.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["EXPOSURE"]

#: Linear scale from Blender-like radiance to linear pixel value (see module doc).
EXPOSURE = 1.25

_SRGB_BITS = 16
_srgb_lut: torch.Tensor | None = None


def _srgb_table() -> torch.Tensor:
    """uint8 (2^16,) sRGB code of each linear bin (exact comparisons only)."""
    global _srgb_lut
    if _srgb_lut is None:
        n = 1 << _SRGB_BITS
        x = (np.arange(n, dtype=np.float64) + 0.5) / n
        y = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)
        _srgb_lut = torch.from_numpy(np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8))
    return _srgb_lut


def _to_srgb8(lin: torch.Tensor) -> torch.Tensor:
    """float32 (...) linear in [0, inf) -> uint8 sRGB via the standard transfer function."""
    n = 1 << _SRGB_BITS
    idx = (lin.clamp(0.0, 1.0) * float(n)).to(torch.int32).clamp(0, n - 1)
    return _srgb_table().index_select(0, idx.reshape(-1)).view(lin.shape)
