"""``vlvae data celeba``: prepare CelebA from the user's download."""

from __future__ import annotations

from pathlib import Path

import typer

from vlvae.datasets.celeba.build import build_celeba
from vlvae.paths import PATH_OPTION

__all__ = ["data_celeba"]


def data_celeba(
    root: Path = typer.Option(
        ...,
        help="Your CelebA download: img_align_celeba/, list_attr_celeba.txt, "
        "list_eval_partition.txt (or the Img/, Anno/, Eval/ sub-folders).",
        **PATH_OPTION,
    ),
    out: Path = typer.Option(
        ..., help="Folder to write the data set to (created; resumed if unfinished).", **PATH_OPTION
    ),
    size: int = typer.Option(64, help="Image size after the 128 x 128 crop (64 = 2 x 2 average pooling)."),
    split: str = typer.Option(
        "paper",
        help="paper (first 180,000 train, rest validation) or official "
        "(CelebA's partition file: train / val; test left out).",
    ),
    workers: int = typer.Option(2, help="JPEG decoding processes."),
    limit: int | None = typer.Option(None, help="Use only the first N images (for trials)."),
    seed: int = typer.Option(0, help="Seed of the stored shuffled texts."),
    overwrite: bool = typer.Option(False, help="Rebuild even if a finished data set is there."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Prepare CelebA (docs/design.md §1.2): cropped 64 x 64 faces, attributes as shuffled words."""
    build_celeba(
        root,
        out,
        size=size,
        split=split,
        workers=workers,
        overwrite=overwrite,
        progress=progress,
        limit=limit,
        seed=seed,
    )
    typer.echo(f"data set ready in {out}")
