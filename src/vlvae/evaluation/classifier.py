"""Independent attribute classifiers that judge generated images (SPEC §6, paper §4).

Two Objects: the image and the relation word go in, the other eight words of
the text come out (one categorical per slot); a text and an image agree on a
slot when the classifier's prediction for that slot equals the text's word.
Trained on real training images only, independently of the VLVAE. Every true
text of an image is a training target (a random one at each load), so the
classifier can be asked about any relation word.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vlvae.config import ClassifierConfig, ExperimentConfig, StageConfig, apply_overrides, preset
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.format import atomic_write_json, read_json, read_manifest
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError

__all__ = [
    "RELATION_SLOT",
    "ATTRIBUTE_SLOTS",
    "TwoObjectsClassifierData",
    "ClassifierTask",
    "train_classifier",
    "train_classifier_for",
    "training_settings",
    "open_classifier_folder",
    "classifier_info",
    "check_classifier_fits",
    "predict_slots",
    "real_accuracy",
    "load_classifier",
    "TwoObjectsScorer",
]

RELATION_SLOT = 4
ATTRIBUTE_SLOTS = (0, 1, 2, 3, 5, 6, 7, 8)


def _slot_targets(vocab: Vocabulary, text: list[str]) -> tuple[int, list[int]]:
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
        if self.base.dataset != "two_objects" or len(self.base.vocab.slots) != 9:
            raise VLVAEError(f"{root} is not a two-object Two Objects data set; the attribute classifier "
                             "needs nine-word texts")
        self.all_texts = all_texts
        vocab = self.base.vocab
        self.targets = [[_slot_targets(vocab, t) for t in r["texts"]] for r in self.base.records]
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


class ClassifierTask(L.LightningModule):
    """Cross-entropy training of :class:`vlvae.models.classifier.AttributeClassifier`."""

    def __init__(self, config: ClassifierConfig, stage: StageConfig, data_root: str, seed: int,
                 image_size: int, slot_sizes: list[int], n_conditions: int):
        super().__init__()
        from vlvae.models.classifier import AttributeClassifier, RelationalSlotClassifier

        self.config, self.stage, self.data_root, self.seed = config, stage, data_root, seed
        self.start_step = 0
        network = RelationalSlotClassifier if n_conditions else AttributeClassifier
        self.model = network(image_size, slot_sizes, n_conditions, base_channels=config.base_channels,
                                         n_downsample=config.n_downsample, n_res_blocks=config.n_res_blocks,
                             arch=config.arch, norm=config.norm)

    def trainable(self):
        return self.model

    def on_train_batch_start(self, batch, batch_idx):
        from vlvae.training.tasks import step_seed

        torch.manual_seed(step_seed(self.seed, self.global_rank, self.global_step))

    def train_dataloader(self):
        from vlvae.training.tasks import step_dataloader

        data = TwoObjectsClassifierData(Path(self.data_root), "train", all_texts=False)
        return step_dataloader(self, data, self.stage.batch_size, self.stage.steps, self.seed, self.start_step)

    def val_dataloader(self):
        data = TwoObjectsClassifierData(Path(self.data_root), "val", all_texts=True)
        n = min(len(data), self.stage.val_examples)
        return DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=128)

    def _losses(self, batch):
        logits = self.model(images_to_float(batch["image"]), batch["relation"])
        targets = batch["targets"]
        loss = sum(F.cross_entropy(l, targets[:, s]) for s, l in enumerate(logits))
        correct = torch.stack([l.argmax(-1) == targets[:, s] for s, l in enumerate(logits)], 1)
        return loss, correct.float().mean()

    def training_step(self, batch, batch_idx):
        loss, acc = self._losses(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/accuracy", acc, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._losses(batch)
        self.log("val/loss", loss, sync_dist=True)
        self.log("val/accuracy", acc, sync_dist=True)

    def configure_optimizers(self):
        from vlvae.training.schedule import adam_with_schedule

        return adam_with_schedule(self.model.parameters(), self.stage)


def training_settings(config: ClassifierConfig) -> dict:
    """The settings that decide a classifier's weights (its acceptance threshold does not)."""
    return {k: v for k, v in config.__dict__.items() if k != "min_accuracy"}


#: Keys of classifier.json added later (provenance): a folder written before them is reopened without them.
_LATER_KEYS = ("dataset", "vocab_sha256")


