"""The words of Two Objects texts: nine slots ``O1size O1colour O1material O1shape R O2size ...``
(docs/design.md §1.1), and the two-slot variant of Fig. 1."""

from __future__ import annotations

from vlvae.data.vocabulary import Vocabulary
from vlvae.datasets.two_objects import clevr

__all__ = ["two_objects_vocabulary", "one_object_vocabulary"]


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
