"""The Two Objects data set (Cremer & Kushman 2018, §4 and §5.2): CLEVR-style scenes of two objects.

Scenes follow CLEVR's sampling rules (:mod:`vlvae.datasets.two_objects.scene`), are drawn by
this project's batched CPU renderer (:mod:`vlvae.datasets.two_objects.render`), and are kept
only when every object and the background cover CLEVR's minimum number of
pixels (200 at 480 x 320, scaled by image area). Each image stores its four
true texts and one drawn at random.

Generation is split into chunks. Chunk ``c`` of the ``n`` train and validation pairs draws from
its own random stream ``numpy.random.default_rng([seed, c])``, so the bytes do not depend on the
number of workers, and a killed run resumes from the chunks already saved. The test split
(``test_fraction`` · ``n`` further pairs, which nothing trains, stops or tunes on) comes from
streams of its own, ``default_rng([seed, TEST_STREAM, j])`` for its chunk ``j``: adding it left
the train and validation bytes as they were.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vlvae.data.format import DATASET_FOLDERS, assemble_images, finalise_dataset, prepare_output_folder
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.two_objects import clevr
from vlvae.datasets.two_objects.render import render_scenes
from vlvae.datasets.two_objects.scene import sample_scene, scene_record, true_texts
from vlvae.datasets.two_objects.words import one_object_vocabulary, two_objects_vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_save_npy, atomic_write_json, read_json
from vlvae.locking import folder_lock
from vlvae.paths import check_output_dir
from vlvae.runinfo import run_info

__all__ = ["TwoObjectsSettings", "generate_two_objects", "min_pixels", "vocabulary_for"]

_RENDER_BATCH = 64
#: The key that separates the test split's random streams from the train and validation ones.
TEST_STREAM = 7919


@dataclass
class TwoObjectsSettings:
    """Everything that determines the bytes of a Two Objects data set.

    Attributes:
        n: number of image-text pairs (train + validation).
        size: image height and width in pixels.
        val_fraction: fraction of ``n`` held out as the validation split.
        test_fraction: round(``test_fraction`` · ``n``) further pairs form the test split, drawn
            from streams of their own (0: no test split).
        seed: random seed.
        objects: objects per image (2; 1 for the Fig. 1 variant).
        colours, sizes, shapes, materials: attribute values to draw from.
        zoom: focal-length multiplier of CLEVR's camera (objects look ``zoom`` times larger).
        supersample: s x s anti-aliasing samples per pixel.
        chunk_size: images per resumable chunk.
    """

    n: int = 100_000
    size: int = 112
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    objects: int = 2
    colours: tuple[str, ...] = tuple(clevr.COLOURS)
    sizes: tuple[str, ...] = tuple(clevr.SIZES)
    shapes: tuple[str, ...] = clevr.SHAPES
    materials: tuple[str, ...] = clevr.MATERIALS
    zoom: float = 1.0
    supersample: int = 2
    chunk_size: int = 512

    def __post_init__(self):
        if self.n <= 0:
            raise VLVAEError(f"--n must be a positive number of images, got {self.n}")
        if self.size < 16:
            raise VLVAEError(f"--size must be at least 16 pixels, got {self.size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise VLVAEError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.test_fraction <= 1.0:
            raise VLVAEError(f"--test-fraction must be in [0, 1], got {self.test_fraction}")
        if self.objects not in (1, 2):
            raise VLVAEError(f"--objects must be 1 or 2, got {self.objects}")
        if self.zoom <= 0:
            raise VLVAEError(f"--zoom must be positive, got {self.zoom}")
        if self.supersample < 1:
            raise VLVAEError(f"--supersample must be at least 1, got {self.supersample}")
        for name, values, allowed in (
            ("colour", self.colours, clevr.COLOURS),
            ("size", self.sizes, clevr.SIZES),
            ("shape", self.shapes, clevr.SHAPES),
            ("material", self.materials, clevr.MATERIALS),
        ):
            unknown = [v for v in values if v not in allowed]
            if unknown or not values:
                raise VLVAEError(
                    f"unknown {name} {', '.join(map(repr, unknown)) or '(none given)'}; "
                    f"choose from {', '.join(allowed)}"
                )
        self.colours, self.sizes = tuple(self.colours), tuple(self.sizes)
        self.shapes, self.materials = tuple(self.shapes), tuple(self.materials)

    @classmethod
    def one_object(cls, **kwargs) -> TwoObjectsSettings:
        """The Fig. 1 variant: one object, blue or red, small or large, shape and material fixed."""
        defaults = dict(objects=1, colours=("blue", "red"), shapes=("sphere",), materials=("rubber",))
        return cls(**{**defaults, **kwargs})

    @property
    def n_val(self) -> int:
        return int(round(self.n * self.val_fraction))

    @property
    def n_test(self) -> int:
        return int(round(self.n * self.test_fraction))

    @property
    def n_chunks(self) -> int:
        """Chunks of the train and validation pairs (numbered from 0)."""
        return math.ceil(self.n / self.chunk_size)

    @property
    def n_test_chunks(self) -> int:
        """Chunks of the test pairs (numbered after the train and validation ones)."""
        return math.ceil(self.n_test / self.chunk_size)

    def chunk_stream(self, c: int) -> tuple[list[int], int]:
        """(random-stream key, image count) of chunk ``c``: train/validation first, then test."""
        if c < self.n_chunks:
            return [self.seed, c], min(self.chunk_size, self.n - c * self.chunk_size)
        j = c - self.n_chunks
        return [self.seed, TEST_STREAM, j], min(self.chunk_size, self.n_test - j * self.chunk_size)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def min_pixels(size: int) -> int:
    """CLEVR's visibility threshold (200 pixels at 480 x 320) scaled to a size x size image."""
    w, h = clevr.CLEVR_RESOLUTION
    return max(1, math.ceil(clevr.MIN_PIXELS_PER_OBJECT * size * size / (w * h)))


