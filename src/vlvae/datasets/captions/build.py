"""``vlvae data import``: a folder of images and a captions file made into a vlvae data set.

The build, in order:

1. the captions file is read into (image, caption) pairs (:mod:`.table`); bad lines are counted and
   dropped, and so are the pairs of image files that are missing, empty or not files;
2. with ``strict``, every image is decoded once to check it, and any bad input at all is refused
   (one error listing it) before anything is written into the data-set folder;
3. the images, each once, in order of first appearance, are decoded in chunks of :data:`CHUNK_SIZE`
   (:mod:`.images`) into ``.partial/chunk_START_STOP.npy`` (the images that decode, in order) and
   ``.json`` (which ones failed, and how). The ``.json`` is written last and marks the chunk done; a
   rerun reuses a done chunk as long as its images' files have the same size and modification time;
4. the images that decoded are split by image with the seed (:func:`split_images`), the vocabulary
   is made from the train split's captions, the arrays of each split are gathered from the chunks,
   and :func:`vlvae.data.format.finalise_dataset` writes the records, vocab.json and, last,
   manifest.json.

The data set's bytes depend only on the options, the captions file and the image files: not on the
chunk size, the number of threads, or interruptions. Memory holds the captions and one chunk of
images, never all images.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vlvae.data.format import (
    DATASET_FOLDERS,
    OPTIONAL_SPLITS,
    SPLITS,
    finalise_dataset,
    prepare_output_folder,
)
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.captions.images import ImageProblem, read_image
from vlvae.datasets.captions.table import CaptionTable, drop_unusable_files, read_captions
from vlvae.errors import VLVAEError
from vlvae.io import atomic_save_npy, atomic_write_json, open_npy_for_writing, read_json, sha256_file
from vlvae.locking import folder_lock
from vlvae.paths import check_output_dir
from vlvae.runinfo import run_info

__all__ = ["CHUNK_SIZE", "END", "UNKNOWN", "import_captions", "split_counts", "split_images"]

#: Images decoded per resumable chunk (the default of ``chunk_size``; it does not change the result).
CHUNK_SIZE = 1024
#: The end word of every caption and the word that stands for words outside the vocabulary.
END, UNKNOWN = "<end>", "<unk>"
_COMMAND = "vlvae data import"


def split_counts(n: int, val: float, test: float) -> dict[str, int]:
    """Images per split: round(test·n) test and round(val·n) validation images, at least one each when
    the fraction is above 0 and there are at least 3 images; the rest train.

    Example:
        >>> split_counts(100, 0.05, 0.1)
        {'train': 85, 'val': 5, 'test': 10}
        >>> split_counts(3, 0.01, 0.0)
        {'train': 2, 'val': 1, 'test': 0}
    """

    def held(fraction: float) -> int:
        if fraction <= 0:
            return 0
        return max(1, round(fraction * n)) if n >= 3 else round(fraction * n)

    n_test, n_val = held(test), held(val)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def split_images(n: int, val: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """Which of ``n`` images (numbered in order of first appearance) go to which split.

    ``numpy.random.default_rng(seed).permutation(n)`` orders them; its first :func:`split_counts` test
    images form the test split, the next ones the validation split, the rest train. Each split lists
    its images in increasing order (the order of first appearance).

    Returns:
        split -> sorted int64 image numbers (``train``, ``val``, ``test``; a split may be empty).
    """
    counts = split_counts(n, val, test)
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = counts["test"], counts["val"]
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {split: np.sort(parts[split]).astype(np.int64) for split in ("train", "val", "test")}


def _check_options(size, min_count, max_words, val, test, chunk_size, workers) -> None:
    if size < 1:
        raise VLVAEError(f"--size must be a positive number of pixels, got {size}")
    if min_count < 1:
        raise VLVAEError(f"--min-count must be at least 1, got {min_count}")
    if max_words < 1:
        raise VLVAEError(f"--max-words must be at least 1, got {max_words}")
    for name, fraction in (("--val", val), ("--test", test)):
        if not 0.0 <= fraction < 1.0:
            raise VLVAEError(f"{name} must be a fraction in [0, 1), got {fraction}")
    if val + test >= 1.0:
        raise VLVAEError(f"--val {val} and --test {test} leave no images to train on; make them smaller")
    if chunk_size < 1:
        raise VLVAEError(f"chunk size must be positive, got {chunk_size}; use the default {CHUNK_SIZE}")
    if workers < 1:
        raise VLVAEError(f"--workers must be at least 1, got {workers}")


def _finished(out: Path, settings: dict, overwrite: bool) -> dict | None:
    """The manifest of a finished set with these settings in ``out`` (kept unless ``overwrite``)."""
    path = out / "manifest.json"
    if overwrite or not path.is_file():
        return None
    manifest = read_json(path, "remove the folder or pass --overwrite")
    return manifest if isinstance(manifest, dict) and manifest.get("settings") == settings else None


def _check_enough(table: CaptionTable, images: Path, val: float, test: float) -> None:
    """The fatal shortages: no pair left, too few images for the held-out splits, no train image."""
    if not table.pairs:
        why = table.skipped.describe() or "it lists no pair"
        raise VLVAEError(
            f"{table.path} leaves no usable (image, caption) pair ({why}); check that its image names "
            f"are relative to {images} and that each line has an image and a caption"
        )
    n = len(table.image_attributes)
    if (val > 0 or test > 0) and n < 3:
        raise VLVAEError(
            f"only {n} usable image{'s' if n != 1 else ''}, and validation and test splits need at "
            "least 3 images; add images, or pass --val 0 --test 0 to train on them all"
        )
    if split_counts(n, val, test)["train"] < 1:
        raise VLVAEError(
            f"--val {val} and --test {test} take all {n} images; make them smaller or add images"
        )


def _decode(job: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    key, size = job
    try:
        return read_image(Path(key), size), None
    except ImageProblem as exc:
        return None, exc.kind


def _decode_many(keys: list[str], size: int, pool: ThreadPoolExecutor | None) -> Iterable:
    jobs = [(key, size) for key in keys]
    return pool.map(_decode, jobs) if pool is not None else map(_decode, jobs)


def _pool(workers: int) -> ThreadPoolExecutor | None:
    # Threads, not processes: Pillow releases the GIL while it decodes and resizes.
    return ThreadPoolExecutor(workers) if workers > 1 else None


def _check_all(table: CaptionTable, size: int, chunk_size: int, workers: int, progress: bool) -> None:
    """``strict``: decode every image, then refuse if anything at all was bad."""
    keys = table.images()
    bad: dict[str, str] = {}
    pool = _pool(workers)
    bar = tqdm(total=len(keys), desc="checking images", unit="img", disable=not progress)
    try:
        for start in range(0, len(keys), chunk_size):
            part = keys[start : start + chunk_size]
            for key, (_, kind) in zip(part, _decode_many(part, size, pool)):
                if kind is not None:
                    bad[key] = kind
            bar.update(len(part))
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    table.drop_images(bad)
    if table.skipped:
        raise VLVAEError(
            f"{table.path} has bad input, which --strict refuses: {table.skipped.describe()}; fix these "
            "lines and files, or import without --strict to skip them"
        )


def _chunk_paths(partial: Path, start: int, stop: int) -> tuple[Path, Path]:
    stem = partial / f"chunk_{start:09d}_{stop:09d}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def _done_chunk(partial: Path, start: int, stop: int, entries: list) -> dict | None:
    """The record of a finished chunk of exactly these image files, or None."""
    npy, js = _chunk_paths(partial, start, stop)
    if not (npy.is_file() and js.is_file()):
        return None
    try:
        record = read_json(js, "")
    except VLVAEError:
        return None
    return record if isinstance(record, dict) and record.get("images") == entries else None


def _write_chunk(partial: Path, start: int, stop: int, entries: list, size: int, pool) -> dict:
    """Decode the images of one chunk and save them; returns the chunk's record."""
    keys = [e[0] for e in entries]
    good, problems = [], []
    for array, kind in _decode_many(keys, size, pool):
        problems.append(kind)
        if array is not None:
            good.append(array)
    images = np.stack(good) if good else np.empty((0, size, size, 3), dtype=np.uint8)
    record = {"images": entries, "problems": problems, "good": len(good), "size": size}
    npy, js = _chunk_paths(partial, start, stop)
    atomic_save_npy(npy, images)
    atomic_write_json(js, record)  # written last: marks the chunk done
    return record


