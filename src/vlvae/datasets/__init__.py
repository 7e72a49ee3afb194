"""Data sets as plug-ins: one package per data set, and the registry the rest of vlvae reads.

A data set is a package ``vlvae/datasets/<name>/`` whose ``__init__`` defines ``DATASET``, a
:class:`DataSet`, and one name in :data:`_PACKAGES`. The package holds everything particular to
the data set: its builder and CLI command(s), its words and texts, its verify rule, its judge
(the independent classifier that scores generated images: how it is trained and loaded), its
presets and how Table 3 groups its texts. Nothing outside the package branches on its name: the
CLI, the presets, ``reproduce``, ``verify``, evaluation and the web page read the registry
(:func:`get_dataset`, :func:`data_dataset`, :func:`preset`, :func:`verify`, :func:`train_judge`).

Every data set shares the on-disk format (:mod:`vlvae.data.format`) and the way a record holds its
text (:class:`vlvae.data.dataset.ImageTextDataset`): ``text`` (fixed slots), ``words`` (a set
drawn in a random order) or ``captions`` (free texts of variable length with an end word).

Adding a data set: write ``vlvae/datasets/<name>/__init__.py`` defining ``DATASET`` and add
``"<name>"`` to :data:`_PACKAGES`; tests/datasets/test_dataset_registry.py registers one from
outside the package and runs the tiny pipeline on it.

This package sits above :mod:`vlvae.training` (a judge's training uses its task and folder
conventions) and below :mod:`vlvae.evaluation`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from vlvae.config import PRESETS as BASE_PRESETS
from vlvae.config import ClassifierConfig, ExperimentConfig, apply_overrides, validate_config
from vlvae.data.format import check_dataset, read_manifest
from vlvae.data.verify import verify_dataset
from vlvae.errors import VLVAEError
from vlvae.seeds import classifier_seed

__all__ = [
    "DataSet",
    "Judge",
    "dataset_names",
    "get_dataset",
    "manifest_dataset",
    "data_dataset",
    "dataset_title",
    "judge_of",
    "preset",
    "preset_names",
    "verify",
    "train_judge",
    "text_keys",
]

#: The packages of the registered data sets, in the order menus list them.
_PACKAGES = ("two_objects", "celeba", "captions")


def text_keys(texts: Tensor) -> list[tuple[int, ...]]:
    """Table 3's key of each text whose word order matters: its whole word sequence."""
    return [tuple(r) for r in texts.tolist()]


@dataclass(frozen=True)
class Judge:
    """A judge: an independent classifier, trained on a data set's real training images only, that
    scores generated images against texts (docs/design.md §6).

    Attributes:
        key: its registry key: the tag of its weights and the ``judge`` its classifier.json records.
        title: how messages name it.
        train: ``(data, out, cfg, preset_name, resume, progress) -> metrics``: trains it into a
            classifier folder with the config section ``section`` and the seed ``seed(cfg.seed)``.
        load: ``(classifier_dir, vocab) -> (scorer, metrics)``; the scorer's ``score(images, texts)``
            is the correctness in [0, 1] of each pair (``score_all_labels`` too, where it has a
            second definition).
        section: the name of the config section it trains with (``classifier``; the caption
            judge's ``caption_judge``).
        seed: ``run seed -> its seed`` (:mod:`vlvae.seeds`).
    """

    key: str
    title: str
    train: Callable[..., dict]
    load: Callable[..., tuple]
    section: str = "classifier"
    seed: Callable[[int], int] = classifier_seed

    def fit(self, cfg: ExperimentConfig) -> tuple[ClassifierConfig, int]:
        """(settings, seed) it trains with under ``cfg``: what a finished judge must record to stand in."""
        return getattr(cfg, self.section), self.seed(cfg.seed)


