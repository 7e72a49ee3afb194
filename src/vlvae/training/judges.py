"""What every judge's training shares: the independent classifiers that score generated images
(docs/design.md §6).

A judge is trained on a data set's real training images only, independently of the VLVAE, and
then checked on real validation images (its ``real_accuracy``, stored in its ``metrics.json``).
Each data set's package declares its judge (:class:`vlvae.datasets.Judge`): how it is trained,
with the task and folder conventions of this module, and how it is loaded to score images.

A classifier folder holds ``classifier.json`` (what it is made from: its judge, data folder and data set,
image size, vocabulary sha256, settings; a folder holding another is refused), ``weights.safetensors``,
``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from vlvae.config import RUN_PRECISION, ClassifierConfig, StageConfig, record_differences
from vlvae.data.format import vocabulary_sha256
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json, read_json
from vlvae.models.classifier import judge_network
from vlvae.seeds import step_seed
from vlvae.training.schedule import adam_with_schedule
from vlvae.training.tasks import seed_step, step_dataloader

__all__ = [
    "JudgeFit",
    "JudgeTask",
    "training_settings",
    "read_classifier_info",
    "judge_stage",
    "open_classifier_folder",
    "classifier_info",
]


# ----------------------------------------------------------------------------- what every judge shares


class JudgeFit(L.LightningModule):
    """What every judge's fit shares: per-step seeds, the step-indexed training batches, the first
    ``val_examples`` validation examples, the logged loss and accuracy, Adam with the stage's schedule.

    A judge supplies its network (``self.model``), its examples (:meth:`_data`) and its loss and
    accuracy on a batch (:meth:`_losses`). A judge fits in one process, whatever the config's
    ``devices`` and ``num_nodes`` (:func:`vlvae.training.run.fit_stage` makes it so, and refuses to fit
    one in a non-zero rank of a distributed launch), so its batch is never split.
    """

    def __init__(self, config: ClassifierConfig, stage: StageConfig, data_root: str, seed: int):
        super().__init__()
        self.config, self.stage, self.data_root, self.seed = config, stage, data_root, seed
        self.start_step = 0

    def _data(self, split: str) -> Dataset:
        """The judge's examples of a split (``train`` or ``val``)."""
        raise NotImplementedError

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to minimise, accuracy) on a batch."""
        raise NotImplementedError

    def _batch_size(self, batch) -> int | None:
        """The batch size validation logs weigh by (None: Lightning infers it)."""
        return None

    def trainable(self):
        return self.model

    def on_train_batch_start(self, batch, batch_idx):
        seed_step(step_seed(self.seed, self.global_rank, self.global_step), self.device)

    def train_dataloader(self):
        data = self._data("train")
        return step_dataloader(
            self, data, self.stage.batch_size, self.stage.steps, self.seed, self.start_step
        )

    def val_dataloader(self):
        data = self._data("val")
        n = min(len(data), self.stage.val_examples)
        return DataLoader(torch.utils.data.Subset(data, range(n)), batch_size=128)

    def training_step(self, batch, batch_idx):
        loss, acc = self._losses(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/accuracy", acc, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._losses(batch)
        n = self._batch_size(batch)
        self.log("val/loss", loss, sync_dist=True, batch_size=n)
        self.log("val/accuracy", acc, sync_dist=True, batch_size=n)

    def configure_optimizers(self):
        return adam_with_schedule(self.model.parameters(), self.stage)


class JudgeTask(JudgeFit):
    """Cross-entropy training of a classifier judge: one categorical per slot of
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
        super().__init__(config, stage, data_root, seed)
        self.model = judge_network(image_size, slot_sizes, n_conditions, vars(config))

    def _logits(self, batch) -> list[torch.Tensor]:
        """One (N, classes) logit tensor per slot for a batch."""
        raise NotImplementedError

    def _losses(self, batch):
        logits = self._logits(batch)
        targets = batch["targets"]
        loss = sum(F.cross_entropy(logit, targets[:, s]) for s, logit in enumerate(logits))
        correct = torch.stack([logit.argmax(-1) == targets[:, s] for s, logit in enumerate(logits)], 1)
        return loss, correct.float().mean()


def training_settings(config: ClassifierConfig) -> dict:
    """The settings that decide a classifier's weights (its acceptance threshold does not), as
    classifier.json records them: ``precision`` only where the judge names its own (a folder written
    before the key existed trained under the run's and records none)."""
    return {
        k: v
        for k, v in config.__dict__.items()
        if k != "min_accuracy" and not (k == "precision" and v == RUN_PRECISION)
    }


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


#: Keys of classifier.json added later (provenance, the judge, the seed of the data set's judges): a
#: folder written before them is reopened without them.
_LATER_KEYS = ("judge", "dataset", "vocab_sha256", "seed")


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
            differences = "; ".join(record_differences(existing, comparable, "the folder"))
            raise VLVAEError(
                f"{out} holds a classifier trained with other settings or data ({differences}); "
                "choose another --out"
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
        "dataset": manifest.get("dataset"),
        "vocab_sha256": vocabulary_sha256(data),
    }
