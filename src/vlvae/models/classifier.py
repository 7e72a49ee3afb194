"""Attribute classifier used to score correctness (Cremer & Kushman 2018, §4, §5.4).

The paper's classifiers are "nearly the same as the image encoder"; for Two
Objects the relation word is an extra input so that the eight other words are
determined (docs/design.md §2.1, §6). For CelebA the same network is a multi-label
classifier: one two-class slot per attribute and no condition.

The condition enters after the convolutions, as a one-hot vector concatenated
to the image features, not as constant input channels: a constant channel's
contribution to the first convolution is constant over the image (reflection
padding keeps it so), and the instance normalisation right after subtracts
every channel's spatial mean, so it would be erased exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor, nn

from vlvae.models.image import make_image_encoder

__all__ = ["AttributeClassifier", "RelationalSlotClassifier", "judge_network"]

FEATURES = 256


class AttributeClassifier(nn.Module):
    """Image (+ condition word) -> logits of ``len(slot_sizes)`` categorical slots.

    Architecture: :class:`~vlvae.models.image.ImageEncoder` to 256 features,
    ReLU, concatenation with the condition's one-hot, a hidden layer of 256
    (ReLU), then one linear head per slot.

    Arguments:
        image_size: side of the square input images.
        slot_sizes: number of classes of each slot (8 slots for Two Objects; 19
            two-class slots for CelebA).
        n_conditions: number of condition words (4 relations); 0 for none.
        base_channels, n_downsample, n_res_blocks: the encoder's sizes.
        arch, norm: the encoder's family (:data:`vlvae.models.image.ARCHITECTURES`) and its normalisation.

    Example:
        >>> clf = AttributeClassifier(16, [2, 8, 2, 3], 4, base_channels=4)
        >>> [t.shape for t in clf(torch.rand(2, 3, 16, 16), torch.tensor([0, 3]))]
        [torch.Size([2, 2]), torch.Size([2, 8]), torch.Size([2, 2]), torch.Size([2, 3])]
    """

    def __init__(
        self,
        image_size: int,
        slot_sizes: list[int],
        n_conditions: int,
        base_channels: int = 32,
        n_downsample: int = 2,
        n_res_blocks: int = 2,
        arch: str = "cyclegan",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        self.arch = arch
        self.n_conditions = n_conditions
        self.encoder = make_image_encoder(
            arch, image_size, 3, base_channels, n_downsample, n_res_blocks, FEATURES, norm
        )
        self.hidden = nn.Sequential(nn.ReLU(), nn.Linear(FEATURES + n_conditions, FEATURES), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(FEATURES, n) for n in slot_sizes)

    def forward(self, x: Tensor, condition: LongTensor | None = None) -> list[Tensor]:
        """x: (batch, 3, H, W) in [0, 1]; condition: (batch,) indices in [0, n_conditions).

        Returns one (batch, n_classes_i) logit tensor per slot.
        """
        h = self.encoder(x)
        if self.n_conditions:
            if condition is None:
                raise ValueError("This classifier is conditioned on a word; pass condition (batch,) indices.")
            h = torch.cat([h, F.one_hot(condition, self.n_conditions).to(h.dtype)], dim=-1)
        h = self.hidden(h)
        return [head(h) for head in self.heads]


class RelationalSlotClassifier(nn.Module):
    """Two Objects judge: image + relation word -> the eight attribute words of "O1 R O2".

    Rather than asking one feature vector to route attributes by the relation word,
    the network predicts, from the image alone, the attributes of the *left* object
    A and the *right* object B (CLEVR's left/right) and the probability p that A is
    in front of B. The relation word then decides which object is O1:

    - left: O1 = A, O2 = B;  right: O1 = B, O2 = A;
    - front: O1 = A with probability p, else B;  behind: O1 = A with probability 1 − p.

    Each returned slot is the log-probability of a mixture over that choice, so the
    same cross-entropy trains it and its argmax is the predicted word. Every pair
    of Two Objects stands in one left/right and one front/behind relation, so this
    is exact, not an approximation. The interface is :class:`AttributeClassifier`'s.

    Arguments:
        image_size: side of the square input images.
        slot_sizes: the eight slot sizes of O1 and O2 (the first four are used for both objects).
        n_conditions: 4, the relation words in the order right, left, front, behind.
        base_channels, n_downsample, n_res_blocks: the encoder's sizes.
        arch, norm: the encoder's family (:data:`vlvae.models.image.ARCHITECTURES`) and its normalisation.

    Example:
        >>> clf = RelationalSlotClassifier(16, [2, 8, 2, 3] * 2, 4, base_channels=4)
        >>> [t.shape for t in clf(torch.rand(2, 3, 16, 16), torch.tensor([0, 3]))][:2]
        [torch.Size([2, 2]), torch.Size([2, 8])]
    """

    RIGHT, LEFT, FRONT, BEHIND = range(4)

    def __init__(
        self,
        image_size: int,
        slot_sizes: list[int],
        n_conditions: int,
        base_channels: int = 32,
        n_downsample: int = 2,
        n_res_blocks: int = 2,
        arch: str = "cyclegan",
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if n_conditions != 4 or len(slot_sizes) != 8 or slot_sizes[:4] != slot_sizes[4:]:
            raise ValueError(
                "RelationalSlotClassifier needs the Two Objects layout: 4 relations and 2 x 4 slots."
            )
        self.arch = arch
        self.object_slots = list(slot_sizes[:4])
        self.encoder = make_image_encoder(
            arch, image_size, 3, base_channels, n_downsample, n_res_blocks, FEATURES, norm
        )
        self.hidden = nn.Sequential(nn.ReLU(), nn.Linear(FEATURES, FEATURES), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(FEATURES, n) for n in self.object_slots * 2)
        self.front = nn.Linear(FEATURES, 1)

    def forward(self, x: Tensor, condition: LongTensor) -> list[Tensor]:
        """x: (batch, 3, H, W) in [0, 1]; condition: (batch,) relation indices.

        Returns one (batch, n_classes_i) log-probability tensor per slot of O1 then O2.
        """
        h = self.hidden(self.encoder(x))
        logp = [head(h).log_softmax(-1) for head in self.heads]
        a, b = logp[:4], logp[4:]
        front = self.front(h).squeeze(-1)
        log_front, log_back = F.logsigmoid(front), F.logsigmoid(-front)
        never = torch.full_like(log_front, -1e4)
        certain = torch.zeros_like(log_front)
        c = condition
        # log P(O1 = A) and log P(O1 = B) for each example's relation word.
        o1_is_a = torch.where(
            c == self.LEFT,
            certain,
            torch.where(c == self.RIGHT, never, torch.where(c == self.FRONT, log_front, log_back)),
        )
        o1_is_b = torch.where(
            c == self.LEFT,
            never,
            torch.where(c == self.RIGHT, certain, torch.where(c == self.FRONT, log_back, log_front)),
        )
        wa, wb = o1_is_a.unsqueeze(-1), o1_is_b.unsqueeze(-1)
        o1 = [torch.logaddexp(wa + la, wb + lb) for la, lb in zip(a, b)]
        o2 = [torch.logaddexp(wb + la, wa + lb) for la, lb in zip(a, b)]
        return o1 + o2


def judge_network(image_size: int, slot_sizes: list[int], n_conditions: int, settings) -> nn.Module:
    """A judge's classifier: :class:`RelationalSlotClassifier` with ``n_conditions`` > 0, else
    :class:`AttributeClassifier`, with the image network of ``settings`` (a mapping with
    ``base_channels``, ``n_downsample``, ``n_res_blocks`` and, for folders written since they are
    recorded, ``arch`` and ``norm``: ``cyclegan`` and ``batch`` before)."""
    network = RelationalSlotClassifier if n_conditions else AttributeClassifier
    return network(
        image_size,
        slot_sizes,
        n_conditions,
        base_channels=settings["base_channels"],
        n_downsample=settings["n_downsample"],
        n_res_blocks=settings["n_res_blocks"],
        arch=settings.get("arch", "cyclegan"),
        norm=settings.get("norm", "batch"),
    )