def open_classifier_folder(out: Path, info: dict) -> None:
    """Create a classifier folder, or reopen one trained with the same ``info``; refuse any other.

    Call it while holding the folder's lock (:func:`vlvae.locking.folder_lock`).
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "classifier.json").exists():
        existing = read_json(out / "classifier.json", f"delete {out} and train again")
        if not isinstance(existing, dict):
            raise VLVAEError(f"{out}/classifier.json is not a classifier description; delete {out} and train again")
        comparable = {k: v for k, v in info.items() if k in existing or k not in _LATER_KEYS}
        if existing != comparable:
            raise VLVAEError(f"{out} holds a classifier trained with other settings or data; choose another --out")
        return
    atomic_write_json(out / "classifier.json", info)


def classifier_info(data: Path, manifest: dict, **fields) -> dict:
    """classifier.json's record of what a classifier is made from: data folder and kind, image size,
    vocabulary sha256, and ``fields`` (settings, preset, ...)."""
    from vlvae.data.format import vocabulary_sha256

    return {"data": str(Path(data).resolve()), **fields, "image_size": int(manifest["image_size"]),
            "dataset": manifest.get("dataset", "two_objects"), "vocab_sha256": vocabulary_sha256(data)}


_DATASET_NAMES = {"two_objects": "Two Objects", "celeba": "CelebA"}


def check_classifier_fits(directory: Path, data: Path, whose: str | None = None) -> dict:
    """Check that the classifier in ``directory`` judges images like those of data set ``data``.

    Compared with what its ``classifier.json`` records: the data set kind, the image size and,
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
    info = read_json(directory / "classifier.json", f"{directory} is not a classifier folder; train one with "
                                                    f"`{make}`")
    if not isinstance(info, dict):
        raise VLVAEError(f"{directory}/classifier.json is not a classifier description; train one with `{make}`")
    manifest = read_manifest(data)
    whose = whose or f"the data set {data}"

    def remedy(suffix: str) -> str:
        return (f"train a classifier on this data set: vlvae train classifier --data {data} "
                f"--out {directory.parent / (directory.name + suffix)}")

    kind = manifest.get("dataset", "two_objects")
    trained_on = info.get("dataset") or ("celeba" if info.get("kind") == "celeba_classifier" else "two_objects")
    if trained_on != kind:
        raise VLVAEError(f"the classifier in {directory} was trained on {_DATASET_NAMES.get(trained_on, trained_on)} "
                         f"data, {whose} is {_DATASET_NAMES.get(kind, kind)}; {remedy('-' + kind)}")
    size, trained_size = int(manifest["image_size"]), info.get("image_size")
    if trained_size is not None and int(trained_size) != size:
        raise VLVAEError(f"the classifier in {directory} was trained on {trained_size} px images, {whose} has "
                         f"{size} px; {remedy(f'-{size}px')}")
    if info.get("vocab_sha256"):
        from vlvae.data.format import vocabulary_sha256

        if info["vocab_sha256"] != vocabulary_sha256(data):
            raise VLVAEError(f"the classifier in {directory} was trained with another vocabulary (vocab.json) than "
                             f"{whose}; {remedy('-new')}")
    return info