def _decode_chunks(
    partial: Path, entries: list, size: int, chunk_size: int, workers: int, progress: bool
) -> list[tuple[Path, dict]]:
    """Decode the chunks not done yet; (npy path, record) of every chunk, in order."""
    ranges = [(a, min(a + chunk_size, len(entries))) for a in range(0, len(entries), chunk_size)]
    records = {(a, b): _done_chunk(partial, a, b, entries[a:b]) for a, b in ranges}
    todo = [(a, b) for (a, b), r in records.items() if r is None]
    bar = tqdm(
        total=len(entries),
        initial=len(entries) - sum(b - a for a, b in todo),
        desc="importing images",
        unit="img",
        disable=not progress,
    )
    pool = _pool(workers)
    try:
        for a, b in todo:
            records[(a, b)] = _write_chunk(partial, a, b, entries[a:b], size, pool)
            bar.update(b - a)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return [(_chunk_paths(partial, a, b)[0], records[(a, b)]) for a, b in ranges]


def _gather(out: Path, split: str, chunks: list[tuple[Path, int, int]], rows: np.ndarray, size: int) -> None:
    """Write ``out/split/images.npy`` from the rows ``rows`` (sorted) of the chunked image sequence."""
    (out / split).mkdir(exist_ok=True)
    array, commit = open_npy_for_writing(out / split / "images.npy", (len(rows), size, size, 3))
    for path, lo, hi in chunks:
        a, b = np.searchsorted(rows, [lo, hi])
        if a == b:
            continue
        try:
            chunk = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VLVAEError(
                f"{path} is corrupt ({exc}); delete it and rerun to decode that chunk again"
            ) from exc
        if chunk.shape != (hi - lo, size, size, 3) or chunk.dtype != np.uint8:
            raise VLVAEError(
                f"{path} has the wrong shape {chunk.shape}; delete it and rerun to decode it again"
            )
        array[a:b] = chunk[rows[a:b] - lo]
    commit()


