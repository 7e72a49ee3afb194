"""A trained run opened once for sampling: text → images, prior → images, image → reconstruction and caption.

:class:`Inference` is the one place that opens a run for use (``vlvae sample`` and ``vlvae serve``
go through it): the config, the frozen VLVAE, every finished text posterior (q_Agg, q_True) and the
learned prior q_φ(z) of training replicate 0, the data's vocabulary and, optionally, the
classifier that judges images. A stage that is not finished (or whose weights cannot be read) is
recorded with the message that says how to make it; asking for it raises :class:`MissingStage`.

Every method is seeded and leaves torch's global random state as it was; one lock serialises the
models, so a seeded request gives the same images whichever other requests run at the same time.

The models run on one device (``device`` of :meth:`Inference.open`, ``--device`` of ``vlvae sample``
and ``vlvae serve``); texts and images given are moved there, and what comes back (images, texts,
correctness) is on the CPU. The classifier that judges images runs on the CPU. A seeded draw on a
GPU is repeatable there but is not the CPU's draw: the same seed gives other images on each.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlvae.config import check_option
from vlvae.data.format import load_images, read_records, read_vocabulary, record_words
from vlvae.data.vocabulary import Vocabulary, tokenize
from vlvae.datasets import DataSet, data_dataset
from vlvae.device import fork_rng, resolve_device
from vlvae.errors import VLVAEError
from vlvae.evaluation.driver import load_scorer
from vlvae.methods import get_method
from vlvae.methods.stages import PRIOR, TEXT_POSTERIOR, choices
from vlvae.runs import check_run_data, load_stage, load_vlvae, open_run

__all__ = [
    "MAX_SAMPLES",
    "TEXT_POSTERIORS",
    "PRIORS",
    "MissingStage",
    "Samples",
    "Inference",
    "check_sample_count",
    "check_seed",
    "to_uint8",
]

#: The most samples one request may ask for (``vlvae sample --n``; a grid of 256 images is already
#: larger than a screen, and the memory of one request stays bounded).
MAX_SAMPLES = 256
#: The text posteriors q(z|y) a run may hold, from the stage registry (:func:`vlvae.methods.stages.choices`):
#: name (``--posterior``) -> (stage folder, label).
_POSTERIOR_STAGES = choices(TEXT_POSTERIOR)
TEXT_POSTERIORS = {name: (stage.name, stage.column_label) for name, stage in _POSTERIOR_STAGES.items()}
#: The priors p(z), from the stage registry: name (``--prior``) -> (stage folder or None for N(0, I), label).
PRIORS = {name: (getattr(entry, "name", None), entry.column_label) for name, entry in choices(PRIOR).items()}


class MissingStage(VLVAEError):
    """A stage of the run that is asked for but not finished (or not readable); the message names
    the command that trains it."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def check_sample_count(n: int, limit: int = MAX_SAMPLES, name: str = "--n") -> None:
    """Refuse a number of samples outside 1..``limit`` with one clear line."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        raise VLVAEError(
            f"{name} must be between 1 and {limit} (the most samples one request may ask for), "
            f"got {n!r}; ask several times with other seeds for more"
        )


def check_seed(seed: int, name: str = "--seed") -> None:
    """Refuse a sampling seed outside the run config's seed range ([0, 2**32 - 1]) with one line."""
    check_option(name, seed, "seed")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (N, 3, H, W) in [0, 1], on any device -> uint8 (N, H, W, 3)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@dataclass
class Samples:
    """Images with the text decoded from the same z.

    Attributes:
        images: uint8 (n, H, W, 3): images decoded from z (the image mean).
        texts: n strings: the greedily decoded text of each z.
        correctness: (n,) in [0, 1], or None without a classifier: the classifier's agreement
            between each image and its text (a given text for text → image; the decoded text
            for prior samples; for :meth:`Inference.reconstruct`, the *input* image and its caption).
    """

    images: np.ndarray
    texts: list[str]
    correctness: np.ndarray | None = None


