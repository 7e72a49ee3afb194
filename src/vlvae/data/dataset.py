"""PyTorch access to a vlvae data set: images, texts, and a resumable step sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from vlvae.data.format import load_images, read_manifest, read_records, read_vocabulary
from vlvae.data.vocabulary import Vocabulary
from vlvae.errors import VLVAEError

__all__ = ["BLANK_WORD", "TEXT_FORMS", "ImageTextDataset", "TextsOnly", "StepSampler", "images_to_float"]


def images_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (batch, H, W, 3) or (batch, 3, H, W) -> float (batch, 3, H, W) in [0, 1]."""
    if images.shape[-1] == 3 and images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    return images.float().div_(255.0)


#: The word that pads a set of words to a text's slots (texts of the ``set`` form).
BLANK_WORD = "-"
#: How a record holds its text (docs/design.md §11): form -> the record's key.
TEXT_FORMS = {"fixed": "text", "set": "words", "free": "captions"}


class ImageTextDataset(Dataset):
    """Image-text pairs of one split of a vlvae data set.

    Each item is a dict: ``image`` uint8 (3, H, W), ``text`` long (L,), ``index``. How a record holds
    its text (:data:`TEXT_FORMS`) decides how an item's text is made (docs/design.md §11), whatever
    the data set:

    * ``fixed`` (key ``text``): one stored text of fixed length, read as it is;
    * ``set`` (key ``words``): a set of words, drawn in a new random order at every load and padded
      with :data:`BLANK_WORD`;
    * ``free`` (key ``captions``): one or more texts of variable length; one is drawn at every load
      and written with its end word (:meth:`Vocabulary.encode_padded`).

    Random draws come from torch's random stream (seeded per run and per loader worker).
    """

    def __init__(self, root: Path, split: str):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.vocab: Vocabulary = read_vocabulary(self.root)
        self.images = load_images(self.root, split)
        self.records = read_records(self.root, split)
        if len(self.images) != len(self.records):
            raise VLVAEError(
                f"{root}/{split} has {len(self.images)} images but {len(self.records)} "
                "records; rebuild the data set"
            )
        first = self.records[0] if self.records else {}
        self.text_form = next((f for f, key in TEXT_FORMS.items() if key in first and f != "fixed"), "fixed")
        self.text_length = int(self.manifest.get("text_length", len(first.get("text", [])) or 9))
        if self.text_form == "set":
            self._words = [self.vocab.encode(r["words"]) for r in self.records]
            self._blank = self.vocab.index[BLANK_WORD]
        elif self.text_form == "free":
            self._captions = [
                [self.vocab.encode_padded(c, self.text_length) for c in r["captions"]] for r in self.records
            ]
            # the first caption of each image: the text an image is scored with where one is fixed
            self._texts = torch.tensor([c[0] for c in self._captions], dtype=torch.long).reshape(
                len(self.records), self.text_length
            )
        else:
            self._texts = torch.tensor(
                [self.vocab.encode(r["text"]) for r in self.records], dtype=torch.long
            ).reshape(len(self.records), self.text_length)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.records)

    def text(self, i: int) -> torch.Tensor:
        if self.text_form == "set":
            words = self._words[i]
            order = torch.randperm(len(words)).tolist()[: self.text_length]
            ids = [words[j] for j in order] + [self._blank] * (
                self.text_length - min(len(words), self.text_length)
            )
            return torch.tensor(ids, dtype=torch.long)
        if self.text_form == "free":
            captions = self._captions[i]
            pick = int(torch.randint(len(captions), ())) if len(captions) > 1 else 0
            return torch.tensor(captions[pick], dtype=torch.long)
        return self._texts[i]

    def __getitem__(self, i: int) -> dict:
        image = torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1)
        return {"image": image, "text": self.text(i), "index": i}


class TextsOnly(Dataset):
    """The items of an :class:`ImageTextDataset` without their images: ``text`` and ``index``.

    For fits that never look at a training image, such as stages 2-3, which draw z ~ q(z|x) from a
    table of the frozen q(z|x) by ``index``: reading and stacking a batch of images they would not use
    was a fifth of a stage-3 step on a CPU (docs/design.md §8.2). An item's text is made exactly as
    the full data set makes it (the same random draws, in the same order).
    """

    def __init__(self, data: ImageTextDataset):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        return {"text": self.data.text(i), "index": i}


class StepSampler(Sampler[int]):
    """Indices for ``steps`` optimisation steps, a pure function of (seed, step).

    Step t of an epoch-free stream takes batch t of the concatenated random
    permutations (epoch e uses seed + e, a last partial batch is dropped). With
    several processes, each rank takes its slice of the global batch. Each new
    iteration starts at the step given by ``step_source()`` (the trainer's global
    step; ``start_step`` by default), so a resumed run, or a loader restarted by
    the trainer, sees the same batches as an uninterrupted run.
    """

    def __init__(self, n: int, batch_size: int, steps: int, seed: int, rank: int = 0, world_size: int = 1):
        if n < batch_size * world_size:
            raise VLVAEError(
                f"the data has {n} examples, fewer than one batch of "
                f"{batch_size * world_size}; lower the batch size or make more data"
            )
        self.n, self.batch_size, self.steps, self.seed = n, batch_size, steps, seed
        self.rank, self.world_size = rank, world_size
        self.start_step = 0
        self.step_source = lambda: self.start_step

    def __len__(self) -> int:
        return max(0, self.steps - self.step_source()) * self.batch_size

    def __iter__(self):
        global_batch = self.batch_size * self.world_size
        per_epoch = self.n // global_batch
        cached_epoch, perm = -1, None
        for step in range(self.step_source(), self.steps):
            epoch, b = divmod(step, per_epoch)
            if epoch != cached_epoch:
                g = torch.Generator().manual_seed(self.seed + epoch)
                perm, cached_epoch = torch.randperm(self.n, generator=g), epoch
            lo = b * global_batch + self.rank * self.batch_size
            yield from perm[lo : lo + self.batch_size].tolist()
