"""The CelebA judge: an 18-label classifier, and the correctness of generated faces against texts
(docs/design.md §6, paper §5.4).

The judge is the network of :class:`vlvae.models.classifier.AttributeClassifier`
as an 18-label classifier: one two-class slot per label of
:data:`vlvae.datasets.celeba.words.CELEBA_LABELS` (Male stands for Male/Female; Female is
its absence) and no condition. It is trained on real training faces only,
independently of the VLVAE, with a two-class cross-entropy per label
(:func:`vlvae.training.judges.train_celeba_classifier`); the targets are each
image's CelebA attributes, not the words of a (possibly truncated) text. This
module loads it (:func:`load_celeba_classifier`) and scores faces (:class:`CelebAScorer`).

Two definitions of correctness are offered, because the sources differ (docs/design.md §6):

* :meth:`CelebAScorer.score`, the headline: the paper's words — TELBO's
  definition, which scores the specified attributes only. Correctness of a text
  for an image is the fraction of the text's non-blank words to which the
  classifier gives the image probability > 0.5, with p(Female) = 1 − p(Male)
  (:func:`vlvae.datasets.celeba.scoring.correctness_paper`). Word order is ignored.
* :meth:`CelebAScorer.score_all_labels`: how the authors' CelebA code scored
  images — accuracy over every binary label, present or absent
  (:func:`vlvae.datasets.celeba.scoring.correctness_all_labels`), here over the 18 labels
  with Male/Female counted once.

Choices made here (neither source fixes them):

* A word repeated in a text (possible in generated texts) counts once per
  occurrence in the paper's definition: the denominator is the text's number
  of non-blank words.
* A text without any non-blank word scores 0 in the paper's definition: it
  specifies nothing, and a generator should not gain by saying nothing.
* In the all-labels definition a label's target is 1 when its word is in the
  text and 0 otherwise. Male's target is 1 if the text says Male, 0 if it says
  Female; a generated text that says neither or both leaves the sex
  unspecified, so that text is scored on the other 17 labels only (comparing
  p(Male) with 0.5 would score an arbitrary guess).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vlvae.config import ExperimentConfig
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.data.format import read_manifest
from vlvae.datasets.celeba.scoring import correctness_all_labels, correctness_paper
from vlvae.datasets.celeba.words import (
    CELEBA_LABELS,
    CELEBA_WORDS,
    label_targets,
    word_probabilities,
    words_present,
)
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
    read_classifier_info,
    training_settings,
)
from vlvae.training.run import fit_stage

__all__ = [
    "JUDGE",
    "CelebAClassifierData",
    "CelebAClassifierTask",
    "CelebAScorer",
    "celeba_real_scores",
    "load_celeba_classifier",
    "load_judge",
    "predict_label_probabilities",
    "train_celeba_classifier",
]

#: The judge's key: the tag of the classifier's weights and its ``classifier.json``'s ``judge``.
JUDGE = "celeba_classifier"
#: The key of the other judge of this package's time (a folder recording it is not this judge).
_OTHER_JUDGE = "attribute_classifier"


class CelebAClassifierData(Dataset):
    """Real faces of one split with their 18 binary labels.

    Each item: ``image`` uint8 (3, H, W), ``targets`` long (18,) in the order of
    :data:`vlvae.datasets.celeba.words.CELEBA_LABELS`, ``index``. The labels come from each record's
    ``attributes`` (all 40 CelebA attributes), so a face with more than nine
    present words still has all of them as targets.
    """

    def __init__(self, root: Path, split: str):
        self.base = ImageTextDataset(Path(root), split)
        if self.base.text_form != "set":
            raise VLVAEError(
                f"{root} is a {self.base.manifest.get('dataset')} data set, not CelebA; build one with "
                "`vlvae data celeba --root CELEBA --out DATA`"
            )
        records = self.base.records
        if records and "attributes" not in records[0]:
            raise VLVAEError(
                f"{root}/{split}/scenes.json has no 'attributes' per image; rebuild the data set "
                "with `vlvae data celeba`"
            )
        names = list(records[0]["attributes"]) if records else list(CELEBA_LABELS)
        values = np.array([[r["attributes"][n] for n in names] for r in records], dtype=np.int64)
        self.targets = torch.from_numpy(label_targets(values.reshape(len(records), len(names)), names)).long()
        self.words = [r["words"] for r in records]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        image = torch.from_numpy(np.array(self.base.images[i])).permute(2, 0, 1)
        return {"image": image, "targets": self.targets[i], "index": i}


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
    paper = correctness_paper(word_probabilities(probs), words_present(data.words[:n]), empty=0.0)
    all_labels = correctness_all_labels(probs, data.targets[:n].numpy())
    return {
        "paper": float(paper.mean()) if n else float("nan"),
        "all_labels": float(all_labels.mean()) if n else float("nan"),
        "examples": n,
    }


def train_celeba_classifier(
    data: Path,
    out: Path,
    cfg: ExperimentConfig,
    preset_name: str,
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
        cfg: the config whose ``classifier`` section and seed are used.
        preset_name: the preset ``cfg`` was made from (recorded in classifier.json).
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
    name = preset_name
    info = {
        "judge": JUDGE,
        **classifier_info(
            data,
            manifest,
            classifier=training_settings(cfg.classifier),
            preset=name,
            seed=classifier_seed(cfg.seed),
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
        metrics = fit_stage(task, out, task.stage, replace(cfg, devices=1), JUDGE, resume, progress)
        if "real_accuracy" not in metrics:
            accuracy, correctness = celeba_real_scores(task.model, data, "val")
            metrics["real_accuracy"], metrics["real_correctness"] = accuracy, correctness
            metrics["min_accuracy"] = cfg.classifier.min_accuracy
            atomic_write_json(out / "metrics.json", metrics)
    return metrics


_MALE = CELEBA_LABELS.index("Male")


def _remedy(out: Path) -> str:
    return f"vlvae train classifier --data CELEBA_DATA --out {out}"


# ----------------------------------------------------------------------------- loading


def load_celeba_classifier(directory: Path):
    """(model in evaluation mode, metrics) of a trained CelebA classifier folder.

    Raises:
        VLVAEError: the folder is missing, holds another judge (e.g. the
            Two Objects), is unfinished, or its weights do not match.
    """
    directory = Path(directory)
    remedy = _remedy(directory)
    if not directory.is_dir():
        raise VLVAEError(f"classifier folder {directory} does not exist; train one with `{remedy}`")
    info = read_classifier_info(
        directory / "classifier.json", f"{directory} is not a classifier folder; train one with `{remedy}`"
    )
    # A Two Objects classifier.json written before the judge was recorded records none.
    judge = info.get("judge", _OTHER_JUDGE) if isinstance(info, dict) else "foreign"
    if judge != JUDGE:
        what = "a Two Objects classifier" if judge == _OTHER_JUDGE else f"a {judge} classifier"
        raise VLVAEError(
            f"{directory} holds {what}, not a CelebA classifier; pass the classifier trained on "
            f"the CelebA data (`{remedy}`)"
        )
    if info.get("labels") != list(CELEBA_LABELS):
        raise VLVAEError(
            f"{directory} was trained on other labels than this version's 18 CelebA labels; "
            f"retrain it with `{remedy}`"
        )
    metrics = read_json(directory / "metrics.json", f"finish training with `{remedy} --resume`")
    model = judge_network(info["image_size"], [2] * len(CELEBA_LABELS), 0, info["classifier"])
    load_weights(model, directory / "weights.safetensors", JUDGE, remedy)
    return model.eval().requires_grad_(False), metrics


# ----------------------------------------------------------------------------- scoring


class CelebAScorer:
    """Correctness of faces against CelebA texts (Tables 1-2's metric for CelebA, docs/design.md §6).

    :meth:`score` is the paper's definition (the headline), :meth:`score_all_labels`
    the authors' code's; the module docstring gives both and the choices made.

    Args:
        model: the 18-label classifier (:func:`load_celeba_classifier`).
        vocab: the data set's vocabulary (the 20 CelebA tokens).
    """

    def __init__(self, model, vocab):
        unknown = [w for w in vocab.words if w not in CELEBA_WORDS]
        if unknown:
            raise VLVAEError(
                f"the vocabulary holds {', '.join(map(repr, unknown[:3]))}, not CelebA words; "
                "score CelebA runs with the CelebA classifier and Two Objects runs with theirs"
            )
        self.model, self.vocab = model, vocab

    def _words(self, texts: torch.Tensor) -> list[list[str]]:
        return [self.vocab.decode(t) for t in texts]

    def probabilities(self, images: torch.Tensor) -> np.ndarray:
        """(N, 18) label probabilities of float images (N, 3, H, W) in [0, 1]."""
        return predict_label_probabilities(self.model, images)

    def score(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The paper's correctness: (N,) fraction of each text's non-blank words judged present.

        A word is judged present when its probability exceeds 0.5 (Female:
        1 − p(Male)); order is ignored, repeated words count per occurrence, and
        a text of blanks only scores 0.

        Args:
            images: float (N, 3, H, W) in [0, 1].
            texts: long (N, L) word indices.
        """
        probs = word_probabilities(self.probabilities(images))
        present = words_present(self._words(texts))
        return torch.from_numpy(correctness_paper(probs, present, empty=0.0)).float()

    def score_all_labels(self, images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """The authors' code's correctness: (N,) accuracy over the 18 binary labels.

        Targets: a label is 1 when its word is in the text, else 0; Male is 1
        for Male, 0 for Female, and left out (the text scored on 17 labels)
        when the text has neither or both.

        Args:
            images: float (N, 3, H, W) in [0, 1].
            texts: long (N, L) word indices.
        """
        probs = self.probabilities(images)
        present = words_present(self._words(texts)) > 0  # (N, 19) in CELEBA_WORDS order, no blank
        male, female = present[:, CELEBA_WORDS.index("Male")], present[:, CELEBA_WORDS.index("Female")]
        label_columns = [CELEBA_WORDS.index(label) for label in CELEBA_LABELS]
        targets = present[:, label_columns].astype(np.int8)  # Male's column: 1 iff "Male" is in the text
        scores = correctness_all_labels(probs, targets)
        unspecified = male == female
        if unspecified.any():
            others = [j for j in range(len(CELEBA_LABELS)) if j != _MALE]
            scores[unspecified] = correctness_all_labels(
                probs[unspecified][:, others], targets[unspecified][:, others]
            )
        return torch.from_numpy(scores).float()


def load_judge(directory: Path, vocab) -> tuple[CelebAScorer, dict]:
    """(scorer, classifier metrics) of a trained CelebA classifier folder, scoring texts of ``vocab``."""
    model, metrics = load_celeba_classifier(directory)
    return CelebAScorer(model, vocab), metrics
