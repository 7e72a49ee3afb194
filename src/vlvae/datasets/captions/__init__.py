"""Your own image–text pairs: a folder of images with free-form captions, imported by
``vlvae data import`` into the shared format (docs/datasets.md).

Captions are texts of variable length: tokenised (:func:`vlvae.data.vocabulary.tokenize`), read
with a vocabulary of the training split's words by minimum count, an unknown word and an end word
(docs/design.md §11). The judge is the caption judge (:mod:`vlvae.datasets.caption_judge`), which
needs nothing but images and texts. The package: the captions file (:mod:`.table`), the images
(:mod:`.images`), the import (:mod:`.build`) and its command (:mod:`.cli`).
"""

from __future__ import annotations

from vlvae.datasets import DataSet
from vlvae.datasets.caption_judge import JUDGE
from vlvae.datasets.captions.cli import data_import

__all__ = ["DATASET"]


DATASET = DataSet(
    name="captions",
    title="Imported captions",
    judge=JUDGE,
    commands={"import": data_import},
)
