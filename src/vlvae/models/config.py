"""Typed configuration of the VLVAE and its text posteriors and priors (docs/design.md §2, §2.1, §4).

Defaults are the paper's architecture (Cremer & Kushman 2018, §5.1) with the
facts taken from the authors' released code (docs/design.md §2.1): 64-channel 7×7 stem,
two stride-2 convolutions, three residual blocks, 200-d encodings, 100-d word
embeddings, 50-d latent, width-500 shared MLPs, six flow steps with 50 tanh
hidden units, Beta concentration 100.
"""

from __future__ import annotations

from dataclasses import dataclass

from vlvae.errors import VLVAEError

__all__ = ["ModelConfig", "feature_side", "ARCHITECTURES", "NORMS", "POSTERIOR_FAMILIES"]

#: Image network families: ``cyclegan`` is the paper's (docs/design.md §2, §2.1); ``strided`` is the
#: CPU presets' (built by :func:`vlvae.models.image.make_image_encoder` and ``make_image_decoder``).
ARCHITECTURES = ("cyclegan", "strided")
#: Normalisation layers of the strided family (:mod:`vlvae.models.image`).
NORMS = ("batch", "group")
#: The strided family's options, each with the value that turns it off (refused, naming it, for
#: another family).
STRIDED_ONLY = {"coord_channels": "false", "broadcast_side": "0", "refine_channels": "0"}
#: The families of the text posteriors and priors fitted on a frozen model
#: (:mod:`vlvae.models.posteriors`): a flow (the paper's) or a diagonal Gaussian.
POSTERIOR_FAMILIES = ("flow", "gaussian")


def feature_side(image_size: int, n_downsample: int) -> int:
    """Side of the encoder's feature map; a clear error if the image size does not divide."""
    if image_size % 2**n_downsample:
        raise VLVAEError(
            f"image_size {image_size} is not divisible by 2**n_downsample = {2**n_downsample}; "
            "choose a multiple of it or fewer downsampling steps."
        )
    return image_size // 2**n_downsample


