"""The on-disk format shared by every vlvae data set (Two Objects, CelebA).

Layout of a data set folder ``DIR``::

    DIR/manifest.json        counts, image size, seed, settings, versions, sha256 of each array;
                             written last, so its presence means the set is complete
    DIR/vocab.json           the ordered word list, overall and per slot
    DIR/train/images.npy     uint8 (N, H, W, 3), readable with numpy.load(..., mmap_mode="r")
    DIR/train/scenes.json    {"info": {...}, "scenes": [...]}: record i describes image i
    DIR/val/images.npy, DIR/val/scenes.json   the same for the validation split
    DIR/.partial/            work in progress of an unfinished build (removed when done)

Every file is written to a temporary name in the same folder and then renamed
(:func:`vlvae.io.atomic_path`), so an interrupted write never leaves a truncated file under a
final name. The generic I/O helpers are :mod:`vlvae.io`'s; this module holds the data-set format.

:func:`check_dataset` checks that a finished data set is whole (the manifest's image size, every
split's images against its records and the manifest, every record's text) with one line per
problem; every command that trains on a data set calls it before it writes anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json, canonical_sha256, open_npy_for_writing, read_json, sha256_file
from vlvae.paths import check_output_dir

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SPLITS",
    "OPTIONAL_SPLITS",
    "splits_of",
    "record_words",
    "DATASET_FOLDERS",
    "read_manifest",
    "manifest_image_size",
    "check_dataset",
    "read_vocabulary",
    "read_records",
    "load_images",
    "prepare_output_folder",
    "vocabulary_sha256",
    "assemble_images",
    "finalise_dataset",
]

FORMAT_NAME = "vlvae-dataset"
FORMAT_VERSION = 1
SPLITS = ("train", "val")
#: Splits a data set may have besides :data:`SPLITS`: ``test``, which nothing trains, stops or tunes on.
OPTIONAL_SPLITS = ("test",)
PARTIAL = ".partial"
#: The folders of a data set that hold files written through :func:`vlvae.io.atomic_path`.
DATASET_FOLDERS = ("", *SPLITS, *OPTIONAL_SPLITS, PARTIAL)


def splits_of(manifest: dict) -> tuple[str, ...]:
    """The splits a finished data set holds: :data:`SPLITS` and those of :data:`OPTIONAL_SPLITS` its
    manifest counts."""
    counts = manifest.get("counts", {})
    return SPLITS + tuple(s for s in OPTIONAL_SPLITS if s in counts)


def record_words(record: dict) -> list[str]:
    """The words of a record's stored text, whatever its text form: its ``text``, its ``words``, or
    its first caption."""
    return list(record.get("text") or record.get("words") or (record.get("captions") or [[]])[0])


def read_manifest(root: Path) -> dict:
    """The manifest of a finished data set, checked to be a vlvae data set."""
    root = Path(root)
    if not root.is_dir():
        raise VLVAEError(
            f"data folder {root} does not exist; make one with `vlvae data two-objects --out {root}`"
        )
    manifest = read_json(
        root / "manifest.json",
        f"{root} is not a finished vlvae data set; build it with `vlvae data two-objects --out {root}`",
    )
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise VLVAEError(f"{root}/manifest.json is not a vlvae data-set manifest; rebuild the data set")
    return manifest


#: The keys a record may hold its text under (:data:`vlvae.data.dataset.TEXT_FORMS`): one text of
#: fixed slots, a set of words, or (the last) a list of free texts.
TEXT_KEYS = ("text", "words", "captions")


def manifest_image_size(manifest: dict, root: Path) -> int:
    """The side of a data set's images, as its manifest records it: a positive integer, or one line."""
    size = manifest.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        what = "has no image_size" if size is None else f"has image_size {size!r}, not a positive integer"
        raise VLVAEError(f"{Path(root) / 'manifest.json'} {what}; rebuild the data set")
    return size


