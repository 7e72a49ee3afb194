"""CLEVR's constants (Johnson et al. 2016), as facts for the Two Objects generator.

References:
    CLEVR: A Diagnostic Dataset for Compositional Language and Elementary
    Visual Reasoning, Johnson et al. 2016, https://arxiv.org/abs/1612.06890
    (generator facebookresearch/clevr-dataset-gen; numbers only, no code).
"""

from __future__ import annotations

__all__ = [
    "COLOURS",
    "SIZES",
    "SHAPES",
    "MATERIALS",
    "RELATIONS",
    "DIRECTIONS",
    "CAMERA_POSITION",
    "CAMERA_JITTER",
    "LENS_MM",
    "SENSOR_MM",
    "LIGHTS",
    "LIGHT_JITTER",
    "SUN",
    "MIN_DIST",
    "MARGIN",
    "RELATION_EPS",
    "POSITION_RANGE",
    "CLEVR_RESOLUTION",
    "MIN_PIXELS_PER_OBJECT",
    "MAX_RETRIES",
]

#: Object colours as linear RGB albedo in 0-255 (the output image is sRGB-encoded).
COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}

#: Scale r of an object whose mesh spans [-1, 1]^3; it rests at height r.
SIZES: dict[str, float] = {"large": 0.7, "small": 0.35}
SHAPES: tuple[str, ...] = ("sphere", "cylinder", "cube")
MATERIALS: tuple[str, ...] = ("rubber", "metal")
RELATIONS: tuple[str, ...] = ("right", "left", "front", "behind")

#: Ground-plane unit vectors of the un-jittered camera, as in CLEVR's released data.
DIRECTIONS: dict[str, tuple[float, float, float]] = {
    "behind": (-0.754490, 0.656311, 0.0),
    "front": (0.754490, -0.656311, 0.0),
    "left": (-0.656311, -0.754490, 0.0),
    "right": (0.656311, 0.754490, 0.0),
}

CAMERA_POSITION: tuple[float, float, float] = (7.4811, -6.5076, 5.3437)
CAMERA_JITTER = 0.5
LENS_MM = 35.0
SENSOR_MM = 32.0

#: Area lamps aimed at the origin: position, square side, strength, colour.
LIGHTS: dict[str, dict] = {
    "key": {
        "position": (6.4467, -2.9052, 4.2584),
        "size": 0.5,
        "strength": 100.0,
        "colour": (1.0, 0.9323, 0.8167),
    },
    "fill": {
        "position": (-4.6711, -4.0136, 3.0112),
        "size": 0.5,
        "strength": 30.0,
        "colour": (0.7617, 0.8177, 1.0),
    },
    "back": {"position": (-1.1685, 2.6460, 5.8157), "size": 1.0, "strength": 50.0, "colour": (1.0, 1.0, 1.0)},
}
LIGHT_JITTER = 1.0
#: Weak sun from high above: direction towards the sun and strength.
SUN: dict = {"position": (11.66, -6.63, 25.82), "strength": 0.45}

MIN_DIST = 0.25
MARGIN = 0.4
RELATION_EPS = 0.2
POSITION_RANGE = 3.0
CLEVR_RESOLUTION = (480, 320)
MIN_PIXELS_PER_OBJECT = 200
MAX_RETRIES = 50
