"""The contract every registered data set meets, checked by being registered.

Each entry of the data-set registry (:data:`vlvae.data.specs.DATASETS`) runs the whole tiny
pipeline from a source made here (:data:`SOURCES`): its data is built and verifies, its judge
trains and scores, stage 1, q_True, q_Agg and the prior train on it, and its report holds
Tables 1-3 beside the paper's numbers. A data set registered without a source here fails
:func:`test_every_registered_data_set_has_a_tiny_source`, so no entry goes untested.
"""

import json

import pytest
import torch
from celeba_fixture import make_celeba_fixture

from vlvae.data.dataset import ImageTextDataset
from vlvae.data.specs import DATASETS, dataset_spec
from vlvae.data.verify import verify_dataset
from vlvae.evaluation.judge import load_judge
from vlvae.recipes.reproduce import reproduce

#: How the tests make a tiny source of each registered data set: (preset scale, folder -> --root or None).
SOURCES = {
    "two_objects": ("tiny", lambda folder: None),
    "celeba": ("tiny", lambda folder: make_celeba_fixture(folder, n=40)["root"]),
}


def test_every_registered_data_set_has_a_tiny_source():
    assert set(SOURCES) == set(DATASETS), "register a tiny source for every data set in SOURCES"


@pytest.fixture(scope="module", params=sorted(DATASETS))
def pipeline(request, tmp_path_factory):
    name = request.param
    scale, make_source = SOURCES[name]
    base = tmp_path_factory.mktemp(name)
    root = make_source(base / "source")
    spec = dataset_spec(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reproduce(base / "out", spec.preset_name(scale), dataset=name, root=root, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return name, base / "out"


def test_its_data_builds_and_verifies(pipeline):
    name, out = pipeline
    verify_dataset(out / "data")
    for split in ("train", "val"):
        data = ImageTextDataset(out / "data", split)
        assert data.dataset == name and len(data) > 0
        item = data[0]
        assert item["image"].dtype == torch.uint8 and item["text"].dtype == torch.long


def test_its_judge_trains_and_scores_real_images(pipeline):
    name, out = pipeline
    data = ImageTextDataset(out / "data", "val")
    scorer, metrics = load_judge(dataset_spec(name).judge, out / "classifier", data.vocab)
    x = torch.stack([data[i]["image"] for i in range(4)]).float() / 255
    y = torch.stack([data[i]["text"] for i in range(4)])
    scores = scorer.score(x, y)
    assert scores.shape == (4,) and bool(((scores >= 0) & (scores <= 1)).all())
    assert 0.0 <= metrics["real_accuracy"]["overall"] <= 1.0


def test_its_report_holds_tables_1_to_3_beside_the_papers_numbers(pipeline):
    name, out = pipeline
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert metrics["dataset"] == name
    report = (out / "run" / "report.md").read_text()
    for fragment in ("Table 1", "Table 2", "Table 3"):
        assert fragment in report
    for value in dataset_spec(name).paper["correctness"].values():
        assert str(value) in report
    for table in ("conditional", "prior"):
        for s in metrics["correctness"][table].values():
            assert 0.0 <= s["mean"] <= 1.0
    assert set(metrics["landing"]["marginal"]["sources"]) >= {"q_true", "q_agg", "standard", "learned"}