def _vocabulary(captions: Iterable[list[str]], min_count: int) -> Vocabulary:
    """The end and unknown words, then the words met at least ``min_count`` times, most frequent first
    (ties alphabetically)."""
    counts = Counter(w for caption in captions for w in caption)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocabulary(words=(END, UNKNOWN, *words), end=END, unknown=UNKNOWN)


def import_captions(
    images: Path,
    captions: Path,
    out: Path,
    size: int = 64,
    min_count: int = 1,
    max_words: int = 16,
    val: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    *,
    chunk_size: int = CHUNK_SIZE,
    workers: int = 1,
) -> dict:
    """Build (or resume, or keep) a data set of captioned images in ``out``.

    Args:
        images: the folder the captions file's image names are relative to (absolute names are taken
            as they are; names that lead out of the folder are accepted).
        captions: the captions file, CSV with a header ``image,caption[,attribute...]`` or JSON lines
            (:mod:`vlvae.datasets.captions.table`).
        out: the data-set folder (format in :mod:`vlvae.data.format`).
        size: image side in pixels: the central square of each image, resized (Lanczos).
        min_count: a word enters the vocabulary when the train split's captions use it this often;
            rarer words are stored as ``<unk>``.
        max_words: captions are cut to this many words (texts hold one more: the end word).
        val, test: fractions of the images held out as the validation and test splits (by image).
        seed: the seed of the split.
        strict: refuse any bad input (after checking every line and decoding every image, before
            anything is written into ``out``) instead of skipping it.
        overwrite: replace a data set with other settings (finished or not) in ``out``.
        progress: show progress bars.
        chunk_size: images per resumable chunk (does not change the result).
        workers: threads that decode images (does not change the result).

    Returns:
        The data set's manifest (also in ``out/manifest.json``); its ``summary`` is printed.

    Raises:
        VLVAEError: the options are out of range; the images folder or captions file is missing, the
            captions file is empty or has no ``image,caption`` header; no pair is usable; too few
            images for the splits; ``out`` cannot take the set; with ``strict``, any bad input.
    """
    _check_options(size, min_count, max_words, val, test, chunk_size, workers)
    images, captions = Path(images), Path(captions)
    if not images.is_dir():
        raise VLVAEError(
            f"images folder {images} does not exist or is not a folder; pass the folder that the "
            "captions file's image names are relative to"
        )
    if not captions.is_file():
        raise VLVAEError(
            f"captions file {captions} does not exist; pass the CSV or JSON-lines file of captions"
        )
    folder = images.resolve()
    settings = {
        "dataset": "captions",
        "size": int(size),
        "min_count": int(min_count),
        "max_words": int(max_words),
        "val": float(val),
        "test": float(test),
        "seed": int(seed),
        "captions_sha256": sha256_file(captions),
        "images": str(folder),
    }
    out = check_output_dir(out, "data-set folder")
    # One build per folder: a second one would remove this one's .partial/ when it finishes.
    with folder_lock(out, _COMMAND, tidy=DATASET_FOLDERS):
        finished = _finished(out, settings, overwrite)
        if finished is not None:
            return finished
        table = read_captions(captions, folder)
        status = drop_unusable_files(table)
        if strict:
            _check_all(table, size, chunk_size, workers, progress)
        _check_enough(table, folder, val, test)
        partial, done = prepare_output_folder(out, settings, overwrite, command=_COMMAND)
        if done:
            return read_json(out / "manifest.json", "remove the folder or pass --overwrite")
        keys = table.images()
        entries = [[key, status[key].st_size, status[key].st_mtime_ns] for key in keys]
        chunks = _decode_chunks(partial, entries, size, chunk_size, workers, progress)
        failed = {}
        for _, record in chunks:
            for (key, *_), kind in zip(record["images"], record["problems"]):
                if kind is not None:
                    failed[key] = kind
        table.drop_images(failed)
        _check_enough(table, folder, val, test)
        manifest = _assemble(out, table, chunks, settings)
    print(manifest["summary"])
    return manifest


