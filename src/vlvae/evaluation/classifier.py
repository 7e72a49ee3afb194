"""The Two Objects judge in evaluation: load the attribute classifier, score images (docs/design.md §6).

The image and the relation word go in, the other eight words of the text come
out (one categorical per slot); a text and an image agree on a slot when the
classifier's prediction for that slot equals the text's word. It is trained on
real training images only, independently of the VLVAE (:mod:`vlvae.training.judges`,
from the examples of :mod:`vlvae.data.labels`); this module loads it
(:func:`load_classifier`) and scores generated images (:class:`TwoObjectsScorer`).

The names of the data and of the training floor that evaluation uses (the slots, the examples,
the predictions and the real-data accuracy) are importable from here too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlvae.data.format import read_vocabulary
from vlvae.data.labels import ATTRIBUTE_SLOTS, RELATION_SLOT, TwoObjectsClassifierData
from vlvae.data.vocabulary import Vocabulary
from vlvae.io import read_json
from vlvae.models.classifier import RelationalSlotClassifier
from vlvae.runs import load_weights
from vlvae.training.judges import ATTRIBUTE_JUDGE, predict_slots, real_accuracy

__all__ = [
    "RELATION_SLOT",
    "ATTRIBUTE_SLOTS",
    "TwoObjectsClassifierData",
    "predict_slots",
    "real_accuracy",
    "load_classifier",
    "load_judge",
    "TwoObjectsScorer",
]


def load_classifier(directory: Path):
    """(model, metrics) of a trained classifier folder, in evaluation mode."""
    directory = Path(directory)
    remedy = f"vlvae train classifier --data DATA --out {directory}"
    info = read_json(directory / "classifier.json", f"train one with `{remedy}`")
    metrics = read_json(directory / "metrics.json", f"finish training with `{remedy} --resume`")
    vocab = read_vocabulary(Path(info["data"]))
    c = info["classifier"]
    model = RelationalSlotClassifier(
        info["image_size"],
        [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS],
        len(vocab.slots[RELATION_SLOT]),
        base_channels=c["base_channels"],
        n_downsample=c["n_downsample"],
        n_res_blocks=c["n_res_blocks"],
        arch=c.get("arch", "cyclegan"),
        norm=c.get("norm", "batch"),
    )
    load_weights(model, directory / "weights.safetensors", ATTRIBUTE_JUDGE, remedy)
    return model.eval().requires_grad_(False), metrics


class TwoObjectsScorer:
    """Correctness of images against nine-word texts (Table 1-2's metric, Two Objects).

    Correctness of (image, text) = fraction of the text's eight attribute words
    that equal the classifier's prediction for their slot, the classifier
    being told the text's relation word. A text whose relation slot holds no
    relation word (possible for generated texts) scores 0.
    """

    def __init__(self, model, vocab: Vocabulary):
        self.model, self.vocab = model, vocab

    def score(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """(N,) correctness in [0, 1] for float images (N, 3, H, W) and word indices (N, 9)."""
        words = [self.vocab.decode(t) for t in texts]
        relation_words = self.vocab.slots[RELATION_SLOT]
        valid = torch.tensor([w[RELATION_SLOT] in relation_words for w in words])
        relations = torch.tensor(
            [relation_words.index(w[RELATION_SLOT]) if v else 0 for w, v in zip(words, valid.tolist())]
        )
        predicted = predict_slots(self.model, images, relations)
        scores = torch.zeros(len(words))
        for i, w in enumerate(words):
            hits = [self.vocab.slots[s][int(predicted[i, j])] == w[s] for j, s in enumerate(ATTRIBUTE_SLOTS)]
            scores[i] = sum(hits) / len(hits)
        return torch.where(valid, scores, torch.zeros_like(scores))


def load_judge(directory: Path, vocab: Vocabulary) -> tuple[TwoObjectsScorer, dict]:
    """(scorer, classifier metrics) of a trained Two Objects classifier folder, scoring texts of ``vocab``."""
    model, metrics = load_classifier(directory)
    return TwoObjectsScorer(model, vocab), metrics
