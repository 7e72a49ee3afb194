"""The Two Objects judge (docs/design.md §6): an attribute classifier that reads an image and a
relation word and predicts the other eight words of a true text (one categorical per slot).

It is trained on real training images only, independently of the VLVAE (:func:`train_classifier`,
on the examples of :class:`TwoObjectsClassifierData`: every true text of an image is a target);
evaluation loads it (:func:`load_judge`) and scores generated images (:class:`TwoObjectsScorer`): a
text and an image agree on a slot when the classifier's prediction for that slot equals the
text's word.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vlvae.config import ExperimentConfig
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.format import read_manifest, read_vocabulary
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json, read_json
from vlvae.locking import folder_lock
from vlvae.models.classifier import judge_network
from vlvae.paths import check_output_dir
from vlvae.runs import load_weights
from vlvae.seeds import classifier_seed
from vlvae.training.judges import (
    JudgeTask,
    classifier_info,
    judge_stage,
    open_classifier_folder,
    training_settings,
)
from vlvae.training.run import fit_stage

__all__ = [
    "JUDGE",
    "RELATION_SLOT",
    "ATTRIBUTE_SLOTS",
    "TwoObjectsClassifierData",
    "ClassifierTask",
    "predict_slots",
    "slot_targets",
    "real_accuracy",
    "train_classifier",
    "load_classifier",
    "load_judge",
    "TwoObjectsScorer",
]

#: The judge's key: the tag of its weights and the ``judge`` its classifier.json records.
JUDGE = "attribute_classifier"

#: The slot of a nine-word Two Objects text that holds the relation word (the judge's condition).
RELATION_SLOT = 4
#: The slots of a nine-word Two Objects text that the judge predicts (the two objects' attributes).
ATTRIBUTE_SLOTS = (0, 1, 2, 3, 5, 6, 7, 8)


def slot_targets(vocab: Vocabulary, text: list[str]) -> tuple[int, list[int]]:
    """(relation index, slot-local class index of each of the eight attribute words)."""
    relation = vocab.slots[RELATION_SLOT].index(text[RELATION_SLOT])
    return relation, [vocab.slots[s].index(text[s]) for s in ATTRIBUTE_SLOTS]


class TwoObjectsClassifierData(Dataset):
    """Images with (relation, eight attribute targets).

    ``all_texts=False`` (training): a random one of the image's true texts at each load.
    ``all_texts=True`` (validation): item ``4 i + t`` is image i with its t-th true text.
    """

    def __init__(self, root: Path, split: str, all_texts: bool):
        self.base = ImageTextDataset(root, split)
        if self.base.text_form != "fixed" or len(self.base.vocab.slots) != 9:
            raise VLVAEError(
                f"{root} is not a two-object Two Objects data set; the attribute classifier "
                "needs nine-word texts"
            )
        self.all_texts = all_texts
        vocab = self.base.vocab
        self.targets = [[slot_targets(vocab, t) for t in r["texts"]] for r in self.base.records]
        self.per_image = min(len(t) for t in self.targets)

    def __len__(self):
        return len(self.base) * (self.per_image if self.all_texts else 1)

    def __getitem__(self, i):
        if self.all_texts:
            image_index, t = divmod(i, self.per_image)
        else:
            image_index = i
            t = int(torch.randint(len(self.targets[i]), ()).item())
        relation, slots = self.targets[image_index][t]
        image = torch.from_numpy(np.array(self.base.images[image_index])).permute(2, 0, 1)
        return {"image": image, "relation": relation, "targets": torch.tensor(slots)}


class ClassifierTask(JudgeTask):
    """Cross-entropy training of the Two Objects judge
    (:class:`vlvae.models.classifier.RelationalSlotClassifier`: image and relation word in, eight slots out).

    Training: a random one of each image's true texts at each load; validation: every true text.
    """

    def _data(self, split: str) -> Dataset:
        return TwoObjectsClassifierData(Path(self.data_root), split, all_texts=split != "train")

    def _logits(self, batch):
        return self.model(images_to_float(batch["image"]), batch["relation"])


@torch.no_grad()
def predict_slots(
    model, images: torch.Tensor, relations: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Predicted slot-local class of each attribute slot: (N, 8) long.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        relations: long (N,) relation indices.
    """
    model.eval()
    out = []
    for lo in range(0, len(images), batch_size):
        logits = model(images[lo : lo + batch_size], relations[lo : lo + batch_size])
        out.append(torch.stack([logit.argmax(-1) for logit in logits], 1))
    return torch.cat(out) if out else torch.zeros(0, len(ATTRIBUTE_SLOTS), dtype=torch.long)


