"""CelebA as image–text pairs: faces with their attributes written as shuffled words.

Builds a vlvae data set (see :mod:`vlvae.data.format`) from the CelebA folder a
user downloaded: each aligned face is cropped and pooled to 64 × 64 × 3, and its
text is the present attributes from a 19-word subset (plus ``-`` as blank),
shuffled and padded to nine words (docs/design.md §1.2, §2.1).

This module is the driver (:func:`build_celeba`): it checks the input, splits
the images (:func:`split_filenames`), decodes them in resumable chunks, and
writes the records, the vocabulary and the manifest. The parts it drives:
:mod:`.files` (the download's files), :mod:`.images` (crop, pooling, decoding),
:mod:`.words` (words, texts, labels); :mod:`.scoring` holds the correctness of
a text for a face.

References:
    CelebA: Deep Learning Face Attributes in the Wild, Liu et al. 2015,
    https://arxiv.org/abs/1411.7766 (the data set and its file formats).

    On the Importance of Learning Aggregate Posteriors in Multimodal Latent
    Variable Models, Cremer & Kushman 2018, §5.2 (vocabulary, text, split).

Choices made here (the paper leaves them open):

* Split ``paper``: images 1–180,000 (filename order) train, as in the paper; the
  paper validates on the rest, here their first half (rounded up) is validation and
  the second half the test split that nothing trains, stops or tunes on. With fewer
  images (``limit``, or a partial copy) the same fraction, ⌊N · 180,000 / 202,599⌋,
  is train. Split ``official``: CelebA's partition file, 0 → train, 1 → val, 2 → test.
* Texts longer than nine words keep a random subset of nine words
  (:func:`vlvae.datasets.celeba.words.celeba_text`); the manifest counts them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vlvae import runinfo
from vlvae.data.format import DATASET_FOLDERS, assemble_images, finalise_dataset, prepare_output_folder
from vlvae.datasets.celeba.files import (
    _ATTR_FILE,
    _IMAGE_DIR,
    _PARTITION_FILE,
    find_celeba_files,
    read_attributes,
    read_partition,
)
from vlvae.datasets.celeba.images import ALIGNED_SIZE, CROP_BOX, _decode_chunk, _pooling, preprocess
from vlvae.datasets.celeba.words import (
    _ATTRIBUTE_WORDS,
    CELEBA_WORDS,
    TEXT_LENGTH,
    _label_index,
    _labels_to_words,
    celeba_text,
    celeba_vocabulary,
)
from vlvae.errors import VLVAEError
from vlvae.io import atomic_save_npy
from vlvae.locking import folder_lock
from vlvae.paths import check_output_dir

__all__ = ["PAPER_TRAIN", "CELEBA_TOTAL", "split_filenames", "build_celeba"]

CELEBA_TOTAL = 202_599
PAPER_TRAIN = 180_000
_SPLITS = ("paper", "official")


def split_filenames(
    filenames: list[str], split: str, partition: dict[str, int] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Divide images into train, validation and test.

    Args:
        filenames: the images to use, in filename order.
        split: ``"paper"`` — the first 180,000 train (with N < 202,599 images the first
            ⌊N · 180,000 / 202,599⌋, ≈ 88.85 %), of the rest the first half (rounded up)
            validation and the second half test.
            ``"official"`` — CelebA's partition: 0 train, 1 validation, 2 test.
        partition: filename → 0/1/2, needed for ``"official"``.

    Returns:
        (train, val, test): three lists of filenames (test may be empty).
    """
    if split == "paper":
        n = len(filenames)
        n_train = PAPER_TRAIN if n >= CELEBA_TOTAL else n * PAPER_TRAIN // CELEBA_TOTAL
        n_val = (n - n_train + 1) // 2
        return filenames[:n_train], filenames[n_train : n_train + n_val], filenames[n_train + n_val :]
    if split == "official":
        unlisted = [f for f in filenames if f not in partition]
        if unlisted:
            raise VLVAEError(
                f"{_PARTITION_FILE} does not list {unlisted[0]} ({len(unlisted)} images unlisted); "
                "re-download it or use --split paper"
            )
        train = [f for f in filenames if partition[f] == 0]
        val = [f for f in filenames if partition[f] == 1]
        test = [f for f in filenames if partition[f] == 2]
        return train, val, test
    raise VLVAEError(f"unknown split {split!r}; choose one of: {', '.join(_SPLITS)}")


