"""CelebA's attributes as words: the vocabulary, the texts, and the 18 labels behind the 19 words.

The 20 tokens of docs/design.md §1.2 (19 attribute words and ``-`` as blank), an image's present
words (:func:`attribute_words`), its text -- the words shuffled and padded to nine
(:func:`celeba_text`) -- and the vocabulary of such texts (:func:`celeba_vocabulary`); and, for a
classifier, the 18 binary labels (:func:`label_targets`), the words counted in texts
(:func:`words_present`) and the 19 word probabilities from 18 label probabilities
(:func:`word_probabilities`).

References:
    CelebA: Deep Learning Face Attributes in the Wild, Liu et al. 2015,
    https://arxiv.org/abs/1411.7766 (the data set and its file formats).

    On the Importance of Learning Aggregate Posteriors in Multimodal Latent
    Variable Models, Cremer & Kushman 2018, §5.2 (vocabulary, text).

Choices made here (the paper leaves them open):

* Words: Female is the absence of CelebA's ``Male`` attribute, so every text
  holds exactly one of Male/Female. A classifier therefore predicts 18 binary
  labels (:data:`CELEBA_LABELS`, Male as one label); :func:`word_probabilities`
  turns them into the 19 word probabilities with p(Female) = 1 − p(Male).
* Texts longer than nine words (possible: 18 labels can be present at once)
  keep a random subset of nine words; the build's manifest counts them.
"""

from __future__ import annotations

import numpy as np

from vlvae.data.dataset import BLANK_WORD
from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.celeba.files import _ATTR_FILE
from vlvae.errors import VLVAEError

__all__ = [
    "CELEBA_WORDS",
    "CELEBA_LABELS",
    "BLANK",
    "TEXT_LENGTH",
    "attribute_words",
    "label_targets",
    "words_present",
    "celeba_text",
    "celeba_vocabulary",
    "word_probabilities",
]

BLANK = BLANK_WORD
TEXT_LENGTH = 9
CELEBA_WORDS: tuple[str, ...] = (
    "Bushy_Eyebrows",
    "Male",
    "Female",
    "Mouth_Slightly_Open",
    "Smiling",
    "Bald",
    "Bangs",
    "Black_Hair",
    "Blond_Hair",
    "Brown_Hair",
    "Eyeglasses",
    "Gray_Hair",
    "Heavy_Makeup",
    "Mustache",
    "Pale_Skin",
    "Receding_Hairline",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Hat",
    BLANK,
)
"""The 20 tokens of docs/design.md §1.2 in the paper's order; ``-`` (blank) is last, index 19."""

CELEBA_LABELS: tuple[str, ...] = tuple(w for w in CELEBA_WORDS if w not in ("Female", BLANK))
"""The 18 CelebA attributes behind the 19 words, in word order (Male stands for Male/Female)."""

_ATTRIBUTE_WORDS = CELEBA_WORDS[:-1]


def attribute_words(attr_row, names: list[str]) -> list[str]:
    """The words of :data:`CELEBA_WORDS` present in one image, in canonical order.

    Female is present exactly when Male is absent, so the result holds exactly
    one of Male/Female.

    Args:
        attr_row: (K,) 0/1 (or −1/1) values of the attributes ``names``.
        names: CelebA's attribute names, which must include the 18 of :data:`CELEBA_LABELS`.

    Example:
        >>> names = list(CELEBA_LABELS)
        >>> attribute_words([0] * 18, names)
        ['Female']
    """
    row = np.asarray(attr_row)
    index = _label_index(names)
    present = row[index] > 0
    return [w for w, p in zip(_ATTRIBUTE_WORDS, _labels_to_words(present[None])[0]) if p]


def _label_index(names: list[str]) -> list[int]:
    missing = [label for label in CELEBA_LABELS if label not in names]
    if missing:
        raise VLVAEError(
            f"the attribute list lacks {', '.join(missing)}; "
            f"use CelebA's own {_ATTR_FILE} with its 40 attributes"
        )
    return [names.index(label) for label in CELEBA_LABELS]


def _labels_to_words(labels: np.ndarray) -> np.ndarray:
    """(N, 18) label values → (N, 19) word values, Female = 1 − Male inserted after Male."""
    male = CELEBA_LABELS.index("Male")
    return np.concatenate(
        [labels[:, : male + 1], 1 - labels[:, male : male + 1], labels[:, male + 1 :]], axis=1
    )


def label_targets(values: np.ndarray, names: list[str]) -> np.ndarray:
    """The 18 binary labels of :data:`CELEBA_LABELS` from CelebA attributes.

    Args:
        values: (N, K) 0/1 attribute values as :func:`read_attributes` returns them.
        names: the K attribute names.

    Returns:
        int8 (N, 18).
    """
    return (np.asarray(values)[:, _label_index(names)] > 0).astype(np.int8)


def words_present(texts: list[list[str]]) -> np.ndarray:
    """How often each of the 19 attribute words occurs in each text (blanks ignored).

    Args:
        texts: N texts, each a list of words from :data:`CELEBA_WORDS`.

    Returns:
        int64 (N, 19) counts, usable as ``words_present`` in :func:`correctness_paper`.
    """
    index = {w: i for i, w in enumerate(_ATTRIBUTE_WORDS)}
    counts = np.zeros((len(texts), len(_ATTRIBUTE_WORDS)), dtype=np.int64)
    for n, text in enumerate(texts):
        for word in text:
            if word == BLANK:
                continue
            if word not in index:
                raise VLVAEError(f"{word!r} is not a CelebA word; texts must use: {' '.join(CELEBA_WORDS)}")
            counts[n, index[word]] += 1
    return counts


def celeba_text(words: list[str], rng: np.random.Generator, length: int = TEXT_LENGTH) -> list[str]:
    """A text for an image: its present words in random order, padded with ``-`` to ``length``.

    If there are more than ``length`` words, a random subset of ``length`` of them
    is kept (every subset equally likely), since the model's texts have a fixed
    length; :func:`build_celeba` counts how often that happens.

    Args:
        words: the image's present words (e.g. from :func:`attribute_words`).
        rng: the source of the shuffle.
        length: words per text.

    Example:
        >>> celeba_text(["Male", "Smiling", "Bangs"], np.random.default_rng(0), length=5)
        ['Bangs', 'Male', 'Smiling', '-', '-']
    """
    order = rng.permutation(len(words))[:length]
    return [words[i] for i in order] + [BLANK] * (length - len(order))


def celeba_vocabulary(length: int = TEXT_LENGTH) -> Vocabulary:
    """The 20-token vocabulary, with ``length`` slots ``w1``… that each allow every token."""
    return Vocabulary(
        words=CELEBA_WORDS,
        slots=tuple(CELEBA_WORDS for _ in range(length)),
        slot_names=tuple(f"w{i + 1}" for i in range(length)),
    )


def word_probabilities(label_probs: np.ndarray) -> np.ndarray:
    """Probabilities of the 19 attribute words from a classifier's 18 label probabilities.

    Male/Female is one binary label (:data:`CELEBA_LABELS` has Male only), so
    p(Female) = 1 − p(Male); the result follows the order of :data:`CELEBA_WORDS`
    without the blank.

    Args:
        label_probs: (N, 18) probabilities in the order of :data:`CELEBA_LABELS`.

    Returns:
        (N, 19) in the order of ``CELEBA_WORDS[:-1]``.
    """
    p = np.asarray(label_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(CELEBA_LABELS):
        raise VLVAEError(f"label probabilities have shape {p.shape}; expected (N, {len(CELEBA_LABELS)})")
    return _labels_to_words(p)
