"""Weights remember the image architecture they were trained with; another one is refused by name."""

import pytest
import torch
from safetensors.torch import save_file

from vlvae.errors import VLVAEError
from vlvae.models import VLVAE, ModelConfig
from vlvae.runs import load_weights, save_weights


def _cfg(arch):
    return ModelConfig(
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


def test_round_trip_keeps_the_weights(tmp_path):
    torch.manual_seed(0)
    model = VLVAE(_cfg("strided"))
    save_weights(model, tmp_path / "w.safetensors", "vlvae")
    other = load_weights(VLVAE(_cfg("strided")), tmp_path / "w.safetensors", "vlvae", "retrain")
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    save_weights(VLVAE(_cfg("strided")), tmp_path / "w.safetensors", "vlvae")
    with pytest.raises(VLVAEError, match="'strided' image architecture.*'cyclegan'"):
        load_weights(VLVAE(_cfg("cyclegan")), tmp_path / "w.safetensors", "vlvae", "retrain")


def test_weights_from_before_architectures_were_named_are_cyclegan(tmp_path):
    # Older runs stored only the kind; they were all of the paper's family.
    old = VLVAE(_cfg("cyclegan"))
    state = {k: v.clone().contiguous() for k, v in old.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"), metadata={"kind": "vlvae"})
    load_weights(VLVAE(_cfg("cyclegan")), tmp_path / "w.safetensors", "vlvae", "retrain")
    with pytest.raises(VLVAEError, match="'cyclegan' image architecture"):
        load_weights(VLVAE(_cfg("strided")), tmp_path / "w.safetensors", "vlvae", "retrain")
