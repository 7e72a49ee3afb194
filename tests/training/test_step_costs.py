"""What a training step does besides its arithmetic changes no number (docs/design.md §8.2).

* :func:`vlvae.training.tasks.seed_step` seeds only the CPU generator when the step runs on the
  CPU: the state it leaves is the one ``torch.manual_seed`` leaves, so every draw after it is too.
* :class:`vlvae.data.dataset.TextsOnly` gives the items of its data set without their images: the
  same texts (made by the same calls, so the same random draws) and indices.
"""

import torch

from vlvae.data.dataset import ImageTextDataset, TextsOnly
from vlvae.training import tasks
from vlvae.training.tasks import seed_step


def test_cpu_step_seed_leaves_the_state_torch_manual_seed_leaves():
    for seed in (0, 7, 2**62 + 3):
        torch.manual_seed(seed)
        expected_state, expected = torch.get_rng_state(), torch.randn(8)
        torch.manual_seed(seed + 1)  # a different state in between, so the check can fail
        seed_step(seed, "cpu")
        assert torch.equal(torch.get_rng_state(), expected_state)
        assert torch.equal(torch.randn(8), expected)
        seed_step(seed, torch.device("cpu"))
        assert torch.equal(torch.randn(8), expected)


def test_an_accelerator_step_seeds_every_device(monkeypatch):
    seen = []
    monkeypatch.setattr(tasks.torch, "manual_seed", seen.append)
    seed_step(11, "meta")  # any device that is not the CPU
    seed_step(12, "cpu")
    assert seen == [11]


def test_texts_only_items_are_the_data_sets_without_images(data):
    full = ImageTextDataset(data, "train")
    texts = TextsOnly(full)
    assert len(texts) == len(full)
    for i in (0, 5, len(full) - 1):
        item, reference = texts[i], full[i]
        assert set(item) == {"text", "index"} and item["index"] == reference["index"] == i
        assert torch.equal(item["text"], reference["text"])


class _DrawnTexts(ImageTextDataset):
    """A data set whose text is drawn at every load (as the ``set`` and ``free`` forms are)."""

    def text(self, i: int) -> torch.Tensor:
        return torch.randint(1000, (3,)) + i


def test_texts_only_makes_each_text_with_the_same_random_draws(data):
    drawn = _DrawnTexts(data, "train")
    torch.manual_seed(4)
    expected = [drawn[i]["text"] for i in (3, 1, 3)]
    torch.manual_seed(4)
    got = [TextsOnly(drawn)[i]["text"] for i in (3, 1, 3)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert not torch.equal(got[0], got[2])  # the texts really are drawn anew at every load
