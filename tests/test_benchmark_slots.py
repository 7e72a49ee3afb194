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


def test_caption_hits_mark_the_wrong_slots_and_read_a_mirrored_caption_in_its_own_order(slots, data):
    split = ImageTextDataset(data, "train")
    texts = torch.stack([split[i]["text"] for i in range(4)])
    vocab = split.vocab
    opposite = {"right": "left", "left": "right", "front": "behind", "behind": "front"}
    words = texts.clone()
    shapes = vocab.slots[3]
    words[0, 3] = vocab.index[shapes[(shapes.index(vocab.decode(texts[0])[3]) + 1) % len(shapes)]]
    # text 1, described the other way round: "O2 <opposite relation> O1", every attribute right
    words[1] = slots.swap_objects(texts[1:2])[0]
    words[1, 4] = vocab.index[opposite[vocab.decode(texts[1])[4]]]
    # text 2, the objects swapped but the relation kept: a different scene, read in the text's order
    words[2] = slots.swap_objects(texts[2:3])[0]
    hits = slots.caption_hits(words, texts, vocab, opposite)
    assert not hits[:, 4].any()
    assert not hits[0, 3] and hits[0, [0, 1, 2, 5, 6, 7, 8]].all()
    assert hits[1, list(ATTRIBUTE_SLOTS)].all()
    same = (texts[2, :4] == texts[2, 5:]).numpy()  # slots where both objects share a word
    np.testing.assert_array_equal(hits[2, [0, 1, 2, 3]], same)
    assert hits[3, list(ATTRIBUTE_SLOTS)].all()


def test_pooling_averages_blocks_and_keeps_a_flat_image(slots):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(slots.pooled(flat, 4), flat)
    blocks = x.view(2, 3, 4, 2, 4, 2).mean((3, 5))  # each 2 × 2 block's mean, by reshaping
    expected = torch.nn.functional.interpolate(blocks, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(slots.pooled(x, 2), expected, atol=1e-6)


def _split(texts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Toy texts of slot classes as the probe takes them: relation words, attribute words."""
    return texts[:, 4], texts[:, list(ATTRIBUTE_SLOTS)]


def _toy_texts(n: int, sizes: list[int], generator: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randint(0, k, (n,), generator=generator) for k in sizes], 1)


def test_probe_names_the_words_its_features_hold_and_guesses_the_others(slots):
    """A toy with an exact answer: features that are the attribute words' one-hot codes are read back
    on held-out examples without a miss; features independent of the words are read at chance."""
    sizes = [2, 8, 2, 3, 4, 2, 8, 2, 3]
    generator = torch.Generator().manual_seed(1)
    train, test = _toy_texts(2000, sizes, generator), _toy_texts(1000, sizes, generator)

    def codes(texts):
        one_hots = [torch.nn.functional.one_hot(texts[:, s], sizes[s]) for s in ATTRIBUTE_SLOTS]
        return torch.cat(one_hots, 1).float()

    read = slots.fit_probe(codes(train), *_split(train), sizes, epochs=30, hidden=64)
    hits = read(codes(test), *_split(test))
    assert hits[:, list(ATTRIBUTE_SLOTS)].all()

    noise = torch.randn(3000, 16, generator=generator)
    read = slots.fit_probe(noise[:2000], *_split(train), sizes, epochs=10, hidden=64)
    hits = read(noise[2000:], *_split(test))
    shape = hits[:, [3, 8]].mean()  # three shapes: chance 1/3, with 2,000 readings' spread about 0.01
    assert abs(shape - 1 / 3) < 0.06, shape
    colour = hits[:, [1, 6]].mean()
    assert abs(colour - 1 / 8) < 0.05, colour


def test_probe_reads_the_objects_in_the_order_the_relation_word_gives(slots):
    """The features describe the scene's objects in a fixed order (A, then B); the text names A first
    for relations 0 and 1 and B first for 2 and 3. Only a probe that reads the relation word can name
    every word; one that ignored it would miss about half the words where A and B differ."""
    sizes = [2, 8, 2, 3, 4, 2, 8, 2, 3]
    generator = torch.Generator().manual_seed(2)

    def scenes(n):
        a, b = _toy_texts(n, sizes[:4], generator), _toy_texts(n, sizes[5:], generator)
        relation = torch.randint(0, 4, (n, 1), generator=generator)
        a_first = relation < 2
        texts = torch.cat((torch.where(a_first, a, b), relation, torch.where(a_first, b, a)), 1)
        one_hots = [torch.nn.functional.one_hot(o[:, j], sizes[j]) for o in (a, b) for j in range(4)]
        return torch.cat(one_hots, 1).float(), texts

    (train_f, train), (test_f, test) = scenes(4000), scenes(1000)
    hits = slots.fit_probe(train_f, *_split(train), sizes, epochs=40, hidden=128)(test_f, *_split(test))
    assert hits[:, list(ATTRIBUTE_SLOTS)].mean() > 0.995
    differ = (test[:, :4] != test[:, 5:]).numpy()
    assert differ.mean() > 0.4  # the objects differ in enough words for the relation to matter


def test_judge_targets_name_each_texts_words(slots, data):
    """The probe's targets, read back through the vocabulary's slots, are the texts' own words."""
    split = ImageTextDataset(data, "train")
    texts = torch.stack([split[i]["text"] for i in range(len(split))])
    relations, attributes = slots.judge_targets(texts, split.vocab)
    for i, t in enumerate(texts):
        words = split.vocab.decode(t)
        assert split.vocab.slots[4][relations[i]] == words[4]
        assert [split.vocab.slots[s][attributes[i, j]] for j, s in enumerate(ATTRIBUTE_SLOTS)] == [
            words[s] for s in ATTRIBUTE_SLOTS
        ]
