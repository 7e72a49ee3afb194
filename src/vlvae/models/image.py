"""Image encoders and decoders: the paper's CycleGAN-style ResNet (§5.1) and a strided CNN for CPUs.

The paper builds on the CycleGAN generator (Zhu et al. 2017, "Unpaired
Image-to-Image Translation using Cycle-Consistent Adversarial Networks",
https://arxiv.org/abs/1703.10593), itself after Johnson et al. 2016: a
reflection-padded 7×7 stem, stride-2 convolutions that double the width,
residual blocks with instance normalisation (Ulyanov et al. 2016). Per the
authors' code (docs/design.md §2.1) the encoder ends in a 10-channel map, flattened and
projected to 1,000 then to the 200-d encoding; the decoder mirrors it from a
1,000-d vector reshaped to 10 × 10 × 10.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlvae.models.config import ARCHITECTURES, NORMS, broadcast_upsamplings, feature_side
from vlvae.objectives import full_precision

__all__ = [
    "ARCHITECTURES",
    "ResidualBlock",
    "ResidualConv",
    "CoordinateChannels",
    "ImageEncoder",
    "ImageDecoder",
    "StridedEncoder",
    "StridedDecoder",
    "make_image_encoder",
    "make_image_decoder",
]

BOTTLENECK_CHANNELS = 10
BOTTLENECK_FEATURES = 1000
DECODER_SEED_SIDE = 10  # 1000 = 10 channels × 10 × 10
#: 3×3 convolutions of the strided decoder's spatial-broadcast stage (``broadcast_side``).
BROADCAST_LAYERS = 2


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
        return _decode(self.body, seed)


def _norm(norm: str, channels: int) -> nn.Module:
    """Batch norm (Ioffe & Szegedy 2015) or group norm with up to 8 groups (Wu & He 2018).

    Measured on this project's 2-core CPU: group norm is 2-3× cheaper (batch 64, 32 channels at
    32 × 32: 2.3 vs 6.1 ms forward + backward) and keeps no running statistics, but a classifier
    with it learned markedly slower per step (72 % vs 86 % real accuracy after 1,500 steps).
    Batch norm's running statistics lag behind weights that change fast: a batch-norm classifier
    trained at a constant learning rate scored 47 % in evaluation mode against 93 % with batch
    statistics, so the presets that use it decay the learning rate to near zero (cosine).
    """
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; choose one of {', '.join(NORMS)}")
    return nn.BatchNorm2d(channels) if norm == "batch" else nn.GroupNorm(math.gcd(8, channels), channels)


class ResidualConv(nn.Module):
    """x + ReLU(norm(3×3 conv(x))): one residual layer at a fixed resolution (strided family).

    Arguments:
        channels: input and output channels.
        norm: ``batch`` or ``group``.
    """

    def __init__(self, channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, channels, H, W) -> (batch, channels, H, W)."""
        return x + self.block(x)