def _stage_of(config: ClassifierConfig) -> StageConfig:
    return StageConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr, weight_decay=0.0,
                       lr_decay=1.0, lr_schedule=config.lr_schedule, lr_warmup_steps=config.lr_warmup_steps,
                       lr_final_factor=config.lr_final_factor, kl_warmup_steps=0, val_every=max(1, config.steps // 4),
                       val_examples=2_000, checkpoint_every=max(1, config.steps // 10))


@torch.no_grad()
def predict_slots(model, images: torch.Tensor, relations: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted slot-local class of each attribute slot: (N, 8) long.

    Args:
        images: float (N, 3, H, W) in [0, 1].
        relations: long (N,) relation indices.
    """
    model.eval()
    out = []
    for lo in range(0, len(images), batch_size):
        logits = model(images[lo:lo + batch_size], relations[lo:lo + batch_size])
        out.append(torch.stack([l.argmax(-1) for l in logits], 1))
    return torch.cat(out) if out else torch.zeros(0, len(ATTRIBUTE_SLOTS), dtype=torch.long)


def real_accuracy(model, root: Path, split: str = "val", limit: int | None = None) -> dict:
    """Per-slot and overall accuracy on real images with every true text of each."""
    data = TwoObjectsClassifierData(root, split, all_texts=True)
    n = len(data) if limit is None else min(len(data), limit * data.per_image)
    items = [data[i] for i in range(n)]
    images = images_to_float(torch.stack([it["image"] for it in items]))
    relations = torch.tensor([it["relation"] for it in items])
    targets = torch.stack([it["targets"] for it in items])
    correct = (predict_slots(model, images, relations) == targets).float()
    names = [data.base.vocab.slot_names[s] for s in ATTRIBUTE_SLOTS]
    return {"overall": float(correct.mean()), "per_slot": dict(zip(names, correct.mean(0).tolist())),
            "examples": n}


def train_classifier(data: Path, out: Path, preset_name: str = "cpu", overrides: list[str] = (),
                     resume: bool = False, progress: bool = True) -> dict:
    """Train the Two Objects attribute classifier on real training images into folder ``out``."""
    from vlvae.training.run import fit_stage

    from vlvae.data.format import read_vocabulary
    from vlvae.locking import folder_lock
    from vlvae.paths import check_output_dir

    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    cfg: ExperimentConfig = apply_overrides(preset(preset_name), list(overrides))
    info = classifier_info(data, manifest, classifier=training_settings(cfg.classifier), preset=preset_name)
    vocab = read_vocabulary(data)
    slot_sizes = [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS]
    out = check_output_dir(out, "classifier folder")
    with folder_lock(out, "vlvae train classifier"):
        open_classifier_folder(out, info)
        torch.manual_seed(cfg.seed + 7)
        task = ClassifierTask(cfg.classifier, _stage_of(cfg.classifier), str(data.resolve()), cfg.seed + 7,
                              int(manifest["image_size"]), slot_sizes, len(vocab.slots[RELATION_SLOT]))
        metrics = fit_stage(task, out, task.stage, replace(cfg, devices=1), "attribute_classifier", resume,
                            progress)
        if "real_accuracy" not in metrics:
            metrics["real_accuracy"] = real_accuracy(task.model, data, "val")
            metrics["min_accuracy"] = cfg.classifier.min_accuracy
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


def load_classifier(directory: Path):
    """(model, metrics) of a trained classifier folder, in evaluation mode."""
    from vlvae.models.classifier import RelationalSlotClassifier
    from vlvae.runs import load_weights

    directory = Path(directory)
    remedy = f"vlvae train classifier --data DATA --out {directory}"
    info = read_json(directory / "classifier.json", f"train one with `{remedy}`")
    metrics = read_json(directory / "metrics.json", f"finish training with `{remedy} --resume`")
    from vlvae.data.format import read_vocabulary

    vocab = read_vocabulary(Path(info["data"]))
    c = info["classifier"]
    model = RelationalSlotClassifier(info["image_size"], [len(vocab.slots[s]) for s in ATTRIBUTE_SLOTS],
                                len(vocab.slots[RELATION_SLOT]), base_channels=c["base_channels"],
                                n_downsample=c["n_downsample"], n_res_blocks=c["n_res_blocks"],
                                arch=c.get("arch", "cyclegan"), norm=c.get("norm", "batch"))
    load_weights(model, directory / "weights.safetensors", "attribute_classifier", remedy)
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
        relations = torch.tensor([relation_words.index(w[RELATION_SLOT]) if v else 0
                                  for w, v in zip(words, valid.tolist())])
        predicted = predict_slots(self.model, images, relations)
        scores = torch.zeros(len(words))
        for i, w in enumerate(words):
            hits = [self.vocab.slots[s][int(predicted[i, j])] == w[s] for j, s in enumerate(ATTRIBUTE_SLOTS)]
            scores[i] = sum(hits) / len(hits)
        return torch.where(valid, scores, torch.zeros_like(scores))


def train_classifier_for(data: Path, out: Path, preset_name: str = "cpu", overrides: list[str] = (),
                         resume: bool = False, progress: bool = True) -> dict:
    """Train the classifier that suits the data set: Two Objects attributes or CelebA labels."""
    if read_manifest(data).get("dataset") == "celeba":
        from vlvae.evaluation.celeba_scoring import train_celeba_classifier

        return train_celeba_classifier(data, out, preset_name, overrides, resume, progress)
    return train_classifier(data, out, preset_name, overrides, resume, progress)
