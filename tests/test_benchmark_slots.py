"""benchmarks/slot_correctness.py: its per-slot reading agrees with the project's Two Objects scorer, and
its summary counts the words a toy judge reads back exactly."""

import numpy as np
import pytest
import torch
from torch import nn

from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.datasets.two_objects.judge import ATTRIBUTE_SLOTS, TwoObjectsScorer


class FixedJudge(nn.Module):
    """A judge whose logits depend on the image's mean only (so every image gets some fixed reading)."""

    def __init__(self, slot_sizes: list[int]):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weights = [torch.randn(4, n, generator=generator) for n in slot_sizes]

    def forward(self, images, relations):
        features = torch.stack(
            (images.mean((1, 2, 3)), images.std((1, 2, 3)), relations.float(), images[:, 0].mean((1, 2))), 1
        )
        return [features @ w for w in self.weights]


@pytest.fixture(scope="module")
def slots(benchmark_script):
    return benchmark_script("slot_correctness")


def test_slot_hits_average_to_the_scorers_correctness(slots, data):
    split = ImageTextDataset(data, "train")
    items = [split[i] for i in range(len(split))]
    images = images_to_float(torch.stack([it["image"] for it in items]))
    texts = torch.stack([it["text"] for it in items])
    judge = FixedJudge([len(split.vocab.slots[s]) for s in ATTRIBUTE_SLOTS])
    hits = slots.slot_hits(judge, split.vocab, images, texts)
    expected = TwoObjectsScorer(judge, split.vocab).score(images, texts).numpy()
    np.testing.assert_allclose(hits[:, list(ATTRIBUTE_SLOTS)].mean(1), expected, rtol=0, atol=1e-6)
    assert not hits[:, 4].any()  # the relation slot is the judge's input, never a hit
    assert 0 < hits[:, list(ATTRIBUTE_SLOTS)].mean() < 1  # the fixed judge neither always hits nor misses


def test_summary_counts_each_attribute_and_shape_by_size(slots):
    hits = np.zeros((2, 9), dtype=bool)
    hits[0, [0, 1, 3]] = True  # text 0: O1 size, colour, shape
    hits[1, [5, 8, 3]] = True  # text 1: O2 size, O2 shape, O1 shape
    small = np.array([[True, False], [False, True]])
    out = slots.summarise(hits, small)
    assert out["size"] == 2 / 4 and out["colour"] == 1 / 4 and out["material"] == 0
    assert out["shape"] == 3 / 4
    assert out["all"] == 6 / 16
    # small objects: text 0's O1 (hit) and text 1's O2 (hit); large: text 0's O2 (miss), text 1's O1 (hit)
    assert out["shape|small"] == 1.0 and out["shape|large"] == 0.5


def test_swap_exchanges_the_objects_and_keeps_the_relation(slots):
    texts = torch.arange(18).view(2, 9)
    swapped = slots.swap_objects(texts)
    assert swapped[0].tolist() == [5, 6, 7, 8, 4, 0, 1, 2, 3]
    assert torch.equal(slots.swap_objects(swapped), texts)
