"""Lightning modules for the paper's three training stages.

Stage 1 (:class:`VLVAETask`) maximises the weighted ELBO of Eqns 1-2 with KL
warm-up. Stage 2 (:class:`TextPosteriorTask`) freezes the VLVAE and fits
q_phi(z|y) either to the true posterior (Eqn 3, ``objective="true"``) or to the
aggregate of the image posteriors of each text (Eqns 4-5, ``objective="agg"``).
Stage 3 (:class:`AggregatePriorTask`) freezes the VLVAE and fits q_phi(z) to the
aggregate posterior (§4.2). Only phi is optimised in stages 2-3; the frozen
VLVAE stays in evaluation mode (batch-norm statistics and dropout fixed).

Every stage's ``batch_size`` is the global batch: in a distributed fit each of the world's
processes takes its slice of the batch of step t (:func:`step_dataloader`), so the examples of a
step do not depend on the number of processes.

References:
    Cremer & Kushman 2018, "On the importance of learning aggregate posteriors
    in multimodal latent variable models", https://arxiv.org/abs/1806.08454
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from torch.utils.data import DataLoader, Subset

from vlvae.config import StageConfig, decoder_from, stage_budget
from vlvae.data.dataset import ImageTextDataset, StepSampler, TextsOnly, images_to_float
from vlvae.errors import VLVAEError
from vlvae.methods import MethodConfig, build_model
from vlvae.methods.stages import (
    PRIOR,
    TEXT_POSTERIOR,
    Stage,
    stages_fitting,
    text_posterior_stage,
    validation_stages,
)
from vlvae.models.config import ModelConfig
from vlvae.models.posteriors import AggregatePrior, TextPosterior
from vlvae.models.vlvae import VLVAE
from vlvae.objectives import kl_warmup
from vlvae.seeds import VALIDATION_STEP, step_seed
from vlvae.training.schedule import adam_with_schedule

__all__ = [
    "seed_step",
    "step_dataloader",
    "StageTask",
    "VLVAETask",
    "TextPosteriorTask",
    "AggregatePriorTask",
    "STAGE_TASKS",
    "BestWeights",
    "CheckpointAfterValidation",
]


def seed_step(seed: int, device: torch.device | str) -> None:
    """Seed torch's random stream for one step (or a validation pass) computed on ``device``.

    On an accelerator this is ``torch.manual_seed(seed)``. On the CPU only the CPU generator is
    seeded: it is the only one a CPU computation draws from, and its state is the same after either
    call (tested), so CPU runs are unchanged to the bit. Why not ``torch.manual_seed`` there: it also
    seeds every other device torch knows (MPS and custom ones too); for CUDA, XPU and MTIA, when not
    started, it queues the seed and records the Python stack with it, about 0.5 ms at a trainer's
    stack depth, paid at every step
    (docs/design.md §8.2, "What a step costs besides its arithmetic").
    """
    if torch.device(device).type == "cpu":
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def step_dataloader(
    module: L.LightningModule,
    data,
    batch_size: int,
    steps: int,
    seed: int,
    start_step: int,
    num_workers: int = 0,
) -> DataLoader:
    """A training loader whose batch at step t is a function of (seed, t), resumable mid-run.

    ``batch_size`` is the global batch: each of the trainer's ``world_size`` processes loads
    ``batch_size / world_size`` examples, its rank's slice of the global batch of step t (see
    :class:`StepSampler`), so the examples of step t are the same on one process or on many.
    The sampler starts every new iteration at the module's current global step.

    Raises:
        VLVAEError: ``batch_size`` is not a multiple of the world size (the configuration refuses
            that before anything is written: :func:`vlvae.config.check_global_batches`).
    """
    world = module.trainer.world_size
    if batch_size % world:
        raise VLVAEError(
            f"the global batch of {batch_size} examples does not split over {world} processes; set the "
            f"stage's batch_size to a multiple of {world}"
        )
    per_process = batch_size // world
    sampler = StepSampler(len(data), per_process, steps, seed, rank=module.global_rank, world_size=world)
    sampler.start_step = start_step
    sampler.step_source = lambda: module.global_step
    return DataLoader(
        data,
        batch_size=per_process,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        persistent_workers=num_workers > 0,
    )


class BestWeights(L.Callback):
    """Keeps a copy of the trainable weights at the best validation pass while fitting.

    ``monitor`` is a logged validation metric to maximise (e.g. ``val/text_elbo``). The copy, its
    step and value travel in the checkpoint, so a resumed run keeps the best of all sessions.
    :meth:`restore` loads the copy into the module (nothing happens if no pass was seen).
    """

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.best_state: dict | None = None

    def on_validation_end(self, trainer, pl_module):
        if (
            trainer.state.fn != "fit"
            or trainer.sanity_checking
            or self.monitor not in trainer.callback_metrics
        ):
            return
        value = float(trainer.callback_metrics[self.monitor])
        if self.best_value is None or value > self.best_value:
            self.best_value, self.best_step = value, int(trainer.global_step)
            self.best_state = {
                k: v.detach().cpu().clone() for k, v in pl_module.trainable().state_dict().items()
            }

    def restore(self, module: torch.nn.Module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)

    def state_dict(self):
        return {
            "monitor": self.monitor,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state):
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.best_state = state["best_state"]


class CheckpointAfterValidation(Checkpoint):
    """Writes ``path`` (the stage's ``last.ckpt``) after every validation pass while fitting.

    Used with early stopping instead of a checkpoint every N steps, which Lightning writes before
    that step's validation pass: a fit resumed from such a checkpoint would skip the pass, and its
    patience would count differently. As a :class:`~lightning.pytorch.callbacks.Checkpoint`, it
    replaces Lightning's default checkpointing and runs after the other callbacks, so the checkpoint
    holds the early-stopping state after the pass.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)


