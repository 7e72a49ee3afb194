"""Training the caption judge: an image-conditioned text model p_judge(y | x) that judges any data set.

The attribute classifiers of :mod:`vlvae.training.judges` know the words of one data set each; the
caption judge needs only images and texts (:class:`vlvae.models.captioner.Captioner`). It is fitted
on the real training pairs only, with its own network and seed, by maximum likelihood with teacher
forcing: the loss of a batch is the masked cross-entropy

    − Σ_n Σ_t m_nt log p_judge(y_nt | y_n,<t, x_n) / Σ_n Σ_t m_nt,

m being :func:`vlvae.models.text.text_mask` (every word of a text, its end word included; none of
the slots after it), i.e. the mean negative log-likelihood per word of the batch.

It scores an (image, text) pair (:class:`CaptionScorer`) by the text's per-word log-likelihood
(1/|y|) Σ_t log p_judge(y_t | y_<t, x) and by its teacher-forced word accuracy, the fraction of the
text's words that are the judge's most probable word given the image and the true previous words
(:func:`vlvae.models.captioner.word_scores`); the accuracy, in [0, 1], is its correctness score.

Its reference points (:func:`reference_scores`, stored in ``metrics.json``): the *ceiling*, real
validation images scored with their own texts (what a perfect generator would score); the *floor*,
the same texts on images that carry no information: a blank grey image and the mean training image
(the judge's prior over texts; the floor is the higher of the two, per score).

The folder is a classifier folder (:mod:`vlvae.training.judges`): ``classifier.json`` (judge
``caption_judge``, data folder and data set, image size, vocabulary sha256, settings, seed, the
text model's sizes; a folder holding another is refused), ``weights.safetensors`` (tag
``caption_judge``), ``last.ckpt`` while unfinished, ``logs/`` and, last, ``metrics.json`` with
``real_accuracy`` (``overall``: the ceiling's word accuracy, so that the judges' threshold
``real_accuracy.overall >= min_accuracy`` applies as it is), ``ceiling``, ``floor`` and
``min_accuracy``: the floor's word accuracy (the judge must beat a guess of the words without the
image), capped by the preset's ``caption_judge.min_accuracy``, which the presets copy from the attribute
classifier's and would refuse any judge of free captions (a paraphrase's words cannot all be
predicted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vlvae.config import ClassifierConfig, ExperimentConfig, StageConfig
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.format import load_images, read_manifest
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError
from vlvae.io import atomic_write_json
from vlvae.locking import folder_lock
from vlvae.models.captioner import Captioner, word_scores
from vlvae.models.text import text_mask
from vlvae.paths import check_output_dir
from vlvae.runs import load_weights
from vlvae.seeds import VALIDATION_STEP, caption_judge_seed, step_seed
from vlvae.training.judges import (
    JudgeFit,
    classifier_info,
    judge_stage,
    open_classifier_folder,
    training_settings,
)
from vlvae.training.run import check_single_process, fit_stage
from vlvae.training.tasks import seed_step

__all__ = [
    "CAPTION_JUDGE",
    "TRAIN_COMMAND",
    "EMBEDDING_DIM",
    "HIDDEN",
    "REFERENCE_EXAMPLES",
    "MEAN_IMAGE_EXAMPLES",
    "build_captioner",
    "CaptionJudgeTask",
    "CaptionScorer",
    "reference_scores",
    "train_caption_judge",
]

#: The caption judge's key: the tag of its weights and the ``judge`` its classifier.json records.
CAPTION_JUDGE = "caption_judge"
#: The command named in messages (the lock's holder, the remedies).
TRAIN_COMMAND = "vlvae train classifier"
#: The text model's sizes (recorded in classifier.json, read back by :func:`build_captioner`).
EMBEDDING_DIM, HIDDEN = 64, 128
#: The real validation images of the ceiling (and ``real_accuracy``) and of the floor: the first this many.
REFERENCE_EXAMPLES = 2_000
#: The floor's mean training image: the mean of the first this many training images.
MEAN_IMAGE_EXAMPLES = 2_000


def build_captioner(image_size: int, captioner: dict, classifier: dict) -> Captioner:
    """The caption judge's network from what classifier.json records: ``captioner`` (vocab_size,
    text_length, end_index, embedding_dim, hidden) and ``classifier`` (the encoder's settings)."""
    return Captioner(
        int(image_size),
        int(captioner["vocab_size"]),
        int(captioner["text_length"]),
        captioner["end_index"],
        embedding_dim=int(captioner["embedding_dim"]),
        hidden=int(captioner["hidden"]),
        base_channels=int(classifier["base_channels"]),
        n_downsample=int(classifier["n_downsample"]),
        n_res_blocks=int(classifier["n_res_blocks"]),
        arch=classifier.get("arch", "cyclegan"),
        norm=classifier.get("norm", "batch"),
    )


class CaptionJudgeTask(JudgeFit):
    """Teacher-forced maximum-likelihood training of :class:`~vlvae.models.captioner.Captioner` on a
    data set's real training pairs (the masked cross-entropy of the module's docstring).

    Seeded as every judge (:class:`vlvae.training.judges.JudgeFit`, whose steps, loaders and
    optimiser it shares): the batches of step t are a function of (seed, t), and so is torch's
    stream at step t (a caption or word order drawn at load); every validation pass draws with the
    same seed (:data:`vlvae.seeds.VALIDATION_STEP`).
    Logs ``train/loss``, ``train/accuracy``, ``val/loss`` and ``val/accuracy`` (the mean of the texts'
    teacher-forced word accuracies).
    """

    def __init__(
        self,
        config: ClassifierConfig,
        stage: StageConfig,
        data_root: str,
        seed: int,
        captioner: dict,
        image_size: int,
    ):
        super().__init__(config, stage, data_root, seed)
        self.model = build_captioner(image_size, captioner, training_settings(config))
        self._datasets: dict[str, ImageTextDataset] = {}

    def dataset(self, split: str) -> ImageTextDataset:
        if split not in self._datasets:
            self._datasets[split] = ImageTextDataset(Path(self.data_root), split)
        return self._datasets[split]

    def _data(self, split: str) -> ImageTextDataset:
        return self.dataset(split)

    def _batch_size(self, batch) -> int:
        return len(batch["text"])

    def on_validation_epoch_start(self):
        seed_step(step_seed(self.seed, self.global_rank, VALIDATION_STEP), self.device)

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        texts = batch["text"]
        logits = self.model.logits(images_to_float(batch["image"]), texts)
        mask = text_mask(texts, self.model.end_index)
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), texts, reduction="none")
        _, accuracy = word_scores(logits.detach(), texts, self.model.end_index)
        return (nll * mask).sum() / mask.sum(), accuracy.mean()