def _text_problem(record, vocab: Vocabulary | None) -> str | None:
    """Why a record holds no usable text (None: it does)."""
    if not isinstance(record, dict):
        return f"is a {type(record).__name__}, not a record"
    key = next((k for k in TEXT_KEYS if k in record), None)
    if key is None:
        return f"has no text (none of {', '.join(TEXT_KEYS)})"
    texts = record[key] if key == TEXT_KEYS[-1] else [record[key]]  # the last holds several texts
    if not isinstance(texts, list) or not texts:
        return f"has an empty or malformed {key!r}"
    for text in texts:
        # a set of words may be empty (padded with the blank word); a text of fixed slots may not
        if (
            not isinstance(text, list)
            or not all(isinstance(w, str) for w in text)
            or (key == "text" and not text)
        ):
            return f"has a {key!r} that is not a {'non-empty ' if key == 'text' else ''}list of words"
        if vocab is not None and vocab.end is None:
            unknown = vocab.unknown_words(text)
            if unknown:
                return f"has words not in vocab.json ({', '.join(map(repr, unknown[:3]))})"
    return None


def check_dataset(root: Path) -> dict:
    """Check that a finished data set is whole before a command writes anything from it.

    Checked: the manifest (:func:`read_manifest`) and its image size; vocab.json; for every split,
    that ``images.npy`` holds uint8 (N, S, S, 3) images of the manifest's side S, as many as the
    manifest counts and as ``scenes.json`` has records; that every record has a text
    (``text``, ``words`` or ``captions``) of known words, and texts of fixed slots all one length.

    Returns:
        The manifest.

    Raises:
        VLVAEError: one line naming the file, the problem and the fix (rebuild the data set).
    """
    root = Path(root)
    manifest = read_manifest(root)
    size = manifest_image_size(manifest, root)
    vocab = read_vocabulary(root)
    counts = manifest.get("counts")
    for split in splits_of(manifest):
        images = load_images(root, split)
        path = root / split / "images.npy"
        if tuple(images.shape[1:3]) != (size, size):
            raise VLVAEError(
                f"{path} holds {images.shape[1]} x {images.shape[2]} images, but {root}/manifest.json "
                f"says {size} x {size}; rebuild the data set"
            )
        if isinstance(counts, dict) and split in counts and counts[split] != len(images):
            raise VLVAEError(
                f"{path} holds {len(images)} images, but {root}/manifest.json counts {counts[split]!r}; "
                "rebuild the data set"
            )
        records = read_records(root, split)
        if len(records) != len(images):
            raise VLVAEError(
                f"{root}/{split} has {len(images)} images but {len(records)} records in scenes.json; "
                "rebuild the data set"
            )
        lengths = set()
        for i, record in enumerate(records):
            problem = _text_problem(record, vocab)
            if problem:
                raise VLVAEError(f"{root}/{split}/scenes.json: scene {i} {problem}; rebuild the data set")
            if "text" in record:
                lengths.add(len(record["text"]))
        if len(lengths) > 1:
            raise VLVAEError(
                f"{root}/{split}/scenes.json holds texts of {sorted(lengths)} words; texts of fixed slots "
                "all have one length; rebuild the data set"
            )
    return manifest


def vocabulary_sha256(root: Path) -> str:
    """sha256 of a data set's vocab.json in canonical JSON (sorted keys, no spaces): its vocabulary's
    identity."""
    return canonical_sha256(read_json(Path(root) / "vocab.json", "rebuild the data set"))


def read_vocabulary(root: Path) -> Vocabulary:
    return Vocabulary.from_json(read_json(Path(root) / "vocab.json", "rebuild the data set"))


def read_records(root: Path, split: str) -> list[dict]:
    """The per-image records (``scenes``) of a split."""
    obj = read_json(Path(root) / split / "scenes.json", "rebuild the data set")
    if not isinstance(obj, dict) or not isinstance(obj.get("scenes"), list):
        raise VLVAEError(f"{root}/{split}/scenes.json has no 'scenes' list; rebuild the data set")
    return obj["scenes"]


def load_images(root: Path, split: str) -> np.ndarray:
    """Memory-mapped uint8 images (N, H, W, 3) of a split."""
    path = Path(root) / split / "images.npy"
    if not path.is_file():
        raise VLVAEError(f"{path} is missing; rebuild the data set")
    try:
        images = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise VLVAEError(f"{path} is corrupt ({exc}); rebuild the data set with --overwrite") from exc
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise VLVAEError(
            f"{path} holds {images.dtype} {images.shape}, not uint8 (N, H, W, 3); rebuild the data set"
        )
    return images


