"""The judges in evaluation: loading the judge of a data set, and checking that a classifier fits.

A judge is an independent classifier, trained on a data set's real training images only, that
scores generated images against texts. Each data set's package declares its judge
(:class:`vlvae.datasets.Judge`: how it is trained and loaded); :func:`load_judge` loads the one a
key names, :func:`check_classifier_fits` checks that a classifier folder judges images like those
of a data set.

A classifier folder holds ``classifier.json`` (what it is made from: data folder and data set, image
size, vocabulary sha256, settings, its judge; a folder holding another is refused), ``weights.safetensors``,
``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

from vlvae.data.format import read_manifest, vocabulary_sha256
from vlvae.datasets import dataset_names, dataset_title, get_dataset, judge_of, manifest_dataset
from vlvae.errors import VLVAEError
from vlvae.training.judges import read_classifier_info

__all__ = ["load_judge", "check_classifier_fits"]


def load_judge(judge: str, classifier_dir: Path, vocab):
    """(scorer, classifier metrics) of the judge registered as ``judge``, loaded from ``classifier_dir``
    to score texts of ``vocab``."""
    return judge_of(judge).load(Path(classifier_dir), vocab)


def _trained_on(info: dict) -> str:
    """The data set a classifier.json records; for one written before it was recorded, the data set
    whose judge it records (classifiers of the legacy data set recorded none)."""
    if info.get("dataset"):
        return info["dataset"]
    judge = info.get("judge")
    owners = [name for name in dataset_names() if judge and get_dataset(name).judge.key == judge]
    return owners[0] if owners else manifest_dataset({})


def check_classifier_fits(directory: Path, data: Path, whose: str | None = None) -> dict:
    """Check that the classifier in ``directory`` judges images like those of data set ``data``.

    Compared with what its ``classifier.json`` records: the data set, the image size and,
    for classifiers trained since it is recorded, the vocabulary's sha256.

    Args:
        directory: a classifier folder.
        data: the data set whose images it is to judge.
        whose: how to name ``data`` in messages (default: ``the data set DATA``).

    Returns:
        The classifier's classifier.json.

    Raises:
        VLVAEError: one line saying which differs and how to train a classifier that fits.
    """
    directory, data = Path(directory), Path(data)
    make = f"vlvae train classifier --data {data} --out {directory}"
    if not directory.is_dir():
        raise VLVAEError(f"classifier folder {directory} does not exist; train one with `{make}`")
    info = read_classifier_info(
        directory / "classifier.json", f"{directory} is not a classifier folder; train one with `{make}`"
    )
    if not isinstance(info, dict):
        raise VLVAEError(
            f"{directory}/classifier.json is not a classifier description; train one with `{make}`"
        )
    manifest = read_manifest(data)
    whose = whose or f"the data set {data}"

    def remedy(suffix: str) -> str:
        return (
            f"train a classifier on this data set: vlvae train classifier --data {data} "
            f"--out {directory.parent / (directory.name + suffix)}"
        )

    dataset = manifest_dataset(manifest)
    trained_on = _trained_on(info)
    if trained_on != dataset:
        raise VLVAEError(
            f"the classifier in {directory} was trained on {dataset_title(trained_on)} "
            f"data, {whose} is {dataset_title(dataset)}; {remedy('-' + dataset)}"
        )
    size, trained_size = int(manifest["image_size"]), info.get("image_size")
    if trained_size is not None and int(trained_size) != size:
        raise VLVAEError(
            f"the classifier in {directory} was trained on {trained_size} px images, {whose} has "
            f"{size} px; {remedy(f'-{size}px')}"
        )
    if info.get("vocab_sha256"):
        if info["vocab_sha256"] != vocabulary_sha256(data):
            raise VLVAEError(
                f"the classifier in {directory} was trained with another vocabulary (vocab.json) than "
                f"{whose}; {remedy('-new')}"
            )
    return info
