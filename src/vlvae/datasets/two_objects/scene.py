"""Two Objects scenes: CLEVR's sampling rules, spatial relations and true texts.

A scene is sampled without looking at pixels (positions, min_dist, margin,
rotations, camera and light jitter); the visibility rule needs the renderer
and is applied by :mod:`vlvae.datasets.two_objects.build`.

References:
    CLEVR, Johnson et al. 2016, https://arxiv.org/abs/1612.06890 (rules as
    stated in docs/design.md §10).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from vlvae.datasets.two_objects import clevr

__all__ = [
    "SceneObject",
    "Scene",
    "sample_scene",
    "placement_ok",
    "relation_holds",
    "relationships",
    "true_texts",
    "scene_record",
    "scene_from_record",
]


@dataclass(frozen=True)
class SceneObject:
    """One object on the ground plane.

    Attributes:
        shape, colour, size, material: CLEVR attribute names.
        x, y: ground-plane position of the object's centre.
        rotation: angle about the vertical axis, in radians.
    """

    shape: str
    colour: str
    size: str
    material: str
    x: float
    y: float
    rotation: float

    @property
    def radius(self) -> float:
        """Scale r of the mesh ([-1, 1]^3 scaled by r)."""
        return clevr.SIZES[self.size]

    @property
    def position(self) -> tuple[float, float, float]:
        """3-D centre (x, y, r): the object rests on z = 0."""
        return (self.x, self.y, self.radius)


@dataclass(frozen=True)
class Scene:
    """Objects plus the camera and lamp positions actually used (after jitter)."""

    objects: tuple[SceneObject, ...]
    camera: tuple[float, float, float] = clevr.CAMERA_POSITION
    lights: dict[str, tuple[float, float, float]] = field(
        default_factory=lambda: {k: v["position"] for k, v in clevr.LIGHTS.items()}
    )


def placement_ok(new: SceneObject, placed: list[SceneObject]) -> bool:
    """CLEVR's placement test of ``new`` against every object already placed.

    Rejects when centre distance - r1 - r2 < MIN_DIST, or when for a direction
    d in {left, right, front, behind}, 0 < (p_new - p_old) . d < MARGIN.
    """
    for old in placed:
        dx, dy = new.x - old.x, new.y - old.y
        if math.hypot(dx, dy) - new.radius - old.radius < clevr.MIN_DIST:
            return False
        for d in clevr.DIRECTIONS.values():
            proj = dx * d[0] + dy * d[1]
            if 0.0 < proj < clevr.MARGIN:
                return False
    return True


def sample_scene(
    rng: np.random.Generator,
    n_objects: int = 2,
    colours: tuple[str, ...] = tuple(clevr.COLOURS),
    sizes: tuple[str, ...] = tuple(clevr.SIZES),
    shapes: tuple[str, ...] = clevr.SHAPES,
    materials: tuple[str, ...] = clevr.MATERIALS,
) -> Scene:
    """Sample a scene by CLEVR's rules (visibility is checked after rendering).

    Up to ``MAX_RETRIES`` placements per object, then the whole scene restarts.
    """
    while True:
        placed: list[SceneObject] = []
        for _ in range(n_objects):
            for _ in range(clevr.MAX_RETRIES):
                obj = SceneObject(
                    shape=str(rng.choice(shapes)),
                    colour=str(rng.choice(colours)),
                    size=str(rng.choice(sizes)),
                    material=str(rng.choice(materials)),
                    x=float(rng.uniform(-clevr.POSITION_RANGE, clevr.POSITION_RANGE)),
                    y=float(rng.uniform(-clevr.POSITION_RANGE, clevr.POSITION_RANGE)),
                    rotation=float(rng.uniform(0.0, 2.0 * math.pi)),
                )
                if placement_ok(obj, placed):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == n_objects:
            break
    camera = tuple(
        float(c + rng.uniform(-clevr.CAMERA_JITTER, clevr.CAMERA_JITTER)) for c in clevr.CAMERA_POSITION
    )
    lights = {
        name: tuple(float(c + rng.uniform(-clevr.LIGHT_JITTER, clevr.LIGHT_JITTER)) for c in spec["position"])
        for name, spec in clevr.LIGHTS.items()
    }
    return Scene(objects=tuple(placed), camera=camera, lights=lights)


def relation_holds(a: SceneObject, b: SceneObject, relation: str) -> bool:
    """CLEVR's rule: "a relation b" when (p_a - p_b) . dir_relation > eps."""
    d = clevr.DIRECTIONS[relation]
    return (a.x - b.x) * d[0] + (a.y - b.y) * d[1] > clevr.RELATION_EPS


def relationships(objects: tuple[SceneObject, ...]) -> dict[str, list[list[int]]]:
    """CLEVR's ``relationships``: for each relation and object i, the j with "j R i"."""
    return {
        rel: [
            [j for j, b in enumerate(objects) if j != i and relation_holds(b, a, rel)]
            for i, a in enumerate(objects)
        ]
        for rel in clevr.RELATIONS
    }


def _describe(obj: SceneObject) -> list[str]:
    return [obj.size, obj.colour, obj.material, obj.shape]


def true_texts(scene: Scene) -> list[list[str]]:
    """Every true text of a scene.

    Two objects: the nine-word texts "O1 R O2" for both orders and every
    relation that holds (four for a CLEVR-valid pair). One object: the
    two-word text "size colour" (the Fig. 1 variant).
    """
    objs = scene.objects
    if len(objs) == 1:
        return [[objs[0].size, objs[0].colour]]
    texts = []
    for a, b in itertools.permutations(objs, 2):
        for rel in clevr.RELATIONS:
            if relation_holds(a, b, rel):
                texts.append(_describe(a) + [rel] + _describe(b))
    return texts


def scene_record(scene: Scene, pixel_coords: np.ndarray | None = None) -> dict:
    """CLEVR-compatible JSON record of a scene (rotation in radians)."""
    objects = []
    for i, o in enumerate(scene.objects):
        rec = {
            "shape": o.shape,
            "color": o.colour,
            "size": o.size,
            "material": o.material,
            "3d_coords": [o.x, o.y, o.radius],
            "rotation": o.rotation,
        }
        if pixel_coords is not None:
            rec["pixel_coords"] = [float(v) for v in pixel_coords[i]]
        objects.append(rec)
    return {
        "objects": objects,
        "relationships": relationships(scene.objects),
        "directions": {k: list(v) for k, v in clevr.DIRECTIONS.items()},
        "camera": {"position": list(scene.camera), "look_at": [0.0, 0.0, 0.0]},
        "lights": {k: list(v) for k, v in scene.lights.items()},
        "rotation_unit": "radians",
    }


def scene_from_record(record: dict) -> Scene:
    """Inverse of :func:`scene_record` (pixel coordinates are dropped)."""
    objects = tuple(
        SceneObject(
            shape=o["shape"],
            colour=o["color"],
            size=o["size"],
            material=o["material"],
            x=float(o["3d_coords"][0]),
            y=float(o["3d_coords"][1]),
            rotation=float(o["rotation"]),
        )
        for o in record["objects"]
    )
    return Scene(
        objects=objects,
        camera=tuple(record["camera"]["position"]),
        lights={k: tuple(v) for k, v in record["lights"].items()},
    )
