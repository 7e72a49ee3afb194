"""A user's folder of images with free captions, made from a Two Objects set: the input of the
measurement of ``vlvae data import`` and ``reproduce --data`` in docs/results.md.

Writes ``OUT/two`` (a Two Objects set), ``OUT/raw/images/*.png`` (its images as PNG files) and
``OUT/raw/captions.csv`` and ``captions.jsonl``: two of each image's true texts written as
sentences ("Small purple metal sphere, left of large yellow metal cube."), plus three bad rows (a
missing file, an empty file, an empty caption) that the import must count and skip.

    python benchmarks/imported_captions.py OUT --n 5000 --size 64
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from vlvae.data.format import load_images, read_records
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects


def sentence(text: list[str]) -> str:
    """A nine-word text as a sentence: ``Small red metal cube, left of large blue rubber sphere.``"""
    return " ".join(text[:4]).capitalize() + f", {text[4]} of " + " ".join(text[5:]) + "."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--n", type=int, default=5000, help="images (train + validation of the Two Objects set)"
    )
    parser.add_argument("--size", type=int, default=64, help="image side")
    args = parser.parse_args()
    settings = TwoObjectsSettings(n=args.n, size=args.size, zoom=1.8, supersample=2, chunk_size=256)
    generate_two_objects(settings, args.out / "two", workers=2, progress=False)
    images = args.out / "raw" / "images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in ("train", "val"):
        for i, (image, record) in enumerate(
            zip(load_images(args.out / "two", split), read_records(args.out / "two", split))
        ):
            name = f"{split}_{i:05d}.png"
            Image.fromarray(np.array(image)).save(images / name)
            rows += [(name, sentence(text)) for text in record["texts"][:2]]
    (images / "empty.png").write_bytes(b"")
    rows += [("missing.png", "a ghost"), ("empty.png", "nothing here"), (rows[0][0], "   ")]
    with open(args.out / "raw" / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    with open(args.out / "raw" / "captions.jsonl", "w") as f:
        f.writelines(json.dumps({"image": name, "caption": caption}) + "\n" for name, caption in rows)
    print(f"{len(rows)} caption rows for {args.n} images in {args.out / 'raw'}")


if __name__ == "__main__":
    main()
