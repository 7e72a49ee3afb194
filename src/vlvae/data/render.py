"""A fast, batched, deterministic CLEVR-style ray tracer on the CPU.

CLEVR (Johnson et al. 2016, "CLEVR: A Diagnostic Dataset for Compositional
Language and Elementary Visual Reasoning", https://arxiv.org/abs/1612.06890)
renders its scenes with Blender/Cycles, which costs seconds per image. This
module renders the same scene description (``vlvae.data.scene.Scene``) with
the facts of docs/design.md §10 -- camera, three jittered square area lamps
plus a weak sun, grey ground, rubber and metal spheres, cylinders and rounded
cubes -- in milliseconds per image, so that 100,000 images take minutes on a
CPU. It is not a path tracer: direct light with soft shadows, one ground
bounce as an ambient term for matte surfaces, and one traced mirror bounce for
metal. The look is CLEVR's, the numbers are not Cycles'.

Design (all of it vectorised with PyTorch, no per-pixel Python):

* Primary rays at pixel centres for every pixel are cast against the ground
  plane and, after a cheap bounding-sphere test, against the objects. The
  resulting id map gives the masks and pixel counts.
* Anti-aliasing is adaptive: only pixels whose centre id differs from one of
  their 8 neighbours (silhouette pixels) are re-rendered with ``s x s``
  stratified sub-pixel rays; every other pixel is shaded once.
* Soft shadows use fixed stratified points on each lamp square (and a few
  fixed directions around the sun), and are evaluated only where a shadow can
  fall: ground points inside a per-lamp shadow bounding box, and object
  points whose shadow segment passes near another object's bounding sphere.
* Expensive terms are evaluated on index subsets (object pixels, metal
  pixels), never on the whole image.

Determinism: every per-ray quantity is computed with IEEE-exact element-wise
operations only (add, mul, div, sqrt, min/max, comparisons; no fused or
transcendental kernels, no reductions across rays, no random numbers), so a
pixel's value does not depend on the batch it is rendered in, nor on torch's
thread count (vectorised and scalar code paths agree bit for bit). Per-scene
constants are computed in float64 NumPy, then rounded to float32.

Exposure: light is accumulated in Blender-like units -- an area lamp of
strength P watts is a one-sided Lambertian emitter of radiant intensity
P / pi along its axis, the sun gives irradiance 0.45 W/m^2 -- and multiplied
by :data:`EXPOSURE` before the sRGB transfer function. With
``EXPOSURE = 1.25`` and :data:`GROUND_ALBEDO` 0.5 the unshadowed ground at the
origin of the un-jittered scene is linear 0.21, sRGB 126 (CLEVR's floor near
the objects is about 120-140); the far ground and backdrop, lit by the sun
only, are sRGB 80.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vlvae.data import clevr
from vlvae.data.scene import Scene

__all__ = [
    "Rendering",
    "render_scenes",
    "field_of_view",
    "EXPOSURE",
    "GROUND_ALBEDO",
    "CUBE_BEVEL",
    "LAMP_GRID",
]

#: Linear scale from Blender-like radiance to linear pixel value (see module doc).
EXPOSURE = 1.25
#: Diffuse albedo of the grey ground / backdrop.
GROUND_ALBEDO = 0.5
#: Radius of the rounded cube's edges, as a fraction of the scale r.
CUBE_BEVEL = 0.15
#: Radius of the cylinder's rounded rim (shading only), as a fraction of r.
CYLINDER_BEVEL = 0.06
#: Shadow samples per lamp: a LAMP_GRID x LAMP_GRID stratified grid on the square.
LAMP_GRID = 2
#: Angular radius (radians) of the sun's disc, for its slightly soft shadow.
SUN_SPREAD = 0.02
#: Normal-incidence reflectance of rubber's grazing sheen (docs/design.md §10: 0.8 %).
RUBBER_F0 = 0.008
#: Phong exponents (powers of two: evaluated by repeated squaring) of the
#: lamp highlights: metal's sharp (0.6) and rough (0.4) lobes and rubber's sheen.
#: They are broader than Cycles' roughness 0.01 / 0.2 so that a highlight covers
#: a pixel at 64-128 px instead of aliasing away.
METAL_SHARP_EXP = 256
METAL_ROUGH_EXP = 32
RUBBER_SHEEN_EXP = 8
#: Fraction of the open-ground radiance that lights matte objects from below
#: (a one-bounce ambient term; Cycles gets it from global illumination).
GROUND_BOUNCE = 0.7

_SHAPE_CODES = {"sphere": 0, "cylinder": 1, "cube": 2}
_LAMP_NAMES = ("key", "fill", "back")
_EPS = 1e-4
# Sphere-tracing steps that put rays on the rounded cube's bevels.
_BEVEL_STEPS = 6
# For shadows the sun is a square lamp this far away (its size set by SUN_SPREAD).
_SUN_DISTANCE = 1000.0
_INF = float("inf")


@dataclass
class Rendering:
    """Images and per-object pixel statistics of a batch of scenes.

    Attributes:
        images: uint8 (N, H, W, 3), sRGB.
        object_pixels: int64 (N, n_objects), pixels whose pixel-centre primary
            ray sees the object first.
        background_pixels: int64 (N,), pixels whose centre ray sees the ground
            or backdrop.
        pixel_coords: float64 (N, n_objects, 3), (px, py, depth) of each
            object's 3-D centre: origin at the image's top-left corner, px/py
            in pixels of this image, depth along the camera's viewing axis.
        masks: bool (N, n_objects, H, W) when requested, else None.
    """

    images: np.ndarray
    object_pixels: np.ndarray
    background_pixels: np.ndarray
    pixel_coords: np.ndarray
    masks: np.ndarray | None


def field_of_view(zoom: float = 1.0) -> float:
    """Horizontal (= vertical, square image) field of view in radians.

    CLEVR's 35 mm lens on a 32 mm sensor: tan(fov / 2) = (16 / 35) / zoom.
    """
    return 2.0 * math.atan(0.5 * clevr.SENSOR_MM / clevr.LENS_MM / zoom)


# --------------------------------------------------------------------------
# Per-scene constants (float64 NumPy, then float32 torch; scene axis last)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Ray-object intersection (subset layout: every tensor (M,), scene index sidx)
# --------------------------------------------------------------------------


def _dot(ax, ay, az, bx, by, bz):
    return ax * bx + ay * by + az * bz


def _interval_sphere(lx, ly, lz, dx, dy, dz, r):
    a = _dot(dx, dy, dz, dx, dy, dz)
    b = _dot(lx, ly, lz, dx, dy, dz)
    c = _dot(lx, ly, lz, lx, ly, lz) - r * r
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0.0))
    miss = disc < 0.0
    near = torch.where(miss, _INF, (-b - sq) / a)
    far = torch.where(miss, -_INF, (-b + sq) / a)
    return near, far


def _safe(d):
    # A zero direction component would give 0 * inf = nan in a slab test.
    return torch.where(d == 0.0, torch.full_like(d, 1e-20), d)


def _identity(t):
    return t


def _rows(index):
    """The function that takes rows ``index`` of a tensor (bound now, not when it is called)."""
    return lambda t: t.index_select(0, index)


def _slab(offset, d, r):
    inv = 1.0 / _safe(d)
    t1 = (-r - offset) * inv
    t2 = (r - offset) * inv
    return torch.minimum(t1, t2), torch.maximum(t1, t2)


def _interval_cylinder(lx, ly, lz, dx, dy, dz, r):
    a = (dx * dx + dy * dy).clamp(min=1e-20)
    b = lx * dx + ly * dy
    c = lx * lx + ly * ly - r * r
    disc = b * b - a * c
    sq = torch.sqrt(disc.clamp(min=0.0))
    zn, zf = _slab(lz, dz, r)
    near = torch.maximum((-b - sq) / a, zn)
    far = torch.minimum((-b + sq) / a, zf)
    miss = disc < 0.0
    return torch.where(miss, _INF, near), torch.where(miss, -_INF, far)


def _interval_cube(lx, ly, lz, dx, dy, dz, r, cs, sn, rounded: bool):
    # Rotate into the cube's frame (rotation by -theta about z).
    x = cs * lx + sn * ly
    y = cs * ly - sn * lx
    ex = cs * dx + sn * dy
    ey = cs * dy - sn * dx
    n1, f1 = _slab(x, ex, r)
    n2, f2 = _slab(y, ey, r)
    n3, f3 = _slab(lz, dz, r)
    near = torch.maximum(torch.maximum(n1, n2), n3)
    far = torch.minimum(torch.minimum(f1, f2), f3)
    if rounded:
        near = _round_cube_entry(x, y, lz, ex, ey, dz, r, near, far)
    return near, far


def _round_cube_entry(x, y, z, ex, ey, ez, r, near, far):
    """Move box entry points that fall on a bevelled edge onto the rounded cube.

    Only rays entering the sharp box within CUBE_BEVEL * r of an edge (two
    coordinates beyond the inner box) are refined, by a fixed number of
    sphere-tracing steps on the rounded box's signed distance, starting at
    the sharp box (which bounds it). Rays that pass the rounded corner miss
    (near = inf). Directions must be unit vectors.
    """
    inner = r * (1.0 - CUBE_BEVEL)
    hx, hy, hz = x + near * ex, y + near * ey, z + near * ez
    beyond = (
        (hx.abs() > inner).to(torch.int8)
        + (hy.abs() > inner).to(torch.int8)
        + (hz.abs() > inner).to(torch.int8)
    )
    sel = ((beyond >= 2) & (near <= far)).nonzero().squeeze(1)
    if sel.numel() == 0:
        return near
    g = lambda v: v.index_select(0, sel)  # noqa: E731
    x, y, z, ex, ey, ez, rr, inner = g(x), g(y), g(z), g(ex), g(ey), g(ez), g(r) * CUBE_BEVEL, g(inner)
    t = g(near)
    for _ in range(_BEVEL_STEPS):
        qx = (x + t * ex).abs() - inner
        qy = (y + t * ey).abs() - inner
        qz = (z + t * ez).abs() - inner
        ox, oy, oz = qx.clamp(min=0.0), qy.clamp(min=0.0), qz.clamp(min=0.0)
        dist = (
            torch.sqrt(ox * ox + oy * oy + oz * oz)
            + torch.maximum(torch.maximum(qx, qy), qz).clamp(max=0.0)
            - rr
        )
        t = t + dist
    hit = (dist < rr * 0.05) & (t <= g(far))
    near = near.clone()
    near[sel] = torch.where(hit, t, torch.full_like(t, _INF))
    return near


def _interval(S: _Scenes, kk, sidx, ox, oy, oz, dx, dy, dz, rounded: bool = False):
    """Entry/exit ray parameters of object(s) ``kk`` of scenes ``sidx``.

    Args:
        kk: int (one object slot for all rays) or int64 (M,) per ray.
        sidx: int64 (M,) scene index of each ray.
        ox..dz: float32 (M,) ray origins and directions (any length unless
            ``rounded``).
        rounded: trace the cube's rounded edges exactly (unit directions
            only); otherwise its bounding sharp box is used (shadow rays).
    Returns:
        near, far: float32 (M,); the ray is inside the object for
        near <= t <= far (near > far: no hit).
    """
    shape = S.shape[kk, sidx]
    M = shape.numel()
    near = torch.full((M,), _INF)
    far = torch.full((M,), -_INF)
    for code in S.present_shapes:
        sel = (shape == code).nonzero().squeeze(1)
        n = sel.numel()
        if n == 0:
            continue
        g = _identity if n == M else _rows(sel)
        k_s = kk if isinstance(kk, int) else g(kk)
        s_s = g(sidx)
        r = S.r[k_s, s_s]
        lx = g(ox) - S.ox[k_s, s_s]
        ly = g(oy) - S.oy[k_s, s_s]
        lz = g(oz) - S.oz[k_s, s_s]
        if code == 0:
            a, b = _interval_sphere(lx, ly, lz, g(dx), g(dy), g(dz), r)
        elif code == 1:
            a, b = _interval_cylinder(lx, ly, lz, g(dx), g(dy), g(dz), r)
        else:
            a, b = _interval_cube(
                lx, ly, lz, g(dx), g(dy), g(dz), r, S.cos[k_s, s_s], S.sin[k_s, s_s], rounded
            )
        if n == M:
            near, far = a, b
        else:
            near[sel] = a
            far[sel] = b
    return near, far


def _first_hit(S: _Scenes, sidx, ox, oy, oz, dx, dy, dz, exclude=None):
    """Nearest object hit along unit-direction rays (M,).

    Returns (t, k): float32 (M,) distance (inf: no object) and int64 (M,)
    object slot (-1: none). ``exclude`` (M,) int64 skips one slot per ray.
    A bounding-sphere test culls rays before the exact intersection.
    """
    M = sidx.numel()
    t = torch.full((M,), _INF)
    k = torch.full((M,), -1, dtype=torch.int64)
    for j in range(S.K):
        lx = ox - S.ox[j, sidx]
        ly = oy - S.oy[j, sidx]
        lz = oz - S.oz[j, sidx]
        b = _dot(lx, ly, lz, dx, dy, dz)
        rb = S.rb[j, sidx]
        c = _dot(lx, ly, lz, lx, ly, lz) - rb * rb
        # Ahead of the ray, or around its origin (reflections start close).
        cand = (b * b - c > 0.0) & ((b < 0.0) | (c < 0.0))
        if exclude is not None:
            cand &= exclude != j
        sel = cand.nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        g = _rows(sel)
        near, far = _interval(S, j, g(sidx), g(ox), g(oy), g(oz), g(dx), g(dy), g(dz), True)
        hit = (near <= far) & (near > _EPS) & (near < t.index_select(0, sel))
        sel = sel[hit]
        t[sel] = near[hit]
        k[sel] = j
    return t, k


def _normals(S: _Scenes, kk, sidx, px, py, pz):
    """Unit outward normals (3 x (M,)) at surface points of objects kk (M,).

    Cube and cylinder normals are those of a rounded solid (the direction
    from the point to the nearest point of the inner, shrunken solid), which
    gives CLEVR's bevelled highlights at little cost.
    """
    shape = S.shape[kk, sidx]
    M = shape.numel()
    nx, ny, nz = torch.empty(M), torch.empty(M), torch.empty(M)
    for code in S.present_shapes:
        sel = (shape == code).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        g = _rows(sel)
        k_s, s_s = g(kk), g(sidx)
        r = S.r[k_s, s_s]
        lx = g(px) - S.ox[k_s, s_s]
        ly = g(py) - S.oy[k_s, s_s]
        lz = g(pz) - S.oz[k_s, s_s]
        if code == 0:
            ax, ay, az = lx, ly, lz
        elif code == 1:
            inner = r * (1.0 - CYLINDER_BEVEL)
            rho = torch.sqrt(lx * lx + ly * ly).clamp(min=1e-12)
            scale = (inner / rho).clamp(max=1.0)
            ax = lx - lx * scale
            ay = ly - ly * scale
            az = lz - torch.minimum(torch.maximum(lz, -inner), inner)
        else:
            cs, sn = S.cos[k_s, s_s], S.sin[k_s, s_s]
            inner = r * (1.0 - CUBE_BEVEL)
            x = cs * lx + sn * ly
            y = cs * ly - sn * lx
            qx = x - torch.minimum(torch.maximum(x, -inner), inner)
            qy = y - torch.minimum(torch.maximum(y, -inner), inner)
            az = lz - torch.minimum(torch.maximum(lz, -inner), inner)
            ax = cs * qx - sn * qy
            ay = sn * qx + cs * qy
        inv = 1.0 / torch.sqrt(_dot(ax, ay, az, ax, ay, az)).clamp(min=1e-20)
        nx[sel] = ax * inv
        ny[sel] = ay * inv
        nz[sel] = az * inv
    return nx, ny, nz


# --------------------------------------------------------------------------
# Lighting
# --------------------------------------------------------------------------


def _visibility(S: _Scenes, sidx, lid, px, py, pz, self_k=None):
    """Soft-shadow visibility of points towards one light each.

    Args:
        sidx: int64 (M,) scene of each point; lid: int64 (M,) light (0-2 the
            lamps in ``_LAMP_NAMES`` order, 3 the sun); px, py, pz: float32 (M,).
        self_k: int64 (M,) object slot the point lies on (never its own
            occluder: the solids are convex and the Lambert term already
            darkens the side facing away), or None for ground points.
    Returns:
        float32 (M,): the fraction of the light's fixed stratified sample
        points that no object blocks. Points whose segment to the light's
        centre passes far from an object's bounding sphere skip the exact
        tests; the rest are tested for all samples in one batched call.
    """
    M = sidx.numel()
    G = LAMP_GRID * LAMP_GRID
    sx = S.lamp_c[lid, 0, sidx] - px
    sy = S.lamp_c[lid, 1, sidx] - py
    sz = S.lamp_c[lid, 2, sidx] - pz
    ss = _dot(sx, sy, sz, sx, sy, sz)
    slen = torch.sqrt(ss)
    h = S.lamp_h[lid]
    blocked = torch.zeros((G, M), dtype=torch.bool)
    for j in range(S.K):
        wx = S.ox[j, sidx] - px
        wy = S.oy[j, sidx] - py
        wz = S.oz[j, sidx] - pz
        rb = S.rb[j, sidx]
        uc = _dot(wx, wy, wz, sx, sy, sz) / ss
        u = uc.clamp(0.0, 1.0)
        ex, ey, ez = wx - u * sx, wy - u * sy, wz - u * sz
        # A sample segment deviates from the centre segment by at most u * h
        # at parameter u, and can only reach the sphere for u <= u_max.
        u_max = ((u * slen + rb) / (slen - h)).clamp(max=1.0)
        rr = rb + h * u_max
        cand = _dot(ex, ey, ez, ex, ey, ez) < rr * rr
        if self_k is not None:
            cand &= self_k != j
        sel = cand.nonzero().squeeze(1)
        n = sel.numel()
        if n == 0:
            continue
        g = _rows(sel)
        qs, ql, qx, qy, qz = g(sidx), g(lid), g(px), g(py), g(pz)
        dx = torch.cat([S.lamp_q[ql, gi, 0, qs] - qx for gi in range(G)])
        dy = torch.cat([S.lamp_q[ql, gi, 1, qs] - qy for gi in range(G)])
        dz = torch.cat([S.lamp_q[ql, gi, 2, qs] - qz for gi in range(G)])
        near, far = _interval(S, j, qs.repeat(G), qx.repeat(G), qy.repeat(G), qz.repeat(G), dx, dy, dz)
        hit = near.clamp(min=_EPS) < far.clamp(max=1.0)
        blocked[:, sel] |= hit.view(G, n)
    occluded = blocked.sum(0)  # integer count: exact and order-free
    return 1.0 - occluded.to(torch.float32) * (1.0 / G)


def _ground_radiance(S: _Scenes, gx, gy, sidx=None, shadow_mask=None):
    """Linear radiance of ground points (g_z = 0, normal +z).

    Two layouts: full image (``sidx`` None; gx, gy (B, P), per-scene values
    broadcast) or a subset (gx, gy, sidx (M,)). Rays near or above the horizon
    are given far-away ground points, where only the sun remains: that is the
    backdrop, so no horizon shows. Shadows are computed only inside each
    light's shadow box (and where ``shadow_mask``, bool like gx, is true).

    Returns float32 (3, *gx.shape).
    """
    if sidx is None:
        gat = lambda t: t[..., None]  # noqa: E731
        P = gx.shape[1]
    else:
        gat = lambda t: t[..., sidx]  # noqa: E731
    energies = []
    for li in range(3):
        lx, ly, lz = gat(S.lamp_c[li, 0]), gat(S.lamp_c[li, 1]), gat(S.lamp_c[li, 2])
        # -(n_l . v) with v = L - g, g_z = 0, n_l = -L/|L|: |L| + n_l . g
        cl = (gat(S.lamp_len[li]) + gat(S.lamp_n[li, 0]) * gx + gat(S.lamp_n[li, 1]) * gy).clamp(min=0.0)
        vx = lx - gx
        vy = ly - gy
        d2 = vx * vx + vy * vy + lz * lz
        energies.append(cl * (lz / (d2 * d2)))
    vis_sun = torch.ones(gx.shape)
    flat = [e.view(-1) for e in energies] + [vis_sun.view(-1)]
    sels = []
    for li in range(4):
        bx = S.box[li]
        outside = torch.maximum(
            torch.maximum(gat(bx[0]) - gx, gx - gat(bx[1])), torch.maximum(gat(bx[2]) - gy, gy - gat(bx[3]))
        )
        cand = outside < 0.0
        if shadow_mask is not None:
            cand &= shadow_mask
        sels.append(cand.view(-1).nonzero().squeeze(1))
    counts = [int(x.numel()) for x in sels]
    if sum(counts):
        sel = torch.cat(sels)
        lid = torch.cat([torch.full((c,), li, dtype=torch.int64) for li, c in enumerate(counts)])
        qs = torch.div(sel, P, rounding_mode="floor") if sidx is None else sidx.index_select(0, sel)
        qx, qy = gx.reshape(-1).index_select(0, sel), gy.reshape(-1).index_select(0, sel)
        vis = _visibility(S, qs, lid, qx, qy, torch.zeros_like(qx))
        for li, (si, vi) in enumerate(zip(sels, vis.split(counts))):
            if si.numel():
                flat[li][si] = flat[li].index_select(0, si) * vi
    albedo = GROUND_ALBEDO / math.pi
    rgb = []
    for ch in range(3):
        acc = energies[0] * float(albedo * S.lamp_rgb[0, ch])
        acc = acc + energies[1] * float(albedo * S.lamp_rgb[1, ch])
        acc = acc + energies[2] * float(albedo * S.lamp_rgb[2, ch])
        acc = acc + vis_sun * float(albedo * S.sun_rgb[ch] * S.sun[2])
        rgb.append(acc)
    return torch.stack(rgb)


def _phong(c, exponent: int):
    """Normalised Phong lobe (n + 2) / (2 pi) c^n, n a power of two (exact squarings)."""
    p = c
    n = 1
    while n < exponent:
        p = p * p
        n *= 2
    return p * ((exponent + 2) / (2.0 * math.pi))


def _backdrop(S: _Scenes, sidx, rx, ry, rz):
    """Radiance (3 x (M,)) seen by reflected rays that leave the scene upwards.

    CLEVR has no world light: only the backdrop behind the objects (lit like
    the far ground, by the sun) is seen; towards the camera and upwards it is
    dark.
    """
    away = rx * S.fh[0, sidx] + ry * S.fh[1, sidx]
    w = (away * 1.5 + 0.5).clamp(0.0, 1.0) * (1.0 - rz * 1.5).clamp(0.0, 1.0)
    return [w * float(S.far_rgb[ch]) for ch in range(3)]


def _direct(S: _Scenes, sidx, kk, px, py, pz, nx, ny, nz, rx, ry, rz, shadows: bool, lobes: bool = True):
    """Diffuse irradiance and highlight terms of object points (M,).

    Args:
        sidx, kk: int64 (M,) scene and object slot; p, n, r: float32 (M,)
            points, unit normals and mirror directions.
        shadows: soft-shadow the lights (only where they face the point).
        lobes: also return the highlight lobes.
    Returns:
        (diffuse, sharp, rough, sheen), each a list of 3 float32 (M,):
        irradiance (lamps + sun, plus the ground bounce) and radiance of
        unit-reflectance Phong lobes about r (None when ``lobes`` is False).
    """
    energies, cosines = [], []
    for li in range(4):
        if li < 3:
            vx = S.lamp_c[li, 0, sidx] - px
            vy = S.lamp_c[li, 1, sidx] - py
            vz = S.lamp_c[li, 2, sidx] - pz
            d2 = _dot(vx, vy, vz, vx, vy, vz)
            cl = (
                -_dot(S.lamp_n[li, 0, sidx], S.lamp_n[li, 1, sidx], S.lamp_n[li, 2, sidx], vx, vy, vz)
            ).clamp(min=0.0)
            cn = _dot(nx, ny, nz, vx, vy, vz).clamp(min=0.0)
            # I0 cos(lamp) cos(surface) / d^2 = relu(-n_l.v) relu(n.v) / d^4 (I0 per channel later)
            energies.append(cl * cn / (d2 * d2))
            if lobes:
                cosines.append((_dot(rx, ry, rz, vx, vy, vz) / torch.sqrt(d2)).clamp(min=0.0))
        else:
            energies.append(_dot(nx, ny, nz, *S.sun).clamp(min=0.0))
            if lobes:
                cosines.append(_dot(rx, ry, rz, *S.sun).clamp(min=0.0))
    if shadows:
        sels = [(e > 0.0).nonzero().squeeze(1) for e in energies]
        counts = [int(x.numel()) for x in sels]
        if sum(counts):
            sel = torch.cat(sels)
            lid = torch.cat([torch.full((c,), li, dtype=torch.int64) for li, c in enumerate(counts)])
            g = _rows(sel)
            vis = _visibility(S, g(sidx), lid, g(px), g(py), g(pz), g(kk))
            for li, (si, vi) in enumerate(zip(sels, vis.split(counts))):
                if si.numel():
                    energies[li][si] = energies[li].index_select(0, si) * vi
    rgbs = [S.lamp_rgb[0], S.lamp_rgb[1], S.lamp_rgb[2], S.sun_rgb]
    # Light bounced off the grey ground reaches the lower half of an object:
    # irradiance from a uniform plane below is pi L (1 - n_z) / 2.
    below = (1.0 - nz) * (0.5 * math.pi * GROUND_BOUNCE)
    diffuse = []
    for ch in range(3):
        acc = below * S.ground0[ch, sidx]
        for li in range(4):
            acc = acc + energies[li] * float(rgbs[li][ch])
        diffuse.append(acc)
    if not lobes:
        return diffuse, None, None, None
    lob = []
    for exponent in (METAL_SHARP_EXP, METAL_ROUGH_EXP, RUBBER_SHEEN_EXP):
        terms = [_phong(cosines[li], exponent) * energies[li] for li in range(4)]
        lob.append(
            [
                terms[0] * float(rgbs[0][ch])
                + terms[1] * float(rgbs[1][ch])
                + terms[2] * float(rgbs[2][ch])
                + terms[3] * float(rgbs[3][ch])
                for ch in range(3)
            ]
        )
    return diffuse, lob[0], lob[1], lob[2]


def _reflect(dx, dy, dz, nx, ny, nz):
    k = 2.0 * _dot(dx, dy, dz, nx, ny, nz)
    return dx - k * nx, dy - k * ny, dz - k * nz


def _shade_objects(S: _Scenes, sidx, kk, px, py, pz, dx, dy, dz):
    """Linear radiance (3, M) of object surface points seen along unit rays d."""
    nx, ny, nz = _normals(S, kk, sidx, px, py, pz)
    rx, ry, rz = _reflect(dx, dy, dz, nx, ny, nz)
    diffuse, sharp, rough, sheen = _direct(S, sidx, kk, px, py, pz, nx, ny, nz, rx, ry, rz, True)
    alb = S.alb[:, kk, sidx]  # (3, M)
    # Rubber: Lambert plus a faint Schlick-Fresnel sheen (F0 = 0.8 %) that
    # reflects the lamps and, as a smooth environment, the lit ground.
    m = (1.0 + _dot(dx, dy, dz, nx, ny, nz)).clamp(0.0, 1.0)
    m2 = m * m
    fres = RUBBER_F0 + (1.0 - RUBBER_F0) * (m2 * m2 * m)
    out = torch.stack(
        [
            alb[ch] * diffuse[ch] * (1.0 / math.pi) + fres * (sheen[ch] + S.ground0[ch, sidx] * 0.5)
            for ch in range(3)
        ]
    )
    metal = S.metal[kk, sidx]
    msel = metal.nonzero().squeeze(1)
    if msel.numel():
        g = lambda v: v.index_select(0, msel)  # noqa: E731
        ms, mk = g(sidx), g(kk)
        mx, my, mz = g(rx), g(ry), g(rz)
        env = _trace_reflection(
            S, ms, mk, g(px) + g(nx) * 1e-3, g(py) + g(ny) * 1e-3, g(pz) + g(nz) * 1e-3, mx, my, mz
        )
        # Glossy tinted by the colour: 0.6 sharp + 0.4 rough, both reflecting
        # the traced environment; the lobes add the lamps' highlights.
        mrgb = torch.stack(
            [alb[ch, msel] * (env[ch] + 0.6 * g(sharp[ch]) + 0.4 * g(rough[ch])) for ch in range(3)]
        )
        out[:, msel] = mrgb
    return out


def _trace_reflection(S: _Scenes, sidx, self_k, ox, oy, oz, rx, ry, rz):
    """Radiance (3 x (M,)) arriving along reflected rays: one bounce.

    Another object is shaded without shadows (matte) or as a dim tinted
    mirror of the ground (metal); the ground with its shadows; above the
    horizon the backdrop term.
    """
    t, k = _first_hit(S, sidx, ox, oy, oz, rx, ry, rz, exclude=self_k)
    rad = _backdrop(S, sidx, rx, ry, rz)
    rad = [r.clone() for r in rad]
    gsel = ((k < 0) & (rz < 0.0)).nonzero().squeeze(1)
    if gsel.numel():
        g = lambda v: v.index_select(0, gsel)  # noqa: E731
        tg = -g(oz) / g(rz)
        gr = _ground_radiance(S, g(ox) + tg * g(rx), g(oy) + tg * g(ry), g(sidx))
        for ch in range(3):
            rad[ch][gsel] = gr[ch]
    osel = (k >= 0).nonzero().squeeze(1)
    if osel.numel():
        g = lambda v: v.index_select(0, osel)  # noqa: E731
        os_, ok, ot = g(sidx), g(k), g(t)
        qx, qy, qz = g(ox) + ot * g(rx), g(oy) + ot * g(ry), g(oz) + ot * g(rz)
        nx, ny, nz = _normals(S, ok, os_, qx, qy, qz)
        r2 = _reflect(g(rx), g(ry), g(rz), nx, ny, nz)
        diffuse, _, _, _ = _direct(S, os_, ok, qx, qy, qz, nx, ny, nz, *r2, False, False)
        alb = S.alb[:, ok, os_]
        is_metal = S.metal[ok, os_]
        for ch in range(3):
            matte = alb[ch] * diffuse[ch] * (1.0 / math.pi)
            shiny = alb[ch] * S.ground0[ch, os_] * 0.5
            rad[ch][osel] = torch.where(is_metal, shiny, matte)
    return rad


# --------------------------------------------------------------------------
# Camera and driver
# --------------------------------------------------------------------------

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


def _project(S: _Scenes, size: int, tan_half: float) -> np.ndarray:
    """(B, K, 3) float64 pixel coordinates (px, py, depth) of object centres."""
    rel = S.np_centre - S.np_cam[:, None]
    depth = (rel * S.np_fwd[:, None]).sum(-1)
    x = (rel * S.np_right[:, None]).sum(-1) / depth / tan_half
    y = (rel * S.np_up[:, None]).sum(-1) / depth / tan_half
    return np.stack([(x + 1.0) * 0.5 * size, (1.0 - y) * 0.5 * size, depth], axis=-1)


def _directions(S: _Scenes, sidx, u, v):
    """Unit ray directions (3 x (M,) or (B, P)) through screen points u, v."""
    if sidx is None:
        gat = lambda t: t[:, None]  # noqa: E731
    else:
        gat = lambda t: t[sidx]  # noqa: E731
    d = [gat(S.fwd[a]) + u * gat(S.right[a]) + v * gat(S.up[a]) for a in range(3)]
    inv = 1.0 / torch.sqrt(_dot(*d, *d))
    return d[0] * inv, d[1] * inv, d[2] * inv


def render_scenes(
    scenes: Sequence[Scene],
    size: int,
    zoom: float = 1.0,
    supersample: int = 2,
    return_masks: bool = False,
) -> Rendering:
    """Render a batch of scenes with the same number of objects.

    Args:
        scenes: N scenes, each with n_objects >= 1 objects.
        size: side of the square image in pixels.
        zoom: multiplies the focal length (2: objects twice as large).
        supersample: s gives s x s stratified sub-pixel samples on silhouette
            pixels (1: pixel centres only).
        return_masks: also return the (N, n_objects, H, W) visibility masks.

    Returns:
        A :class:`Rendering`. Output depends only on the arguments: no
        randomness, and identical bytes whatever the batching or thread count.
    """
    if len(scenes) == 0:
        raise ValueError("no scenes")
    tan_half = 0.5 * clevr.SENSOR_MM / clevr.LENS_MM / zoom
    S = _Scenes(scenes)
    B, K, H, W = S.B, S.K, size, size
    P = H * W
    step = 2.0 * tan_half / size
    cu = (np.arange(W, dtype=np.float64) + 0.5) * step - tan_half
    cv = tan_half - (np.arange(H, dtype=np.float64) + 0.5) * step
    U = torch.from_numpy(np.tile(cu, H).astype(np.float32))  # (P,)
    V = torch.from_numpy(np.repeat(cv, W).astype(np.float32))

    # Primary rays through pixel centres, full (B, P) layout.
    dx, dy, dz = _directions(S, None, U, V)
    cx, cy, cz = S.cam[0][:, None], S.cam[1][:, None], S.cam[2][:, None]
    tg = cz / (-dz).clamp(min=1e-6)
    gx = cx + tg * dx
    gy = cy + tg * dy

    hid = torch.full((B * P,), -1, dtype=torch.int64)
    tbest = torch.full((B * P,), _INF)
    fdx, fdy, fdz = dx.view(-1), dy.view(-1), dz.view(-1)
    for j in range(K):
        lx = S.cam[0] - S.ox[j]
        ly = S.cam[1] - S.oy[j]
        lz = S.cam[2] - S.oz[j]
        b = dx * lx[:, None] + dy * ly[:, None] + dz * lz[:, None]
        c = (lx * lx + ly * ly + lz * lz - S.rb[j] * S.rb[j])[:, None]
        sel = ((b * b - c > 0.0) & (b < 0.0)).view(-1).nonzero().squeeze(1)
        if sel.numel() == 0:
            continue
        sidx = torch.div(sel, P, rounding_mode="floor")
        near, far = _interval(
            S,
            j,
            sidx,
            S.cam[0, sidx],
            S.cam[1, sidx],
            S.cam[2, sidx],
            fdx.index_select(0, sel),
            fdy.index_select(0, sel),
            fdz.index_select(0, sel),
            True,
        )
        hit = (near <= far) & (near > _EPS) & (near < tbest.index_select(0, sel))
        sel = sel[hit]
        tbest[sel] = near[hit]
        hid[sel] = j

    hid_img = hid.view(B, H, W)
    if supersample > 1:
        edge = torch.zeros(B, H, W, dtype=torch.bool)
        for a, b in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if b >= 0:
                diff = hid_img[:, a:, b:] != hid_img[:, : H - a, : W - b]
                edge[:, a:, b:] |= diff
                edge[:, : H - a, : W - b] |= diff
            else:
                diff = hid_img[:, a:, : W - 1] != hid_img[:, : H - a, 1:]
                edge[:, a:, : W - 1] |= diff
                edge[:, : H - a, 1:] |= diff
        edge = edge.view(-1)
    else:
        edge = torch.zeros(B * P, dtype=torch.bool)

    # Ground everywhere (cheap, broadcast); shadows only on ground pixels.
    img = _ground_radiance(S, gx, gy, None, (hid < 0).view(B, P)).view(3, B * P)

    # Object pixels shaded once at the centre.
    a_sel = ((hid >= 0) & ~edge).nonzero().squeeze(1)
    o_s = [torch.div(a_sel, P, rounding_mode="floor")]
    o_k = [hid.index_select(0, a_sel)]
    o_t = [tbest.index_select(0, a_sel)]
    o_d = [[fdx.index_select(0, a_sel)], [fdy.index_select(0, a_sel)], [fdz.index_select(0, a_sel)]]
    n_a = a_sel.numel()

    # Silhouette pixels: s x s stratified sub-pixel rays.
    e_sel = edge.nonzero().squeeze(1)
    n_e = e_sel.numel()
    n_sub = supersample * supersample
    if n_e:
        e_s = torch.div(e_sel, P, rounding_mode="floor")
        e_p = e_sel - e_s * P
        offs = _grid_offsets(supersample) * step  # (n_sub, 2): (row, col) offsets
        eu, ev = U.index_select(0, e_p), V.index_select(0, e_p)
        su = torch.cat([eu + float(o[1]) for o in offs])
        sv = torch.cat([ev - float(o[0]) for o in offs])
        ss = e_s.repeat(n_sub)
        sdx, sdy, sdz = _directions(S, ss, su, sv)
        scx, scy, scz = S.cam[0, ss], S.cam[1, ss], S.cam[2, ss]
        st, sk = _first_hit(S, ss, scx, scy, scz, sdx, sdy, sdz)
        sub_rad = torch.empty(3, n_sub * n_e)
        gsel = (sk < 0).nonzero().squeeze(1)
        if gsel.numel():
            g = lambda v: v.index_select(0, gsel)  # noqa: E731
            t = scz.index_select(0, gsel) / (-g(sdz)).clamp(min=1e-6)
            sub_rad[:, gsel] = _ground_radiance(S, g(scx) + t * g(sdx), g(scy) + t * g(sdy), g(ss))
        osel = (sk >= 0).nonzero().squeeze(1)
        o_s.append(ss.index_select(0, osel))
        o_k.append(sk.index_select(0, osel))
        o_t.append(st.index_select(0, osel))
        o_d[0].append(sdx.index_select(0, osel))
        o_d[1].append(sdy.index_select(0, osel))
        o_d[2].append(sdz.index_select(0, osel))

    os_, ok, ot = torch.cat(o_s), torch.cat(o_k), torch.cat(o_t)
    if os_.numel():
        odx, ody, odz = (torch.cat(c) for c in o_d)
        px = S.cam[0, os_] + ot * odx
        py = S.cam[1, os_] + ot * ody
        pz = S.cam[2, os_] + ot * odz
        orad = _shade_objects(S, os_, ok, px, py, pz, odx, ody, odz)
        img[:, a_sel] = orad[:, :n_a]
        if n_e:
            sub_rad[:, osel] = orad[:, n_a:]
    if n_e:
        sub_rad = sub_rad.view(3, n_sub, n_e)
        acc = sub_rad[:, 0]
        for i in range(1, n_sub):
            acc = acc + sub_rad[:, i]
        img[:, e_sel] = acc * (1.0 / n_sub)

    images = _to_srgb8(img).view(3, B, H, W).permute(1, 2, 3, 0).contiguous().numpy()
    counts = torch.stack([(hid_img == j).view(B, -1).sum(1) for j in range(K)], dim=1)
    masks = None
    if return_masks:
        masks = torch.stack([hid_img == j for j in range(K)], dim=1).numpy()
    return Rendering(
        images=images,
        object_pixels=counts.numpy().astype(np.int64),
        background_pixels=(hid_img < 0).view(B, -1).sum(1).numpy().astype(np.int64),
        pixel_coords=_project(S, size, tan_half),
        masks=masks,
    )
