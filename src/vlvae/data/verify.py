"""``vlvae data verify``: check a data set's files, checksums and texts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlvae.data.format import load_images, read_manifest, read_records, read_vocabulary, splits_of
from vlvae.errors import VLVAEError
from vlvae.io import sha256_file

__all__ = ["verify_dataset"]


def verify_dataset(
    root: Path, checksums: bool = True, check_record: Callable[[dict], int] | None = None
) -> dict:
    """Check a finished data set; raise VLVAEError at the first problem.

    Checks: the manifest is a vlvae manifest; every file's sha256 matches it;
    each split's images are uint8 (N, H, W, 3) with N equal to its records and
    H = W = the manifest's size; every word of every text form (``text``, ``texts``, ``words``,
    ``captions``) is in the vocabulary; and the data set's own rule, ``check_record(record)``
    (declared by its package, e.g. that a Two Objects text is true of its scene), which returns
    the number of texts it checked or raises a message.

    Returns:
        A summary: counts per split and the number of texts checked.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if checksums:
        for rel, expected in manifest.get("sha256", {}).items():
            path = root / rel
            if not path.is_file():
                raise VLVAEError(f"{path} is missing; rebuild the data set with --overwrite")
            if sha256_file(path) != expected:
                raise VLVAEError(
                    f"{path} does not match its checksum in manifest.json; it was changed "
                    "or corrupted: rebuild the data set with --overwrite"
                )
    vocab = read_vocabulary(root)
    words = set(vocab.words)
    size = manifest.get("image_size")
    summary = {"counts": {}, "texts_checked": 0}
    for split in splits_of(manifest):
        images = load_images(root, split)
        records = read_records(root, split)
        if len(images) != len(records):
            raise VLVAEError(
                f"{root}/{split} has {len(images)} images but {len(records)} records; "
                "rebuild the data set with --overwrite"
            )
        if images.shape[1:3] != (size, size):
            raise VLVAEError(
                f"{root}/{split}/images.npy is {images.shape[1]}x{images.shape[2]}, "
                f"the manifest says {size}x{size}; rebuild the data set"
            )
        if manifest.get("counts", {}).get(split) != len(records):
            raise VLVAEError(
                f"{root}/{split} holds {len(records)} examples, the manifest says "
                f"{manifest.get('counts', {}).get(split)}; rebuild the data set"
            )
        for i, rec in enumerate(records):
            texts = [*rec.get("texts", []), *rec.get("captions", [])]
            texts += [rec[key] for key in ("text", "words") if key in rec]
            for text in texts:
                bad = [w for w in text if w not in words]
                if bad:
                    raise VLVAEError(
                        f"{split} example {i} uses word(s) {bad} missing from vocab.json; "
                        "rebuild the data set"
                    )
            if check_record is not None:
                try:
                    summary["texts_checked"] += check_record(rec)
                except VLVAEError as exc:
                    raise VLVAEError(f"{split} example {i}: {exc}; rebuild the data set") from None
        summary["counts"][split] = len(records)
    return summary
