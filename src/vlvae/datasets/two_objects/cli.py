"""``vlvae data two-objects``: generate the Two Objects data set."""

from __future__ import annotations

from pathlib import Path

import typer

from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.paths import PATH_OPTION

__all__ = ["data_two_objects"]


def _words(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(w.strip() for w in value.split(",") if w.strip())


def data_two_objects(
    out: Path = typer.Option(
        ..., help="Folder to write the data set to (created; resumed if unfinished).", **PATH_OPTION
    ),
    n: int = typer.Option(100_000, help="Image-text pairs in total (train + validation)."),
    size: int = typer.Option(112, help="Image height and width in pixels (at least 16)."),
    val_fraction: float = typer.Option(0.1, help="Fraction held out for validation."),
    test_fraction: float = typer.Option(
        0.1,
        help="Test pairs, as a fraction of --n, drawn besides the --n train and validation pairs: "
        "nothing trains, stops or tunes on them; the tables score them.",
    ),
    seed: int = typer.Option(0, help="Random seed: the same seed gives identical bytes."),
    workers: int = typer.Option(2, help="Rendering processes (use one per core)."),
    objects: int = typer.Option(2, help="Objects per image: 2, or 1 for the paper's Fig. 1 variant."),
    colours: str | None = typer.Option(
        None, help="Comma-separated colours (default: CLEVR's 8; blue,red with --objects 1)."
    ),
    sizes: str | None = typer.Option(None, help="Comma-separated sizes (default: small,large)."),
    zoom: float = typer.Option(
        1.0,
        help="Camera zoom (focal-length multiplier); >1 keeps objects "
        "legible at low resolution. Recorded in the manifest.",
    ),
    supersample: int = typer.Option(2, help="Anti-aliasing: s x s samples per pixel."),
    overwrite: bool = typer.Option(False, help="Rebuild even if a finished data set is there."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Generate the Two Objects (CLEVR-style) data set with this project's fast CPU renderer."""
    kwargs = dict(
        n=n,
        size=size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        zoom=zoom,
        supersample=supersample,
    )
    if _words(colours) is not None:
        kwargs["colours"] = _words(colours)
    if _words(sizes) is not None:
        kwargs["sizes"] = _words(sizes)
    if objects == 1:
        settings = TwoObjectsSettings.one_object(**kwargs)
    else:
        settings = TwoObjectsSettings(objects=objects, **kwargs)
    generate_two_objects(settings, out, workers=workers, overwrite=overwrite, progress=progress)
    typer.echo(f"data set ready in {out} ({settings.n - settings.n_val} train, {settings.n_val} val)")
