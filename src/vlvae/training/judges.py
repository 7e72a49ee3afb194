"""Training the judges: the independent classifiers that score generated images (docs/design.md §6).

A judge is trained on a data set's real training images only, independently of the VLVAE, and
then checked on real validation images (its ``real_accuracy``, stored in its ``metrics.json``).
Each data set names its judge by a registry key (:attr:`vlvae.data.specs.DatasetSpec.judge`);
:data:`TRAINERS` maps the key to the function that trains it, and :func:`train_classifier_for`
trains the one that suits a data folder. Loading a trained judge and scoring generated images
with it is evaluation's (:mod:`vlvae.evaluation.judge`).

* ``attribute_classifier`` (Two Objects, :func:`train_classifier`): the image and the relation
  word go in, the other eight words of the text come out (one categorical per slot,
  :class:`vlvae.models.classifier.RelationalSlotClassifier`).
* ``celeba_classifier`` (CelebA, :func:`train_celeba_classifier`): the 18 binary labels of
  :data:`vlvae.data.celeba.CELEBA_LABELS` (:class:`vlvae.models.classifier.AttributeClassifier`
  with no condition), a two-class cross-entropy per label.

A classifier folder holds ``classifier.json`` (what it is made from: its judge, data folder and data set,
image size, vocabulary sha256, settings; a folder holding another is refused), ``weights.safetensors``,
``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vlvae.config import ClassifierConfig, ExperimentConfig, StageConfig, apply_overrides, preset
from vlvae.data.celeba import CELEBA_LABELS, correctness_all_labels, correctness_paper, word_probabilities
from vlvae.data.celeba import words_present as celeba_words_present
from vlvae.data.dataset import images_to_float
from vlvae.data.format import read_manifest, read_vocabulary, vocabulary_sha256
from vlvae.data.labels import ATTRIBUTE_SLOTS, RELATION_SLOT, CelebAClassifierData, TwoObjectsClassifierData
from vlvae.data.specs import data_spec, dataset_spec, manifest_dataset
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json, read_json
from vlvae.locking import folder_lock
from vlvae.models.classifier import AttributeClassifier, RelationalSlotClassifier
from vlvae.paths import check_output_dir
from vlvae.seeds import classifier_seed, step_seed
from vlvae.training.run import fit_stage
from vlvae.training.schedule import adam_with_schedule
from vlvae.training.tasks import step_dataloader

__all__ = [
    "ATTRIBUTE_JUDGE",
    "CELEBA_JUDGE",
    "TRAINERS",
    "JudgeTask",
    "ClassifierTask",
    "CelebAClassifierTask",
    "training_settings",
    "read_classifier_info",
    "judge_stage",
    "open_classifier_folder",
    "classifier_info",
    "predict_slots",
    "real_accuracy",
    "predict_label_probabilities",
    "celeba_real_scores",
    "train_classifier",
    "train_celeba_classifier",
    "train_classifier_for",
]

#: The Two Objects judge's key: the tag of its weights and the ``judge`` its classifier.json records.
ATTRIBUTE_JUDGE = dataset_spec("two_objects").judge
#: The CelebA judge's key (``celeba_classifier``), likewise.
CELEBA_JUDGE = dataset_spec("celeba").judge


# ----------------------------------------------------------------------------- what every judge shares


class JudgeTask(L.LightningModule):
    """Cross-entropy training of a judge: one categorical per slot of
    :class:`vlvae.models.classifier.AttributeClassifier` (with ``n_conditions``, the relational one).

    A judge supplies its examples (:meth:`_data`) and how its network reads a batch
    (:meth:`_logits`); every batch has ``targets`` (N, slots) of slot-local class indices.
    """

    def __init__(
        self,
        config: ClassifierConfig,
        stage: StageConfig,
        data_root: str,
        seed: int,
        image_size: int,
        slot_sizes: list[int],
        n_conditions: int,
    ):
        super().__init__()
        self.config, self.stage, self.data_root, self.seed = config, stage, data_root, seed
        self.start_step = 0
        network = RelationalSlotClassifier if n_conditions else AttributeClassifier
        self.model = network(
            image_size,
            slot_sizes,
            n_conditions,
            base_channels=config.base_channels,
            n_downsample=config.n_downsample,
            n_res_blocks=config.n_res_blocks,
            arch=config.arch,
            norm=config.norm,
        )

    def _data(self, split: str) -> Dataset:
        """The judge's examples of a split (``train`` or ``val``)."""
        raise NotImplementedError

    def _logits(self, batch) -> list[torch.Tensor]:
        """One (N, classes) logit tensor per slot for a batch."""
        raise NotImplementedError

    def trainable(self):
        return self.model

    def on_train_batch_start(self, batch, batch_idx):
        torch.manual_seed(step_seed(self.seed, self.global_rank, self.global_step))

    def train_dataloader(self):
        data = self._data("train")
        return step_dataloader(
            self, data, self.stage.batch_size, self.stage.steps, self.seed, self.start_step
        )

    def val_dataloader(self):
        data = self._data("val")
        n = min(len(data), self.stage.val_examples)
        return DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=128)

    def _losses(self, batch):
        logits = self._logits(batch)
        targets = batch["targets"]
        loss = sum(F.cross_entropy(logit, targets[:, s]) for s, logit in enumerate(logits))
        correct = torch.stack([logit.argmax(-1) == targets[:, s] for s, logit in enumerate(logits)], 1)
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
        return adam_with_schedule(self.model.parameters(), self.stage)


