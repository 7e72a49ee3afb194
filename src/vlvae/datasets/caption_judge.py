"""The caption judge: load it, score generated images against texts of any data set.

The caption judge is an image-conditioned text model p_judge(y | x)
(:class:`vlvae.models.captioner.Captioner`), trained on a data set's real training pairs only
(:mod:`vlvae.training.caption_judge`). A generated image x̂ is scored against a text y by

* the per-word log-likelihood  log p_judge(y | x̂) / |y|, and
* the teacher-forced word accuracy: the fraction of y's words that are the judge's most probable
  word given x̂ and the true previous words (its correctness, in [0, 1]),

|y| counting the text's words, its end word included (:func:`vlvae.models.text.text_mask`). Both are
read against the judge's ceiling (real images with their own texts) and floor (the same texts on a
grey and on the mean training image), which its ``metrics.json`` stores (:func:`reference_scores`).

:class:`CaptionScorer` and :func:`reference_scores` are defined with the training, which stores
the reference scores when a fit ends; this module loads a trained folder (:func:`load_caption_judge`,
:func:`load_judge`).
"""

from __future__ import annotations

from pathlib import Path

from vlvae.config import ExperimentConfig
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets import DataSet, Judge
from vlvae.errors import VLVAEError
from vlvae.io import read_json
from vlvae.models.captioner import Captioner
from vlvae.runs import load_weights
from vlvae.seeds import caption_judge_seed
from vlvae.training.caption_judge import (
    CAPTION_JUDGE,
    TRAIN_COMMAND,
    CaptionScorer,
    build_captioner,
    reference_scores,
    train_caption_judge,
)
from vlvae.training.judges import read_classifier_info

__all__ = [
    "CAPTION_JUDGE",
    "JUDGE",
    "CaptionScorer",
    "reference_scores",
    "judged_beside",
    "load_caption_judge",
    "load_judge",
]


def judged_beside(spec: DataSet) -> bool:
    """Whether a data set's generated images are scored by the caption judge beside its own judge:
    every data set whose own judge is another (an imported data set's own judge is the caption
    judge). ``reproduce`` trains it for those and every evaluation it runs scores with it."""
    return spec.judge.key != CAPTION_JUDGE


def load_caption_judge(directory: Path) -> tuple[Captioner, dict]:
    """(model, metrics) of a trained caption-judge folder, the model in evaluation mode without gradients."""
    directory = Path(directory)
    remedy = f"{TRAIN_COMMAND} --data DATA --out {directory}"
    info = read_classifier_info(directory / "classifier.json", f"train one with `{remedy}`")
    if not isinstance(info, dict) or info.get("judge") != CAPTION_JUDGE or "captioner" not in info:
        judge = info.get("judge") if isinstance(info, dict) else None
        raise VLVAEError(
            f"{directory} holds {'a ' + judge if judge else 'no'} judge, not a caption judge; "
            f"train one with `{remedy}`"
        )
    metrics = read_json(directory / "metrics.json", f"finish training with `{remedy} --resume`")
    model = build_captioner(info["image_size"], info["captioner"], info["classifier"])
    load_weights(model, directory / "weights.safetensors", CAPTION_JUDGE, remedy)
    return model.eval().requires_grad_(False), metrics


def load_judge(directory: Path, vocab: Vocabulary) -> tuple[CaptionScorer, dict]:
    """(scorer, classifier metrics) of a trained caption-judge folder, scoring texts of ``vocab``."""
    model, metrics = load_caption_judge(directory)
    return CaptionScorer(model, vocab), metrics


def _train(
    data: Path, out: Path, cfg: ExperimentConfig, preset_name: str, resume: bool, progress: bool
) -> dict:
    """The caption judge, trained with the ``caption_judge`` section and seed of ``cfg``."""
    return train_caption_judge(data, out, cfg, resume, progress)


#: The caption judge as a registry entry: the judge of any data set that declares it (imported
#: captions), and the second judge ``reproduce`` trains for every other data set.
JUDGE = Judge(
    key=CAPTION_JUDGE,
    title="caption judge",
    train=_train,
    load=load_judge,
    section="caption_judge",
    seed=caption_judge_seed,
)
