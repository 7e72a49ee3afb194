"""CelebA (Liu et al. 2015) as image–text pairs (Cremer & Kushman 2018, §5.2): aligned faces with
their attributes written as shuffled words, read from the user's download.

The package: the builder (:mod:`.build`), the presets (:mod:`.presets`), the judge, an 18-label
classifier (:mod:`.judge`), and the command ``vlvae data celeba`` (:mod:`.cli`).
"""

from __future__ import annotations

from pathlib import Path

from vlvae.data.dataset import BLANK_WORD
from vlvae.datasets import DataSet, Judge
from vlvae.datasets.celeba import judge
from vlvae.datasets.celeba.build import CELEBA_TOTAL, build_celeba
from vlvae.datasets.celeba.cli import data_celeba
from vlvae.datasets.celeba.presets import PRESETS

__all__ = ["DATASET"]


def _build(out: Path, cfg, source: Path | None, workers: int, progress: bool) -> None:
    """``reproduce``'s data step: the first ``cfg.data.n`` faces of the download ``source``."""
    build_celeba(
        Path(source),
        out,
        size=cfg.data.size,
        split="paper",
        workers=workers,
        progress=progress,
        limit=cfg.data.n if cfg.data.n < CELEBA_TOTAL else None,
    )


DATASET = DataSet(
    name="celeba",
    title="CelebA",
    judge=Judge(
        key=judge.JUDGE, title="CelebA classifier", train=judge.train_celeba_classifier, load=judge.load_judge
    ),
    paper={
        "correctness": {"q_true": 80.83, "q_agg": 80.32, "standard": 80.25, "learned": 81.14},
        "log_p_x_given_y": {"q_true": -6776.27, "q_agg": -6637.08},
        "log_p_x": {"standard": -6686.31, "learned": -6636.30},
        "log_p_y": {"standard": -53.44, "learned": -11.78},
    },
    presets=PRESETS,
    preset_prefix="celeba",
    build=_build,
    source="your CelebA download (img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt)",
    commands={"celeba": data_celeba},
    ordered_texts=False,
    blank_word=BLANK_WORD,
)
