"""Ray-object geometry of the Two Objects renderer: intervals, first hits and normals.

The solids of docs/design.md §10 (**Sizes and shapes**): spheres, vertical cylinders and rounded
cubes of scale r resting on the ground z = 0. For a set of rays (the subset layout: every tensor
(M,), with the scene index of each ray) this module gives the entry/exit parameters of a ray
through one object (:func:`_interval`, with the cube's rounded edges traced exactly or bounded by
its sharp box), the nearest object along each ray behind a bounding-sphere test
(:func:`_first_hit`), and the outward normals of a rounded solid at surface points
(:func:`_normals`), which give CLEVR's bevelled highlights. All of it uses IEEE-exact
element-wise operations only, so a ray's result does not depend on its batch.
"""

from __future__ import annotations

import torch

from vlvae.datasets.two_objects.batch import _Scenes

__all__ = ["CUBE_BEVEL", "CYLINDER_BEVEL"]

#: Radius of the rounded cube's edges, as a fraction of the scale r.
CUBE_BEVEL = 0.15
#: Radius of the cylinder's rounded rim (shading only), as a fraction of r.
CYLINDER_BEVEL = 0.06

_EPS = 1e-4
# Sphere-tracing steps that put rays on the rounded cube's bevels.
_BEVEL_STEPS = 6
_INF = float("inf")


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
