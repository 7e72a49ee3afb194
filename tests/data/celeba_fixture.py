"""A miniature CelebA download for tests: real file formats, a few dozen small faces.

Import it from tests as ``from celeba_fixture import make_celeba_fixture`` (the
``conftest.py`` beside this file puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["CELEBA_ATTRIBUTE_NAMES", "make_celeba_fixture"]

CELEBA_ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard "
    "Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair "
    "Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def make_celeba_fixture(root: Path, n: int = 40, layout: str = "flat", seed: int = 0) -> dict:
    """Write a CelebA-shaped folder under ``root``.

    Images are 178 × 218 JPEGs named ``000001.jpg``…; ``list_attr_celeba.txt``
    has the count line, the 40 real attribute names (with a trailing space, as
    the real file) and rows of −1/1 with uneven spacing; ``list_eval_partition.txt``
    puts 70 % in train (0), 15 % in val (1) and the rest in test (2), in order.
    Image 3 has every one of the 18 text attributes (a text longer than nine
    words); images alternate Male / not Male.

    Args:
        root: the folder to create.
        n: number of images.
        layout: ``"flat"`` (files directly in ``root``) or ``"official"``
            (``Img/``, ``Anno/``, ``Eval/`` sub-folders).
        seed: seed of pixels and attributes.

    Returns:
        {"root", "filenames", "names", "values" (int8 (n, 40) in {0, 1}), "partition"}.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    sub = {"flat": ("", "", ""), "official": ("Img", "Anno", "Eval")}[layout]
    image_dir, anno_dir, eval_dir = (root / s for s in sub)
    image_dir = image_dir / "img_align_celeba"
    for d in (image_dir, anno_dir, eval_dir):
        d.mkdir(parents=True, exist_ok=True)

    names = CELEBA_ATTRIBUTE_NAMES
    filenames = [f"{i + 1:06d}.jpg" for i in range(n)]
    values = (rng.random((n, len(names))) < 0.25).astype(np.int8)
    values[:, names.index("Male")] = np.arange(n) % 2
    text_labels = [
        "Bushy_Eyebrows",
        "Male",
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
    ]
    if n > 2:
        values[2, [names.index(w) for w in text_labels]] = 1

    for name in filenames:
        coarse = rng.integers(0, 256, size=(11, 9, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((178, 218), Image.Resampling.BILINEAR)
        image.save(image_dir / name, quality=90)

    lines = [f"{n}", " ".join(names) + " "]
    for i, name in enumerate(filenames):
        row = name + " " + " ".join(f"{2 * v - 1:2d}" for v in values[i])
        lines.append(row + ("  " if i % 3 == 0 else "") + ("\t" if i % 5 == 0 else ""))
    (anno_dir / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")

    n_train, n_val = int(0.7 * n), int(0.15 * n)
    partition = {f: 0 if i < n_train else 1 if i < n_train + n_val else 2 for i, f in enumerate(filenames)}
    (eval_dir / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in partition.items()))
    return {
        "root": root,
        "filenames": filenames,
        "names": list(names),
        "values": values,
        "partition": partition,
    }
