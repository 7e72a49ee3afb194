"""Light on the Two Objects scene: shadows, the ground, Phong lobes, reflections, direct light.

Follows docs/design.md §10 (**Lights**, **Ground**, **Materials**): three square area lamps and a
weak sun, no ambient world light; a grey diffuse ground that curves into a backdrop far behind
the scene; matte rubber with a faint grazing sheen (0.8 % at normal incidence) and coloured,
nearly mirror-like metal (0.6 sharp + 0.4 rough glossy reflection). It is not a path tracer:
direct light with soft shadows from fixed stratified samples on each light
(:func:`_visibility`), one ground bounce as an ambient term for matte surfaces
(:func:`_direct`), and one traced mirror bounce for metal (:func:`_trace_reflection`).
Expensive terms are evaluated on index subsets (ground points inside a shadow box, object
points, metal points), never on the whole image.
"""

from __future__ import annotations

import math

import torch

from vlvae.datasets.two_objects.batch import GROUND_ALBEDO, LAMP_GRID, _Scenes
from vlvae.datasets.two_objects.geometry import _EPS, _dot, _first_hit, _interval, _normals, _rows

__all__ = ["RUBBER_F0", "METAL_SHARP_EXP", "METAL_ROUGH_EXP", "RUBBER_SHEEN_EXP", "GROUND_BOUNCE"]

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
