"""Scene sampling, CLEVR's relation rule and the true texts, against hand-computed cases."""

import itertools
import math

import numpy as np
import pytest

from vlvae.datasets.two_objects import clevr
from vlvae.datasets.two_objects.scene import (
    Scene,
    SceneObject,
    placement_ok,
    relation_holds,
    relationships,
    sample_scene,
    scene_from_record,
    scene_record,
    true_texts,
)
from vlvae.datasets.two_objects.words import two_objects_vocabulary


def obj(x, y, size="large", colour="red", shape="cube", material="rubber"):
    return SceneObject(shape=shape, colour=colour, size=size, material=material, x=x, y=y, rotation=0.0)


def test_relations_on_hand_computed_scene():
    # B sits 2 units along CLEVR's "left" vector from A: (p_B - p_A) . left = 2 > 0.2.
    a = obj(0.0, 0.0)
    left = np.array(clevr.DIRECTIONS["left"][:2])
    b = obj(*(2.0 * left), colour="blue")
    assert relation_holds(b, a, "left") and relation_holds(a, b, "right")
    assert not relation_holds(b, a, "right") and not relation_holds(a, b, "left")
    # left is perpendicular to behind: the front/behind projection is 0, below eps.
    assert not relation_holds(b, a, "front") and not relation_holds(b, a, "behind")


def test_relation_eps_boundary():
    a = obj(0.0, 0.0)
    behind = np.array(clevr.DIRECTIONS["behind"][:2])
    assert not relation_holds(obj(*(0.19 * behind)), a, "behind")
    assert relation_holds(obj(*(0.21 * behind)), a, "behind")


def test_relationships_lists_follow_clevr_convention():
    # relationships[R][i] lists the j with "j R i".
    a = obj(0.0, 0.0)
    b = obj(*(3.0 * np.array(clevr.DIRECTIONS["front"][:2])), colour="blue")
    rel = relationships((a, b))
    assert rel["front"] == [[1], []]
    assert rel["behind"] == [[], [0]]


def test_four_texts_hand_computed():
    a = obj(0.0, 0.0, size="small", colour="red", material="metal", shape="sphere")
    # Offset with positive projections on "right" and "behind".
    d = 1.5 * np.array(clevr.DIRECTIONS["right"][:2]) + 1.5 * np.array(clevr.DIRECTIONS["behind"][:2])
    b = obj(*d, size="large", colour="cyan", material="rubber", shape="cylinder")
    texts = {" ".join(t) for t in true_texts(Scene(objects=(a, b)))}
    assert texts == {
        "large cyan rubber cylinder right small red metal sphere",
        "large cyan rubber cylinder behind small red metal sphere",
        "small red metal sphere left large cyan rubber cylinder",
        "small red metal sphere front large cyan rubber cylinder",
    }


def test_placement_rules_reject_hand_cases():
    a = obj(0.0, 0.0, size="large")
    # Overlap: centre distance 1.0 < 0.7 + 0.7 + 0.25.
    assert not placement_ok(obj(1.0, 0.0), [a])
    # Far away but aligned so that the projection on "left" is only 0.3 (< margin 0.4).
    behind = np.array(clevr.DIRECTIONS["behind"][:2])
    left = np.array(clevr.DIRECTIONS["left"][:2])
    assert not placement_ok(obj(*(3.0 * behind + 0.3 * left)), [a])
    assert placement_ok(obj(*(3.0 * behind + 0.5 * left)), [a])


@pytest.mark.parametrize("seed", range(5))
def test_sampled_scenes_obey_min_dist_margin_and_have_four_texts(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        scene = sample_scene(rng)
        a, b = scene.objects
        dist = math.hypot(a.x - b.x, a.y - b.y)
        assert dist - a.radius - b.radius >= clevr.MIN_DIST
        for d in clevr.DIRECTIONS.values():
            proj = (a.x - b.x) * d[0] + (a.y - b.y) * d[1]
            assert abs(proj) >= clevr.MARGIN
        assert all(abs(c) <= clevr.POSITION_RANGE for o in scene.objects for c in (o.x, o.y))
        texts = true_texts(scene)
        assert len(texts) == 4 and len({tuple(t) for t in texts}) == 4
        # Each text's relation holds between the objects it names, in that order.
        for t in texts:
            describe = lambda o: [o.size, o.colour, o.material, o.shape]  # noqa: E731
            assert any(
                describe(p) == t[:4] and describe(q) == t[5:] and relation_holds(p, q, t[4])
                for p, q in itertools.permutations(scene.objects)
            )
        assert 0.0 <= a.rotation < 2 * math.pi
        assert all(abs(c - c0) <= clevr.CAMERA_JITTER for c, c0 in zip(scene.camera, clevr.CAMERA_POSITION))
        for name, pos in scene.lights.items():
            base = clevr.LIGHTS[name]["position"]
            assert all(abs(p - p0) <= clevr.LIGHT_JITTER for p, p0 in zip(pos, base))


def test_sampling_restricted_attributes_and_one_object_texts():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = sample_scene(rng, n_objects=1, colours=("blue", "red"), shapes=("sphere",), materials=("rubber",))
        (o,) = s.objects
        assert o.colour in ("blue", "red") and o.shape == "sphere" and o.material == "rubber"
        assert true_texts(s) == [[o.size, o.colour]]


def test_attribute_marginals_are_uniform():
    rng = np.random.default_rng(1)
    colours = [o.colour for _ in range(2000) for o in sample_scene(rng).objects]
    counts = np.array([colours.count(c) for c in clevr.COLOURS])
    expected = len(colours) / len(clevr.COLOURS)
    # chi-square with 7 dof: 99.9 % quantile is 24.3
    assert ((counts - expected) ** 2 / expected).sum() < 24.3


def test_scene_record_round_trip():
    scene = sample_scene(np.random.default_rng(3))
    rec = scene_record(scene)
    back = scene_from_record(rec)
    assert back == Scene(objects=scene.objects, camera=scene.camera, lights=scene.lights)
    assert rec["rotation_unit"] == "radians"
    assert set(rec["relationships"]) == set(clevr.RELATIONS)


def test_text_count_is_36864():
    v = two_objects_vocabulary()
    n = 1
    for slot in v.slots:
        n *= len(slot)
    assert n == 96 * 4 * 96 == 36_864
    assert len(v) == 19
