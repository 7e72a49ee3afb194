"""What a judge learns from a data set: real images with the targets of its classifier.

A judge (the independent classifier that scores generated images, docs/design.md §6) is trained on real
training images only (:mod:`vlvae.training.judges`) and scores images against texts
(:mod:`vlvae.evaluation.classifier`, :mod:`vlvae.evaluation.celeba_scoring`); both read their
examples from here.

* Two Objects: the image and the relation word go in, the other eight words of a true text come
  out (one categorical per slot, :data:`ATTRIBUTE_SLOTS`); every true text of an image is a
  target (:class:`TwoObjectsClassifierData`).
* CelebA: the image goes in, its 18 binary labels come out (:class:`CelebAClassifierData`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vlvae.data.celeba import CELEBA_LABELS, label_targets
from vlvae.data.dataset import ImageTextDataset
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError

__all__ = ["RELATION_SLOT", "ATTRIBUTE_SLOTS", "TwoObjectsClassifierData", "CelebAClassifierData"]

#: The slot of a nine-word Two Objects text that holds the relation word (the judge's condition).
RELATION_SLOT = 4
#: The slots of a nine-word Two Objects text that the judge predicts (the two objects' attributes).
ATTRIBUTE_SLOTS = (0, 1, 2, 3, 5, 6, 7, 8)


def _slot_targets(vocab: Vocabulary, text: list[str]) -> tuple[int, list[int]]:
    """(relation index, slot-local class index of each of the eight attribute words)."""
    relation = vocab.slots[RELATION_SLOT].index(text[RELATION_SLOT])
    return relation, [vocab.slots[s].index(text[s]) for s in ATTRIBUTE_SLOTS]


class TwoObjectsClassifierData(Dataset):
    """Images with (relation, eight attribute targets).

    ``all_texts=False`` (training): a random one of the image's true texts at each load.
    ``all_texts=True`` (validation): item ``4 i + t`` is image i with its t-th true text.
    """

    def __init__(self, root: Path, split: str, all_texts: bool):
        self.base = ImageTextDataset(root, split)
        if self.base.dataset != "two_objects" or len(self.base.vocab.slots) != 9:
            raise VLVAEError(
                f"{root} is not a two-object Two Objects data set; the attribute classifier "
                "needs nine-word texts"
            )
        self.all_texts = all_texts
        vocab = self.base.vocab
        self.targets = [[_slot_targets(vocab, t) for t in r["texts"]] for r in self.base.records]
        self.per_image = min(len(t) for t in self.targets)

    def __len__(self):
        return len(self.base) * (self.per_image if self.all_texts else 1)

    def __getitem__(self, i):
        if self.all_texts:
            image_index, t = divmod(i, self.per_image)
        else:
            image_index = i
            t = int(torch.randint(len(self.targets[i]), ()).item())
        relation, slots = self.targets[image_index][t]
        image = torch.from_numpy(np.array(self.base.images[image_index])).permute(2, 0, 1)
        return {"image": image, "relation": relation, "targets": torch.tensor(slots)}


class CelebAClassifierData(Dataset):
    """Real faces of one split with their 18 binary labels.

    Each item: ``image`` uint8 (3, H, W), ``targets`` long (18,) in the order of
    :data:`vlvae.data.celeba.CELEBA_LABELS`, ``index``. The labels come from each record's
    ``attributes`` (all 40 CelebA attributes), so a face with more than nine
    present words still has all of them as targets.
    """

    def __init__(self, root: Path, split: str):
        self.base = ImageTextDataset(Path(root), split)
        if self.base.dataset != "celeba":
            raise VLVAEError(
                f"{root} is a {self.base.dataset} data set, not CelebA; build one with "
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
