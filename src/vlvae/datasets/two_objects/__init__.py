"""Two Objects (Cremer & Kushman 2018, §4, §5.2): CLEVR-style scenes of two objects with nine-word
texts, rendered by this project's CPU renderer.

The package: CLEVR's scene rules (:mod:`.clevr`, :mod:`.scene`), the renderer (:mod:`.render`), the
generator (:mod:`.build`), the words (:mod:`.words`), the verify rule (:mod:`.verify`), the judge
(:mod:`.judge`) and the command ``vlvae data two-objects`` (:mod:`.cli`).
"""

from __future__ import annotations

from pathlib import Path

from vlvae.datasets import DataSet, Judge
from vlvae.datasets.two_objects import judge
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.datasets.two_objects.cli import data_two_objects
from vlvae.datasets.two_objects.verify import check_record

__all__ = ["DATASET"]


def _build(out: Path, cfg, source: Path | None, workers: int, progress: bool) -> None:
    """``reproduce``'s data step: the data set of ``cfg.data``'s settings."""
    d = cfg.data
    settings = TwoObjectsSettings(
        n=d.n,
        size=d.size,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=d.seed,
        zoom=d.zoom,
        supersample=d.supersample,
    )
    generate_two_objects(settings, out, workers=workers, progress=progress)


DATASET = DataSet(
    name="two_objects",
    title="Two Objects",
    judge=Judge(
        key=judge.JUDGE, title="attribute classifier", train=judge.train_classifier, load=judge.load_judge
    ),
    paper={
        "correctness": {"q_true": 72.75, "q_agg": 87.01, "standard": 65.62, "learned": 83.81},
        "log_p_x_given_y": {"q_true": 75716.48, "q_agg": 75739.79},
        "log_p_x": {"standard": 75715.36, "learned": 75726.15},
        "log_p_y": {"standard": -19.43, "learned": -17.40},
    },
    build=_build,
    check_record=check_record,
    commands={"two-objects": data_two_objects},
    opposite_relations={"right": "left", "left": "right", "front": "behind", "behind": "front"},
    relational_text_slots=9,
    legacy=True,
)
