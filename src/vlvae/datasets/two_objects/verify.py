"""Two Objects' own verify rule: a record's texts are exactly the true texts of its scene."""

from __future__ import annotations

from vlvae.datasets.two_objects.scene import scene_from_record, true_texts
from vlvae.errors import VLVAEError

__all__ = ["check_record"]


def check_record(record: dict) -> int:
    """Check that a record's stored texts are the true texts of its scene (recomputed with CLEVR's
    rule) and that its drawn text is one of them; returns the number of texts checked."""
    truth = true_texts(scene_from_record(record))
    if sorted(map(tuple, truth)) != sorted(map(tuple, record["texts"])):
        raise VLVAEError("its stored texts are not the true texts of its scene")
    if record["text"] not in record["texts"]:
        raise VLVAEError(f"its text {' '.join(record['text'])!r} is not true of its scene")
    return len(record["texts"])
