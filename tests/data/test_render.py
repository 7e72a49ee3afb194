"""Tests of the CLEVR-style CPU renderer against independent geometry.

The expected pixel positions come from a pinhole camera built here from the
facts of docs/design.md §10 (camera aimed at the origin, +z up, 35 mm lens on a
32 mm sensor), not from the renderer's own code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlvae.datasets.two_objects import clevr
from vlvae.datasets.two_objects.camera import field_of_view
from vlvae.datasets.two_objects.render import render_scenes
from vlvae.datasets.two_objects.scene import Scene, SceneObject, sample_scene

SIZE = 64


def obj(shape="sphere", colour="red", size="large", material="rubber", x=0.0, y=0.0, rotation=0.0):
    return SceneObject(shape, colour, size, material, x, y, rotation)


def project(point, camera=clevr.CAMERA_POSITION, size=SIZE, zoom=1.0):
    """Independent pinhole projection: (px, py, depth), origin top-left."""
    cam = np.asarray(camera, dtype=float)
    forward = -cam / np.linalg.norm(cam)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    rel = np.asarray(point, dtype=float) - cam
    depth = rel @ forward
    half = (clevr.SENSOR_MM / 2) / (clevr.LENS_MM * zoom)  # tan of half the FOV
    x = (rel @ right) / depth / half  # -1 .. 1 across the image
    y = (rel @ up) / depth / half
    return np.array([(x + 1) / 2 * size, (1 - y) / 2 * size, depth])


def test_field_of_view_is_clevr_lens():
    assert math.degrees(field_of_view()) == pytest.approx(49.13, abs=0.01)
    assert math.tan(field_of_view(2.0) / 2) == pytest.approx(math.tan(field_of_view() / 2) / 2)


def test_output_types_and_shapes():
    scenes = [sample_scene(np.random.default_rng(i)) for i in range(3)]
    r = render_scenes(scenes, SIZE, return_masks=True)
    assert r.images.shape == (3, SIZE, SIZE, 3) and r.images.dtype == np.uint8
    assert r.object_pixels.shape == (3, 2) and r.object_pixels.dtype == np.int64
    assert r.background_pixels.shape == (3,) and r.background_pixels.dtype == np.int64
    assert r.pixel_coords.shape == (3, 2, 3) and r.pixel_coords.dtype == np.float64
    assert r.masks.shape == (3, 2, SIZE, SIZE) and r.masks.dtype == bool
    # Every pixel is exactly one object or the background.
    np.testing.assert_array_equal(r.object_pixels.sum(1) + r.background_pixels, SIZE * SIZE)
    np.testing.assert_array_equal(r.masks.sum((2, 3)), r.object_pixels)
    assert not (r.masks[:, 0] & r.masks[:, 1]).any()
    assert render_scenes(scenes, SIZE).masks is None


def test_sphere_position_matches_independent_projection():
    o = obj(x=1.0, y=-0.5)
    r = render_scenes([Scene(objects=(o,))], SIZE, return_masks=True)
    expected = project(o.position)
    np.testing.assert_allclose(r.pixel_coords[0, 0], expected, rtol=1e-6, atol=1e-6)
    px, py = int(expected[0]), int(expected[1])
    assert r.masks[0, 0, py, px]
    # The mask's centroid is near the projected centre (a sphere projects
    # to a near-circle around it), and a far corner is background.
    ys, xs = np.nonzero(r.masks[0, 0])
    assert abs(xs.mean() + 0.5 - expected[0]) < 1.0 and abs(ys.mean() + 0.5 - expected[1]) < 1.0
    assert not r.masks[0, 0, SIZE - 1, 0] and not r.masks[0, 0, 0, SIZE - 1]
    # Size: the sphere's apparent radius ~ r / depth / tan(half fov) * size / 2.
    radius_px = 0.7 / expected[2] / (16 / 35) * SIZE / 2
    assert r.object_pixels[0, 0] == pytest.approx(math.pi * radius_px**2, rel=0.15)


def test_jittered_camera_is_used():
    cam = (7.9, -6.1, 5.0)
    o = obj(x=-1.0, y=1.5, size="small")
    r = render_scenes([Scene(objects=(o,), camera=cam)], SIZE, return_masks=True)
    expected = project(o.position, camera=cam)
    np.testing.assert_allclose(r.pixel_coords[0, 0], expected, rtol=1e-6, atol=1e-6)
    assert r.masks[0, 0, int(expected[1]), int(expected[0])]


def test_zoom_doubles_width():
    scene = Scene(objects=(obj(x=0.3, y=0.2),))
    r1 = render_scenes([scene], SIZE, zoom=1.0, return_masks=True)
    r2 = render_scenes([scene], SIZE, zoom=2.0, return_masks=True)
    assert r2.object_pixels[0, 0] / r1.object_pixels[0, 0] == pytest.approx(4.0, rel=0.12)
    w1 = np.ptp(np.nonzero(r1.masks[0, 0].any(0))[0]) + 1
    w2 = np.ptp(np.nonzero(r2.masks[0, 0].any(0))[0]) + 1
    assert w2 / w1 == pytest.approx(2.0, rel=0.12)
    np.testing.assert_allclose(r2.pixel_coords[0, 0], project((0.3, 0.2, 0.7), zoom=2.0), atol=1e-6)


def test_object_outside_view_has_no_pixels():
    r = render_scenes([Scene(objects=(obj(x=40.0, y=0.0), obj(colour="blue", x=0.0, y=0.0)))], SIZE)
    assert r.object_pixels[0, 0] == 0
    assert r.object_pixels[0, 1] > 50


def test_occlusion_and_depth_order():
    cam = np.asarray(clevr.CAMERA_POSITION)
    small = obj(size="small", colour="blue", x=-2.0, y=2.0)
    towards_camera = cam[:2] - np.array([small.x, small.y])
    towards_camera /= np.linalg.norm(towards_camera)
    fx, fy = np.array([small.x, small.y]) + 1.5 * towards_camera
    big = obj(size="large", colour="gray", x=float(fx), y=float(fy))
    size = 128
    alone = render_scenes([Scene(objects=(small,))], size)
    both = render_scenes([Scene(objects=(small, big))], size)
    assert alone.object_pixels[0, 0] > 30
    assert both.object_pixels[0, 0] < 0.5 * alone.object_pixels[0, 0]
    assert both.pixel_coords[0, 1, 2] < both.pixel_coords[0, 0, 2]  # the big one is nearer
    # Swapping which one is in front swaps the hiding.
    behind = obj(
        size="large",
        colour="gray",
        x=float(small.x - 1.5 * towards_camera[0]),
        y=float(small.y - 1.5 * towards_camera[1]),
    )
    r = render_scenes([Scene(objects=(small, behind))], size)
    assert r.object_pixels[0, 0] == alone.object_pixels[0, 0]
    assert r.pixel_coords[0, 1, 2] > r.pixel_coords[0, 0, 2]


def test_deterministic_and_batch_independent():
    rng = np.random.default_rng(7)
    scenes = [sample_scene(rng) for _ in range(5)]
    a = render_scenes(scenes, SIZE)
    b = render_scenes(scenes, SIZE)
    assert a.images.tobytes() == b.images.tobytes()
    for i, s in enumerate(scenes):
        one = render_scenes([s], SIZE)
        assert one.images[0].tobytes() == a.images[i].tobytes()
        np.testing.assert_array_equal(one.object_pixels[0], a.object_pixels[i])
        np.testing.assert_array_equal(one.pixel_coords[0], a.pixel_coords[i])
    reordered = render_scenes(scenes[::-1] + scenes[:2], SIZE)
    assert reordered.images[:5][::-1].tobytes() == a.images.tobytes()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = render_scenes(scenes, SIZE)
        torch.set_num_threads(max(2, threads))
        multi = render_scenes(scenes, SIZE)
    finally:
        torch.set_num_threads(threads)
    assert single.images.tobytes() == multi.images.tobytes() == a.images.tobytes()


def _masked(r, i=0, k=0):
    return r.images[i][r.masks[i, k]].astype(float)


def test_colours_and_materials():
    red = render_scenes([Scene(objects=(obj(colour="red"),))], SIZE, return_masks=True)
    px = _masked(red)
    assert px[:, 0].mean() > 1.5 * px[:, 1].mean() and px[:, 0].mean() > 1.5 * px[:, 2].mean()
    blue = render_scenes([Scene(objects=(obj(colour="blue", x=0.5),))], SIZE, return_masks=True)
    px = _masked(blue)
    assert px[:, 2].mean() > 1.5 * px[:, 0].mean()
    rubber = render_scenes([Scene(objects=(obj(colour="blue", material="rubber"),))], SIZE, return_masks=True)
    metal = render_scenes([Scene(objects=(obj(colour="blue", material="metal"),))], SIZE, return_masks=True)
    # A shiny highlight: the metal sphere's brightest pixel is brighter.
    assert _masked(metal).sum(1).max() > _masked(rubber).sum(1).max() + 60
    # The ground is mid-grey and neutral near the objects.
    g = red.images[0, SIZE - 8, SIZE // 2].astype(float)
    assert 90 < g.mean() < 190 and np.ptp(g) < 20


def test_shapes_have_different_nested_silhouettes():
    masks = {}
    for shape in ("sphere", "cylinder", "cube"):
        r = render_scenes(
            [Scene(objects=(obj(shape=shape, rotation=0.3),))], SIZE, zoom=3.0, return_masks=True
        )
        masks[shape] = r.masks[0, 0]
    sphere, cyl, cube = masks["sphere"], masks["cylinder"], masks["cube"]
    # sphere inside cylinder inside cube (same r, same centre), strictly
    # larger; only the cylinder's rim pokes out of the cube's rounded edges.
    assert (sphere & ~cyl).sum() <= 2 and (cyl & ~cube).sum() <= 0.03 * cyl.sum()
    assert sphere.sum() < cyl.sum() < cube.sum()
    assert (sphere ^ cyl).sum() > 10 and (cyl ^ cube).sum() > 10

    def aspect(m):
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        return (np.ptp(rows) + 1) / (np.ptp(cols) + 1)

    assert aspect(cyl) > aspect(sphere) + 0.1


def test_shadows_fall_away_from_lamps():
    """A ground point that a sphere hides from the back lamp gets darker."""
    o = obj(size="large", x=0.0, y=0.0)
    back = np.asarray(clevr.LIGHTS["back"]["position"])
    c = np.asarray(o.position)
    away = c[:2] - back[:2]
    away /= np.linalg.norm(away)
    # Independent geometry: the ground point on the line from the lamp's
    # centre through a point 0.6 r from the sphere's centre.
    p = c + 0.6 * o.radius * np.array([away[0], away[1], 0.0])
    shadow = back + (p - back) * back[2] / (back[2] - p[2])
    px, py, _ = project(shadow, size=SIZE)
    with_obj = render_scenes([Scene(objects=(o,))], SIZE, return_masks=True)
    empty = render_scenes([Scene(objects=(obj(x=40.0),))], SIZE)
    assert not with_obj.masks[0, 0, int(py), int(px)]
    a = with_obj.images[0, int(py), int(px)].astype(float).mean()
    b = empty.images[0, int(py), int(px)].astype(float).mean()
    assert a < b - 10
    # Far from the object the ground is untouched.
    np.testing.assert_array_equal(with_obj.images[0, :6], empty.images[0, :6])


def test_no_horizon_and_supersampling_only_touches_edges():
    o = obj(x=0.5, y=0.5, material="metal", colour="cyan")
    wide = render_scenes([Scene(objects=(o,))], SIZE, zoom=0.4)
    # A wide view looks above the horizon: the backdrop is grey, never black.
    assert wide.images[0, 0].min() > 40
    r1 = render_scenes([Scene(objects=(o,))], SIZE, supersample=1, return_masks=True)
    r3 = render_scenes([Scene(objects=(o,))], SIZE, supersample=3, return_masks=True)
    np.testing.assert_array_equal(r1.masks, r3.masks)
    changed = (r1.images[0] != r3.images[0]).any(-1)
    assert changed.any()
    m = r1.masks[0, 0]
    near_edge = np.zeros_like(m)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near_edge |= np.roll(np.roll(m, dy, 0), dx, 1) != m
    assert not (changed & ~near_edge).any()