def broadcast_upsamplings(image_size: int, n_downsample: int, broadcast_side: int) -> int:
    """The stride-2 upsamplings after a spatial-broadcast stage at ``broadcast_side``: the k with
    ``image_size / 2**k == broadcast_side``, 1 <= k <= n_downsample; a clear error for any other side."""
    sides = {image_size // 2**k: k for k in range(1, n_downsample + 1)}
    if broadcast_side not in sides:
        raise VLVAEError(
            f"model.broadcast_side is {broadcast_side}, but the decoder can start only at "
            f"image_size / 2**k for k = 1..n_downsample: one of {list(sides)} (or 0 for off)."
        )
    return sides[broadcast_side]


@dataclass
class ModelConfig:
    """Sizes and constants of every network in :mod:`vlvae.models`.

    Attributes:
        image_size: side of the square input images; divisible by ``2**n_downsample``.
        image_channels: colour channels of the images.
        arch: image encoder/decoder family: ``cyclegan`` (the paper's, docs/design.md §2) or
            ``strided`` (strided convolutions with batch norm, the CPU presets';
            see :mod:`vlvae.models.image`).
        norm: normalisation of the ``strided`` family: ``batch`` or ``group``.
        coord_channels: ``strided`` family only: every (transposed) stride-2 convolution of the image
            encoder and decoder also reads two channels holding the pixel coordinates
            (:class:`vlvae.models.image.CoordinateChannels`, docs/design.md §8.2).
        broadcast_side: ``strided`` family only: 0 (off), or the side at which the image decoder
            starts from its input vector tiled over a square grid with the pixel coordinates
            beside it (a spatial-broadcast stage, docs/design.md §8.2) instead of a linear map to
            a feature map; ``image_size / 2**k`` for some ``1 <= k <= n_downsample``, the decoder
            then upsampling ``k`` times.
        refine_channels: ``strided`` family only: 0 (off), or the width of a last feature map at full
            resolution, from which a 3×3 convolution computes the image's parameters (instead of the
            last transposed convolution computing them directly; docs/design.md §8.2).
        base_channels: width of the image encoder's first convolution (unless ``encoder_channels``)
            and of the decoder's narrowest hidden layer; each stride-2 convolution doubles it.
        encoder_channels: 0 (the image encoders as wide as the decoder, ``base_channels``), or the
            ``base_channels`` of the inference networks' image encoders alone (q(z|x), and q(z|x, y)
            where a method has it): their first convolution's width, each stride-2 one doubling it,
            the decoder keeping ``base_channels`` (docs/design.md §8.2).
        n_downsample: stride-2 convolutions in the image encoder (transposed ones in the decoder).
        n_res_blocks: residual blocks at the bottleneck of the image encoder and decoder (``cyclegan``),
            or residual 3×3 layers after each stride-2 convolution (``strided``).
        encoding_dim: size of the image and text encodings.
        embedding_dim: size of the word embeddings.
        text_hidden: GRU hidden size of the text encoder and decoder.
        latent_dim: size of z (at least 2, so that the flows' halves are non-empty).
        shared_hidden: width of the shared encoder and decoder MLPs.
        decoder_dim: size of the shared decoder's output, read by both decoders.
        dropout: dropout rate of the text decoder's output head.
        vocab_size: number of words; the text decoder adds its own begin-of-sentence index.
        text_length: words per text (with an end word: the most words plus the end word).
        end_index: the index of the end word of texts of variable length (docs/design.md §11): the
            words after a text's first end word are not part of it; None: every text has
            ``text_length`` words.
        beta_concentration: c in the constrained Beta(c·α, c·(1 − α)) image likelihood.
        pixel_low, pixel_high: pixels x ∈ [0, 1] are mapped to pixel_low + (pixel_high −
            pixel_low)·x before the Beta likelihood (docs/design.md §2 caution).
        logvar_min, logvar_max: clamp of every Gaussian log-variance the networks output.
        flow_steps: coupling steps (each a pair of Eqns 7-8) of the flows.
        flow_hidden: tanh hidden units of each coupling hypernetwork.
        joint_inference: infer with q(z|x, y) instead of q(z|x) (paper §6, Fig. 7).
    """

    image_size: int = 112
    image_channels: int = 3
    arch: str = "cyclegan"
    norm: str = "batch"
    coord_channels: bool = False
    broadcast_side: int = 0
    refine_channels: int = 0
    base_channels: int = 64
    encoder_channels: int = 0
    n_downsample: int = 2
    n_res_blocks: int = 3
    encoding_dim: int = 200
    embedding_dim: int = 100
    text_hidden: int = 200
    latent_dim: int = 50
    shared_hidden: int = 500
    decoder_dim: int = 200
    dropout: float = 0.5
    vocab_size: int = 19
    text_length: int = 9
    end_index: int | None = None
    beta_concentration: float = 100.0
    pixel_low: float = 0.02
    pixel_high: float = 0.98
    logvar_min: float = -15.0
    logvar_max: float = 10.0
    flow_steps: int = 6
    flow_hidden: int = 50
    joint_inference: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise VLVAEError(f"model.arch is {self.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.norm not in NORMS:
            raise VLVAEError(f"model.norm is {self.norm!r}; choose one of {', '.join(NORMS)}")
        feature_side(self.image_size, self.n_downsample)
        for key, off in STRIDED_ONLY.items():
            if getattr(self, key) and self.arch != "strided":
                raise VLVAEError(
                    f"model.{key} is built for the strided family only, not arch={self.arch!r}; "
                    f"set model.arch=strided or model.{key}={off}."
                )
        if self.broadcast_side:
            broadcast_upsamplings(self.image_size, self.n_downsample, self.broadcast_side)
        if self.latent_dim < 2:
            raise VLVAEError(
                f"latent_dim is {self.latent_dim}, but the coupling flows split z into two "
                "non-empty halves; use latent_dim >= 2."
            )
        if not 0.0 < self.pixel_low < self.pixel_high < 1.0:
            raise VLVAEError(
                f"pixel range [{self.pixel_low}, {self.pixel_high}] must lie strictly inside "
                "(0, 1) for the Beta likelihood; use e.g. pixel_low=0.02, pixel_high=0.98."
            )
        if self.logvar_min >= self.logvar_max:
            raise VLVAEError(f"logvar_min ({self.logvar_min}) must be below logvar_max ({self.logvar_max}).")
