"""Both image-network families: shapes, gradients, and the strided family's cost-saving layout."""

import pytest
import torch
import torch.nn.functional as F

from vlvae.errors import VLVAEError
from vlvae.models import VLVAE, ModelConfig
from vlvae.models.image import (
    ARCHITECTURES,
    CoordinateChannels,
    StridedDecoder,
    StridedEncoder,
    make_image_decoder,
    make_image_encoder,
)


@pytest.mark.parametrize("size,n_down", [(16, 2), (32, 3), (64, 4), (64, 2)])
def test_strided_shapes(size, n_down):
    enc = StridedEncoder(size, 3, 4, n_down, 10)
    dec = StridedDecoder(10, size, 3, 4, n_down)
    x = torch.rand(2, 3, size, size)
    h = enc(x)
    alpha = dec(h)
    assert h.shape == (2, 10) and alpha.shape == (2, 3, size, size)
    assert ((alpha > 0) & (alpha < 1)).all()
    assert alpha.is_contiguous()  # callers reshape it


def test_strided_encoder_never_convolves_at_full_resolution():
    enc = StridedEncoder(32, 3, 4, 3, 10)
    sides = []
    enc.features.register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
    for layer in enc.features:
        if isinstance(layer, torch.nn.Conv2d):
            assert layer.stride == (2, 2)
    enc(torch.rand(1, 3, 32, 32))
    assert sides == [4]


@pytest.mark.parametrize("norm,modes", [("group", (True, False)), ("batch", (False,))])
def test_strided_output_is_independent_of_the_batch(norm, modes):
    # Group norm keeps no batch statistics: an example's output does not depend on its batch mates,
    # in training mode as in evaluation mode; batch norm only in evaluation mode.
    torch.manual_seed(0)
    enc, dec = StridedEncoder(16, 3, 4, 2, 6, norm=norm), StridedDecoder(6, 16, 3, 4, 2, norm=norm)
    x = torch.rand(5, 3, 16, 16)
    for mode in modes:
        enc.train(mode), dec.train(mode)
        whole = dec(enc(x))
        alone = dec(enc(x[:1]))
        assert torch.allclose(whole[:1], alone, atol=1e-5)


def test_unknown_norm_is_refused():
    with pytest.raises(VLVAEError, match="model.norm"):
        ModelConfig(image_size=16, arch="strided", norm="layer")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_factories_build_each_family(arch):
    enc = make_image_encoder(arch, 16, 3, 4, 2, 1, 8)
    dec = make_image_decoder(arch, 8, 16, 3, 4, 2, 1)
    assert dec(enc(torch.rand(2, 3, 16, 16))).shape == (2, 3, 16, 16)


def test_unknown_arch_is_a_config_error():
    with pytest.raises(VLVAEError, match="model.arch"):
        ModelConfig(image_size=16, arch="resnet")


