"""One description per data set: what the rest of the package asks of a data set, in one place.

Each data set (Two Objects, CelebA) is a :class:`DatasetSpec` in :data:`DATASETS`: its name and
title, the paper's numbers, its judge (the classifier that scores generated images), how Table 3
groups its texts, how the web page lays out its text entry, and how its presets are named. Code
that used to branch on a data set's name looks the spec up instead (:func:`dataset_spec`,
:func:`data_spec`).

A spec names its judge by a registry key (:attr:`DatasetSpec.judge`); the floors above look the
key up: training trains it (:data:`vlvae.training.judges.TRAINERS`), evaluation loads it
(:data:`vlvae.evaluation.judge.JUDGES`). This module imports neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from vlvae.data.format import read_manifest
from vlvae.errors import VLVAEError

__all__ = [
    "DEFAULT_DATASET",
    "DATASETS",
    "DatasetSpec",
    "text_keys",
    "data_spec",
    "dataset_spec",
    "dataset_title",
    "manifest_dataset",
]

#: The data set of a manifest without a ``dataset`` key (written before the key existed).
DEFAULT_DATASET = "two_objects"


def text_keys(texts: Tensor) -> list[tuple[int, ...]]:
    """The key a Two Objects text's conditional aggregate is grouped by (Table 3): its whole word
    sequence (which word goes with which object matters). CelebA groups by each face's set of words
    instead (:meth:`DatasetSpec.landing_keys`)."""
    return [tuple(r) for r in texts.tolist()]


@dataclass(frozen=True)
class DatasetSpec:
    """What the package needs to know about one data set.

    Attributes:
        name: the ``dataset`` a data folder's manifest records (``two_objects``, ``celeba``).
        title: the name messages and reports use (``Two Objects``, ``CelebA``).
        paper: the paper's validation-set numbers (Tables 1-2): table -> column -> value.
        judge: the registry key of its judge, the classifier that scores generated images: training
            trains it on the data set's real training images (:mod:`vlvae.training.judges`),
            evaluation loads it (:mod:`vlvae.evaluation.judge`). It is also the tag of the judge's
            weights and what its ``classifier.json`` records as ``judge`` (``kind`` in CelebA
            classifier folders written before; Two Objects ones recorded none).
        ordered_texts: a text is a sequence of slots whose order matters (Two Objects), not a
            set of words padded with a blank word (CelebA).
        blank_word: the word that pads a text (None: texts are not padded).
        opposite_relations: each relation word's opposite, for texts of
            ``relational_text_slots`` words: such a text read from its other object
            ("O2 R' O1") describes the same scene. None: no such reading.
        relational_text_slots: the number of slots of a text that relates two objects.
        preset_prefix: its presets are ``<prefix>-<scale>`` (``celeba-cpu``); empty: the
            presets of a scale are named by the scale alone.
    """

    name: str
    title: str
    paper: Mapping[str, Mapping[str, float]]
    judge: str
    ordered_texts: bool = True
    blank_word: str | None = None
    opposite_relations: Mapping[str, str] | None = None
    relational_text_slots: int | None = None
    preset_prefix: str = ""

    def preset_name(self, name: str) -> str:
        """The preset of this data set at a scale: ``cpu`` → ``celeba-cpu`` for CelebA; a name that
        already has the prefix is kept."""
        if not self.preset_prefix or name.startswith(self.preset_prefix):
            return name
        return f"{self.preset_prefix}-{name}"

    def landing_keys(self, dataset, texts=None) -> list[tuple[int, ...]]:
        """Table 3's keys of the first ``len(texts)`` examples of ``dataset`` (all of them without
        ``texts``), ``texts`` being their drawn texts (long, (n, L)).

        Examples with the same key share a conditional aggregate posterior. Ordered texts: the
        exact text (which word goes with which object matters). Sets of words: the image's whole
        set of words, whatever order or subset a text drew.

        Args:
            dataset: a :class:`vlvae.data.dataset.ImageTextDataset` of this data set.
            texts: the drawn texts of its first examples, or None for every example.
        """
        if self.ordered_texts:
            return text_keys(dataset._texts if texts is None else texts)
        n = len(dataset) if texts is None else len(texts)
        return [tuple(sorted(dataset._words[i])) for i in range(n)]

    def page_layout(self, vocab) -> dict[str, Any]:
        """What the web page needs to lay out the text entry of a vocabulary: ``layout`` (``slots``
        or ``attributes``), ``blank`` (the padding word or None) and ``opposite_relations``."""
        relational = self.opposite_relations is not None and len(vocab.slots) == self.relational_text_slots
        return {
            "layout": "slots" if self.ordered_texts else "attributes",
            "blank": self.blank_word,
            "opposite_relations": dict(self.opposite_relations) if relational else None,
        }


TWO_OBJECTS = DatasetSpec(
    name="two_objects",
    title="Two Objects",
    paper={
        "correctness": {"q_true": 72.75, "q_agg": 87.01, "standard": 65.62, "learned": 83.81},
        "log_p_x_given_y": {"q_true": 75716.48, "q_agg": 75739.79},
        "log_p_x": {"standard": 75715.36, "learned": 75726.15},
        "log_p_y": {"standard": -19.43, "learned": -17.40},
    },
    judge="attribute_classifier",
    opposite_relations={"right": "left", "left": "right", "front": "behind", "behind": "front"},
    relational_text_slots=9,
)

CELEBA = DatasetSpec(
    name="celeba",
    title="CelebA",
    paper={
        "correctness": {"q_true": 80.83, "q_agg": 80.32, "standard": 80.25, "learned": 81.14},
        "log_p_x_given_y": {"q_true": -6776.27, "q_agg": -6637.08},
        "log_p_x": {"standard": -6686.31, "learned": -6636.30},
        "log_p_y": {"standard": -53.44, "learned": -11.78},
    },
    judge="celeba_classifier",
    ordered_texts=False,
    blank_word="-",
    preset_prefix="celeba",
)

#: Every data set, by the name its manifests record.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (TWO_OBJECTS, CELEBA)}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of data set ``name``.

    Raises:
        VLVAEError: an unknown name (the message lists the known data sets).
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise VLVAEError(
            f"unknown data set {name!r}; the known data sets are {', '.join(DATASETS)}"
        ) from None


def dataset_title(name: str) -> str:
    """The title of data set ``name`` for messages (an unknown name as it is)."""
    return DATASETS[name].title if name in DATASETS else name


def manifest_dataset(manifest: Mapping[str, Any]) -> str:
    """The data set a data folder's manifest records (:data:`DEFAULT_DATASET` when it records none)."""
    return manifest.get("dataset", DEFAULT_DATASET)


def data_spec(data: Path) -> DatasetSpec:
    """The spec of the data set in data folder ``data`` (from its manifest)."""
    return dataset_spec(manifest_dataset(read_manifest(Path(data))))
