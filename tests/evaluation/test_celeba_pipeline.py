"""CelebA in the evaluation: the scorer's two correctness definitions, the classifier, `reproduce`."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from vlvae.config import preset
from vlvae.data.dataset import images_to_float
from vlvae.datasets import train_judge as train_celeba_classifier
from vlvae.datasets.celeba.judge import CelebAClassifierData, CelebAScorer, load_celeba_classifier
from vlvae.datasets.celeba.words import CELEBA_LABELS, celeba_vocabulary
from vlvae.datasets.two_objects.words import two_objects_vocabulary
from vlvae.errors import VLVAEError
from vlvae.models.classifier import AttributeClassifier
from vlvae.recipes.reproduce import reproduce
from vlvae.runs import save_weights

_DATA_TESTS = str(Path(__file__).resolve().parents[1] / "data")
if _DATA_TESTS not in sys.path:
    sys.path.insert(0, _DATA_TESTS)

from celeba_fixture import make_celeba_fixture  # noqa: E402  (tests/data is on the path only from here)

# ----------------------------------------------------------------------------- the scorer on a stub


class FixedLogits(nn.Module):
    """An 18-label classifier whose label probabilities are given per image (row i of ``probs``)."""

    def __init__(self, probs):
        super().__init__()
        self.probs = torch.as_tensor(probs, dtype=torch.float64)

    def forward(self, x, condition=None):
        p = self.probs[: len(x)]
        logit = torch.log(p) - torch.log1p(-p)  # p = softmax([0, logit])[1]
        return [torch.stack([torch.zeros_like(logit[:, j]), logit[:, j]], 1).float() for j in range(18)]


def _probs(**given):
    p = np.full(18, 0.1)
    for label, value in given.items():
        p[CELEBA_LABELS.index(label)] = value
    return p


def _texts(vocab, *texts):
    return torch.tensor([vocab.encode(t.split() + ["-"] * (9 - len(t.split()))) for t in texts])


# One face: Male 0.9, Smiling 0.8, Bangs 0.3, every other label 0.1; a second face: every label 0.5.
FACE = _probs(Male=0.9, Smiling=0.8, Bangs=0.3)
UNSURE = np.full(18, 0.5)
CASES = [  # (face, text, paper's correctness, all-labels correctness), worked by hand
    (FACE, "Male Smiling Bangs", 2 / 3, 17 / 18),  # Bangs 0.3 fails; all labels: Bangs wrong
    (FACE, "Female Smiling", 1 / 2, 17 / 18),  # p(Female) = 0.1; all labels: Male wrong
    (FACE, "", 0.0, 16 / 17),  # no words -> 0; no sex -> 17 labels, Smiling wrong
    (FACE, "Smiling Smiling Bangs", 2 / 3, 16 / 17),  # repeats count per occurrence; Bangs wrong
    (FACE, "Male Female Eyeglasses", 1 / 3, 15 / 17),  # both sexes -> 17 labels; Eyeglasses, Smiling wrong
    (UNSURE, "Female", 0.0, 1.0),  # 0.5 is not > 0.5, for Male nor Female
    (UNSURE, "Male Bald", 0.0, 16 / 18),  # Male and Bald predicted absent
]


def test_scorer_both_definitions_by_hand():
    vocab = celeba_vocabulary()
    probs = np.stack([c[0] for c in CASES])
    scorer = CelebAScorer(FixedLogits(probs), vocab)
    images = torch.rand(len(CASES), 3, 8, 8)
    texts = _texts(vocab, *[c[1] for c in CASES])
    paper = scorer.score(images, texts)
    all_labels = scorer.score_all_labels(images, texts)
    assert paper.shape == all_labels.shape == (len(CASES),)
    assert paper.tolist() == pytest.approx([c[2] for c in CASES])
    assert all_labels.tolist() == pytest.approx([c[3] for c in CASES])


def test_scorer_ignores_word_order():
    vocab = celeba_vocabulary()
    scorer = CelebAScorer(FixedLogits(np.stack([FACE, FACE])), vocab)
    texts = _texts(vocab, "Male Smiling Bangs", "- Bangs - Smiling Male")
    images = torch.rand(2, 3, 8, 8)
    assert scorer.score(images, texts)[0] == scorer.score(images, texts)[1]
    assert scorer.score_all_labels(images, texts)[0] == scorer.score_all_labels(images, texts)[1]


def test_scorer_refuses_a_two_objects_vocabulary():
    with pytest.raises(VLVAEError, match="not CelebA words"):
        CelebAScorer(FixedLogits(np.stack([FACE])), two_objects_vocabulary())


# ----------------------------------------------------------------------------- the whole tiny pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    base = tmp_path_factory.mktemp("celeba_pipeline")
    source = make_celeba_fixture(base / "celeba", n=40)["root"]
    out = base / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/conftest.py does per test: tiny tensors, a busy 2-core machine
    try:
        metrics = reproduce(out, "celeba-tiny", dataset="celeba", root=source, workers=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out, metrics


def test_reproduce_celeba_report(pipeline):
    out, metrics = pipeline
    report = (out / "run" / "report.md").read_text()
    assert "celeba" in report
    for paper_number in ("80.83", "80.32", "80.25", "81.14"):
        assert paper_number in report
    assert "Bushy_Eyebrows" in report  # the classifier's per-label accuracy
    saved = json.loads((out / "run" / "metrics.json").read_text())
    assert saved["dataset"] == "celeba"
    assert saved["correctness"] == metrics["correctness"]
    for table, names in (("conditional", ("q_true", "q_agg")), ("prior", ("standard", "learned"))):
        for name in names:
            assert 0.0 <= saved["correctness"][table][name]["mean"] <= 1.0
    assert set(saved["classifier"]["real_accuracy"]["per_slot"]) == set(CELEBA_LABELS)
    # docs/design.md §6: the authors' code's definition is reported beside the paper's, named.
    alt = saved["correctness_all_labels"]
    for table, names in (("conditional", ("q_true", "q_agg")), ("prior", ("standard", "learned"))):
        for name in names:
            assert 0.0 <= alt[table][name]["mean"] <= 1.0
    assert "all binary labels" in report


def test_classifier_metrics_and_real_correctness(pipeline):
    out, _ = pipeline
    model, metrics = load_celeba_classifier(out / "classifier")
    acc, real = metrics["real_accuracy"], metrics["real_correctness"]
    assert list(acc["per_slot"]) == list(CELEBA_LABELS)
    assert acc["overall"] == pytest.approx(np.mean(list(acc["per_slot"].values())))
    assert acc["examples"] == 3  # 40 faces, the paper's split: 35 train, 3 validation, 2 test
    assert metrics["min_accuracy"] == 0.0
    # Scored against every label of its own image, a real face's all-labels correctness is the accuracy.
    assert real["all_labels"] == pytest.approx(acc["overall"])
    assert 0.0 <= real["paper"] <= 1.0
    # The scorer agrees with the stored figure on real faces whose stored text holds all their words.
    data = CelebAClassifierData(out / "data", "val")
    keep = [i for i, r in enumerate(data.base.records) if len(r["words"]) <= 9]
    images = images_to_float(torch.from_numpy(np.array(data.base.images[keep])))
    texts = torch.tensor([data.base.vocab.encode(data.base.records[i]["text"]) for i in keep])
    scorer = CelebAScorer(model, data.base.vocab)
    if len(keep) == len(data):
        assert float(scorer.score(images, texts).double().mean()) == pytest.approx(real["paper"], abs=1e-6)
    assert scorer.score_all_labels(images, texts).tolist() == pytest.approx(
        [
            float(np.mean([(p > 0.5) == (t > 0) for p, t in zip(row, data.targets[i].tolist())]))
            for row, i in zip(scorer.probabilities(images), keep)
        ]
    )


def test_classifier_folder_refuses_other_settings(pipeline):
    out, _ = pipeline
    with pytest.raises(VLVAEError, match="other settings"):
        train_celeba_classifier(
            out / "data", out / "classifier", "tiny", ["classifier.steps=7"], progress=False
        )
    # The same settings (a scale name means its CelebA preset) return the finished metrics.
    metrics = train_celeba_classifier(out / "data", out / "classifier", "tiny", progress=False)
    assert "real_correctness" in metrics


def test_classifier_training_is_a_function_of_the_seed(pipeline, tmp_path):
    out, _ = pipeline
    for name in ("first", "again"):
        train_celeba_classifier(out / "data", tmp_path / name, "celeba-tiny", progress=False)
    first, again = (load_file(str(tmp_path / name / "weights.safetensors")) for name in ("first", "again"))
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)


# ----------------------------------------------------------------------------- bad input


def test_load_celeba_classifier_missing_or_empty(tmp_path):
    with pytest.raises(VLVAEError, match="does not exist"):
        load_celeba_classifier(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VLVAEError, match="not a classifier folder"):
        load_celeba_classifier(tmp_path / "empty")


def test_load_celeba_classifier_refuses_two_objects_classifier(tmp_path):
    """A folder as `train_classifier` leaves it for Two Objects data: one clear error."""
    c = preset("tiny").classifier
    folder = tmp_path / "two_objects_classifier"
    folder.mkdir()
    (folder / "classifier.json").write_text(
        json.dumps(
            {"data": str(tmp_path / "data"), "classifier": c.__dict__, "preset": "tiny", "image_size": 16}
        )
    )
    (folder / "metrics.json").write_text(json.dumps({"real_accuracy": {"overall": 1.0}, "min_accuracy": 0.0}))
    model = AttributeClassifier(
        16,
        [2, 8, 2, 3, 2, 8, 2, 3],
        4,
        base_channels=c.base_channels,
        n_downsample=c.n_downsample,
        n_res_blocks=c.n_res_blocks,
    )
    save_weights(model, folder / "weights.safetensors", "attribute_classifier")
    with pytest.raises(VLVAEError, match="Two Objects classifier, not a CelebA classifier"):
        load_celeba_classifier(folder)


def test_load_celeba_classifier_refuses_foreign_weights(pipeline, tmp_path):
    """A CelebA classifier.json beside weights of another kind: load_weights names the kind."""

    out, _ = pipeline
    folder = tmp_path / "mixed"
    shutil.copytree(out / "classifier", folder, ignore=shutil.ignore_patterns("logs", "*.ckpt"))
    model, _ = load_celeba_classifier(folder)
    save_weights(model, folder / "weights.safetensors", "attribute_classifier")
    with pytest.raises(VLVAEError, match="not a celeba_classifier"):
        load_celeba_classifier(folder)