def training_settings(config: ClassifierConfig) -> dict:
    """The settings that decide a classifier's weights (its acceptance threshold does not)."""
    return {k: v for k, v in config.__dict__.items() if k != "min_accuracy"}


def judge_stage(config: ClassifierConfig) -> StageConfig:
    """The optimisation settings of a judge's fit, as a stage's."""
    return StageConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=0.0,
        lr_decay=1.0,
        lr_schedule=config.lr_schedule,
        lr_warmup_steps=config.lr_warmup_steps,
        lr_final_factor=config.lr_final_factor,
        kl_warmup_steps=0,
        val_every=max(1, config.steps // 4),
        val_examples=2_000,
        checkpoint_every=max(1, config.steps // 10),
    )


#: Keys of classifier.json added later (provenance, the judge): a folder written before them is
#: reopened without them.
_LATER_KEYS = ("judge", "dataset", "vocab_sha256")


def read_classifier_info(path: Path, what: str):
    """A classifier folder's classifier.json, with the judge under ``judge`` (CelebA folders written
    before it was named so record it as ``kind``); anything but a dict is returned as it is."""
    info = read_json(path, what)
    if isinstance(info, dict) and "kind" in info and "judge" not in info:
        info = {("judge" if k == "kind" else k): v for k, v in info.items()}
    return info


def open_classifier_folder(out: Path, info: dict) -> None:
    """Create a classifier folder, or reopen one trained with the same ``info``; refuse any other.

    Call it while holding the folder's lock (:func:`vlvae.locking.folder_lock`).
    """
    out.mkdir(parents=True, exist_ok=True)
    if (out / "classifier.json").exists():
        existing = read_classifier_info(out / "classifier.json", f"delete {out} and train again")
        if not isinstance(existing, dict):
            raise VLVAEError(
                f"{out}/classifier.json is not a classifier description; delete {out} and train again"
            )
        comparable = {k: v for k, v in info.items() if k in existing or k not in _LATER_KEYS}
        if existing != comparable:
            raise VLVAEError(
                f"{out} holds a classifier trained with other settings or data; choose another --out"
            )
        return
    atomic_write_json(out / "classifier.json", info)


def classifier_info(data: Path, manifest: dict, **fields) -> dict:
    """classifier.json's record of what a classifier is made from: data folder and data set, image
    size, vocabulary sha256, and ``fields`` (settings, preset, ...)."""
    return {
        "data": str(Path(data).resolve()),
        **fields,
        "image_size": int(manifest["image_size"]),
        "dataset": manifest_dataset(manifest),
        "vocab_sha256": vocabulary_sha256(data),
    }


# ----------------------------------------------------------------------------- Two Objects


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
    preset_name: str = "cpu",
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the Two Objects attribute classifier on real training images into folder ``out``."""
    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    cfg: ExperimentConfig = apply_overrides(preset(preset_name), list(overrides))
    info = {
        "judge": ATTRIBUTE_JUDGE,
        **classifier_info(data, manifest, classifier=training_settings(cfg.classifier), preset=preset_name),
    }
    vocab = read_vocabulary(data)
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
        metrics = fit_stage(task, out, task.stage, replace(cfg, devices=1), ATTRIBUTE_JUDGE, resume, progress)
        if "real_accuracy" not in metrics:
            metrics["real_accuracy"] = real_accuracy(task.model, data, "val")
            metrics["min_accuracy"] = cfg.classifier.min_accuracy
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


# ----------------------------------------------------------------------------- CelebA


class CelebAClassifierTask(JudgeTask):
    """Multi-label training: a two-class cross-entropy per label, summed over the 18 labels.

    Shares every judge's seeding (per-step seeds via :func:`vlvae.seeds.step_seed`), loss and
    optimiser (:class:`JudgeTask`); only the data and the network's input differ.
    """

    def __init__(self, config, stage, data_root: str, seed: int, image_size: int):
        super().__init__(config, stage, data_root, seed, image_size, [2] * len(CELEBA_LABELS), 0)

    def _data(self, split: str) -> Dataset:
        return CelebAClassifierData(Path(self.data_root), split)

    def _logits(self, batch):
        return self.model(images_to_float(batch["image"]))


@torch.no_grad()
def predict_label_probabilities(model, images, batch_size: int = 256) -> np.ndarray:
    """p(label present | image) for the 18 labels: float64 (N, 18).

    Args:
        model: an 18-label :class:`~vlvae.models.classifier.AttributeClassifier`.
        images: float (N, 3, H, W) in [0, 1], or uint8 (N, H, W, 3) (array or
            tensor, converted one batch at a time).
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for lo in range(0, len(images), batch_size):
            batch = images[lo : lo + batch_size]
            if not torch.is_tensor(batch):
                batch = torch.from_numpy(np.array(batch))  # a copy: memory-mapped arrays are read-only
            if batch.dtype == torch.uint8:
                batch = images_to_float(batch)
            logits = model(batch.float())
            out.append(torch.stack([logit.softmax(-1)[:, 1] for logit in logits], 1).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, len(CELEBA_LABELS)))