class CaptionScorer:
    """Scores (image, text) pairs with a caption judge: per-word log-likelihood and word accuracy.

    Images are float (N, 3, H, W) in [0, 1], or uint8 (N, 3, H, W) or (N, H, W, 3) (a tensor or a
    numpy array, e.g. a data set's memory map), converted one batch at a time; texts are (N, L) word
    indices of the judge's vocabulary. Every score runs without gradients, in evaluation mode (the
    model's mode is restored after), on the model's device, ``batch_size`` pairs at a time, and comes
    back on the CPU.

    :meth:`score` is :meth:`word_accuracy`: the correctness ``score(images, texts) -> (N,) in [0, 1]``
    that evaluation expects of a judge.
    """

    def __init__(self, model: Captioner, vocab: Vocabulary, batch_size: int = 256):
        if len(vocab) != model.vocab_size or vocab.end_index != model.end_index:
            raise VLVAEError(
                f"the caption judge was trained on a vocabulary of {model.vocab_size} words (end word "
                f"{model.end_index}), these texts have {len(vocab)} (end word {vocab.end_index}); "
                "train a judge on this data set"
            )
        self.model, self.vocab, self.batch_size = model, vocab, batch_size

    def _images(self, batch) -> torch.Tensor:
        if not torch.is_tensor(batch):
            batch = torch.from_numpy(np.array(batch))  # a copy: memory-mapped arrays are read-only
        if batch.dtype == torch.uint8:
            batch = images_to_float(batch)
        side = self.model.image_size
        if batch.dim() != 4 or tuple(batch.shape[1:]) != (3, side, side):
            raise VLVAEError(
                f"the caption judge scores images of 3 x {side} x {side}; got a batch of shape "
                f"{tuple(batch.shape)} (images of another data set?)"
            )
        return batch.float()

    @torch.no_grad()
    def scores(self, images, texts: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"word_accuracy": (N,), "log_p_per_word": (N,)}`` from one pass of the judge."""
        texts = torch.as_tensor(texts)
        self.model.check_texts(texts, len(images))
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        accuracy, log_p = [], []
        try:
            for lo in range(0, len(texts), self.batch_size):
                x = self._images(images[lo : lo + self.batch_size]).to(device)
                y = texts[lo : lo + self.batch_size].long().to(device)
                lp, acc = word_scores(self.model.logits(x, y), y, self.model.end_index)
                accuracy.append(acc.float().cpu())
                log_p.append(lp.float().cpu())
        finally:
            self.model.train(was_training)
        empty = torch.zeros(0)
        return {
            "word_accuracy": torch.cat(accuracy) if accuracy else empty,
            "log_p_per_word": torch.cat(log_p) if log_p else empty,
        }

    def word_accuracy(self, images, texts: torch.Tensor) -> torch.Tensor:
        """(N,) fraction of each text's words that are the judge's most probable word given the image
        and the true previous words."""
        return self.scores(images, texts)["word_accuracy"]

    def log_p_per_word(self, images, texts: torch.Tensor) -> torch.Tensor:
        """(N,) log p_judge(y | x) / |y|: the mean log-probability of each text's words."""
        return self.scores(images, texts)["log_p_per_word"]

    def score(self, images, texts: torch.Tensor) -> torch.Tensor:
        """(N,) correctness in [0, 1]: the word accuracy."""
        return self.word_accuracy(images, texts)


