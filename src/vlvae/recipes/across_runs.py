"""``vlvae figure runs``: the same texts through several runs (e.g. the ``quick``, ``cpu`` and
``cpu-long`` presets), so a reader sees what more compute buys (:func:`vlvae.evaluation.figures.
figure_across_runs`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vlvae.archive import open_inference
from vlvae.errors import VLVAEError
from vlvae.evaluation.figures import figure_across_runs
from vlvae.inference import MissingStage

__all__ = ["KINDS", "parse_labelled_runs", "run_across_runs"]

#: What each run shows per example, in this order: its reconstruction, then one sample of each
#: text posterior (a run without that stage shows the others).
KINDS = ("reconstruction", "q_agg", "q_true")
_POSTERIOR_OF = {"q_agg": "agg", "q_true": "true"}


def parse_labelled_runs(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=RUN`` items (a bare ``RUN`` is labelled by its folder's parent, e.g. ``runs/cpu/run``
    -> ``cpu``) as (label, path) pairs; refused: no run, a repeated label."""
    pairs = []
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            path = item
            label = Path(item).resolve().parent.name if Path(item).name == "run" else Path(item).name
        if not label or not path:
            raise VLVAEError(f"--run {item!r}: give LABEL=RUN_FOLDER (e.g. cpu=runs/cpu/run) or a run folder")
        pairs.append((label, Path(path)))
    labels = [label for label, _ in pairs]
    if not pairs:
        raise VLVAEError("give at least one --run LABEL=RUN_FOLDER")
    if len(set(labels)) != len(labels):
        raise VLVAEError(f"--run labels must differ, got {labels}; name them with LABEL=RUN_FOLDER")
    return pairs


def _floats(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


@torch.no_grad()
def run_across_runs(
    runs: list[tuple[str, Path]],
    out: Path,
    classifier: Path | None = None,
    n: int = 4,
    seed: int = 0,
    device: str = "cpu",
) -> Path:
    """Draw validation examples ``0 … n − 1`` of the first run's data through every run.

    Args:
        runs: (label, run folder or archive) pairs, drawn in this order; the runs must read images of one size
            and texts of one vocabulary (the same data set at different scales).
        out: the PNG to write.
        classifier: one judge for every run (so their correctness is comparable); without it the
            captions are the texts decoded from the same z.
        n: examples (rows).
        seed: the seed of every sample (each run's q_Agg and q_True draw with it).
        device: where the models run.

    Returns:
        ``out``.
    """
    if not 1 <= n <= 16:
        raise VLVAEError(f"--n must be between 1 and 16 examples, got {n}")
    opened = {label: open_inference(path, classifier, device) for label, path in runs}
    first = next(iter(opened.values()))
    for label, inference in opened.items():
        if inference.image_size != first.image_size or inference.vocab.words != first.vocab.words:
            raise VLVAEError(
                f"run {label!r} reads {inference.image_size}-pixel images and its own vocabulary; a figure "
                f"across runs needs runs of one data set (the first reads {first.image_size}-pixel images)"
            )
    n = min(n, first.validation_count())
    examples = [first.validation_example(i) for i in range(n)]
    x = _floats(np.stack([image for image, _ in examples]))
    y = torch.stack([first.encode_text(text) for _, text in examples])
    drawn: dict[str, dict] = {}
    for label, inference in opened.items():
        rec = inference.reconstruct(x)
        rec_images = _floats(rec.images)
        kinds = {"reconstruction": (rec_images, rec.texts, inference.correctness(rec_images, y))}
        for kind in KINDS[1:]:
            try:
                samples = [inference.from_text(y[i], _POSTERIOR_OF[kind], n=1, seed=seed) for i in range(n)]
            except MissingStage:
                continue
            images = _floats(np.concatenate([s.images for s in samples]))
            scores = (
                None if samples[0].correctness is None else np.concatenate([s.correctness for s in samples])
            )
            kinds[kind] = (images, [s.texts[0] for s in samples], scores)
        drawn[label] = kinds
    return figure_across_runs(x, y, first.vocab, drawn, Path(out))
