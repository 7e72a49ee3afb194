"""``vlvae data import``: your own images and captions as a vlvae data set."""

from __future__ import annotations

from pathlib import Path

import typer

from vlvae.datasets.captions.build import import_captions
from vlvae.paths import PATH_OPTION

__all__ = ["data_import"]


def data_import(
    images: Path = typer.Option(
        ..., help="Folder of your images (any size and mode; PNG, JPEG, ...).", **PATH_OPTION
    ),
    captions: Path = typer.Option(
        ...,
        help="Captions file: CSV with columns image,caption (more columns: labelled attributes) "
        'or JSON lines {"image": ..., "caption": ...}; several captions per image allowed.',
        **PATH_OPTION,
    ),
    out: Path = typer.Option(
        ..., help="Folder to write the data set to (created; resumed if unfinished).", **PATH_OPTION
    ),
    size: int = typer.Option(64, help="Image side after the centre crop and resize (at least 8)."),
    min_count: int = typer.Option(
        1, help="Words seen fewer times in the training captions become the unknown word <unk>."
    ),
    max_words: int = typer.Option(16, help="Longest caption kept, in words (longer ones are cut)."),
    val: float = typer.Option(0.05, help="Fraction of the images held out for validation."),
    test: float = typer.Option(0.05, help="Fraction of the images held out as the test split."),
    seed: int = typer.Option(0, help="Seed of the split: the same seed gives identical bytes."),
    strict: bool = typer.Option(False, help="Refuse the import if any image or caption is bad."),
    overwrite: bool = typer.Option(False, help="Rebuild even if a finished data set is there."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Import a folder of images and a file of captions (split by image into train/val/test)."""
    manifest = import_captions(
        images,
        captions,
        out,
        size=size,
        min_count=min_count,
        max_words=max_words,
        val=val,
        test=test,
        seed=seed,
        strict=strict,
        overwrite=overwrite,
        progress=progress,
    )
    typer.echo(f"data set ready in {out} ({manifest['counts']})")