class StageTask(L.LightningModule):
    """Data loading and optimisation shared by every stage.

    Args:
        model_config: architecture.
        stage: optimisation settings of this stage (its ``batch_size`` is the global batch).
        data_root: the data-set folder.
        seed: seeds the step sampler (the batches are a function of seed and step).
        num_workers: data-loader processes.
    """

    def __init__(
        self, model_config: ModelConfig, stage: StageConfig, data_root: str, seed: int, num_workers: int = 0
    ):
        super().__init__()
        self.model_config, self.stage, self.data_root = model_config, stage, str(data_root)
        self.seed, self.num_workers = seed, num_workers
        self.start_step = 0
        # Wall-clock seconds of fitting, carried across --resume in the checkpoint, so that
        # validation curves can be drawn against the time they cost (``val/minutes``).
        self._seconds_before = 0.0
        self._session_started = None

    def training_minutes(self) -> float:
        """Wall-clock minutes spent fitting this stage so far, over every session (resumes included)."""
        session = 0.0 if self._session_started is None else time.perf_counter() - self._session_started
        return (self._seconds_before + session) / 60.0

    def on_train_start(self):
        self._session_started = time.perf_counter()

    @contextlib.contextmanager
    def off_the_clock(self):
        """Leave the time spent inside out of the stage's training minutes (a one-off such as the
        frozen q(z|x) table, which is setup, not training)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            if self._session_started is not None:
                self._session_started += time.perf_counter() - started

    def on_save_checkpoint(self, checkpoint):
        checkpoint["training_seconds"] = 60.0 * self.training_minutes()

    def on_load_checkpoint(self, checkpoint):
        self._seconds_before = float(checkpoint.get("training_seconds", 0.0))

    def on_validation_epoch_start(self):
        # Every validation pass draws the same noise (common random numbers), so the curve moves
        # with the weights, not with the draws; training reseeds at each step, so this changes
        # nothing about training.
        seed_step(step_seed(self.seed, self.global_rank, VALIDATION_STEP), self.device)

    def on_validation_epoch_end(self):
        if self.trainer.state.fn == "fit":
            self.log("val/minutes", self.training_minutes(), sync_dist=True)

    def trainable(self) -> torch.nn.Module:
        """The module whose parameters this stage optimises and saves."""
        raise NotImplementedError

    def dataset(self, split: str) -> ImageTextDataset:
        """The split's data set, read once per task (loaders and the posterior table share it)."""
        cache = self.__dict__.setdefault("_datasets", {})
        if split not in cache:
            cache[split] = ImageTextDataset(Path(self.data_root), split)
        return cache[split]

    def on_train_batch_start(self, batch, batch_idx):
        # The randomness of step t (reparameterisation noise, dropout) is a function of
        # (seed, rank, t), so a run resumed from a checkpoint repeats an uninterrupted one exactly.
        seed_step(step_seed(self.seed, self.global_rank, self.global_step), self.device)

    def training_data(self):
        """The examples the training loader draws from (the training split)."""
        return self.dataset("train")

    def train_dataloader(self) -> DataLoader:
        data = self.training_data()
        return step_dataloader(
            self,
            data,
            self.stage.batch_size,
            stage_budget(self.stage),
            self.seed,
            self.start_step,
            self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        """The last ``val_examples`` of the validation split: held out from the evaluation, which
        scores the first examples, so that stopping and weight selection never see what is scored."""
        data = self.dataset("val")
        n = min(len(data), self.stage.val_examples)
        return DataLoader(
            Subset(data, range(len(data) - n, len(data))),
            batch_size=min(self.stage.batch_size * 2, max(n, 1)),
            shuffle=False,
            num_workers=0,
        )

    def configure_optimizers(self):
        return adam_with_schedule(self.trainable().parameters(), self.stage)

    def _log_all(self, prefix: str, values: dict, batch_size: int, prog_bar=()):
        for key, value in values.items():
            self.log(
                f"{prefix}/{key}",
                value,
                batch_size=batch_size,
                prog_bar=key in prog_bar,
                sync_dist=prefix == "val",
                on_step=prefix == "train",
                on_epoch=prefix == "val",
            )


class VLVAETask(StageTask):
    """Stage 1: the VLVAE with image-only inference q(z|x) (Eqns 1-2), or another registered method.

    Args:
        scorer: optional judge ``(images (N, 3, H, W) in [0, 1], texts (N, L)) -> (N,) correctness``;
            when given, each validation pass also logs ``val/correctness``, the correctness of
            images decoded from z ~ q(z|x) against the paired text (the ceiling of any q(z|y)).
        method: the :class:`~vlvae.methods.MethodConfig` whose model stage 1 trains (default: the
            paper's VLVAE). Its ``forward`` gives the loss; a baseline's extra ``terms`` are logged too.
    """

    def __init__(self, *args, scorer: Callable | None = None, method=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = build_model(self.model_config, method or MethodConfig())
        self.scorer = scorer

    def trainable(self):
        return self.model

    def decoder_phase(self) -> bool:
        """Whether the current step is one of ``stage.decoder_steps`` after ``stage.steps``, which train
        the image decoder alone (:meth:`vlvae.models.vlvae.VLVAE.log_px_decoder_only`)."""
        start = decoder_from(self.stage)
        return start is not None and self.global_step >= start

    def train(self, mode: bool = True):
        # In the image-decoder steps the held networks stay in evaluation mode (their batch-norm
        # statistics fixed) whatever Lightning does, as the frozen VLVAE of stages 2-3 does.
        super().train(mode)
        if mode and self.decoder_phase():
            self.model.eval()
            self.model.image_decoder.train()
        return self

    def on_train_batch_start(self, batch, batch_idx):
        super().on_train_batch_start(batch, batch_idx)
        if self.decoder_phase() and self.model.posterior.training:
            self.train()  # the session's first image-decoder step; after it, train() keeps them held

    def training_step(self, batch, batch_idx):
        x, y = images_to_float(batch["image"]), batch["text"]
        if self.decoder_phase():
            log_px = self.model.log_px_decoder_only(x)
            loss = -(self.stage.w_x * log_px).mean()
            # Names of their own: the whole model's train/loss and train/log_px keep one meaning.
            self._log_all("train", {"decoder_loss": loss, "decoder_log_px": log_px.mean()}, len(x))
            return loss
        kl_weight = kl_warmup(self.global_step, self.stage.kl_warmup_steps)
        out = self.model(x, y, kl_weight=kl_weight, w_x=self.stage.w_x, w_y=self.stage.w_y)
        self._log_all(
            "train",
            {
                "loss": out.loss,
                "elbo": out.elbo,
                "log_px": out.log_px,
                "log_py": out.log_py,
                "kl": out.kl,
                "kl_weight": kl_weight,
                **getattr(out, "terms", {}),
            },
            len(x),
            prog_bar=("elbo", "kl", "log_py"),
        )
        return out.loss

    def validation_step(self, batch, batch_idx):
        x, y = images_to_float(batch["image"]), batch["text"]
        out = self.model(x, y)
        values = {
            "elbo": out.elbo,
            "log_px": out.log_px,
            "log_py": out.log_py,
            "kl": out.kl,
            **getattr(out, "terms", {}),
        }
        if self.scorer is not None:
            with torch.no_grad():
                z = self.model.image_posterior(x, y).sample()
                values["correctness"] = self.scorer(self.model.image_mean(z), y).mean()
        self._log_all("val", values, len(x))


class _FrozenVLVAEMixin:
    """Keeps a loaded VLVAE frozen and in evaluation mode whatever Lightning does.

    Because the frozen q(z|x) is a fixed Gaussian per training image, its mean
    and log-variance are computed once, when a step first asks for z ~ q(z|x);
    each step then draws from that table instead of re-running the image encoder
    (the same distribution, an order of magnitude faster on a CPU), so training
    batches carry texts and indices, not images (:class:`TextsOnly`), and a fit
    that never draws z ~ q(z|x), such as q_True's, never builds the table. A
    joint-inference model (q(z|x, y)) is encoded batch by batch, from images.
    """

    def _freeze(self, vlvae: VLVAE) -> VLVAE:
        vlvae.requires_grad_(False)
        vlvae.eval()
        self._posterior_table = None
        return vlvae

    def train(self, mode: bool = True):
        super().train(mode)
        self.vlvae.eval()
        return self

    def _from_table(self) -> bool:
        """Whether training draws z ~ q(z|x) from the table (every model but a joint-inference one)."""
        return not self.model_config.joint_inference

    def training_data(self):
        """The training split, without its images when z ~ q(z|x) comes from the table."""
        data = self.dataset("train")
        return TextsOnly(data) if self._from_table() else data

    @torch.no_grad()
    def posterior_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x)'s mean and log-variance for every training image, computed on first use.

        Built in full precision whatever the trainer's (a step runs under mixed precision's
        autocast; the frozen table is read at every step after), and its seconds are not counted
        in the stage's training minutes (``val/minutes``), as when it was built before the clock
        started.
        """
        if self._posterior_table is None:
            with self.off_the_clock(), torch.autocast(self.device.type, enabled=False):
                self._posterior_table = self.vlvae.posterior_table(self.dataset("train").images)
        return self._posterior_table

    @torch.no_grad()
    def sample_image_posterior(self, batch: dict) -> torch.Tensor:
        """z ~ q(z|x) for the batch's images: (batch, latent)."""
        if self.training and self._from_table():
            mean, logvar = (t[batch["index"]] for t in self.posterior_table())
            return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        return self.vlvae.image_posterior(images_to_float(batch["image"]), batch["text"]).sample()


