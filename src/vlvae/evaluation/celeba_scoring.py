"""The CelebA classifier in evaluation and the correctness of generated faces against texts
(docs/design.md §6, paper §5.4).

The judge is the network of :class:`vlvae.models.classifier.AttributeClassifier`
as an 18-label classifier: one two-class slot per label of
:data:`vlvae.data.celeba.CELEBA_LABELS` (Male stands for Male/Female; Female is
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
  (:func:`vlvae.data.celeba.correctness_paper`). Word order is ignored.
* :meth:`CelebAScorer.score_all_labels`: how the authors' CelebA code scored
  images — accuracy over every binary label, present or absent
  (:func:`vlvae.data.celeba.correctness_all_labels`), here over the 18 labels
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

from pathlib import Path

import numpy as np
import torch

from vlvae.data.celeba import (
    CELEBA_LABELS,
    CELEBA_WORDS,
    correctness_all_labels,
    correctness_paper,
    word_probabilities,
    words_present,
)
from vlvae.data.labels import CelebAClassifierData
from vlvae.errors import VLVAEError
from vlvae.io import read_json
from vlvae.models.classifier import AttributeClassifier
from vlvae.runs import load_weights
from vlvae.training.judges import (
    ATTRIBUTE_JUDGE,
    CELEBA_JUDGE,
    predict_label_probabilities,
    read_classifier_info,
)

__all__ = [
    "JUDGE",
    "CelebAClassifierData",
    "CelebAScorer",
    "load_celeba_classifier",
    "load_judge",
    "predict_label_probabilities",
]

JUDGE = CELEBA_JUDGE
"""The judge's key: the tag of the classifier's weights and its ``classifier.json``'s ``judge``."""

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
    judge = info.get("judge", ATTRIBUTE_JUDGE) if isinstance(info, dict) else "foreign"
    if judge != JUDGE:
        what = "a Two Objects classifier" if judge == ATTRIBUTE_JUDGE else f"a {judge} classifier"
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
    c = info["classifier"]
    model = AttributeClassifier(
        info["image_size"],
        [2] * len(CELEBA_LABELS),
        0,
        base_channels=c["base_channels"],
        n_downsample=c["n_downsample"],
        n_res_blocks=c["n_res_blocks"],
        arch=c.get("arch", "cyclegan"),
        norm=c.get("norm", "batch"),
    )
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
