"""The camera of a Two Objects scene: field of view, viewing frame, stratified sample grids.

CLEVR's camera (docs/design.md §10, **Camera**) sits at a jittered point, always pointed at the
origin, with a 35 mm lens on a 32 mm wide sensor. This module holds the camera's field of view
(:func:`field_of_view`), the forward/right/up frame of cameras aimed at the origin, and the
centres of an n x n stratified grid (the sub-pixel samples of silhouette pixels, and the shadow
samples on each lamp square). Everything here is float64 NumPy, computed once per scene; the
rays themselves are cast by :mod:`vlvae.datasets.two_objects.render`.
"""

from __future__ import annotations

import math

import numpy as np

from vlvae.datasets.two_objects import clevr

__all__ = ["field_of_view"]


def field_of_view(zoom: float = 1.0) -> float:
    """Horizontal (= vertical, square image) field of view in radians.

    CLEVR's 35 mm lens on a 32 mm sensor: tan(fov / 2) = (16 / 35) / zoom.
    """
    return 2.0 * math.atan(0.5 * clevr.SENSOR_MM / clevr.LENS_MM / zoom)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _camera_basis(cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward, right, up unit vectors (each (B, 3)) of cameras aimed at the origin."""
    fwd = _normalise(-cam)
    right = _normalise(np.stack([fwd[:, 1], -fwd[:, 0], np.zeros(len(cam))], axis=1))
    up = np.cross(right, fwd)
    return fwd, right, up


def _grid_offsets(n: int) -> np.ndarray:
    """Centres of an n x n stratified grid on [-0.5, 0.5]^2, (n*n, 2)."""
    c = (np.arange(n) + 0.5) / n - 0.5
    a, b = np.meshgrid(c, c, indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1)