def real_accuracy(model, root: Path, split: str = "val", limit: int | None = None) -> dict:
    """Per-slot and overall accuracy of the Two Objects judge on real images with every true text of each."""
    data = TwoObjectsClassifierData(root, split, all_texts=True)
    n = len(data) if limit is None else min(len(data), limit * data.per_image)
    items = [data[i] for i in range(n)]
    images = images_to_float(torch.stack([it["image"] for it in items]))
    relations = torch.tensor([it["relation"] for it in items])
    targets = torch.stack([it["targets"] for it in items])
    correct = (predict_slots(model, images, relations) == targets).float()
    names = [data.base.vocab.slot_names[s] for s in ATTRIBUTE_SLOTS]
    return {
        "overall": float(correct.mean()),
        "per_slot": dict(zip(names, correct.mean(0).tolist())),
        "examples": n,
    }


def train_classifier(
    data: Path,
    out: Path,
    cfg: ExperimentConfig,
    preset_name: str,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the Two Objects attribute classifier on real training images into folder ``out``, with
    the ``classifier`` section and seed of ``cfg`` (made from preset ``preset_name``, recorded)."""
    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    info = {
        "judge": JUDGE,
        **classifier_info(
            data,
            manifest,
            classifier=training_settings(cfg.classifier),
            preset=preset_name,
            seed=classifier_seed(cfg.seed),
        ),
    }
    vocab = read_vocabulary(data)
    slots = len(ATTRIBUTE_SLOTS) + 1
    if len(vocab.slots) != slots:
        raise VLVAEError(
            f"the attribute classifier judges texts of {slots} slots (two objects and their relation), "
            f"but {data} has texts of {len(vocab.slots)} slots (a one-object data set, as for Fig. 1, "
            "which needs no classifier); train it on a two-object data set (vlvae data two-objects)"
        )
    slot_sizes = [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS]
    out = check_output_dir(out, "classifier folder")
    with folder_lock(out, "vlvae train classifier"):
        open_classifier_folder(out, info)
        torch.manual_seed(classifier_seed(cfg.seed))
        task = ClassifierTask(
            cfg.classifier,
            judge_stage(cfg.classifier),
            str(data.resolve()),
            classifier_seed(cfg.seed),
            int(manifest["image_size"]),
            slot_sizes,
            len(vocab.slots[RELATION_SLOT]),
        )
        metrics = fit_stage(task, out, task.stage, replace(cfg, devices=1), JUDGE, resume, progress)
        if "real_accuracy" not in metrics:
            metrics["real_accuracy"] = real_accuracy(task.model, data, "val")
            metrics["min_accuracy"] = cfg.classifier.min_accuracy
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


def load_classifier(directory: Path):
    """(model, metrics) of a trained classifier folder, in evaluation mode."""
    directory = Path(directory)
    remedy = f"vlvae train classifier --data DATA --out {directory}"
    info = read_json(directory / "classifier.json", f"train one with `{remedy}`")
    metrics = read_json(directory / "metrics.json", f"finish training with `{remedy} --resume`")
    vocab = read_vocabulary(Path(info["data"]))
    model = judge_network(
        info["image_size"],
        [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS],
        len(vocab.slots[RELATION_SLOT]),
        info["classifier"],
    )
    load_weights(model, directory / "weights.safetensors", JUDGE, remedy)
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