@dataclass(frozen=True)
class DataSet:
    """What the rest of vlvae needs to know about one data set.

    Attributes:
        name: the ``dataset`` its manifests record.
        title: the name messages and reports use.
        judge: its judge (:class:`Judge`).
        paper: the paper's validation-set numbers (Tables 1-2): table -> column -> value; empty
            for a data set the paper did not measure.
        presets: its own presets, name -> factory (the shared ``paper``/``cpu``/``quick``/``tiny``
            serve a data set without its own).
        preset_prefix: its presets are ``<prefix>-<scale>``; empty: the shared ones.
        build: ``reproduce``'s data step, ``(out, cfg, source, workers, progress) -> None``; None:
            the data set is made by its own command only and ``reproduce`` takes ``--data``.
        source: what ``reproduce --root`` must point to when ``build`` reads a download (None: no
            download is read).
        check_record: its own verify rule, ``record -> texts checked`` (raises a message).
        commands: CLI commands under ``vlvae data``, name -> typer function.
        ordered_texts: a text is a sequence whose word order matters (Table 3 groups by the exact
            text), not a set of words (grouped by the image's whole set of words).
        blank_word: the word that pads a set of words (None: none).
        opposite_relations: each relation word's opposite, for texts of ``relational_text_slots``
            words read from either object (the web page swaps them); None: no such reading.
        relational_text_slots: the number of slots of a text that relates two objects.
        legacy: the data set of manifests written before manifests recorded theirs.
    """

    name: str
    title: str
    judge: Judge
    paper: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    presets: Mapping[str, Callable[[], ExperimentConfig]] = field(default_factory=dict)
    preset_prefix: str = ""
    build: Callable[..., None] | None = None
    source: str | None = None
    check_record: Callable[[dict], int] | None = None
    commands: Mapping[str, Callable] = field(default_factory=dict)
    ordered_texts: bool = True
    blank_word: str | None = None
    opposite_relations: Mapping[str, str] | None = None
    relational_text_slots: int | None = None
    legacy: bool = False

    def preset_name(self, name: str) -> str:
        """This data set's preset at a scale: ``cpu`` → ``celeba-cpu`` for a data set with the prefix
        ``celeba``; a name that already has the prefix is kept."""
        if not self.preset_prefix or name.startswith(self.preset_prefix):
            return name
        return f"{self.preset_prefix}-{name}"

    def landing_keys(self, dataset, texts=None) -> list[tuple[int, ...]]:
        """Table 3's keys of the first ``len(texts)`` examples of ``dataset`` (all of them without
        ``texts``), ``texts`` being their drawn texts (long, (n, L)).

        Examples with the same key share a conditional aggregate posterior. Ordered texts: the
        exact text. Sets of words: the image's whole set of words, whatever order or subset a text
        drew.
        """
        if self.ordered_texts:
            return text_keys(dataset._texts if texts is None else texts)
        n = len(dataset) if texts is None else len(texts)
        return [tuple(sorted(dataset._words[i])) for i in range(n)]

    def page_layout(self, vocab) -> dict[str, Any]:
        """What the web page needs to lay out the text entry of a vocabulary: ``layout`` (``slots``,
        ``attributes`` or ``free`` text), ``blank`` (the padding word or None),
        ``opposite_relations`` and ``end`` (the end word of free texts, or None)."""
        relational = self.opposite_relations is not None and len(vocab.slots) == self.relational_text_slots
        if vocab.end is not None:
            layout = "free"
        else:
            layout = "slots" if self.ordered_texts else "attributes"
        return {
            "layout": layout,
            "blank": self.blank_word,
            "opposite_relations": dict(self.opposite_relations) if relational else None,
            "end": vocab.end,
        }


def dataset_names() -> tuple[str, ...]:
    """The registered data sets' names."""
    return _PACKAGES


def get_dataset(name: str) -> DataSet:
    """The registered data set called ``name``; one clear line if there is none."""
    if name not in _PACKAGES:
        raise VLVAEError(f"unknown data set {name!r}; the known data sets are {', '.join(_PACKAGES)}")
    return importlib.import_module(f"vlvae.datasets.{name}").DATASET


def manifest_dataset(manifest: Mapping[str, Any]) -> str:
    """The data set a data folder's manifest records (the legacy data set when it records none)."""
    if manifest.get("dataset"):
        return manifest["dataset"]
    return next(name for name in _PACKAGES if get_dataset(name).legacy)


def data_dataset(data: Path) -> DataSet:
    """The data set in data folder ``data`` (from its manifest)."""
    return get_dataset(manifest_dataset(read_manifest(Path(data))))


def dataset_title(name: str | None) -> str:
    """The title of data set ``name`` for messages (an unknown name as it is)."""
    return get_dataset(name).title if name in _PACKAGES else str(name)


def judge_of(key: str) -> Judge:
    """The judge registered under ``key`` by one of the data sets."""
    judges = {get_dataset(name).judge.key: get_dataset(name).judge for name in _PACKAGES}
    if key not in judges:
        raise VLVAEError(f"unknown judge {key!r}; the registered judges are {', '.join(judges)}")
    return judges[key]


def _all_presets() -> dict[str, Callable[[], ExperimentConfig]]:
    presets = dict(BASE_PRESETS)
    for name in _PACKAGES:
        presets.update(get_dataset(name).presets)
    return presets


def preset_names() -> tuple[str, ...]:
    """Every preset: the shared ones and each data set's own."""
    return tuple(_all_presets())


def preset(name: str, dataset: DataSet | None = None) -> ExperimentConfig:
    """A fresh, validated copy of preset ``name``; with ``dataset``, that data set's preset of the
    scale ``name`` names (``cpu`` → ``celeba-cpu`` for CelebA)."""
    if dataset is not None:
        name = dataset.preset_name(name)
    presets = _all_presets()
    if name not in presets:
        raise VLVAEError(f"unknown preset {name!r}; choose one of {', '.join(presets)}")
    return validate_config(presets[name]())


def verify(root: Path, checksums: bool = True) -> dict:
    """``vlvae data verify``: the format's checks and the data set's own rule
    (:func:`vlvae.data.verify.verify_dataset`)."""
    return verify_dataset(root, checksums, data_dataset(root).check_record)


def train_judge(
    data: Path,
    out: Path,
    preset_name: str = "cpu",
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the judge of the data set in ``data`` into classifier folder ``out``, with the
    ``classifier`` section (the caption judge: ``caption_judge``) of the data set's preset of scale
    ``preset_name`` and ``overrides``."""
    dataset = data_dataset(data)
    name = dataset.preset_name(preset_name)
    cfg = apply_overrides(preset(name), list(overrides))
    check_dataset(data)  # the whole data set, before the classifier folder is written
    return dataset.judge.train(Path(data), Path(out), cfg, name, resume, progress)