@pytest.mark.parametrize(
    "options",
    [{"arch": arch} for arch in ARCHITECTURES]
    + [
        {"arch": "strided", "coord_channels": True},
        {"arch": "strided", "broadcast_side": 4},
        {"arch": "strided", "coord_channels": True, "refine_channels": 3},
        {"arch": "strided", "encoder_channels": 6},
    ],
)
def test_vlvae_trains_every_parameter_in_each_family(options):
    """Every parameter gets a finite, non-zero gradient (with coordinate channels or a broadcast first
    stage: the strided family's)."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        image_size=16,
        **options,
        base_channels=4,
        n_res_blocks=1,
        encoding_dim=8,
        embedding_dim=5,
        text_hidden=8,
        latent_dim=4,
        shared_hidden=16,
        decoder_dim=8,
        vocab_size=7,
        text_length=4,
        flow_hidden=8,
    )
    model = VLVAE(cfg)
    out = model(torch.rand(3, 3, 16, 16), torch.randint(7, (3, 4)), kl_weight=0.5, w_x=0.1, w_y=10.0)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


_ENCODER = "posterior.image_encoder."


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_encoder_channels_widen_the_image_encoder_alone(arch):
    """With ``encoder_channels = 6`` the image encoder of q(z|x) is the one a model with
    ``base_channels = 6`` builds, and every other parameter is the one ``base_channels = 4`` builds:
    the decoder, the text networks and the shared layers keep ``base_channels``."""

    def shapes(model, inside):
        return {n: p.shape for n, p in model.named_parameters() if n.startswith(_ENCODER) == inside}

    base = dict(image_size=16, arch=arch, n_res_blocks=1, latent_dim=4, flow_hidden=8)
    wide = VLVAE(ModelConfig(**base, base_channels=4, encoder_channels=6))
    narrow, broad = VLVAE(ModelConfig(**base, base_channels=4)), VLVAE(ModelConfig(**base, base_channels=6))
    assert shapes(wide, inside=True) == shapes(broad, inside=True) != shapes(narrow, inside=True)
    assert shapes(wide, inside=False) == shapes(narrow, inside=False) != shapes(broad, inside=False)
    assert shapes(wide, inside=True)  # the prefix names the encoder's parameters
    x = torch.rand(2, 3, 16, 16)
    assert wide.image_mean(wide.image_posterior(x).sample()).shape == x.shape


def test_coordinate_channels_are_each_pixels_column_and_row():
    x = torch.rand(3, 2, 5, 7).contiguous(memory_format=torch.channels_last)
    out = CoordinateChannels()(x)
    # Independent truth: torch.meshgrid of the two axes, "xy" indexing (columns vary along W).
    cols, rows = torch.meshgrid(torch.linspace(-1, 1, 7), torch.linspace(-1, 1, 5), indexing="xy")
    assert out.shape == (3, 4, 5, 7)
    assert torch.equal(out[:, :2], x)
    for b in range(3):
        assert torch.allclose(out[b, 2], cols) and torch.allclose(out[b, 3], rows)


@pytest.mark.parametrize("size,n_down", [(16, 2), (64, 4)])
def test_coordinate_channels_widen_every_strided_convolution_by_two_inputs(size, n_down):
    plain = [StridedEncoder(size, 3, 4, n_down, 10), StridedDecoder(10, size, 3, 4, n_down)]
    coord = [
        StridedEncoder(size, 3, 4, n_down, 10, coord_channels=True),
        StridedDecoder(10, size, 3, 4, n_down, coord_channels=True),
    ]
    for a, b in zip(plain, coord):
        convs_a = [m for m in a.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        convs_b = [m for m in b.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        assert len(convs_a) == len(convs_b) == n_down
        for ca, cb in zip(convs_a, convs_b):
            assert cb.in_channels == ca.in_channels + 2 and cb.out_channels == ca.out_channels
    alpha = coord[1](coord[0](torch.rand(2, 3, size, size)))
    assert alpha.shape == (2, 3, size, size) and alpha.is_contiguous()


def test_a_decoder_with_coordinates_can_place_an_object_a_plain_one_cannot_see():
    # From a constant seed a transposed convolution's output is the same in every interior
    # position (translation equivariance); with the coordinates as input it is not.
    torch.manual_seed(0)
    for coords, varies in ((False, False), (True, True)):
        dec = StridedDecoder(6, 16, 3, 4, 2, coord_channels=coords).eval()
        torch.nn.init.zeros_(dec.seed.weight)  # the seed map is constant (zero) whatever h is
        alpha = dec(torch.randn(1, 6))[0, 0, 4:12, 4:12]  # away from the borders
        assert bool(alpha.std() > 1e-4) is varies


def test_coordinate_channels_are_refused_for_the_cyclegan_family():
    with pytest.raises(VLVAEError, match="coord_channels"):
        ModelConfig(image_size=16, arch="cyclegan", coord_channels=True)
    with pytest.raises(ValueError, match="strided family"):
        make_image_decoder("cyclegan", 8, 16, 3, 4, 2, 1, coord_channels=True)


@pytest.mark.parametrize("side,n_up", [(8, 1), (4, 2), (2, 3), (1, 4)])
def test_broadcast_decoder_tiles_the_vector_and_upsamples_from_its_side(side, n_up):
    """The stage's input is the linear map of h at every cell beside the coordinates (built here with
    ``repeat`` and ``meshgrid``), and ``log2(image_size / side)`` transposed convolutions follow."""
    torch.manual_seed(0)
    dec = StridedDecoder(6, 16, 3, 4, 4, broadcast_side=side).eval()
    h = torch.randn(2, 6)
    transposed = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(transposed) == n_up
    width = 4 * 2 ** (n_up - 1)
    cols, rows = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="xy")
    grid = (h @ dec.seed.weight.T)[:, :, None, None].repeat(1, 1, side, side)
    first = dec.body[1]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == width + 2
    expected = F.conv2d(
        torch.cat((grid, cols.expand(2, 1, side, side), rows.expand(2, 1, side, side)), 1),
        first.weight,
        padding=1,
    )
    seen = []  # the first convolution's output in the decoder's own forward pass
    first.register_forward_hook(lambda module, inputs, output: seen.append(output))
    assert dec(h).shape == (2, 3, 16, 16)
    assert torch.allclose(seen[0], expected, atol=1e-5)


def test_the_broadcast_stage_places_content_by_position_from_one_vector():
    # Every cell of the broadcast grid holds the same vector; the stage's convolutions read the
    # coordinates, so the output varies with position even without coordinate channels elsewhere.
    torch.manual_seed(0)
    dec = StridedDecoder(6, 16, 3, 4, 2, broadcast_side=8).eval()
    alpha = dec(torch.randn(1, 6))[0, 0, 4:12, 4:12]
    assert alpha.std() > 1e-4


@pytest.mark.parametrize(
    ("arch", "side", "match"), [("cyclegan", 8, "strided family"), ("strided", 3, "one of \\[8, 4, 2\\]")]
)
def test_a_broadcast_side_the_decoder_cannot_start_at_is_refused(arch, side, match):
    with pytest.raises(VLVAEError, match=match):
        ModelConfig(image_size=16, arch=arch, n_downsample=3, broadcast_side=side)


def test_the_refining_layer_is_a_3x3_convolution_of_a_full_resolution_feature_map():
    """With ``refine_channels`` the last transposed convolution ends at full resolution with that many
    channels (norm, ReLU), and α is the sigmoid of a 3×3 convolution of them beside the coordinates:
    recomputed here with ``F.conv2d`` and ``meshgrid`` from the feature map the decoder's own forward
    pass holds. Off, the last transposed convolution computes α's logits itself, as before the option."""
    torch.manual_seed(0)
    dec = StridedDecoder(6, 16, 3, 4, 2, coord_channels=True, refine_channels=5).eval()
    transposed = [m for m in dec.body if isinstance(m, torch.nn.ConvTranspose2d)]
    assert transposed[-1].out_channels == 5
    last = dec.body[-2]
    assert isinstance(last, torch.nn.Conv2d) and last.kernel_size == (3, 3) and last.in_channels == 7
    seen = []  # the ReLU after the last transposed convolution: the full-resolution feature map
    relu, norm = dec.body[-4], dec.body[-5]
    assert isinstance(relu, torch.nn.ReLU) and dec.body[-6] is transposed[-1]
    assert isinstance(norm, torch.nn.BatchNorm2d) and norm.num_features == 5
    relu.register_forward_hook(lambda module, inputs, output: seen.append(output.clone()))
    alpha = dec(torch.randn(2, 6))
    features = seen[0]
    assert features.shape == (2, 5, 16, 16)
    cols, rows = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="xy")
    expected = torch.sigmoid(
        F.conv2d(
            torch.cat((features, cols.expand(2, 1, 16, 16), rows.expand(2, 1, 16, 16)), 1),
            last.weight,
            last.bias,
            padding=1,
        )
    )
    assert torch.allclose(alpha, expected, atol=1e-6)
    off = StridedDecoder(6, 16, 3, 4, 2, coord_channels=True, refine_channels=0)
    assert isinstance(off.body[-2], torch.nn.ConvTranspose2d) and off.body[-2].out_channels == 3
    assert not any(isinstance(m, torch.nn.Conv2d) for m in off.body)


def test_the_refining_layer_is_refused_for_the_cyclegan_family():
    with pytest.raises(VLVAEError, match="refine_channels"):
        ModelConfig(image_size=16, arch="cyclegan", refine_channels=8)
    with pytest.raises(ValueError, match="strided family"):
        make_image_decoder("cyclegan", 8, 16, 3, 4, 2, 1, refine_channels=8)
