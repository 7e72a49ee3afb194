"""Both image-network families: shapes, gradients, and the strided family's cost-saving layout."""

import pytest
import torch

from vlvae.errors import VLVAEError
from vlvae.models import VLVAE, ModelConfig
from vlvae.models.image import (
    ARCHITECTURES,
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


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_vlvae_trains_every_parameter_in_each_family(arch):
    torch.manual_seed(0)
    cfg = ModelConfig(
        image_size=16,
        arch=arch,
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