def vocabulary_for(settings: TwoObjectsSettings) -> Vocabulary:
    if settings.objects == 1:
        return one_object_vocabulary(colours=settings.colours, sizes=settings.sizes)
    return two_objects_vocabulary(settings.colours, settings.sizes, settings.shapes, settings.materials)


def _render_chunk(args: tuple[dict, int]) -> tuple[np.ndarray, list[dict]]:
    """Images and records of chunk ``c``: visible scenes only, each with its texts."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process per core renders fastest; restored below for in-process use
    try:
        return _render_chunk_single_thread(*args)
    finally:
        torch.set_num_threads(threads)


def _render_chunk_single_thread(settings_json: dict, c: int) -> tuple[np.ndarray, list[dict]]:
    s = TwoObjectsSettings(**settings_json)
    key, count = s.chunk_stream(c)
    rng = np.random.default_rng(key)
    threshold = min_pixels(s.size)
    images, records = [], []
    while len(images) < count:
        want = min(_RENDER_BATCH, count - len(images))
        scenes = [
            sample_scene(rng, s.objects, s.colours, s.sizes, s.shapes, s.materials) for _ in range(want)
        ]
        out = render_scenes(scenes, s.size, zoom=s.zoom, supersample=s.supersample)
        for i, scene in enumerate(scenes):
            if out.object_pixels[i].min() < threshold or out.background_pixels[i] < threshold:
                continue
            texts = true_texts(scene)
            rec = scene_record(scene, out.pixel_coords[i])
            rec["texts"] = texts
            rec["text"] = texts[int(rng.integers(len(texts)))]
            rec["object_pixels"] = [int(p) for p in out.object_pixels[i]]
            images.append(out.images[i])
            records.append(rec)
    return np.stack(images), records


def _chunk_paths(partial: Path, c: int) -> tuple[Path, Path]:
    return partial / f"chunk_{c:05d}.npy", partial / f"chunk_{c:05d}.json"


def generate_two_objects(
    settings: TwoObjectsSettings,
    out: Path,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Build (or resume, or keep) a Two Objects data set in ``out``.

    Args:
        settings: what to generate; it alone determines the bytes.
        out: the data-set folder (format in :mod:`vlvae.data.format`).
        workers: rendering processes (one per core is best).
        overwrite: rebuild even if a finished set with these settings exists.
        progress: show a progress bar.

    Returns:
        ``out``.
    """
    if workers < 1:
        raise VLVAEError(f"--workers must be at least 1, got {workers}")
    out = check_output_dir(out, "data-set folder")
    # One build per folder: a second one would remove this one's .partial/ when it finishes.
    with folder_lock(out, "vlvae data two-objects", tidy=DATASET_FOLDERS):
        _generate(settings, out, workers, overwrite, progress)
    return out


