"""Vocabularies: the ordered word list of a data set, overall and per text slot."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from vlvae.data import clevr
from vlvae.errors import VLVAEError

__all__ = ["Vocabulary", "two_objects_vocabulary", "one_object_vocabulary"]


@dataclass(frozen=True)
class Vocabulary:
    """Words of a data set.

    Attributes:
        words: every word, in index order (index i encodes ``words[i]``).
        slots: for fixed-layout texts, the words allowed in each position.
        slot_names: a name per slot (e.g. ``O1size``).
    """

    words: tuple[str, ...]
    slots: tuple[tuple[str, ...], ...] = ()
    slot_names: tuple[str, ...] = ()

    def __post_init__(self):
        if len(set(self.words)) != len(self.words):
            raise VLVAEError("the vocabulary lists a word twice; each word must appear once")

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
        return {
            "words": list(self.words),
            "slots": [list(s) for s in self.slots],
            "slot_names": list(self.slot_names),
        }

    @classmethod
    def from_json(cls, obj: dict) -> Vocabulary:
        try:
            return cls(
                words=tuple(obj["words"]),
                slots=tuple(tuple(s) for s in obj.get("slots", [])),
                slot_names=tuple(obj.get("slot_names", [])),
            )
        except (KeyError, TypeError) as exc:
            raise VLVAEError(f"vocab.json is malformed ({exc}); rebuild the data set") from exc


_SLOT_NAMES = ("size", "colour", "material", "shape")
_SIZE_ORDER = ("small", "large")
_COLOUR_ORDER = ("cyan", "red", "gray", "blue", "yellow", "purple", "brown", "green")


def _ordered(values, order):
    return tuple(v for v in order if v in values) + tuple(v for v in values if v not in order)


def two_objects_vocabulary(
    colours=tuple(clevr.COLOURS),
    sizes=tuple(clevr.SIZES),
    shapes=clevr.SHAPES,
    materials=clevr.MATERIALS,
) -> Vocabulary:
    """The nine-slot vocabulary ``O1size O1colour O1material O1shape R O2size ...`` (docs/design.md §1.1)."""
    obj_slots = (
        _ordered(sizes, _SIZE_ORDER),
        _ordered(colours, _COLOUR_ORDER),
        tuple(materials),
        tuple(shapes),
    )
    slots = obj_slots + (clevr.RELATIONS,) + obj_slots
    names = tuple(f"O1{n}" for n in _SLOT_NAMES) + ("R",) + tuple(f"O2{n}" for n in _SLOT_NAMES)
    words = tuple(dict.fromkeys(w for slot in slots for w in slot))
    return Vocabulary(words=words, slots=slots, slot_names=names)


def one_object_vocabulary(colours=("blue", "red"), sizes=tuple(clevr.SIZES)) -> Vocabulary:
    """The two-slot ``size colour`` vocabulary of the Fig. 1 variant (docs/design.md §1.1)."""
    slots = (_ordered(sizes, _SIZE_ORDER), _ordered(colours, _COLOUR_ORDER))
    words = tuple(dict.fromkeys(w for slot in slots for w in slot))
    return Vocabulary(words=words, slots=slots, slot_names=("size", "colour"))
