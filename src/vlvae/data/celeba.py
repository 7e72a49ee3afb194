"""CelebA as image–text pairs: faces with their attributes written as shuffled words.

Builds a vlvae data set (see :mod:`vlvae.data.format`) from the CelebA folder a
user downloaded: each aligned face is cropped and pooled to 64 × 64 × 3, and its
text is the present attributes from a 19-word subset (plus ``-`` as blank),
shuffled and padded to nine words (docs/design.md §1.2, §2.1).

References:
    CelebA: Deep Learning Face Attributes in the Wild, Liu et al. 2015,
    https://arxiv.org/abs/1411.7766 (the data set and its file formats).

    On the Importance of Learning Aggregate Posteriors in Multimodal Latent
    Variable Models, Cremer & Kushman 2018, §5.2 (vocabulary, text, split) and
    §5.4 (the correctness of a text for an image).

Choices made here (the paper leaves them open):

* Words: Female is the absence of CelebA's ``Male`` attribute, so every text
  holds exactly one of Male/Female. A classifier therefore predicts 18 binary
  labels (:data:`CELEBA_LABELS`, Male as one label); :func:`word_probabilities`
  turns them into the 19 word probabilities with p(Female) = 1 − p(Male).
* Images: the crop box and pooling of the authors' released code (docs/design.md §2.1),
  crop 128 × 128 at (top 48, left 25) of the 178 × 218 aligned image, then
  mean pooling by 128 / ``size``; pooled means are rounded half up in integer
  arithmetic, so the bytes are exact and platform independent.
* Split ``paper``: images 1–180,000 (filename order) train, the rest
  validation; with fewer images (``limit``, or a partial copy) the same
  fraction, ⌊N · 180,000 / 202,599⌋, is train. Split ``official``: CelebA's
  partition file, 0 → train, 1 → val, test (2) left out.
* Texts longer than nine words (possible: 18 labels can be present at once)
  keep a random subset of nine words; the manifest counts them.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from vlvae import runinfo
from vlvae.data.format import DATASET_FOLDERS, assemble_images, finalise_dataset, prepare_output_folder
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_save_npy
from vlvae.locking import folder_lock
from vlvae.paths import check_output_dir

__all__ = [
    "CELEBA_WORDS",
    "CELEBA_LABELS",
    "BLANK",
    "TEXT_LENGTH",
    "ALIGNED_SIZE",
    "CROP_BOX",
    "PAPER_TRAIN",
    "CELEBA_TOTAL",
    "CelebAFiles",
    "find_celeba_files",
    "read_attributes",
    "read_partition",
    "preprocess",
    "attribute_words",
    "label_targets",
    "words_present",
    "celeba_text",
    "celeba_vocabulary",
    "split_filenames",
    "build_celeba",
    "word_probabilities",
    "correctness_paper",
    "correctness_all_labels",
]

BLANK = "-"
TEXT_LENGTH = 9
CELEBA_WORDS: tuple[str, ...] = (
    "Bushy_Eyebrows",
    "Male",
    "Female",
    "Mouth_Slightly_Open",
    "Smiling",
    "Bald",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Gray_Hair",
    "Heavy_Makeup",
    "Mustache",
    "Pale_Skin",
    "Receding_Hairline",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Hat",
    BLANK,
)
"""The 20 tokens of docs/design.md §1.2 in the paper's order; ``-`` (blank) is last, index 19."""

CELEBA_LABELS: tuple[str, ...] = tuple(w for w in CELEBA_WORDS if w not in ("Female", BLANK))
"""The 18 CelebA attributes behind the 19 words, in word order (Male stands for Male/Female)."""

_ATTRIBUTE_WORDS = CELEBA_WORDS[:-1]
ALIGNED_SIZE = (178, 218)
"""(width, height) of CelebA's aligned-and-cropped images."""
CROP_BOX = (25, 48, 153, 176)
"""(left, top, right, bottom) of the 128 × 128 face crop (docs/design.md §2.1)."""
CELEBA_TOTAL = 202_599
PAPER_TRAIN = 180_000