def _word_count_stats(counts: list[int], length: int) -> dict:
    histogram = Counter(counts)
    return {
        "histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "median": float(np.median(counts)),
        "mean": float(np.mean(counts)),
        "max": int(max(counts)),
        "paper": "median 4, max 9 (Cremer & Kushman 2018, §5.2)",
        "over_length": {
            "count": int(sum(c > length for c in counts)),
            "handling": f"the text keeps a random subset of {length} of the present words; "
            "the record's 'words' still lists them all",
        },
    }


def build_celeba(
    root: Path,
    out: Path,
    size: int = 64,
    split: str = "paper",
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    limit: int | None = None,
    *,
    seed: int = 0,
    text_length: int = TEXT_LENGTH,
    chunk_size: int = 1024,
) -> Path:
    """Build the CelebA data set in the vlvae format from a CelebA download.

    Writes ``out/{train,val}/images.npy`` (uint8 (N, size, size, 3)),
    ``out/{train,val}/scenes.json`` (per image: ``filename``, ``attributes`` (all
    CelebA attributes, 0/1), ``words`` (present words, canonical order) and
    ``text`` (one shuffled, padded text drawn with ``seed``; training reshuffles)),
    ``out/vocab.json`` and, last, ``out/manifest.json``.

    The images are decoded in chunks of ``chunk_size``, each saved atomically
    under ``out/.partial/``; rerunning with the same settings after an
    interruption skips the chunks already there, and the result is byte for byte
    that of an uninterrupted build. Chunk files take as much disk as the final
    arrays until the build finishes (about 2.5 GB for the full set at 64 × 64).

    Args:
        root: the CelebA folder (see :func:`find_celeba_files`).
        out: the data-set folder to write.
        size: image side in pixels (64 in the paper).
        split: ``"paper"`` or ``"official"`` (see :func:`split_filenames`).
        workers: processes that decode JPEGs; 0 or 1 decodes in this process.
        overwrite: replace a data set with other settings already at ``out``.
        progress: show a progress bar.
        limit: use only the first ``limit`` images (in filename order), for quick runs.
        seed: seed of the stored texts.
        text_length: words per text (9 in the paper).
        chunk_size: images per resumable chunk (does not change the result).

    Returns:
        ``out``.

    Raises:
        VLVAEError: CelebA is missing or malformed under ``root`` (a missing file,
            an unreadable JPEG, attribute rows without images), or ``out`` cannot
            take the data set; nothing final is written in that case.
    """
    root, out = Path(root), Path(out)
    if split not in _SPLITS:
        raise VLVAEError(f"unknown split {split!r}; choose one of: {', '.join(_SPLITS)}")
    if limit is not None and limit < 2:
        raise VLVAEError(f"--limit {limit} leaves no images for both splits; pass at least 2, or no limit")
    if text_length < 1:
        raise VLVAEError(f"text length {text_length} is too short; use at least 1 (the paper uses 9)")
    if chunk_size < 1:
        raise VLVAEError(f"chunk size {chunk_size} must be positive; use the default 1024")
    preprocess(Image.new("RGB", ALIGNED_SIZE), size)  # checks `size` before any work

    # Every check of the input happens before the output folder is touched.
    files = find_celeba_files(root)
    names, listed, values = read_attributes(files.attributes)
    label_index = _label_index(names)
    partition = None
    if split == "official":
        if files.partition is None:
            raise VLVAEError(
                f"{root} lacks {_PARTITION_FILE}, which --split official needs; "
                f"put it beside {_ATTR_FILE} (or under Eval/) or use --split paper"
            )
        partition = read_partition(files.partition)
    row_of = {name: i for i, name in enumerate(listed)}
    selected = sorted(listed)[:limit] if limit is not None else sorted(listed)
    on_disk = set(os.listdir(files.images))
    absent = [f for f in selected if f not in on_disk]
    if absent:
        raise VLVAEError(
            f"{_ATTR_FILE} lists {absent[0]} but {files.images} has no such file ({len(absent)} missing); "
            f"extract all of {_IMAGE_DIR} or pass --limit to use fewer images"
        )
    train, val, test = split_filenames(selected, split, partition)
    for name, part in (("train", train), ("val", val)):
        if not part:
            raise VLVAEError(
                f"the {name} split is empty with {len(selected)} images and --split {split}; use more images"
            )

    settings = {
        "dataset": "celeba",
        "size": size,
        "split": split,
        "crop_box": {"left": CROP_BOX[0], "top": CROP_BOX[1], "right": CROP_BOX[2], "bottom": CROP_BOX[3]},
        "pooling": _pooling(size),
        "text_length": text_length,
        "limit": limit,
        "seed": seed,
    }
    out = check_output_dir(out, "data-set folder")
    # One build per folder: a second one would remove this one's .partial/ when it finishes.
    with folder_lock(out, "vlvae data celeba", tidy=DATASET_FOLDERS):
        partial, done = prepare_output_folder(out, settings, overwrite, command="vlvae data celeba")
        if done:
            return out

        order = train + val + test
        bounds = {"train": (0, len(train)), "val": (len(train), len(train) + len(val))}
        if test:
            bounds["test"] = (len(train) + len(val), len(order))
        paths = [files.images / f for f in order]
        chunks = [(start, min(start + chunk_size, len(order))) for start in range(0, len(order), chunk_size)]
        _decode_missing_chunks(partial, paths, chunks, size, workers, progress)
        chunk_files = [(_chunk_path(partial, a, b), a, b) for a, b in chunks]
        for name, (lo, hi) in bounds.items():
            assemble_images(out, name, chunk_files, lo, hi, size)

        rng = np.random.default_rng(seed)
        rows = values[[row_of[f] for f in order]]
        present = _labels_to_words(rows[:, label_index]).astype(bool)
        records = {name: [] for name in bounds}
        split_of = [name for name, (lo, hi) in bounds.items() for _ in range(lo, hi)]
        word_counts = []
        for i, (filename, row) in enumerate(zip(order, rows)):
            words = [w for w, p in zip(_ATTRIBUTE_WORDS, present[i]) if p]
            word_counts.append(len(words))
            records[split_of[i]].append(
                {
                    "filename": filename,
                    "attributes": {n: int(v) for n, v in zip(names, row)},
                    "words": words,
                    "text": celeba_text(words, rng, text_length),
                }
            )
        info = {
            "dataset": "celeba",
            "attribute_names": names,
            "words": list(CELEBA_WORDS),
            "text_length": text_length,
            "image_size": [size, size, 3],
        }
        split_rule = {
            "paper": f"first {len(train)} images in filename order train (180,000 of 202,599 in the "
            f"paper; ⌊N·180000/202599⌋ for fewer images); of the rest, the first half validation and "
            f"the second half test",
            "official": f"{_PARTITION_FILE}: 0 train, 1 validation, 2 test",
        }[split]
        manifest = {
            "dataset": "celeba",
            "settings": settings,
            "seed": seed,
            "image_size": size,
            "pixel_value_range": [0, 255],
            "text_length": text_length,
            "split": {
                "name": split,
                "rule": split_rule,
                "train": len(train),
                "val": len(val),
                "test": len(test),
            },
            "source": {
                "root": str(root.resolve()),
                "images_listed": len(listed),
                "images_used": len(selected),
                "jpgs_without_attributes": len({f for f in on_disk if f.endswith(".jpg")} - set(row_of)),
            },
            "word_counts": _word_count_stats(word_counts, text_length),
            "female": "Female is the absence of CelebA's Male attribute",
            **runinfo.run_info(machine=False),
        }
        finalise_dataset(
            out,
            {name: (records[name], {**info, "split": name}) for name in bounds},
            celeba_vocabulary(text_length),
            manifest,
        )
    return out


def _chunk_path(partial: Path, start: int, stop: int) -> Path:
    return partial / f"chunk_{start:07d}_{stop:07d}.npy"


def _decode_missing_chunks(partial, paths, chunks, size, workers, progress) -> None:
    todo = [(a, b) for a, b in chunks if not _chunk_path(partial, a, b).is_file()]
    bar = tqdm(
        total=len(paths),
        initial=len(paths) - sum(b - a for a, b in todo),
        desc="CelebA images",
        unit="img",
        disable=not progress,
    )
    pool = None
    if workers > 1 and todo:
        # spawn, not fork: the caller may hold torch threads, which fork can deadlock. An executor,
        # not multiprocessing.Pool, so that a dead worker raises instead of hanging the build.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for start, stop in todo:
            images = _decode_chunk(paths[start:stop], size, pool)
            atomic_save_npy(_chunk_path(partial, start, stop), images)
            bar.update(stop - start)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