class TextPosteriorTask(_FrozenVLVAEMixin, StageTask):
    """Stage 2: q_phi(z|y) fitted with a registered text posterior's objective (:mod:`vlvae.methods.stages`):
    the true posterior (q_True, Eqn 3) or the aggregate posterior (q_Agg, Eqn 5), or any other entry.

    Args:
        vlvae: the trained stage-1 model (frozen here).
        objective: the registered text-posterior stage to fit, or its ``--objective`` (``"true"``,
            ``"agg"``).
    """

    def __init__(self, model_config, stage, data_root, seed, vlvae: VLVAE, objective, num_workers=0):
        super().__init__(model_config, stage, data_root, seed, num_workers)
        fitted = objective if isinstance(objective, Stage) else text_posterior_stage(objective)
        if fitted.fits != TEXT_POSTERIOR:
            raise ValueError(f"stage {fitted.name!r} fits a {fitted.fits}, not a text posterior")
        self.fitted = fitted
        # Early stopping watches the objective this stage maximises (its registry entry's monitor).
        self.monitor = fitted.monitor
        self.vlvae = self._freeze(vlvae)
        self.posterior = TextPosterior(model_config, family=stage.posterior_family)

    @classmethod
    def for_stage(cls, fitted: Stage, model_config, stage, data_root, seed, vlvae, num_workers=0):
        """The task that fits the registered text posterior ``fitted`` (:data:`STAGE_TASKS`)."""
        return cls(model_config, stage, data_root, seed, vlvae, fitted, num_workers)

    def trainable(self):
        return self.posterior

    def _value(self, fitted: Stage, batch, q_y):
        """``fitted``'s objective per example (z ~ q(z|x) drawn only if the objective asks for it)."""
        return fitted.objective(q_y, batch["text"], self.vlvae, partial(self.sample_image_posterior, batch))

    def training_step(self, batch, batch_idx):
        y = batch["text"]
        q_y = self.posterior(y)
        value, name = self._value(self.fitted, batch, q_y).mean(), self.fitted.metric
        self._log_all("train", {name: value}, len(y), prog_bar=(name,))
        return -value

    def validation_step(self, batch, batch_idx):
        y = batch["text"]
        q_y = self.posterior(y)
        # Every text posterior's objective, in the registry's validation order (q_Agg's cross-entropy
        # first: its z ~ q(z|x) is drawn before the text ELBO's z, as it always was).
        values = {fitted.metric: self._value(fitted, batch, q_y).mean() for fitted in validation_stages()}
        self._log_all("val", values, len(y))