_IMAGE_DIR = "img_align_celeba"
_ATTR_FILE = "list_attr_celeba.txt"
_PARTITION_FILE = "list_eval_partition.txt"
_LAYOUT_HELP = (
    f"expected {_IMAGE_DIR}/*.jpg, {_ATTR_FILE} and {_PARTITION_FILE} directly in the folder, "
    f"or under Img/, Anno/ and Eval/ as CelebA's download has them"
)
_SPLITS = ("paper", "official")


# ----------------------------------------------------------------------------- files


@dataclass(frozen=True)
class CelebAFiles:
    """Where a CelebA download keeps its parts.

    Attributes:
        images: the folder of aligned JPEGs (``img_align_celeba``).
        attributes: ``list_attr_celeba.txt``.
        partition: ``list_eval_partition.txt``, or None if absent (needed only
            for ``split="official"``).
    """

    images: Path
    attributes: Path
    partition: Path | None


def _first(candidates, test) -> Path | None:
    return next((p for p in candidates if test(p)), None)


def find_celeba_files(root: Path) -> CelebAFiles:
    """Locate the parts of a CelebA download under ``root``.

    Accepts the flat layout (``root/img_align_celeba/``, ``root/list_attr_celeba.txt``,
    ``root/list_eval_partition.txt``) and the official download's sub-folders
    (``Img/img_align_celeba/``, ``Anno/list_attr_celeba.txt``,
    ``Eval/list_eval_partition.txt``); an image folder nested once more in itself
    (``img_align_celeba/img_align_celeba/``, as some unzip tools leave it) is accepted too.

    Raises:
        VLVAEError: ``root`` is not a folder, or the image folder or attribute file is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise VLVAEError(
            f"CelebA folder {root} does not exist; pass the folder you downloaded CelebA to ({_LAYOUT_HELP})"
        )
    image_dirs = [root / _IMAGE_DIR, root / "Img" / _IMAGE_DIR]
    image_dirs += [d / _IMAGE_DIR for d in image_dirs]
    images = _first(image_dirs, lambda d: d.is_dir() and any(d.glob("*.jpg")))
    attributes = _first([root / _ATTR_FILE, root / "Anno" / _ATTR_FILE], Path.is_file)
    partition = _first([root / _PARTITION_FILE, root / "Eval" / _PARTITION_FILE], Path.is_file)
    missing = [
        name
        for name, found in ((f"{_IMAGE_DIR}/ with .jpg files", images), (_ATTR_FILE, attributes))
        if found is None
    ]
    if missing:
        raise VLVAEError(f"{root} lacks {' and '.join(missing)}; {_LAYOUT_HELP}")
    return CelebAFiles(images=images, attributes=attributes, partition=partition)


def _read_lines(path: Path, fix: str, if_missing: str) -> list[str]:
    """The lines of a text file, or a VLVAEError saying it is missing (``if_missing``) or unreadable."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise VLVAEError(f"{path} is missing; {if_missing}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VLVAEError(f"cannot read {path} ({exc}); {fix}") from exc


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Read CelebA's ``list_attr_celeba.txt``.

    The format: line 1 the number of images, line 2 the attribute names, then one
    line per image, ``filename v1 ... vK`` with each value −1 or 1; any whitespace
    separates fields.

    Returns:
        (names, filenames, values): the K attribute names, the N filenames in file
        order, and ``values`` int8 (N, K) with 1 for present and 0 for absent.

    Raises:
        VLVAEError: the file is missing or malformed (count, values per row, values
            other than −1/1, a filename listed twice).
    """
    path = Path(path)
    fix = f"re-download {_ATTR_FILE} from CelebA"
    lines = _read_lines(path, fix, f"{fix} and place it beside {_IMAGE_DIR}/")
    lines = [line for line in lines if line.strip()]
    if len(lines) < 2 or not re.fullmatch(r"\s*\d+\s*", lines[0]):
        raise VLVAEError(f"{path} does not start with an image count and a line of attribute names; {fix}")
    count, names = int(lines[0]), lines[1].split()
    rows = [line.split() for line in lines[2:]]
    if len(rows) != count:
        raise VLVAEError(f"{path} says it lists {count} images but has {len(rows)} rows; {fix}")
    for i, row in enumerate(rows):
        if len(row) != len(names) + 1:
            raise VLVAEError(
                f"{path} line {i + 3} has {len(row) - 1} values for {len(names)} attributes; {fix}"
            )
    filenames = [row[0] for row in rows]
    if len(set(filenames)) != len(filenames):
        twice = next(name for name, n in Counter(filenames).items() if n > 1)
        raise VLVAEError(f"{path} lists {twice} twice; {fix}")
    try:  # numpy warns (older) or raises (newer) when it meets a non-number
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.fromstring(" ".join(" ".join(row[1:]) for row in rows), dtype=np.int64, sep=" ")
    except ValueError:
        values = np.empty(0)
    if values.size == count * len(names):
        values = values.reshape(count, len(names))
        bad = np.argwhere((values != 1) & (values != -1))
        where = bad[0] if len(bad) else None
    else:  # a value that is not even an integer
        where = next(
            (i, j) for i, row in enumerate(rows) for j, v in enumerate(row[1:]) if v not in ("1", "-1")
        )
    if where is not None:
        i, j = where
        raise VLVAEError(
            f"{path} line {i + 3} gives {names[j]} the value {rows[i][j + 1]!r}, not -1 or 1; {fix}"
        )
    return names, filenames, (values == 1).astype(np.int8)


def read_partition(path: Path) -> dict[str, int]:
    """Read CelebA's ``list_eval_partition.txt``: filename → 0 (train), 1 (val) or 2 (test).

    Raises:
        VLVAEError: the file is missing or a line is not ``filename 0|1|2``.
    """
    path = Path(path)
    fix = f"re-download {_PARTITION_FILE} from CelebA"
    lines = _read_lines(path, fix, f"{fix} or use the paper's split")
    partition = {}
    for i, line in enumerate(lines):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise VLVAEError(f"{path} line {i + 1} is {line.strip()!r}, not 'filename 0|1|2'; {fix}")
        partition[fields[0]] = int(fields[1])
    return partition


# ----------------------------------------------------------------------------- images


def _pooling(size: int) -> str:
    crop = CROP_BOX[2] - CROP_BOX[0]
    return f"mean {crop // size}x{crop // size}" if crop % size == 0 else "PIL box resize"


def preprocess(image: Image.Image, size: int = 64) -> np.ndarray:
    """Crop an aligned CelebA face and shrink it (docs/design.md §2.1).

    Crops 128 × 128 at (top 48, left 25) of the 178 × 218 aligned image, then
    shrinks to ``size`` × ``size``: when ``size`` divides 128, by mean pooling
    over f × f blocks (f = 128 / size; size 64 gives the authors' 2 × 2 pooling),
    each mean rounded half up; otherwise by PIL's BOX resize (area average).

    Args:
        image: an aligned CelebA image, 178 wide and 218 high, any PIL mode.
        size: output side in pixels, 1 to 128.

    Returns:
        uint8 (size, size, 3).

    Raises:
        VLVAEError: the image is not 178 × 218, or ``size`` is out of range.

    Example:
        >>> preprocess(Image.new("RGB", (178, 218), (10, 20, 30))).shape
        (64, 64, 3)
    """
    crop = CROP_BOX[2] - CROP_BOX[0]
    if not 1 <= size <= crop:
        raise VLVAEError(
            f"image size {size} is out of range; choose a size from 1 to {crop} (the paper uses 64)"
        )
    if image.size != ALIGNED_SIZE:
        raise VLVAEError(
            f"image is {image.size[0]}x{image.size[1]}, not CelebA's aligned "
            f"{ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]}; use the img_align_celeba images, not the in-the-wild ones"
        )
    face = image.convert("RGB").crop(CROP_BOX)
    if crop % size:
        return np.asarray(face.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)
    f = crop // size
    pixels = np.asarray(face)
    total = np.zeros((size, size, 3), dtype=np.uint32)
    for i in range(f):  # strided adds: several times faster than a reshape-and-sum
        for j in range(f):
            total += pixels[i::f, j::f]
    return ((total + f * f // 2) // (f * f)).astype(np.uint8)


def _load_one(job: tuple[str, int]) -> tuple[np.ndarray | None, str | None]:
    """Decode and preprocess one file; errors come back as text so a worker never dies."""
    path, size = job
    try:
        with Image.open(path) as image:
            image.load()
            return preprocess(image, size), None
    except VLVAEError as exc:
        return None, str(exc)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _decode_chunk(paths: list[Path], size: int, pool: ProcessPoolExecutor | None) -> np.ndarray:
    """Preprocessed images of ``paths``, uint8 (len(paths), size, size, 3), decoded in ``pool`` if given."""
    jobs = [(str(p), size) for p in paths]
    try:
        results = list(pool.map(_load_one, jobs, chunksize=16) if pool is not None else map(_load_one, jobs))
    except BrokenProcessPool as exc:
        raise VLVAEError(
            f"a JPEG-decoding worker process died ({exc}); rerun with --workers 1 (or workers=1), "
            "which decodes in the main process"
        ) from exc
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, (array, error) in enumerate(results):
        if error is not None:
            raise VLVAEError(
                f"{paths[i]} is not a readable CelebA image ({error}); re-download or re-extract {_IMAGE_DIR}"
            )
        out[i] = array
    return out


# ----------------------------------------------------------------------------- words and texts


def attribute_words(attr_row, names: list[str]) -> list[str]:
    """The words of :data:`CELEBA_WORDS` present in one image, in canonical order.

    Female is present exactly when Male is absent, so the result holds exactly
    one of Male/Female.

    Args:
        attr_row: (K,) 0/1 (or −1/1) values of the attributes ``names``.
        names: CelebA's attribute names, which must include the 18 of :data:`CELEBA_LABELS`.

    Example:
        >>> names = list(CELEBA_LABELS)
        >>> attribute_words([0] * 18, names)
        ['Female']
    """
    row = np.asarray(attr_row)
    index = _label_index(names)
    present = row[index] > 0
    return [w for w, p in zip(_ATTRIBUTE_WORDS, _labels_to_words(present[None])[0]) if p]


def _label_index(names: list[str]) -> list[int]:
    missing = [label for label in CELEBA_LABELS if label not in names]
    if missing:
        raise VLVAEError(
            f"the attribute list lacks {', '.join(missing)}; "
            f"use CelebA's own {_ATTR_FILE} with its 40 attributes"
        )
    return [names.index(label) for label in CELEBA_LABELS]


def _labels_to_words(labels: np.ndarray) -> np.ndarray:
    """(N, 18) label values → (N, 19) word values, Female = 1 − Male inserted after Male."""
    male = CELEBA_LABELS.index("Male")
    return np.concatenate(
        [labels[:, : male + 1], 1 - labels[:, male : male + 1], labels[:, male + 1 :]], axis=1
    )


def label_targets(values: np.ndarray, names: list[str]) -> np.ndarray:
    """The 18 binary labels of :data:`CELEBA_LABELS` from CelebA attributes.

    Args:
        values: (N, K) 0/1 attribute values as :func:`read_attributes` returns them.
        names: the K attribute names.

    Returns:
        int8 (N, 18).
    """
    return (np.asarray(values)[:, _label_index(names)] > 0).astype(np.int8)


def words_present(texts: list[list[str]]) -> np.ndarray:
    """How often each of the 19 attribute words occurs in each text (blanks ignored).

    Args:
        texts: N texts, each a list of words from :data:`CELEBA_WORDS`.

    Returns:
        int64 (N, 19) counts, usable as ``words_present`` in :func:`correctness_paper`.
    """
    index = {w: i for i, w in enumerate(_ATTRIBUTE_WORDS)}
    counts = np.zeros((len(texts), len(_ATTRIBUTE_WORDS)), dtype=np.int64)
    for n, text in enumerate(texts):
        for word in text:
            if word == BLANK:
                continue
            if word not in index:
                raise VLVAEError(f"{word!r} is not a CelebA word; texts must use: {' '.join(CELEBA_WORDS)}")
            counts[n, index[word]] += 1
    return counts


def celeba_text(words: list[str], rng: np.random.Generator, length: int = TEXT_LENGTH) -> list[str]:
    """A text for an image: its present words in random order, padded with ``-`` to ``length``.

    If there are more than ``length`` words, a random subset of ``length`` of them
    is kept (every subset equally likely), since the model's texts have a fixed
    length; :func:`build_celeba` counts how often that happens.

    Args:
        words: the image's present words (e.g. from :func:`attribute_words`).
        rng: the source of the shuffle.
        length: words per text.

    Example:
        >>> celeba_text(["Male", "Smiling", "Bangs"], np.random.default_rng(0), length=5)
        ['Bangs', 'Male', 'Smiling', '-', '-']
    """
    order = rng.permutation(len(words))[:length]
    return [words[i] for i in order] + [BLANK] * (length - len(order))


def celeba_vocabulary(length: int = TEXT_LENGTH) -> Vocabulary:
    """The 20-token vocabulary, with ``length`` slots ``w1``… that each allow every token."""
    return Vocabulary(
        words=CELEBA_WORDS,
        slots=tuple(CELEBA_WORDS for _ in range(length)),
        slot_names=tuple(f"w{i + 1}" for i in range(length)),
    )


# ----------------------------------------------------------------------------- the build


def split_filenames(
    filenames: list[str], split: str, partition: dict[str, int] | None = None
) -> tuple[list[str], list[str], int]:
    """Divide images into train and validation.

    Args:
        filenames: the images to use, in filename order.
        split: ``"paper"`` — the first 180,000 train, the rest validation; with
            N < 202,599 images the first ⌊N · 180,000 / 202,599⌋ (≈ 88.85 %) train.
            ``"official"`` — CelebA's partition: 0 train, 1 validation, 2 (test) left out.
        partition: filename → 0/1/2, needed for ``"official"``.

    Returns:
        (train, val, left_out): two lists of filenames and the number of test images left out.
    """
    if split == "paper":
        n = len(filenames)
        n_train = PAPER_TRAIN if n >= CELEBA_TOTAL else n * PAPER_TRAIN // CELEBA_TOTAL
        return filenames[:n_train], filenames[n_train:], 0
    if split == "official":
        unlisted = [f for f in filenames if f not in partition]
        if unlisted:
            raise VLVAEError(
                f"{_PARTITION_FILE} does not list {unlisted[0]} ({len(unlisted)} images unlisted); "
                "re-download it or use --split paper"
            )
        train = [f for f in filenames if partition[f] == 0]
        val = [f for f in filenames if partition[f] == 1]
        return train, val, len(filenames) - len(train) - len(val)
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
    train, val, left_out = split_filenames(selected, split, partition)
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

        order = train + val
        paths = [files.images / f for f in order]
        chunks = [(start, min(start + chunk_size, len(order))) for start in range(0, len(order), chunk_size)]
        _decode_missing_chunks(partial, paths, chunks, size, workers, progress)
        chunk_files = [(_chunk_path(partial, a, b), a, b) for a, b in chunks]
        for name, lo, hi in (("train", 0, len(train)), ("val", len(train), len(order))):
            assemble_images(out, name, chunk_files, lo, hi, size)

        rng = np.random.default_rng(seed)
        rows = values[[row_of[f] for f in order]]
        present = _labels_to_words(rows[:, label_index]).astype(bool)
        records = {"train": [], "val": []}
        word_counts = []
        for i, (filename, row) in enumerate(zip(order, rows)):
            words = [w for w, p in zip(_ATTRIBUTE_WORDS, present[i]) if p]
            word_counts.append(len(words))
            records["train" if i < len(train) else "val"].append(
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
            "paper": f"first {len(train)} images in filename order train, the rest validation "
            f"(180,000 of 202,599 in the paper; ⌊N·180000/202599⌋ for fewer images)",
            "official": f"{_PARTITION_FILE}: 0 train, 1 validation; {left_out} test images (2) left out",
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
                "test_left_out": left_out,
            },
            "source": {
                "root": str(root.resolve()),
                "images_listed": len(listed),
                "images_used": len(selected),
                "jpgs_without_attributes": len({f for f in on_disk if f.endswith(".jpg")} - set(row_of)),
            },
            "word_counts": _word_count_stats(word_counts, text_length),
            "female": "Female is the absence of CelebA's Male attribute",
            **runinfo.run_info(),
        }
        finalise_dataset(
            out,
            {name: (records[name], {**info, "split": name}) for name in ("train", "val")},
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


# ----------------------------------------------------------------------------- correctness


def word_probabilities(label_probs: np.ndarray) -> np.ndarray:
    """Probabilities of the 19 attribute words from a classifier's 18 label probabilities.

    Male/Female is one binary label (:data:`CELEBA_LABELS` has Male only), so
    p(Female) = 1 − p(Male); the result follows the order of :data:`CELEBA_WORDS`
    without the blank.

    Args:
        label_probs: (N, 18) probabilities in the order of :data:`CELEBA_LABELS`.

    Returns:
        (N, 19) in the order of ``CELEBA_WORDS[:-1]``.
    """
    p = np.asarray(label_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(CELEBA_LABELS):
        raise VLVAEError(f"label probabilities have shape {p.shape}; expected (N, {len(CELEBA_LABELS)})")
    return _labels_to_words(p)


def correctness_paper(probs: np.ndarray, words_present: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """The paper's correctness of texts for images (§5.4; docs/design.md §6, the headline definition).

    The fraction of a text's non-blank words to which the classifier gives the
    image probability > 0.5; word order is ignored. A word repeated in a text
    counts once per occurrence if ``words_present`` holds counts.

    Args:
        probs: (N, 19) word probabilities (see :func:`word_probabilities`).
        words_present: (N, 19) bool, or occurrence counts (see :func:`words_present`).
        empty: the value for a text without any non-blank word (NaN by default,
            so averages must choose how to treat them, e.g. ``np.nanmean``).

    Returns:
        float64 (N,).

    Example:
        >>> p = np.full((1, 19), 0.9); p[0, 0] = 0.2
        >>> w = np.zeros((1, 19), bool); w[0, :2] = True
        >>> correctness_paper(p, w)
        array([0.5])
    """
    p = np.asarray(probs, dtype=np.float64)
    w = np.asarray(words_present).astype(np.float64)
    if p.shape != w.shape or p.ndim != 2:
        raise VLVAEError(f"probabilities {p.shape} and words {w.shape} must both be (N, 19)")
    total = w.sum(axis=1)
    hits = (w * (p > 0.5)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / np.maximum(total, 1), empty)


def correctness_all_labels(label_probs: np.ndarray, label_targets: np.ndarray) -> np.ndarray:
    """Correctness as the authors' code scored it: accuracy over all binary labels (docs/design.md §6).

    Every label counts, present or absent: the prediction (probability > 0.5)
    must equal the target. With the 18 labels of :data:`CELEBA_LABELS` Male/Female
    counts once; pass ``word_probabilities(p)`` and 19 word targets to count it
    twice, as 19 labels.

    Args:
        label_probs: (N, L) probabilities.
        label_targets: (N, L) 0/1 targets.

    Returns:
        float64 (N,).

    Example:
        >>> correctness_all_labels(np.array([[0.9, 0.2, 0.6, 0.4]]), np.array([[1, 0, 0, 1]]))
        array([0.5])
    """
    p = np.asarray(label_probs, dtype=np.float64)
    t = np.asarray(label_targets)
    if p.shape != t.shape or p.ndim != 2:
        raise VLVAEError(f"probabilities {p.shape} and targets {t.shape} must both be (N, labels)")
    return ((p > 0.5) == (t > 0)).mean(axis=1)