def _summary(scores: dict[str, torch.Tensor]) -> dict:
    """The mean of each score over the examples, and their number."""
    n = len(scores["word_accuracy"])
    means = {name: float(value.double().mean()) if n else float("nan") for name, value in scores.items()}
    return {**means, "examples": n}


def _mean_image(images: np.ndarray, chunk: int = 256) -> torch.Tensor:
    """The mean of uint8 images (N, H, W, 3) in [0, 1]: float (H, W, 3), summed in float64 by chunks."""
    total = np.zeros(images.shape[1:], dtype=np.float64)
    for lo in range(0, len(images), chunk):
        total += images[lo : lo + chunk].sum(0, dtype=np.float64)
    return torch.from_numpy(total / (255.0 * max(len(images), 1))).float()


def reference_scores(scorer: CaptionScorer, dataset: ImageTextDataset, n: int, seed: int = 0) -> dict:
    """The judge's ceiling and floor on the first ``n`` examples of ``dataset`` (a validation split).

    * ``ceiling``: the real images with their own texts.
    * ``floor``: the same texts on images that say nothing: ``grey`` (every pixel 0.5) and
      ``mean_image`` (the mean of the first :data:`MEAN_IMAGE_EXAMPLES` training images of the same
      data set); ``word_accuracy`` and ``log_p_per_word`` are the higher of the two, per score.

    Each holds the mean ``word_accuracy`` and ``log_p_per_word`` over the examples and their number.
    A text drawn at load (a caption among several, CelebA's word order) is drawn with torch seed
    ``seed``, without touching the caller's random stream.
    """
    n = min(int(n), len(dataset))
    if n < 1:
        raise VLVAEError(f"{dataset.root} has no examples to take the caption judge's reference scores on")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        texts = torch.stack([dataset.text(i) for i in range(n)])
    ceiling = _summary(scorer.scores(dataset.images[:n], texts))
    side = dataset.image_size
    grey = torch.full((1, 3, side, side), 0.5).expand(n, -1, -1, -1)
    train = load_images(dataset.root, "train")[:MEAN_IMAGE_EXAMPLES]
    mean = _mean_image(train).permute(2, 0, 1).unsqueeze(0).expand(n, -1, -1, -1)
    floors = {
        "grey": _summary(scorer.scores(grey, texts)),
        "mean_image": _summary(scorer.scores(mean, texts)),
    }
    floors["mean_image"]["training_images"] = len(train)
    floor = {
        name: max(floors["grey"][name], floors["mean_image"][name])
        for name in ("word_accuracy", "log_p_per_word")
    }
    return {"ceiling": ceiling, "floor": {**floor, "examples": n, **floors}}


