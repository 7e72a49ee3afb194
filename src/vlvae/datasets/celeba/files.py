"""The parts of a CelebA download: where they are, and the attribute and partition files read.

A user downloads CelebA themselves (docs/design.md §1.2). This module finds its parts under the
folder they name, flat or in the download's ``Img/``, ``Anno/`` and ``Eval/`` sub-folders
(:func:`find_celeba_files`), and reads ``list_attr_celeba.txt`` (:func:`read_attributes`) and
``list_eval_partition.txt`` (:func:`read_partition`), with an error that says how to fix the
download for every way a file can be missing or malformed.

References:
    CelebA: Deep Learning Face Attributes in the Wild, Liu et al. 2015,
    https://arxiv.org/abs/1411.7766 (the data set and its file formats).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlvae.errors import VLVAEError

__all__ = ["CelebAFiles", "find_celeba_files", "read_attributes", "read_partition"]

_IMAGE_DIR = "img_align_celeba"
_ATTR_FILE = "list_attr_celeba.txt"
_PARTITION_FILE = "list_eval_partition.txt"
_LAYOUT_HELP = (
    f"expected {_IMAGE_DIR}/*.jpg, {_ATTR_FILE} and {_PARTITION_FILE} directly in the folder, "
    f"or under Img/, Anno/ and Eval/ as CelebA's download has them"
)


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
