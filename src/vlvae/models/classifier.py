"""Attribute classifier used to score correctness (Cremer & Kushman 2018, §4, §5.4).

The paper's classifiers are "nearly the same as the image encoder"; for Two
Objects the relation word is an extra input so that the eight other words are
determined (SPEC §2.1, §6). For CelebA the same network is a multi-label
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

from vlvae.models.image import ImageEncoder

__all__ = ["AttributeClassifier"]

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
    ) -> None:
        super().__init__()
        self.n_conditions = n_conditions
        self.encoder = ImageEncoder(image_size, 3, base_channels, n_downsample, n_res_blocks, FEATURES)
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