def train_caption_judge(
    data: Path, out: Path, cfg: ExperimentConfig, resume: bool = False, progress: bool = True
) -> dict:
    """Train the caption judge on the real training pairs of ``data`` into classifier folder ``out``.

    Args:
        data: any vlvae data set (texts of fixed length, or of variable length with an end word).
        out: the classifier folder (a folder holding a judge of other settings or data is refused).
        cfg: its ``caption_judge`` section sets the fit (:func:`vlvae.training.judges.judge_stage`) and the
            image encoder; its ``seed`` the judge's seed (:func:`caption_judge_seed`); ``accelerator``
            and ``precision`` as for any fit, the section's ``precision`` where it names one (in one
            process: :func:`vlvae.training.run.fit_stage`).
        resume: continue from ``out/last.ckpt``.
        progress: show Lightning's progress bar.

    Returns:
        The metrics written to ``out/metrics.json``: the fit's, ``real_accuracy`` (``overall``,
        ``per_slot`` (empty), ``examples``), ``ceiling``, ``floor`` (:func:`reference_scores`) and
        ``min_accuracy``.
    """
    data, out = Path(data), Path(out)
    manifest = read_manifest(data)
    train = ImageTextDataset(data, "train")
    seed = caption_judge_seed(cfg.seed)
    captioner = {
        "vocab_size": len(train.vocab),
        "text_length": train.text_length,
        "end_index": train.vocab.end_index,
        "embedding_dim": EMBEDDING_DIM,
        "hidden": HIDDEN,
    }
    info = {
        "judge": CAPTION_JUDGE,
        **classifier_info(
            data,
            manifest,
            classifier=training_settings(cfg.caption_judge),
            preset=cfg.name,
            seed=seed,
            captioner=captioner,
        ),
    }
    remedy = f"{TRAIN_COMMAND} --data {data} --out {out}"
    if not (out / "metrics.json").is_file():
        check_single_process(out, "the caption judge")  # before anything is written
    out = check_output_dir(out, "classifier folder")
    with folder_lock(out, TRAIN_COMMAND):
        open_classifier_folder(out, info)
        torch.manual_seed(seed)  # the initial weights are a function of the seed
        task = CaptionJudgeTask(
            cfg.caption_judge,
            judge_stage(cfg.caption_judge),
            str(data.resolve()),
            seed,
            captioner,
            int(manifest["image_size"]),
        )
        task._datasets["train"] = train
        metrics = fit_stage(task, out, task.stage, cfg, CAPTION_JUDGE, resume, progress)
        if "real_accuracy" not in metrics:
            # the saved weights, also when an earlier session finished the fit and this one only scores
            model = load_weights(task.model.cpu(), out / "weights.safetensors", CAPTION_JUDGE, remedy)
            scorer = CaptionScorer(model, train.vocab)
            reference = reference_scores(scorer, ImageTextDataset(data, "val"), REFERENCE_EXAMPLES)
            ceiling = reference["ceiling"]
            metrics["real_accuracy"] = {
                "overall": ceiling["word_accuracy"],
                "per_slot": {},
                "examples": ceiling["examples"],
            }
            metrics["ceiling"], metrics["floor"] = ceiling, reference["floor"]
            # The threshold the judge must meet on real images: beating its floor (a text's words
            # guessed without the image), capped by the preset's, which is set for attribute
            # classifiers: a judge of free captions cannot predict every word of a paraphrase.
            metrics["min_accuracy"] = min(cfg.caption_judge.min_accuracy, reference["floor"]["word_accuracy"])
            atomic_write_json(out / "metrics.json", metrics)
    return metrics
