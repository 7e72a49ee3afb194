"""CycleGAN-style ResNet image encoder and decoder (Cremer & Kushman 2018, §5.1).

The paper builds on the CycleGAN generator (Zhu et al. 2017, "Unpaired
Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
https://arxiv.org/abs/1703.10593), itself after Johnson et al. 2016: a
reflection-padded 7×7 stem, stride-2 convolutions that double the width,
residual blocks with instance normalisation (Ulyanov et al. 2016). Per the
authors' code (SPEC §2.1) the encoder ends in a 10-channel map, flattened and
projected to 1,000 then to the 200-d encoding; the decoder mirrors it from a
1,000-d vector reshaped to 10 × 10 × 10.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vlvae.models.config import feature_side

__all__ = ["ResidualBlock", "ImageEncoder", "ImageDecoder"]

BOTTLENECK_CHANNELS = 10
BOTTLENECK_FEATURES = 1000
DECODER_SEED_SIDE = 10  # 1000 = 10 channels × 10 × 10


class ResidualBlock(nn.Module):
    """x + (reflection pad, 3×3 conv, instance norm, ReLU, reflection pad, 3×3 conv, instance norm)(x).

    Arguments:
        channels: input and output channels.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, channels, H, W) -> (batch, channels, H, W)."""
        return x + self.block(x)


class ImageEncoder(nn.Module):
    """Image -> encoding vector, CycleGAN-style.

    Stem (reflection pad 3, 7×7 conv to ``base_channels``, instance norm, ReLU);
    ``n_downsample`` stride-2 3×3 convs doubling the width; ``n_res_blocks``
    residual blocks; 3×3 conv to 10 channels; flatten; linear to 1,000; ReLU;
    linear to ``out_features``.

    Arguments:
        image_size: side of the square input.
        in_channels: input channels (3 for RGB).
        base_channels: width of the stem.
        n_downsample: stride-2 convolutions.
        n_res_blocks: residual blocks.
        out_features: size of the encoding.

    Example:
        >>> enc = ImageEncoder(16, 3, 4, 2, 1, 8)
        >>> enc(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        base_channels: int,
        n_downsample: int,
        n_res_blocks: int,
        out_features: int,
    ) -> None:
        super().__init__()
        side = feature_side(image_size, n_downsample)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, base_channels, 7),
            nn.InstanceNorm2d(base_channels),
            nn.ReLU(inplace=True),
        ]
        width = base_channels
        for _ in range(n_downsample):
            layers += [
                nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                nn.InstanceNorm2d(2 * width),
                nn.ReLU(inplace=True),
            ]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(n_res_blocks)]
        layers += [nn.Conv2d(width, BOTTLENECK_CHANNELS, 3, padding=1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(BOTTLENECK_CHANNELS * side * side, BOTTLENECK_FEATURES),
            nn.ReLU(inplace=True),
            nn.Linear(BOTTLENECK_FEATURES, out_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, in_channels, H, W) -> (batch, out_features)."""
        return self.head(self.features(x))


class ImageDecoder(nn.Module):
    """Shared-decoder vector -> α ∈ (0, 1) per pixel and channel, mirroring :class:`ImageEncoder`.

    Linear to 1,000; reshape to (10, 10, 10); bilinear resize to the encoder's
    feature side ``image_size / 2**n_downsample``; 3×3 conv to the widest width,
    instance norm, ReLU; ``n_res_blocks`` residual blocks; ``n_downsample``
    stride-2 transposed convs halving the width; reflection pad, 7×7 conv to
    ``out_channels``; sigmoid.

    Arguments:
        in_features: size of the input vector (the shared decoder's output).
        image_size: side of the square output.
        out_channels: output channels (3 for RGB).
        base_channels: width before the last 7×7 convolution.
        n_downsample: transposed stride-2 convolutions.
        n_res_blocks: residual blocks.

    Example:
        >>> dec = ImageDecoder(8, 16, 3, 4, 2, 1)
        >>> dec(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        in_features: int,
        image_size: int,
        out_channels: int,
        base_channels: int,
        n_downsample: int,
        n_res_blocks: int,
    ) -> None:
        super().__init__()
        self.side = feature_side(image_size, n_downsample)
        self.seed = nn.Linear(in_features, BOTTLENECK_CHANNELS * DECODER_SEED_SIDE**2)
        width = base_channels * 2**n_downsample
        layers: list[nn.Module] = [
            nn.Conv2d(BOTTLENECK_CHANNELS, width, 3, padding=1),
            nn.InstanceNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        layers += [ResidualBlock(width) for _ in range(n_res_blocks)]
        for _ in range(n_downsample):
            layers += [
                nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, out_channels, 7), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, h: Tensor) -> Tensor:
        """h: (batch, in_features) -> α: (batch, out_channels, image_size, image_size)."""
        seed = self.seed(h).view(-1, BOTTLENECK_CHANNELS, DECODER_SEED_SIDE, DECODER_SEED_SIDE)
        seed = F.interpolate(seed, size=(self.side, self.side), mode="bilinear", align_corners=False)
        return self.body(seed)
