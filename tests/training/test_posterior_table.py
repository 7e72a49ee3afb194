"""The frozen q(z|x) table of stages 2-3 is aligned with the batches of the real training loader.

``_FrozenVLVAEMixin.on_fit_start`` encodes every training image once; each step then
looks rows up by ``batch["index"]``. If the table's row order and the data set's index
disagreed, stage 2 (q_Agg) and stage 3 would silently fit the posteriors of other images.
The check here runs a real (short) Lightning fit with the shuffled step sampler and compares
the table rows of each batch with a fresh encoding of the batch's own images.
"""

import lightning as L
import torch

from vlvae.config import preset
from vlvae.data.dataset import images_to_float
from vlvae.models.vlvae import VLVAE
from vlvae.training.tasks import TextPosteriorTask


class _Record(L.Callback):
    """Keeps each training batch and what the task draws from q(z|x) for it under a fixed seed."""

    def __init__(self):
        self.batches, self.draws = [], []

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        self.batches.append({k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()})
        torch.manual_seed(1234 + batch_idx)
        self.draws.append(task.sample_image_posterior(batch).clone())


def test_table_rows_at_batch_index_are_the_batch_images_posteriors(data):
    cfg = preset("tiny")
    torch.manual_seed(0)
    vlvae = VLVAE(cfg.model)
    task = TextPosteriorTask(cfg.model, cfg.text_posterior, str(data), seed=5, vlvae=vlvae, objective="agg")
    record = _Record()
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(task)

    assert task._posterior_table is not None, "on_fit_start did not tabulate q(z|x)"
    table_mean, table_logvar = task._posterior_table
    n_train = len(task.dataset("train"))
    assert table_mean.shape == (n_train, cfg.model.latent_dim) == table_logvar.shape
    assert len(record.batches) == 3

    seen = torch.cat([b["index"] for b in record.batches])
    # The loader really shuffles (otherwise an off-by-ordering bug could go unnoticed).
    assert not torch.equal(seen, torch.arange(len(seen)))

    for batch, draw, batch_idx in zip(record.batches, record.draws, range(3)):
        idx = batch["index"]
        with torch.no_grad():
            mean, logvar = vlvae.posterior.encode(images_to_float(batch["image"]))
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