class CoordinateChannels(nn.Module):
    """Append two channels holding each pixel's column and row, scaled to [−1, 1] (docs/design.md §8.2).

    A convolution is translation-equivariant: it cannot tell where in the image it is, so a decoder
    must build every position out of the seed's spatial layout and an encoder must infer it from
    padding. Given the coordinates as input, a convolution can read and write positions directly
    ("CoordConv", Liu et al. 2018, https://arxiv.org/abs/1807.03247).

    Example:
        >>> out = CoordinateChannels()(torch.zeros(2, 3, 4, 5))
        >>> out.shape, out[0, 3, 0].tolist(), [round(v, 4) for v in out[0, 4, :, 0].tolist()]
        (torch.Size([2, 5, 4, 5]), [-1.0, -0.5, 0.0, 0.5, 1.0], [-1.0, -0.3333, 0.3333, 1.0])
    """

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, C, H, W) -> (batch, C + 2, H, W): channel C the column, C + 1 the row."""
        batch, _, height, width = x.shape
        cols = torch.linspace(-1.0, 1.0, width, device=x.device, dtype=x.dtype)
        rows = torch.linspace(-1.0, 1.0, height, device=x.device, dtype=x.dtype)
        grid = torch.stack(
            (cols.view(1, width).expand(height, width), rows.view(height, 1).expand(height, width))
        )
        out = torch.cat((x, grid.unsqueeze(0).expand(batch, 2, height, width)), dim=1)
        return out.contiguous(memory_format=torch.channels_last)


class StridedEncoder(nn.Module):
    """Image -> encoding vector with strided convolutions (the CPU presets' ``strided`` arch).

    ``n_downsample`` stride-2 4×4 convs, the first to ``base_channels`` and each
    further one doubling the width, each with batch or group norm and ReLU; flatten;
    linear to ``out_features``. DCGAN-style (Radford et al. 2015,
    https://arxiv.org/abs/1511.06434). Nothing runs at full resolution:
    measured on a 2-core CPU (batch 64, 64 × 64, forward + backward), a 3×3
    convolution to 32 channels at full resolution costs 84 ms and its batch norm
    41 ms, while the first stride-2 4×4 convolution costs 10 ms.

    Arguments:
        image_size: side of the square input.
        in_channels: input channels (3 for RGB).
        base_channels: width after the first convolution.
        n_downsample: stride-2 convolutions.
        out_features: size of the encoding.
        n_res_layers: :class:`ResidualConv` layers after each stride-2 convolution (more
            computation at each resolution).
        norm: ``batch`` or ``group`` (see :func:`_norm`).
        coord_channels: give every stride-2 convolution the pixel coordinates as two more input
            channels (:class:`CoordinateChannels`).

    Example:
        >>> enc = StridedEncoder(16, 3, 4, 2, 8)
        >>> enc(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        base_channels: int,
        n_downsample: int,
        out_features: int,
        n_res_layers: int = 0,
        norm: str = "batch",
        coord_channels: bool = False,
    ) -> None:
        super().__init__()
        side = feature_side(image_size, n_downsample)
        if n_downsample < 1:
            raise ValueError("the strided encoder needs n_downsample >= 1")
        layers: list[nn.Module] = []
        width, out = in_channels, base_channels
        extra = 2 if coord_channels else 0
        for _ in range(n_downsample):
            layers += [CoordinateChannels()] if coord_channels else []
            layers += [
                nn.Conv2d(width + extra, out, 4, stride=2, padding=1, bias=False),
                _norm(norm, out),
                nn.ReLU(inplace=True),
            ]
            layers += [ResidualConv(out, norm) for _ in range(n_res_layers)]
            width, out = out, 2 * out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * side * side, out_features)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, in_channels, H, W) -> (batch, out_features)."""
        # channels_last (weights and activations): measured 10-20 % faster on a 2-core CPU here.
        return self.head(self.features(x.contiguous(memory_format=torch.channels_last)).flatten(1))


class StridedDecoder(nn.Module):
    """Shared-decoder vector -> α ∈ (0, 1), mirroring :class:`StridedEncoder`.

    Linear to the widest width at the encoder's feature side, norm, ReLU;
    ``n_downsample − 1`` stride-2 4×4 transposed convs halving the width, each
    with norm and ReLU; a last stride-2 transposed conv straight to
    ``out_channels`` at full resolution; sigmoid. Measured on a 2-core CPU
    (batch 64, forward + backward): the last transposed conv from 32 channels
    at 32 × 32 to 3 at 64 × 64 costs 12 ms, a nearest-neighbour upsampling
    followed by a 3×3 conv doing the same 190 ms.

    Arguments:
        in_features: size of the input vector (the shared decoder's output).
        image_size: side of the square output.
        out_channels: output channels (3 for RGB).
        base_channels: the decoder's narrowest hidden width (as the encoder's first convolution).
        n_downsample: transposed stride-2 convolutions (at least 1).
        n_res_layers: :class:`ResidualConv` layers after each hidden transposed convolution.
        norm: ``batch`` or ``group`` (see :func:`_norm`).
        coord_channels: give every transposed convolution the pixel coordinates as two more input
            channels (:class:`CoordinateChannels`).
        broadcast_side: 0, or start with a spatial-broadcast stage (Watters et al. 2019,
            https://arxiv.org/abs/1901.07017) at this side: a linear map of the input to the
            stage's width, the same vector at every cell of a ``broadcast_side``² grid, then
            :data:`BROADCAST_LAYERS` 3×3 convolutions (norm, ReLU) that each read the pixel
            coordinates too, so that every cell computes its own content from the vector and
            where it is. ``image_size / 2**k`` with ``1 <= k <= n_downsample``; the decoder then
            upsamples ``k`` times (each stride-2 transposed convolution as without it).
        refine_channels: 0, or end at full resolution with more than one linear map: the last
            transposed convolution goes to ``refine_channels`` (norm, ReLU) and a 3×3 convolution
            (reading the coordinates too when ``coord_channels``) to ``out_channels``, so that each
            pixel is computed from its neighbours' features at full resolution (docs/design.md §8.2).

    Example:
        >>> dec = StridedDecoder(8, 16, 3, 4, 2)
        >>> dec(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
        >>> StridedDecoder(8, 16, 3, 4, 2, broadcast_side=8)(torch.randn(2, 8)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        in_features: int,
        image_size: int,
        out_channels: int,
        base_channels: int,
        n_downsample: int,
        n_res_layers: int = 0,
        norm: str = "batch",
        coord_channels: bool = False,
        broadcast_side: int = 0,
        refine_channels: int = 0,
    ) -> None:
        super().__init__()
        if n_downsample < 1:
            raise ValueError("the strided decoder needs n_downsample >= 1")
        n_up = (
            broadcast_upsamplings(image_size, n_downsample, broadcast_side)
            if broadcast_side
            else n_downsample
        )
        self.broadcast = bool(broadcast_side)
        self.side = feature_side(image_size, n_up)
        self.width = base_channels * 2 ** (n_up - 1)
        layers: list[nn.Module] = []
        if self.broadcast:
            self.seed = nn.Linear(in_features, self.width, bias=False)
            for _ in range(BROADCAST_LAYERS):
                layers += [
                    CoordinateChannels(),
                    nn.Conv2d(self.width + 2, self.width, 3, padding=1, bias=False),
                    _norm(norm, self.width),
                    nn.ReLU(inplace=True),
                ]
        else:
            self.seed = nn.Linear(in_features, self.width * self.side * self.side, bias=False)
            self.seed_norm = nn.Sequential(_norm(norm, self.width), nn.ReLU(inplace=True))
        width = self.width
        coords: list[nn.Module] = [CoordinateChannels()] if coord_channels else []
        extra = 2 if coord_channels else 0
        for _ in range(n_up - 1):
            layers += coords
            layers += [
                nn.ConvTranspose2d(width + extra, width // 2, 4, stride=2, padding=1, bias=False),
                _norm(norm, width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
            layers += [ResidualConv(width, norm) for _ in range(n_res_layers)]
        layers += coords
        if refine_channels:
            layers += [
                nn.ConvTranspose2d(width + extra, refine_channels, 4, stride=2, padding=1, bias=False),
                _norm(norm, refine_channels),
                nn.ReLU(inplace=True),
                *coords,
                nn.Conv2d(refine_channels + extra, out_channels, 3, padding=1),
            ]
        else:
            layers += [nn.ConvTranspose2d(width + extra, out_channels, 4, stride=2, padding=1)]
        layers += [nn.Sigmoid()]
        self.body = nn.Sequential(*layers)
        self.to(memory_format=torch.channels_last)

    def forward(self, h: Tensor) -> Tensor:
        """h: (batch, in_features) -> α: (batch, out_channels, image_size, image_size)."""
        if self.broadcast:
            seed = self.seed(h)[:, :, None, None].expand(-1, self.width, self.side, self.side)
        else:
            seed = self.seed_norm(self.seed(h).view(-1, self.width, self.side, self.side))
        return _decode(self.body, seed.contiguous(memory_format=torch.channels_last)).contiguous()


@full_precision
def _to_alpha(conv: nn.Module, sigmoid: nn.Module, h: Tensor) -> Tensor:
    """A decoder's last convolution and its sigmoid, in float32 even under autocast: α feeds the Beta
    log-density, and bfloat16 would round it to 8 bits (up to 0.02 nats per pixel-channel near α = 1,
    docs/mixed_precision.md). Without autocast it is the plain layers (bit-identical)."""
    return sigmoid(conv(h))


def _decode(body: nn.Sequential, h: Tensor) -> Tensor:
    """``body(h)`` with its last two layers (the convolution to the output channels and the sigmoid)
    through :func:`_to_alpha` (the layers listed, not the Sequential sliced: a slice builds a new
    Sequential on every call)."""
    layers = list(body)
    for layer in layers[:-2]:
        h = layer(h)
    return _to_alpha(layers[-2], layers[-1], h)


def _check_arch(arch: str) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown image architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def make_image_encoder(
    arch: str,
    image_size: int,
    in_channels: int,
    base_channels: int,
    n_downsample: int,
    n_res_blocks: int,
    out_features: int,
    norm: str = "batch",
    coord_channels: bool = False,
) -> nn.Module:
    """The image encoder of family ``arch``: ``n_res_blocks`` residual blocks at the bottleneck (``cyclegan``)
    or residual 3×3 layers after each stride-2 convolution (``strided``); ``norm`` and
    ``coord_channels`` are the strided family's."""
    _check_arch(arch)
    if arch == "strided":
        return StridedEncoder(
            image_size,
            in_channels,
            base_channels,
            n_downsample,
            out_features,
            n_res_blocks,
            norm,
            coord_channels,
        )
    if coord_channels:
        raise ValueError("coordinate channels are built for the strided family only")
    return ImageEncoder(image_size, in_channels, base_channels, n_downsample, n_res_blocks, out_features)


def make_image_decoder(
    arch: str,
    in_features: int,
    image_size: int,
    out_channels: int,
    base_channels: int,
    n_downsample: int,
    n_res_blocks: int,
    norm: str = "batch",
    coord_channels: bool = False,
    broadcast_side: int = 0,
    refine_channels: int = 0,
) -> nn.Module:
    """The image decoder of family ``arch``, ``n_res_blocks`` and ``coord_channels`` as in
    :func:`make_image_encoder`; ``broadcast_side`` and ``refine_channels`` the strided family's
    (:class:`StridedDecoder`)."""
    _check_arch(arch)
    if arch == "strided":
        return StridedDecoder(
            in_features,
            image_size,
            out_channels,
            base_channels,
            n_downsample,
            n_res_blocks,
            norm,
            coord_channels,
            broadcast_side,
            refine_channels,
        )
    if coord_channels or broadcast_side or refine_channels:
        raise ValueError(
            "coordinate channels, the broadcast stage and the refining layer are built for the strided "
            "family only"
        )
    return ImageDecoder(in_features, image_size, out_channels, base_channels, n_downsample, n_res_blocks)