class Inference:
    """A run folder opened once; build it with :meth:`open`.

    Example:
        >>> inference = Inference.open("runs/cpu/run", classifier="runs/cpu/classifier")  # doctest: +SKIP
        >>> samples = inference.from_text("small red metal cube left large blue rubber sphere", "agg", n=4)
        ... # doctest: +SKIP
        >>> samples.images.shape, samples.texts[0]  # doctest: +SKIP
        ((4, 64, 64, 3), 'small red metal cube left large blue rubber sphere')
    """

    def __init__(
        self,
        run: Path,
        config,
        info: dict,
        data: Path,
        vocab: Vocabulary,
        model,
        posteriors: dict,
        priors: dict,
        missing: dict[str, str],
        scorer=None,
        device: torch.device = torch.device("cpu"),
    ):
        self.run, self.config, self.info, self.data, self.vocab = run, config, info, data, vocab
        #: Where the models run (the VLVAE and the stages 2-3 are there).
        self.device = device
        self.model = model
        self._posteriors = posteriors
        self._priors = priors
        self._missing = missing
        self.scorer = scorer
        self._lock = threading.Lock()
        self._validation: tuple | None = None

    @classmethod
    def open(
        cls,
        run: Path,
        classifier: Path | None = None,
        device: str | torch.device = "cpu",
        data: Path | None = None,
    ) -> Inference:
        """Open ``run``: its VLVAE (required) and whichever of q_Agg, q_True and q_φ(z) are finished.

        Args:
            run: a run folder (``vlvae train vlvae --out RUN``).
            classifier: a classifier folder that fits the run's data set, to judge every image
                (``Samples.correctness``); checked like ``vlvae evaluate`` checks it. It runs on
                the CPU.
            device: where the models run (:func:`vlvae.device.resolve_device`: ``auto``, ``cpu``,
                ``cuda``, ``cuda:N``), checked before the run is read.
            data: the run's data set where it is not where ``run.json`` says (moved apart from the
                run); checked to be the same data set.

        Raises:
            VLVAEError: a device this machine lacks, not a run, its data set is missing or
                differs, the VLVAE is not trained, or the classifier does not fit the data.
        """
        device = resolve_device(device)
        run = Path(run)
        cfg, info = open_run(run, data)
        data = check_run_data(run, cfg, info)
        vocab = read_vocabulary(data)
        model = load_vlvae(run, cfg).to(device)
        posteriors, priors, missing = {}, {}, {}
        for loaded, options in ((posteriors, TEXT_POSTERIORS), (priors, PRIORS)):
            for name, (stage, _) in options.items():
                if stage is None:  # N(0, I): part of the model
                    continue
                try:
                    loaded[name] = load_stage(run, stage, cfg).to(device)
                except VLVAEError as exc:
                    missing[stage] = str(exc)
        if get_method(cfg.method.name).own_text_posterior is not None:
            posteriors["own"] = model.text_posterior  # a baseline's own q(z|y), trained in stage 1
        scorer = None
        if classifier is not None:
            scorer = load_scorer(data_dataset(data), Path(classifier), vocab, data, f"the data set of {run}")[
                0
            ]
        return cls(run, cfg, info, data, vocab, model, posteriors, priors, missing, scorer, device)

    # ----------------------------------------------------------------- what the run holds

    @property
    def dataset(self) -> str:
        """The data set's registry name, from the data's manifest."""
        return self.spec.name

    @property
    def spec(self) -> DataSet:
        """The data set's registry entry (:mod:`vlvae.datasets`)."""
        return data_dataset(self.data)

    @property
    def image_size(self) -> int:
        return int(self.config.model.image_size)

    @property
    def text_length(self) -> int:
        return int(self.config.model.text_length)

    def stages(self) -> dict[str, str | None]:
        """Every stage 2-3 of the run -> None when it is loaded, else why not (with the command to
        make it)."""
        stages = [stage for stage, _ in (*TEXT_POSTERIORS.values(), *PRIORS.values()) if stage is not None]
        return {stage: self._missing.get(stage) for stage in stages}

    def text_posterior(self, posterior: str):
        """q(z|y) by its name (``agg``, ``true``, or a method's ``own``), a callable y -> distribution;
        an unknown name or a missing stage is one line."""
        if posterior == "own" and "own" in self._posteriors:
            return self._posteriors["own"]
        if posterior not in TEXT_POSTERIORS:
            extra = ", or 'own' (the method's q(z|y))" if "own" in self._posteriors else ""
            allowed = " or ".join(
                f"{name!r} ({stage.progress_label})" for name, stage in _POSTERIOR_STAGES.items()
            )
            raise VLVAEError(f"posterior must be {allowed}{extra}, got {posterior!r}")
        stage = TEXT_POSTERIORS[posterior][0]
        if stage in self._missing:
            raise MissingStage(stage, self._missing[stage])
        return self._posteriors[posterior]

    def prior_distribution(self, prior: str):
        """p(z) by its name (``standard``: N(0, I); ``learned``: q_φ(z)); an unknown name or a missing
        stage is one line."""
        if prior not in PRIORS:
            allowed = " or ".join(f"{name!r} ({label})" for name, (_, label) in PRIORS.items())
            raise VLVAEError(f"prior must be {allowed}, got {prior!r}")
        stage = PRIORS[prior][0]
        if stage is None:
            return self.model.standard_prior()
        if stage in self._missing:
            raise MissingStage(stage, self._missing[stage])
        return self._priors[prior]()

    @contextlib.contextmanager
    def drawing(self):
        """Hold the run's lock with torch's global random state forked (the CPU's and, on a GPU, that
        GPU's): a seeded draw inside neither sees nor disturbs any other (every sampling method draws
        inside it)."""
        with self._lock, fork_rng(self.device):
            yield

    # ----------------------------------------------------------------- text

    def words(self, text: str | Sequence[str]) -> list[str]:
        """The words of a text as the model reads them: free texts (a vocabulary with an end word)
        are tokenised (:func:`vlvae.data.vocabulary.tokenize`: lower case, punctuation split); texts
        of fixed slots are split at white space."""
        if not isinstance(text, str):
            return list(text)
        return tokenize(text) if self.vocab.end is not None else text.split()

    def unknown_words(self, text: str | Sequence[str]) -> list[str]:
        """The words of a text outside the vocabulary (a free text reads each as the unknown word)."""
        return self.vocab.unknown_words(self.words(text))

    def encode_text(self, text: str | Sequence[str]) -> torch.Tensor:
        """Word indices (L,) of a text: a string or a list of words.

        A free text (a vocabulary with an end word, docs/design.md §11) may have up to L − 1 words;
        words outside the vocabulary are read as the unknown word (:meth:`unknown_words` names them).

        Raises:
            VLVAEError: a word outside a vocabulary of fixed slots (naming it and listing the
                vocabulary), or a text of another length than the model reads.
        """
        if self.vocab.end is not None:
            words = self.words(text)
            if not words or len(words) > self.text_length - 1:
                raise VLVAEError(
                    f"the text has {len(words)} words; the model reads texts of 1 to "
                    f"{self.text_length - 1} words"
                )
            return torch.tensor(self.vocab.encode_padded(words, self.text_length), dtype=torch.long)
        ids = self.vocab.encode(text)
        if len(ids) != self.text_length:
            raise VLVAEError(
                f"the text has {len(ids)} words, the model reads {self.text_length} "
                f"(layout: {' '.join(self.vocab.slot_names) or 'see vocab.json'})"
            )
        return torch.tensor(ids, dtype=torch.long)

    def decode_texts(self, ids: torch.Tensor) -> list[str]:
        """Strings of word indices (n, L) on any device (a free text up to its end word)."""
        return [" ".join(self.vocab.strip_end(self.vocab.decode(t))) for t in ids.cpu()]

    # ----------------------------------------------------------------- sampling

    def correctness(self, images: torch.Tensor, texts: torch.Tensor) -> np.ndarray | None:
        """The classifier's correctness (n,) of float images (n, 3, H, W) against word indices (n, L),
        both on any device (the classifier runs on the CPU); None without a classifier."""
        if self.scorer is None:
            return None
        return self.scorer.score(images.cpu(), texts.cpu()).cpu().numpy()

    def _decode(self, z: torch.Tensor, judged_texts: torch.Tensor | None = None) -> Samples:
        images = self.model.image_mean(z)
        ids = self.model.generate_text(z)
        correctness = self.correctness(images, ids if judged_texts is None else judged_texts)
        return Samples(to_uint8(images), self.decode_texts(ids), correctness)

    @torch.no_grad()
    def from_text(
        self, text: str | Sequence[str] | torch.Tensor, posterior: str = "agg", n: int = 3, seed: int = 0
    ) -> Samples:
        """n images decoded from z ~ q(z|y), each with the text decoded from its z.

        Args:
            text: a space-separated string, a list of words, or word indices (L,).
            posterior: ``agg`` (q_Agg) or ``true`` (q_True).
            n: number of samples (1 to :data:`MAX_SAMPLES`).
            seed: the same seed gives the same samples (and both posteriors share it).

        Returns:
            :class:`Samples`; correctness judges each image against ``text``.
        """
        check_sample_count(n)
        check_seed(seed, "seed")
        q = self.text_posterior(posterior)
        ids = text if isinstance(text, torch.Tensor) else self.encode_text(text)
        if ids.shape != (self.text_length,):
            raise VLVAEError(f"word indices must have shape ({self.text_length},), got {tuple(ids.shape)}")
        y = ids.reshape(1, -1).expand(n, -1).contiguous().to(self.device)
        with self.drawing():
            torch.manual_seed(seed)
            z = q(y).sample()
            return self._decode(z, judged_texts=y)

    @torch.no_grad()
    def from_prior(self, prior: str = "standard", n: int = 16, seed: int = 0) -> Samples:
        """n images and texts decoded from z ~ N(0, I) (``standard``) or q_φ(z) (``learned``);
        correctness judges each image against its own decoded text."""
        check_sample_count(n)
        check_seed(seed, "seed")
        with self.drawing():
            dist = self.prior_distribution(prior)
            torch.manual_seed(seed)
            z = dist.sample((n,))
            return self._decode(z)

    # ----------------------------------------------------------------- images

    def as_float_images(self, images) -> torch.Tensor:
        """uint8 (H, W, 3) / (N, H, W, 3) or float (N, 3, H, W) in [0, 1] -> float (N, 3, H, W), checked."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.ndim != 4 or x.shape[-1] != 3:
                raise VLVAEError(f"uint8 images must be (N, H, W, 3), got {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2).float().div(255.0)
        elif x.is_floating_point():
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.ndim != 4 or x.shape[1] != 3:
                raise VLVAEError(f"float images must be (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
            x = x.float().clamp(0, 1)
        else:
            raise VLVAEError(f"images must be uint8 or float, got {x.dtype}")
        size = self.image_size
        if tuple(x.shape[-2:]) != (size, size):
            raise VLVAEError(
                f"the model reads {size} x {size} images, got {x.shape[-1]} x {x.shape[-2]}; "
                "resize them first"
            )
        if not 1 <= len(x) <= MAX_SAMPLES:
            raise VLVAEError(f"give between 1 and {MAX_SAMPLES} images at a time, got {len(x)}")
        return x

    @torch.no_grad()
    def reconstruct(self, images) -> Samples:
        """Each image's reconstruction and caption, both decoded from the mean of q(z|x).

        Args:
            images: see :meth:`as_float_images`; of the model's size.

        Returns:
            :class:`Samples`: the reconstructions, the captions, and the correctness of each
            *input* image against its caption (does the caption describe the image?).
        """
        x = self.as_float_images(images)
        with self._lock:
            z = self.model.image_posterior(x.to(self.device)).mean
            ids = self.model.generate_text(z)
            reconstruction = self.model.image_mean(z)
            return Samples(to_uint8(reconstruction), self.decode_texts(ids), self.correctness(x, ids))

    def caption(self, images) -> list[str]:
        """The text decoded from the mean of q(z|x) of each image."""
        return self.reconstruct(images).texts

    def judge(self, images, text: str | Sequence[str]) -> np.ndarray | None:
        """The classifier's correctness of images against one text (None without a classifier)."""
        if self.scorer is None:
            return None
        x = self.as_float_images(images)
        y = self.encode_text(text).reshape(1, -1).expand(len(x), -1)
        with self._lock:
            return self.correctness(x, y)

    # ----------------------------------------------------------------- validation images

    def _validation_split(self) -> tuple[np.ndarray, list]:
        with self._lock:
            if self._validation is None:
                self._validation = (load_images(self.data, "val"), read_records(self.data, "val"))
            return self._validation

    def validation_count(self) -> int:
        """Images in the data's validation split."""
        return len(self._validation_split()[0])

    def validation_example(self, index: int) -> tuple[np.ndarray, str]:
        """(uint8 image (H, W, 3), its text) of validation image ``index``."""
        images, records = self._validation_split()
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(images):
            raise VLVAEError(
                f"validation image {index!r} does not exist; the validation split has "
                f"{len(images)} images (0 to {len(images) - 1})"
            )
        record = records[index]
        words = record_words(record)
        return np.array(images[index]), " ".join(words)
