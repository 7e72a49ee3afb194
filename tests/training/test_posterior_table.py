"""The frozen q(z|x) table of stages 2-3 is aligned with the batches of the real training loader.

``_FrozenVLVAEMixin.posterior_table`` encodes every training image once, when a step first
draws z ~ q(z|x); each step then looks rows up by ``batch["index"]``, and training batches
carry no images. If the table's row order and the data set's index disagreed, stage 2 (q_Agg)
and stage 3 would silently fit the posteriors of other images. The check here runs a real
(short) Lightning fit with the shuffled step sampler and compares the table rows of each batch
with a fresh encoding of the images the batch's indices name.
"""

import dataclasses

import lightning as L
import numpy as np
import torch

from vlvae.config import preset
from vlvae.data.dataset import ImageTextDataset, TextsOnly, images_to_float
from vlvae.models.vlvae import VLVAE
from vlvae.training import tasks
from vlvae.training.tasks import AggregatePriorTask, TextPosteriorTask


class _Record(L.Callback):
    """Keeps each training batch and what the task draws from q(z|x) for it under a fixed seed."""

    def __init__(self):
        self.batches, self.draws = [], []

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        self.batches.append({k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        torch.manual_seed(1234 + batch_idx)
        self.draws.append(task.sample_image_posterior(batch).clone())


def _fit(task, steps=3, callbacks=(), precision="32-true"):
    trainer = L.Trainer(
        max_steps=steps,
        precision=precision,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=list(callbacks),
    )
    trainer.fit(task)


def test_table_rows_at_batch_index_are_the_batch_images_posteriors(data):
    cfg = preset("tiny")
    torch.manual_seed(0)
    vlvae = VLVAE(cfg.model)
    task = TextPosteriorTask(cfg.model, cfg.text_posterior, str(data), seed=5, vlvae=vlvae, objective="agg")
    record = _Record()
    _fit(task, callbacks=[record])

    assert task._posterior_table is not None, "the first step did not tabulate q(z|x)"
    table_mean, table_logvar = task._posterior_table
    train = task.dataset("train")
    n_train = len(train)
    assert table_mean.shape == (n_train, cfg.model.latent_dim) == table_logvar.shape
    assert len(record.batches) == 3

    seen = torch.cat([b["index"] for b in record.batches])
    # The loader really shuffles (otherwise an off-by-ordering bug could go unnoticed).
    assert not torch.equal(seen, torch.arange(len(seen)))

    for batch, draw, batch_idx in zip(record.batches, record.draws, range(3)):
        assert set(batch) == {"text", "index"}, "training batches of stages 2-3 should carry no images"
        idx = batch["index"]
        torch.testing.assert_close(batch["text"], train._texts[idx], rtol=0, atol=0)
        images = torch.from_numpy(np.array(train.images[idx.numpy()]))
        with torch.no_grad():
            mean, logvar = vlvae.posterior.encode(images_to_float(images))
        torch.testing.assert_close(table_mean[idx], mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(table_logvar[idx], logvar, rtol=1e-5, atol=1e-6)

        # The check discriminates: the rows of other images (a cyclic shift of the
        # batch's indices) differ from every one of this batch's encodings.
        shifted = idx.roll(1)
        for row, other in zip(table_mean[shifted], mean):
            assert not torch.allclose(row, other, rtol=1e-3, atol=1e-4)

        # What a training step draws is mean + std · ε of the batch's own images.
        torch.manual_seed(1234 + batch_idx)
        expected = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        torch.testing.assert_close(draw, expected, rtol=1e-5, atol=1e-6)


def test_q_true_never_builds_the_table_and_the_prior_does(data):
    """q_True's objective never draws z ~ q(z|x), so its fit never encodes the training images; the
    prior's does, at its first step."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    q_true = TextPosteriorTask(
        cfg.model, cfg.text_posterior, str(data), seed=5, vlvae=VLVAE(cfg.model), objective="true"
    )
    _fit(q_true, steps=2)
    assert q_true.global_step == 2 and q_true._posterior_table is None
    prior = AggregatePriorTask(cfg.model, cfg.prior, str(data), seed=6, vlvae=VLVAE(cfg.model))
    _fit(prior, steps=1)
    assert prior._posterior_table is not None and len(prior._posterior_table[0]) == len(
        prior.dataset("train")
    )


def test_joint_inference_batches_keep_their_images(data):
    """A joint-inference model's q(z|x, y) reads each batch's images and texts: no table, images kept."""
    cfg = preset("tiny")
    model = dataclasses.replace(cfg.model, joint_inference=True)
    task = TextPosteriorTask(
        model, cfg.text_posterior, str(data), seed=5, vlvae=VLVAE(model), objective="agg"
    )
    assert isinstance(task.training_data(), ImageTextDataset)
    record = _Record()
    _fit(task, steps=2, callbacks=[record])
    assert task._posterior_table is None
    assert all("image" in b for b in record.batches)
    plain = TextPosteriorTask(
        cfg.model, cfg.text_posterior, str(data), seed=5, vlvae=VLVAE(cfg.model), objective="agg"
    )
    assert isinstance(plain.training_data(), TextsOnly)


def test_the_table_is_built_in_full_precision_under_mixed_precision(data):
    """A step runs under bf16 autocast with ``bf16-mixed``; the table built in it is still q(z|x) in
    float32, equal to the one built outside any autocast."""
    cfg = preset("tiny")
    torch.manual_seed(0)
    vlvae = VLVAE(cfg.model)
    task = TextPosteriorTask(cfg.model, cfg.text_posterior, str(data), seed=5, vlvae=vlvae, objective="agg")
    _fit(task, steps=1, precision="bf16-mixed")
    expected = vlvae.posterior_table(task.dataset("train").images)
    for built, reference in zip(task._posterior_table, expected):
        assert built.dtype == torch.float32
        assert torch.equal(built, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the check can fail: autocast moves the table
        assert not torch.equal(vlvae.posterior_table(task.dataset("train").images)[0], expected[0])


class _Clock:
    """A stand-in for the tasks module's ``time``: perf_counter reads a number the test moves."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_the_tables_seconds_are_not_training_minutes(data, monkeypatch):
    """The stage's training clock (``val/minutes``) leaves out the one-off table, as it did when the
    table was built before the clock started."""
    clock = _Clock()
    monkeypatch.setattr(tasks, "time", clock)
    cfg = preset("tiny")
    task = AggregatePriorTask(cfg.model, cfg.prior, str(data), seed=6, vlvae=VLVAE(cfg.model))
    real_table = task.vlvae.posterior_table

    def slow_table(*args, **kwargs):
        clock.now += 600.0  # ten minutes to encode the training images
        return real_table(*args, **kwargs)

    monkeypatch.setattr(task.vlvae, "posterior_table", slow_table)
    _fit(task, steps=2)
    clock.now += 30.0  # half a minute of training after the table
    assert task._posterior_table is not None
    assert abs(task.training_minutes() - 0.5) < 1e-9