def _celeba_predictions(model, root: Path, split: str, limit: int | None):
    """(data, n, label probabilities (n, 18)) of the first ``limit`` real faces of a split."""
    data = CelebAClassifierData(root, split)
    n = len(data) if limit is None else min(len(data), limit)
    return data, n, predict_label_probabilities(model, data.base.images[:n])


def celeba_real_scores(model, root: Path, split: str = "val", limit: int | None = None) -> tuple[dict, dict]:
    """(accuracy of the 18 labels, both correctness definitions of real faces against their own words)
    from one pass of the classifier over the first ``limit`` faces of a split.

    The correctness is what a perfect generator would score with this classifier: the ceiling of
    the correctness tables.
    """
    predictions = _celeba_predictions(model, root, split, limit)
    return _celeba_accuracy(*predictions), _celeba_correctness(*predictions)


def _celeba_accuracy(data, n, probs) -> dict:
    correct = (probs > 0.5) == (data.targets[:n].numpy() > 0)
    per_label = correct.mean(axis=0) if n else np.full(len(CELEBA_LABELS), np.nan)
    return {
        "overall": float(per_label.mean()),
        "per_slot": dict(zip(CELEBA_LABELS, per_label.tolist())),
        "examples": n,
    }


def _celeba_correctness(data, n, probs) -> dict:
    paper = correctness_paper(word_probabilities(probs), celeba_words_present(data.words[:n]), empty=0.0)
    all_labels = correctness_all_labels(probs, data.targets[:n].numpy())
    return {
        "paper": float(paper.mean()) if n else float("nan"),
        "all_labels": float(all_labels.mean()) if n else float("nan"),
        "examples": n,
    }


