"""Vocabularies: the ordered word list of a data set, overall and per text slot, and the reading of
free-form text into words (:func:`tokenize`)."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from vlvae.errors import VLVAEError

__all__ = ["Vocabulary", "tokenize"]

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]|_", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Words of a free-form text (docs/design.md §11): Unicode-normalised (NFKC), lower case; runs of
    letters and digits are words (an inner apostrophe kept: ``don't``), every other visible
    character is a word of its own, white space separates.

    Example:
        >>> tokenize("A RED cube, left of the sphere!")
        ['a', 'red', 'cube', ',', 'left', 'of', 'the', 'sphere', '!']
        >>> tokenize("  don't_stop  ")
        ["don't", '_', 'stop']
    """
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


@dataclass(frozen=True)
class Vocabulary:
    """Words of a data set.

    Attributes:
        words: every word, in index order (index i encodes ``words[i]``).
        slots: for fixed-layout texts, the words allowed in each position.
        slot_names: a name per slot (e.g. ``O1size``).
        end: the end word of texts of variable length (docs/design.md §11); None: texts have a
            fixed number of words.
        unknown: the word that stands for any word outside the vocabulary; None: unknown
            words are refused.
    """

    words: tuple[str, ...]
    slots: tuple[tuple[str, ...], ...] = ()
    slot_names: tuple[str, ...] = ()
    end: str | None = None
    unknown: str | None = None

    def __post_init__(self):
        if len(set(self.words)) != len(self.words):
            raise VLVAEError("the vocabulary lists a word twice; each word must appear once")
        for role in ("end", "unknown"):
            word = getattr(self, role)
            if word is not None and word not in self.words:
                raise VLVAEError(f"the vocabulary's {role} word {word!r} is not among its words")

    @property
    def end_index(self) -> int | None:
        """The index of the end word (None for texts of fixed length)."""
        return None if self.end is None else self.index[self.end]

    def unknown_words(self, words: list[str]) -> list[str]:
        """The words of ``words`` outside the vocabulary, in order, each once."""
        index = self.index
        return list(dict.fromkeys(w for w in words if w not in index))

    def encode_padded(self, words: list[str], length: int) -> list[int]:
        """Indices of a text of variable length in ``length`` slots (docs/design.md §11): its words
        (unknown ones as the unknown word; cut to ``length - 1`` words), then the end word, which also
        fills the slots after it.

        Example:
            >>> v = Vocabulary(("<end>", "<unk>", "a", "cat"), end="<end>", unknown="<unk>")
            >>> v.encode_padded(["a", "dog"], 4)
            [2, 1, 0, 0]
        """
        if self.end is None:
            raise VLVAEError("this vocabulary has no end word: its texts have a fixed number of words")
        index = self.index
        fallback = None if self.unknown is None else index[self.unknown]
        ids = []
        for w in words[: length - 1]:
            if w not in index and fallback is None:
                raise VLVAEError(f"unknown word {w!r}; the vocabulary has no unknown word")
            ids.append(index.get(w, fallback))
        return ids + [index[self.end]] * (length - len(ids))

    def strip_end(self, words: list[str]) -> list[str]:
        """The words of a decoded text before its first end word (all of them without an end word)."""
        if self.end is None or self.end not in words:
            return list(words)
        return list(words[: words.index(self.end)])

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: list[str] | str) -> list[int]:
        """Word indices of a text (a list of words or a space-separated string)."""
        words = text.split() if isinstance(text, str) else list(text)
        index = self.index
        unknown = [w for w in words if w not in index]
        if unknown:
            raise VLVAEError(
                f"unknown word(s) {', '.join(map(repr, unknown))}; the vocabulary is: {' '.join(self.words)}"
            )
        return [index[w] for w in words]

    def decode(self, ids) -> list[str]:
        """Words of a sequence of indices."""
        return [self.words[int(i)] for i in ids]

    def to_json(self) -> dict:
        obj = {
            "words": list(self.words),
            "slots": [list(s) for s in self.slots],
            "slot_names": list(self.slot_names),
        }
        # written only when set, so that vocabularies of fixed-length texts keep their bytes
        obj.update({role: getattr(self, role) for role in ("end", "unknown") if getattr(self, role)})
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> Vocabulary:
        try:
            return cls(
                words=tuple(obj["words"]),
                slots=tuple(tuple(s) for s in obj.get("slots", [])),
                slot_names=tuple(obj.get("slot_names", [])),
                end=obj.get("end"),
                unknown=obj.get("unknown"),
            )
        except (KeyError, TypeError) as exc:
            raise VLVAEError(f"vocab.json is malformed ({exc}); rebuild the data set") from exc