def prepare_output_folder(out: Path, settings: dict, overwrite: bool, command: str) -> tuple[Path, bool]:
    """Decide what to do with an output folder before anything is written.

    Args:
        out: the data-set folder.
        settings: everything that determines the data's bytes.
        overwrite: rebuild even if a finished set with these settings exists.
        command: the command that builds it, for messages.

    Returns:
        (partial_dir, already_done). ``already_done`` is True when a finished set
        with the same settings is there and ``overwrite`` is False.

    Call it while holding the folder's lock (:func:`vlvae.locking.folder_lock`).

    Raises:
        VLVAEError: the folder is unwritable, foreign, or holds a set (finished or
            not) with other settings and ``overwrite`` is False.
    """
    out = check_output_dir(out, "data-set folder")
    partial = out / PARTIAL
    manifest_path = out / "manifest.json"
    ours = {"manifest.json", "vocab.json", *SPLITS, *OPTIONAL_SPLITS, PARTIAL}
    foreign = [p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")]
    if foreign:
        raise VLVAEError(
            f"{out} holds files that are not a vlvae data set ({', '.join(sorted(foreign)[:3])}); "
            "choose an empty or new --out folder"
        )
    if manifest_path.exists():
        manifest = read_json(manifest_path, "remove the folder or pass --overwrite")
        if not overwrite:
            if manifest.get("settings") == settings:
                return partial, True
            raise VLVAEError(
                f"{out} holds a data set built with other settings; pass --overwrite to replace it "
                "or choose another --out"
            )
    partial_settings = partial / "settings.json"
    if partial_settings.exists():
        previous = read_json(partial_settings, f"remove {partial} to start again")
        if previous != settings:
            if not overwrite:
                raise VLVAEError(
                    f"{out} holds an unfinished build with other settings; rerun `{command}` with the "
                    "same options to resume it, or pass --overwrite to start afresh"
                )
            shutil.rmtree(partial)
    partial.mkdir(exist_ok=True)
    atomic_write_json(partial_settings, settings)
    return partial, False


def assemble_images(
    out: Path, split: str, chunks: list[tuple[Path, int, int]], lo: int, hi: int, size: int
) -> None:
    """Copy rows [lo, hi) of a chunked image sequence into ``out/split/images.npy``.

    Args:
        out: the data-set folder.
        split: ``train``, ``val`` or ``test``.
        chunks: (path of a uint8 (stop - start, size, size, 3) .npy, start, stop) in sequence order.
        lo, hi: the rows of the whole sequence that form this split.
        size: image side.

    A finished set's manifest is removed first, so that it never outlives the
    arrays it describes (``--overwrite``); :func:`finalise_dataset` writes the new one.
    """
    out = Path(out)
    (out / "manifest.json").unlink(missing_ok=True)
    (out / split).mkdir(exist_ok=True)
    array, commit = open_npy_for_writing(out / split / "images.npy", (hi - lo, size, size, 3))
    for path, start, stop in chunks:
        a, b = max(start, lo), min(stop, hi)
        if a >= b:
            continue
        try:
            chunk = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VLVAEError(
                f"{path} is corrupt ({exc}); delete it and rerun to make that chunk again"
            ) from exc
        if chunk.shape != (stop - start, size, size, 3) or chunk.dtype != np.uint8:
            raise VLVAEError(
                f"{path} has the wrong shape {chunk.shape}; delete it and rerun to make it again"
            )
        array[a - lo : b - lo] = chunk[a - start : b - start]
    commit()


def finalise_dataset(
    out: Path,
    splits: dict[str, tuple[list[dict], dict]],
    vocabulary: Vocabulary,
    manifest: dict,
) -> None:
    """Write the final files of a data set and remove the partial work.

    Args:
        out: the data-set folder, whose ``split/images.npy`` are already written
            (:func:`assemble_images`).
        splits: split -> (records, info for scenes.json).
        vocabulary: written to vocab.json.
        manifest: extra manifest fields (settings, seed, counts...); format,
            checksums and counts are added here.
    """
    out = Path(out)
    # The manifest goes first so that a crash in between leaves an unfinished set, never a wrong one.
    (out / "manifest.json").unlink(missing_ok=True)
    checksums, counts = {}, {}
    for split, (records, info) in splits.items():
        atomic_write_json(out / split / "scenes.json", {"info": info, "scenes": records})
        for name in ("images.npy", "scenes.json"):
            checksums[f"{split}/{name}"] = sha256_file(out / split / name)
        counts[split] = len(records)
    atomic_write_json(out / "vocab.json", vocabulary.to_json())
    checksums["vocab.json"] = sha256_file(out / "vocab.json")
    full = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **manifest,
        "counts": counts,
        "sha256": checksums,
    }
    atomic_write_json(out / "manifest.json", full)
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