def train_celeba_classifier(
    data: Path,
    out: Path,
    preset_name: str = "celeba-cpu",
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the 18-label CelebA classifier on real training faces into folder ``out``.

    The folder is a classifier folder (as the Two Objects classifier's is):
    ``classifier.json`` (settings and data path; a folder holding other
    settings is refused), ``weights.safetensors`` (tag ``celeba_classifier``),
    ``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json`` with
    ``real_accuracy`` (overall, per_slot, examples), ``real_correctness``
    (paper, all_labels) and ``min_accuracy``.

    Args:
        data: a CelebA data set (``vlvae data celeba``).
        out: the classifier folder.
        preset_name: whose ``classifier`` section is used; a name without the
            ``celeba`` prefix means the CelebA preset of that scale (``cpu`` →
            ``celeba-cpu``).
        overrides: ``key=value`` config overrides (e.g. ``classifier.steps=5000``).
        resume: continue from ``out/last.ckpt``.
        progress: show Lightning's progress bar.

    Returns:
        The metrics written to ``out/metrics.json``.
    """
    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    if manifest.get("dataset") != "celeba":
        raise VLVAEError(
            f"{data} is not a CelebA data set; the CelebA classifier needs one built by "
            "`vlvae data celeba` (Two Objects data trains the Two Objects classifier)"
        )
    name = dataset_spec("celeba").preset_name(preset_name)
    cfg: ExperimentConfig = apply_overrides(preset(name), list(overrides))
    info = {
        "judge": CELEBA_JUDGE,
        **classifier_info(
            data,
            manifest,
            classifier=training_settings(cfg.classifier),
            preset=name,
            labels=list(CELEBA_LABELS),
        ),
    }
    out = check_output_dir(out, "classifier folder")
    with folder_lock(out, "vlvae train classifier"):
        open_classifier_folder(out, info)
        torch.manual_seed(classifier_seed(cfg.seed))  # the initial weights are a function of the seed
        task = CelebAClassifierTask(
            cfg.classifier,
            judge_stage(cfg.classifier),
            str(data.resolve()),
            classifier_seed(cfg.seed),
            int(manifest["image_size"]),
        )
        metrics = fit_stage(task, out, task.stage, replace(cfg, devices=1), CELEBA_JUDGE, resume, progress)
        if "real_accuracy" not in metrics:
            accuracy, correctness = celeba_real_scores(task.model, data, "val")
            metrics["real_accuracy"], metrics["real_correctness"] = accuracy, correctness
            metrics["min_accuracy"] = cfg.classifier.min_accuracy
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


# ----------------------------------------------------------------------------- the registry

#: Judge key (:attr:`vlvae.data.specs.DatasetSpec.judge`) -> ``(data, out, preset_name, overrides,
#: resume, progress) -> metrics``, the function that trains it.
TRAINERS: dict[str, Callable[..., dict]] = {
    ATTRIBUTE_JUDGE: train_classifier,
    CELEBA_JUDGE: train_celeba_classifier,
}


def train_classifier_for(
    data: Path,
    out: Path,
    preset_name: str = "cpu",
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the judge of the data set in ``data`` (its spec's): Two Objects attributes or CelebA labels."""
    return TRAINERS[data_spec(data).judge](data, out, preset_name, overrides, resume, progress)