class AggregatePriorTask(_FrozenVLVAEMixin, StageTask):
    """Stage 3: q_phi(z) fitted to the aggregate posterior E_pD(x) q(z|x) (§4.2), or with another
    registered prior's objective (``fitted``; default: the registry's one learned prior)."""

    def __init__(self, model_config, stage, data_root, seed, vlvae: VLVAE, num_workers=0, fitted=None):
        super().__init__(model_config, stage, data_root, seed, num_workers)
        self.vlvae = self._freeze(vlvae)
        self.prior = AggregatePrior(model_config, family=stage.posterior_family)
        self.fitted = fitted if fitted is not None else stages_fitting(PRIOR)[0]
        self.monitor = self.fitted.monitor

    @classmethod
    def for_stage(cls, fitted: Stage, model_config, stage, data_root, seed, vlvae, num_workers=0):
        """The task that fits the registered prior ``fitted`` (:data:`STAGE_TASKS`)."""
        return cls(model_config, stage, data_root, seed, vlvae, num_workers, fitted)

    def trainable(self):
        return self.prior

    def _value(self, batch):
        image_z = partial(self.sample_image_posterior, batch)
        return self.fitted.objective(self.prior(), batch["text"], self.vlvae, image_z).mean()

    def training_step(self, batch, batch_idx):
        value, name = self._value(batch), self.fitted.metric
        self._log_all("train", {name: value}, len(batch["index"]), prog_bar=(name,))
        return -value

    def validation_step(self, batch, batch_idx):
        self._log_all("val", {self.fitted.metric: self._value(batch)}, len(batch["image"]))


#: How training builds the Lightning task of a stage fitted on a frozen model, by what the stage fits
#: (:attr:`vlvae.methods.stages.Stage.fits`): ``factory(stage, model_config, stage_config, data_root,
#: seed, vlvae, num_workers)``.
STAGE_TASKS: dict[str, Callable] = {
    TEXT_POSTERIOR: TextPosteriorTask.for_stage,
    PRIOR: AggregatePriorTask.for_stage,
}
