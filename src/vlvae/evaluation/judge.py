"""What every judge shares: the classifier folder, its training task, and checking that it fits.

A judge is an independent classifier, trained on a data set's real training images only, that
scores generated images against texts. Each data set has its own
(:mod:`vlvae.evaluation.classifier` for Two Objects, :mod:`vlvae.evaluation.celeba_scoring` for
CelebA; :class:`vlvae.data.specs.DatasetSpec` names it); both build on this module and neither
imports the other.

A classifier folder holds ``classifier.json`` (what it is made from: data folder and kind, image
size, vocabulary sha256, settings; a folder holding another is refused), ``weights.safetensors``,
``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vlvae.config import ClassifierConfig, StageConfig
from vlvae.data.format import read_manifest
from vlvae.data.specs import DATASETS, DEFAULT_DATASET, data_spec, dataset_title, manifest_dataset
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json, read_json
from vlvae.seeds import step_seed

__all__ = [
    "JudgeTask",
    "training_settings",
    "open_classifier_folder",
    "classifier_info",
    "check_classifier_fits",
    "train_classifier_for",
]


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
        from vlvae.models.classifier import AttributeClassifier, RelationalSlotClassifier

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
        from vlvae.training.tasks import step_dataloader

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


def _stage_of(config: ClassifierConfig) -> StageConfig:
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
    """classifier.json's record of what a classifier is made from: data folder and kind, image size,
    vocabulary sha256, and ``fields`` (settings, preset, ...)."""
    from vlvae.data.format import vocabulary_sha256

    return {
        "data": str(Path(data).resolve()),
        **fields,
        "image_size": int(manifest["image_size"]),
        "dataset": manifest_dataset(manifest),
        "vocab_sha256": vocabulary_sha256(data),
    }


def _trained_on(info: dict) -> str:
    """The data set a classifier.json records; for one written before it was recorded, the data set
    whose classifiers record its ``kind`` (the default data set's record none)."""
    if info.get("dataset"):
        return info["dataset"]
    kind = info.get("kind")
    return next(
        (s.name for s in DATASETS.values() if s.classifier_kind and s.classifier_kind == kind),
        DEFAULT_DATASET,
    )


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
    info = read_json(
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

    kind = manifest_dataset(manifest)
    trained_on = _trained_on(info)
    if trained_on != kind:
        raise VLVAEError(
            f"the classifier in {directory} was trained on {dataset_title(trained_on)} "
            f"data, {whose} is {dataset_title(kind)}; {remedy('-' + kind)}"
        )
    size, trained_size = int(manifest["image_size"]), info.get("image_size")
    if trained_size is not None and int(trained_size) != size:
        raise VLVAEError(
            f"the classifier in {directory} was trained on {trained_size} px images, {whose} has "
            f"{size} px; {remedy(f'-{size}px')}"
        )
    if info.get("vocab_sha256"):
        from vlvae.data.format import vocabulary_sha256

        if info["vocab_sha256"] != vocabulary_sha256(data):
            raise VLVAEError(
                f"the classifier in {directory} was trained with another vocabulary (vocab.json) than "
                f"{whose}; {remedy('-new')}"
            )
    return info


def train_classifier_for(
    data: Path,
    out: Path,
    preset_name: str = "cpu",
    overrides: list[str] = (),
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train the classifier that suits the data set (its spec's judge): Two Objects attributes or CelebA labels."""
    return data_spec(data).train_classifier(data, out, preset_name, overrides, resume, progress)