def _generate(settings: TwoObjectsSettings, out: Path, workers: int, overwrite: bool, progress: bool) -> None:
    partial, done = prepare_output_folder(
        out, settings.to_json(), overwrite, command="vlvae data two-objects"
    )
    if done:
        return
    every = range(settings.n_chunks + settings.n_test_chunks)
    pending = [c for c in every if not all(p.exists() for p in _chunk_paths(partial, c))]
    bar = tqdm(
        total=settings.n + settings.n_test,
        unit="img",
        desc="rendering",
        disable=not progress,
        initial=sum(settings.chunk_stream(c)[1] for c in every if c not in set(pending)),
    )
    jobs = [(settings.to_json(), c) for c in pending]

    def save(c, result):
        images, records = result
        npy, js = _chunk_paths(partial, c)
        atomic_save_npy(npy, images)
        atomic_write_json(js, records)  # written last: marks the chunk complete
        bar.update(len(records))

    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            save(job[1], _render_chunk(job))
    else:
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for job, result in zip(jobs, pool.imap(_render_chunk, jobs)):
                save(job[1], result)
    bar.close()
    _assemble(settings, out, partial)


def _assemble(settings: TwoObjectsSettings, out: Path, partial: Path) -> None:
    """Concatenate the chunks into the train, validation and test splits and write the final files.

    The chunks form one sequence: the ``n`` train and validation pairs, then the test pairs."""
    n_train = settings.n - settings.n_val
    ranges = {"train": (0, n_train), "val": (n_train, settings.n)}
    if settings.n_test:
        ranges["test"] = (settings.n, settings.n + settings.n_test)
    every = range(settings.n_chunks + settings.n_test_chunks)
    starts = [c * settings.chunk_size for c in range(settings.n_chunks)]
    starts += [settings.n + j * settings.chunk_size for j in range(settings.n_test_chunks)]
    records_all: list[dict] = []
    for c in every:
        records_all.extend(read_json(_chunk_paths(partial, c)[1], "rerun the same command to rebuild it"))
    info = {
        "dataset": "two_objects",
        "image_size": settings.size,
        "zoom": settings.zoom,
        "rotation_unit": "radians",
        "relation_eps": clevr.RELATION_EPS,
        "min_pixels": min_pixels(settings.size),
    }
    chunks = [
        (_chunk_paths(partial, c)[0], starts[c], starts[c] + settings.chunk_stream(c)[1]) for c in every
    ]
    splits = {}
    for split, (lo, hi) in ranges.items():
        assemble_images(out, split, chunks, lo, hi, settings.size)
        records = [{"split": split, "image_index": i, **rec} for i, rec in enumerate(records_all[lo:hi])]
        splits[split] = (records, {**info, "split": split})
    manifest = {
        "dataset": "two_objects",
        "settings": settings.to_json(),
        "image_size": settings.size,
        "seed": settings.seed,
        "zoom": settings.zoom,
        "text_length": 2 if settings.objects == 1 else 9,
        "pixel_value_range": [0, 255],
        **run_info(machine=False),
    }
    finalise_dataset(out, splits, vocabulary_for(settings), manifest)
