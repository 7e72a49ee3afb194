"""A batch of Two Objects scenes as the tensors every stage of the renderer reads.

:class:`_Scenes` turns N scene descriptions (:class:`vlvae.datasets.two_objects.scene.Scene`) into
per-scene constants: the camera's frame (docs/design.md §10, **Camera**); the objects' centres,
sizes, rotations, shapes, albedos and materials (§10, **Sizes and shapes**, **Colours**,
**Materials**); the three jittered square area lamps and the weak sun as shadow-casting squares
with fixed stratified sample points (§10, **Lights**); each light's shadow box on the ground; and
the lighting terms that are the same for every pixel of a scene (the lamps' and the sun's exposed
colours, the radiance of open ground that lights matte objects from below, the backdrop's, §10,
**Ground**). They are computed in float64 NumPy, then rounded to float32 tensors whose last axis
indexes the scene, so that every later step is IEEE-exact element-wise arithmetic.

The constants that set the lights' sampling and the ground's albedo live here, beside the code
that turns them into numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from vlvae.datasets.two_objects import clevr
from vlvae.datasets.two_objects.camera import _camera_basis, _grid_offsets, _normalise
from vlvae.datasets.two_objects.colour import EXPOSURE
from vlvae.datasets.two_objects.scene import Scene

__all__ = ["GROUND_ALBEDO", "LAMP_GRID", "SUN_SPREAD"]

#: Diffuse albedo of the grey ground / backdrop.
GROUND_ALBEDO = 0.5
#: Shadow samples per lamp: a LAMP_GRID x LAMP_GRID stratified grid on the square.
LAMP_GRID = 2
#: Angular radius (radians) of the sun's disc, for its slightly soft shadow.
SUN_SPREAD = 0.02

_SHAPE_CODES = {"sphere": 0, "cylinder": 1, "cube": 2}
_LAMP_NAMES = ("key", "fill", "back")
# For shadows the sun is a square lamp this far away (its size set by SUN_SPREAD).
_SUN_DISTANCE = 1000.0


class _Scenes:
    """Per-scene tensors; every tensor's last axis indexes the scene (B)."""

    def __init__(self, scenes: Sequence[Scene]):
        B = len(scenes)
        K = len(scenes[0].objects)
        if K < 1 or any(len(s.objects) != K for s in scenes):
            raise ValueError("all scenes of a call need the same number (>= 1) of objects")
        self.B, self.K = B, K
        f64 = np.float64
        cam = np.array([s.camera for s in scenes], dtype=f64)
        fwd, right, up = _camera_basis(cam)
        self.np_cam, self.np_fwd, self.np_right, self.np_up = cam, fwd, right, up

        # Objects.
        obj = [[o for o in s.objects] for s in scenes]
        r = np.array([[o.radius for o in ob] for ob in obj], dtype=f64)  # (B, K)
        ox = np.array([[o.x for o in ob] for ob in obj], dtype=f64)
        oy = np.array([[o.y for o in ob] for ob in obj], dtype=f64)
        rot = np.array([[o.rotation for o in ob] for ob in obj], dtype=f64)
        shape = np.array([[_SHAPE_CODES[o.shape] for o in ob] for ob in obj], dtype=np.int64)
        alb = np.array([[clevr.COLOURS[o.colour] for o in ob] for ob in obj], dtype=f64) / 255.0
        metal = np.array([[o.material == "metal" for o in ob] for ob in obj])
        # Bounding-sphere radius about the centre (x, y, r).
        rb = r * np.where(shape == 0, 1.0, np.where(shape == 1, math.sqrt(2.0), math.sqrt(3.0)))
        self.np_centre = np.stack([ox, oy, r], axis=-1)  # (B, K, 3)
        # Horizontal half-extent of the object's footprint, for shadow boxes.
        rxy = r * np.where(shape == 2, math.sqrt(2.0), 1.0)

        # Shadow-casting lights: the three lamps, then the sun as a distant
        # square "lamp" (so one code path draws soft-shadow samples for all).
        sun = _normalise(np.asarray(clevr.SUN["position"], dtype=f64))
        lamps = np.array([[s.lights[n] for n in _LAMP_NAMES] for s in scenes], dtype=f64)  # (B,3,3)
        lc = np.concatenate([lamps, np.broadcast_to(_SUN_DISTANCE * sun, (B, 1, 3))], axis=1)  # (B,4,3)
        ln = _normalise(-lc)  # every light is aimed at the origin
        t1 = _normalise(np.cross(ln, np.array([0.0, 0.0, 1.0])))
        t2 = np.cross(ln, t1)
        side = np.array(
            [clevr.LIGHTS[n]["size"] for n in _LAMP_NAMES] + [2.0 * _SUN_DISTANCE * math.tan(SUN_SPREAD)],
            dtype=f64,
        )  # (4,)

        def on_square(uv: np.ndarray) -> np.ndarray:  # (n, 2) offsets -> (B, 4, n, 3) points
            return lc[:, :, None] + side[None, :, None, None] * (
                uv[None, None, :, :1] * t1[:, :, None] + uv[None, None, :, 1:] * t2[:, :, None]
            )

        lq = on_square(_grid_offsets(LAMP_GRID))
        lcorn = on_square(np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]))
        intensity = np.array([clevr.LIGHTS[n]["strength"] for n in _LAMP_NAMES], dtype=f64) / math.pi
        lcol = np.array([clevr.LIGHTS[n]["colour"] for n in _LAMP_NAMES], dtype=f64)  # (3, 3)
        # Exposure x radiant intensity x colour, per lamp and channel.
        self.lamp_rgb = EXPOSURE * intensity[:, None] * lcol  # (3, 3)
        self.sun = tuple(float(x) for x in sun)
        # Exposure x sun irradiance at normal incidence, per channel.
        self.sun_rgb = EXPOSURE * float(clevr.SUN["strength"]) * np.ones(3)

        # Ground shadow boxes: project each object's bounding box from every
        # light corner onto z = 0; union over objects. (B, 4, 4) as xmin,
        # xmax, ymin, ymax.
        sx = np.array([-1.0, 1.0])
        bx = ox[:, :, None, None, None] + sx[None, None, :, None, None] * rxy[:, :, None, None, None]
        by = oy[:, :, None, None, None] + sx[None, None, None, :, None] * rxy[:, :, None, None, None]
        bz = np.array([0.0, 1.0])[None, None, None, None, :] * (2.0 * r[:, :, None, None, None] + 0.02)
        bx, by, bz = np.broadcast_arrays(bx, by, bz)
        bc = np.stack([bx, by, bz], axis=-1).reshape(B, K, 8, 3)  # AABB corners
        q = lcorn[:, :, None, :, None, :]  # (B, 4, 1, 4, 1, 3)
        c = bc[:, None, :, None, :, :]  # (B, 1, K, 1, 8, 3)
        lam = q[..., 2:] / np.maximum(q[..., 2:] - c[..., 2:], 1e-3)
        pr = (q[..., :2] + (c[..., :2] - q[..., :2]) * lam).reshape(B, 4, -1, 2)
        margin = 0.05
        boxes = np.stack(
            [
                pr[..., 0].min(-1) - margin,
                pr[..., 0].max(-1) + margin,
                pr[..., 1].min(-1) - margin,
                pr[..., 1].max(-1) + margin,
            ],
            axis=-1,
        )

        # Radiance of open, unshadowed ground near the origin: drives the
        # ambient bounce onto matte objects.
        v = lamps  # vectors from the origin to the lamps (B, 3, 3)
        d2 = (v * v).sum(-1)
        e_lamp = intensity[None] * (-(ln[:, :3] * v).sum(-1)).clip(0) * v[..., 2].clip(0) / d2**2
        e_rgb = EXPOSURE * (e_lamp[:, :, None] * lcol[None]).sum(1) + self.sun_rgb[None] * sun[2]
        ground0 = GROUND_ALBEDO / math.pi * e_rgb  # (B, 3)
        # The backdrop far away sees only the sun.
        self.far_rgb = GROUND_ALBEDO / math.pi * self.sun_rgb * sun[2]  # (3,)

        t32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        self.cam = t32(cam.T)  # (3, B)
        self.fwd, self.right, self.up = t32(fwd.T), t32(right.T), t32(up.T)
        fh = _normalise(np.stack([fwd[:, 0], fwd[:, 1]], axis=1))
        self.fh = t32(fh.T)  # (2, B) horizontal forward, for the backdrop term
        self.lamp_c = t32(lc.transpose(1, 2, 0))  # (4, 3, B)
        self.lamp_n = t32(ln.transpose(1, 2, 0))  # (4, 3, B)
        self.lamp_q = t32(lq.transpose(1, 2, 3, 0))  # (4, G, 3, B)
        self.lamp_len = t32(np.linalg.norm(lc, axis=-1).T)  # (4, B)
        self.lamp_h = torch.from_numpy((side * math.sqrt(0.5)).astype(np.float32))  # half-diagonals (4,)
        self.box = t32(boxes.transpose(1, 2, 0))  # (L+1, 4, B)
        self.ground0 = t32(ground0.T)  # (3, B)
        self.ox, self.oy, self.oz = t32(ox.T), t32(oy.T), t32(r.T)  # (K, B)
        self.r, self.rb = t32(r.T), t32(rb.T)
        self.cos, self.sin = t32(np.cos(rot).T), t32(np.sin(rot).T)
        self.shape = torch.from_numpy(np.ascontiguousarray(shape.T))  # (K, B) int64
        self.alb = t32(alb.transpose(2, 1, 0))  # (3, K, B)
        self.metal = torch.from_numpy(np.ascontiguousarray(metal.T))  # (K, B) bool
        self.present_shapes = sorted(set(shape.ravel().tolist()))
