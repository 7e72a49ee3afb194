"""The contract every registered data set meets, checked by being registered.

Each entry of the data-set registry (:func:`vlvae.datasets.dataset_names`) runs the whole tiny
pipeline from a source made here (:data:`SOURCES`): its data is built and verifies, its judge
trains and scores, stage 1, q_True, q_Agg and the prior train on it, and its report holds
Tables 1-3 beside the paper's numbers. A data set registered without a source here fails
:func:`test_every_registered_data_set_has_a_tiny_source`, so no entry goes untested.
"""

import csv
import json

import numpy as np
import pytest
import torch
from celeba_fixture import make_celeba_fixture
from PIL import Image

from vlvae.data.dataset import ImageTextDataset
from vlvae.data.format import load_images, read_records
from vlvae.datasets import dataset_names, get_dataset, manifest_dataset
from vlvae.datasets import verify as verify_dataset
from vlvae.datasets.captions.build import import_captions
from vlvae.datasets.two_objects.build import TwoObjectsSettings, generate_two_objects
from vlvae.evaluation.judge import load_judge
from vlvae.recipes.reproduce import reproduce


def _imported_captions(folder):
    """A user's folder of PNG images with a captions.csv (two captions per image, in capitals and with
    punctuation), imported with ``vlvae data import``: the finished data set reproduce takes."""
    generate_two_objects(
        TwoObjectsSettings(n=60, size=16, zoom=1.6, supersample=1, chunk_size=32),
        folder / "scenes",
        workers=1,
        progress=False,
    )
    (folder / "images").mkdir()
    rows = []
    for split in ("train", "val"):
        for i, (image, record) in enumerate(
            zip(load_images(folder / "scenes", split), read_records(folder / "scenes", split))
        ):
            name = f"{split}{i}.png"
            Image.fromarray(np.array(image)).save(folder / "images" / name)
            for text in record["texts"][:2]:
                rows.append(
                    (name, " ".join(text[:4]).capitalize() + f", {text[4]} of " + " ".join(text[5:]) + ".")
                )
    with open(folder / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    import_captions(
        folder / "images", folder / "captions.csv", folder / "data", size=16, val=0.2, progress=False
    )
    return {"data": folder / "data"}


#: How the tests make a tiny source of each registered data set: (preset scale, folder -> reproduce's
#: keywords: ``root`` for a data set built from a download, ``data`` for one made by its own command).
SOURCES = {
    "two_objects": ("tiny", lambda folder: {}),
    "celeba": ("tiny", lambda folder: {"root": make_celeba_fixture(folder, n=40)["root"]}),
    "captions": ("tiny", _imported_captions),
}


def test_every_registered_data_set_has_a_tiny_source():
    assert set(SOURCES) == set(dataset_names()), "register a tiny source for every data set in SOURCES"


@pytest.fixture(scope="module", params=sorted(dataset_names()))
def pipeline(request, tmp_path_factory):
    name = request.param
    scale, make_source = SOURCES[name]
    base = tmp_path_factory.mktemp(name)
    (base / "source").mkdir()
    source = make_source(base / "source")
    spec = get_dataset(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reproduce(base / "out", spec.preset_name(scale), dataset=name, workers=1, progress=False, **source)
    finally:
        torch.set_num_threads(threads)
    return name, base / "out"


def _data(out):
    """The data folder a reproduce in ``out`` used (its own, or the one it was given)."""
    return out / "data" if (out / "data").exists() else out.parent / "source" / "data"


def test_its_data_builds_and_verifies(pipeline):
    name, out = pipeline
    verify_dataset(_data(out))
    for split in ("train", "val"):
        data = ImageTextDataset(_data(out), split)
        assert manifest_dataset(data.manifest) == name and len(data) > 0
        item = data[0]
        assert item["image"].dtype == torch.uint8 and item["text"].dtype == torch.long


def test_its_judge_trains_and_scores_real_images(pipeline):
    name, out = pipeline
    data = ImageTextDataset(_data(out), "val")
    scorer, metrics = load_judge(get_dataset(name).judge.key, out / "classifier", data.vocab)
    n = min(4, len(data))
    x = torch.stack([data[i]["image"] for i in range(n)]).float() / 255
    y = torch.stack([data[i]["text"] for i in range(n)])
    scores = scorer.score(x, y)
    assert scores.shape == (n,) and bool(((scores >= 0) & (scores <= 1)).all())
    assert 0.0 <= metrics["real_accuracy"]["overall"] <= 1.0


def test_its_report_holds_tables_1_to_3_beside_the_papers_numbers(pipeline):
    name, out = pipeline
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == name
    report = (out / "run" / "report.md").read_text()
    for fragment in ("Table 1", "Table 2", "Table 3"):
        assert fragment in report
    for value in get_dataset(name).paper.get("correctness", {}).values():
        assert str(value) in report
    for table in ("conditional", "prior"):
        for s in metrics["correctness"][table].values():
            assert 0.0 <= s["mean"] <= 1.0
    assert set(metrics["landing"]["marginal"]["sources"]) >= {"q_true", "q_agg", "standard", "learned"}