def _assemble(out: Path, table: CaptionTable, chunks: list[tuple[Path, dict]], settings: dict) -> dict:
    """Split the decoded images, make the vocabulary and records, and write the final files."""
    size, max_words = settings["size"], settings["max_words"]
    keys = table.images()  # the images that decoded, in order of first appearance
    sequence, lo = [], 0
    for path, record in chunks:
        sequence.append((path, lo, lo + record["good"]))
        lo += record["good"]
    if lo != len(keys):
        raise VLVAEError(
            f"the decoded chunks hold {lo} images but {len(keys)} were expected; "
            f"delete {out / '.partial'} and rerun"
        )
    names: dict[str, str] = {}
    texts: dict[str, list[list[str]]] = {}
    for p in table.pairs:
        names.setdefault(p.key, p.image)
        texts.setdefault(p.key, []).append(list(p.tokens[:max_words]))
    parts = split_images(len(keys), settings["val"], settings["test"], settings["seed"])
    vocab = _vocabulary((c for i in parts["train"] for c in texts[keys[i]]), settings["min_count"])
    index = vocab.index

    splits = SPLITS + tuple(s for s in OPTIONAL_SPLITS if settings["test"] > 0)
    # The old manifest goes before any array is replaced, so that it never describes other arrays.
    (out / "manifest.json").unlink(missing_ok=True)
    for split in OPTIONAL_SPLITS:
        if split not in splits:
            shutil.rmtree(out / split, ignore_errors=True)  # left by an earlier build with a test split
    info = {
        "dataset": "captions",
        "image_size": size,
        "text_length": max_words + 1,
        "attributes": table.attributes,
    }
    written = {}
    for split in splits:
        rows = parts[split]
        _gather(out, split, sequence, rows, size)
        records = []
        for i in rows:
            key = keys[i]
            rec = {
                "image": names[key],
                "captions": [[w if w in index else UNKNOWN for w in c] for c in texts[key]],
            }
            if table.attributes:
                rec["attributes"] = table.image_attributes[key]
            records.append(rec)
        written[split] = (records, {**info, "split": split})

    n_pairs = len(table.pairs)
    skipped = table.skipped.describe()
    summary = f"kept {n_pairs} of {table.rows} pairs ({len(keys)} images); " + (
        f"skipped {skipped}" if skipped else "nothing skipped"
    )
    manifest = {
        "dataset": "captions",
        "settings": settings,
        "image_size": size,
        "seed": settings["seed"],
        "text_length": max_words + 1,
        "pixel_value_range": [0, 255],
        "attributes": table.attributes,
        "pairs": n_pairs,
        "skipped": table.skipped.to_json(),
        "summary": summary,
        "source": {"captions": str(table.path.resolve()), "form": table.form, "rows": table.rows},
        **run_info(machine=False),
    }
    finalise_dataset(out, written, vocab, manifest)
    return read_json(out / "manifest.json", "rerun the same command")
