"""A fast, batched, deterministic CLEVR-style ray tracer on the CPU.

CLEVR (Johnson et al. 2016, "CLEVR: A Diagnostic Dataset for Compositional
Language and Elementary Visual Reasoning", https://arxiv.org/abs/1612.06890)
renders its scenes with Blender/Cycles, which costs seconds per image. This
module renders the same scene description (``vlvae.datasets.two_objects.scene.Scene``) with
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
by :data:`.colour.EXPOSURE` before the sRGB transfer function. With
``EXPOSURE = 1.25`` and :data:`.batch.GROUND_ALBEDO` 0.5 the unshadowed ground at the
origin of the un-jittered scene is linear 0.21, sRGB 126 (CLEVR's floor near
the objects is about 120-140); the far ground and backdrop, lit by the sun
only, are sRGB 80.

The renderer's modules, in the order a pixel meets them: :mod:`.camera` (field of view,
camera frame, stratified grids), :mod:`.batch` (a batch of scenes as per-scene tensors,
lights included), :mod:`.geometry` (ray-object intersections and normals), :mod:`.shading`
(shadows, ground, highlights, reflections), :mod:`.colour` (exposure and sRGB). This one is
the driver: it casts the rays, finds the silhouettes and puts the images together
(:func:`render_scenes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vlvae.datasets.two_objects import clevr
from vlvae.datasets.two_objects.batch import _Scenes
from vlvae.datasets.two_objects.camera import _grid_offsets
from vlvae.datasets.two_objects.colour import _to_srgb8
from vlvae.datasets.two_objects.geometry import _EPS, _INF, _dot, _first_hit, _interval
from vlvae.datasets.two_objects.scene import Scene
from vlvae.datasets.two_objects.shading import _ground_radiance, _shade_objects

__all__ = ["Rendering", "render_scenes"]


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
