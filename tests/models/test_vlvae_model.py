"""The VLVAE (paper §2, §5.1) on a tiny configuration."""

import pytest
import torch

from vlvae.errors import VLVAEError
from vlvae.models import VLVAE, ModelConfig, VLVAEOutput

VOCAB, LENGTH, SIDE, LATENT = 7, 4, 16, 4


def _config(**kw):
    return ModelConfig(
        image_size=SIDE,
        base_channels=4,
        n_res_blocks=1,
        encoding_dim=8,
        embedding_dim=5,
        text_hidden=8,
        latent_dim=LATENT,
        shared_hidden=16,
        decoder_dim=8,
        vocab_size=VOCAB,
        text_length=LENGTH,
        flow_hidden=8,
        **kw,
    )


def _batch(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIDE, SIDE, generator=g), torch.randint(VOCAB, (n, LENGTH), generator=g)


@pytest.mark.parametrize("joint", [False, True])
def test_forward_finite_and_gradients_reach_every_parameter(joint):
    torch.manual_seed(0)
    model = VLVAE(_config(joint_inference=joint))
    x, y = _batch()
    x[0, 0] = 1.0  # saturated pixels must stay finite (docs/design.md §2 caution)
    x[1, 1] = 0.0
    out = model(x, y, kl_weight=0.5, w_x=0.1, w_y=10.0)
    assert isinstance(out, VLVAEOutput)
    for name in ("loss", "elbo", "log_px", "log_py", "kl"):
        value = getattr(out, name)
        assert value.shape == () and torch.isfinite(value), name
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_loss_is_the_weighted_objective_and_elbo_unweighted():
    torch.manual_seed(1)
    model = VLVAE(_config()).eval()
    x, y = _batch()
    out = model(x, y, kl_weight=0.25, w_x=0.5, w_y=3.0)
    torch.testing.assert_close(out.loss, -(0.5 * out.log_px + 3.0 * out.log_py - 0.25 * out.kl))
    torch.testing.assert_close(out.elbo, out.log_px + out.log_py - out.kl)


def test_shapes_of_distributions_and_decoders():
    torch.manual_seed(2)
    model = VLVAE(_config()).eval()
    x, y = _batch()
    q = model.image_posterior(x)
    assert q.batch_shape == (3,) and q.event_shape == (LATENT,)
    assert model.standard_prior().event_shape == (LATENT,)
    z = q.rsample()
    assert model.image_likelihood(z).event_shape == (3, SIDE, SIDE)
    mean = model.image_mean(z)
    assert mean.shape == (3, 3, SIDE, SIDE) and mean.min() >= 0 and mean.max() <= 1
    assert model.generate_text(z).shape == (3, LENGTH)
    assert model.generate_text(z, greedy=False).dtype == torch.long
    probs = model.text_distribution(z)
    assert probs.shape == (3, LENGTH, VOCAB)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, LENGTH))


def test_greedy_text_is_argmax_of_its_distribution():
    torch.manual_seed(3)
    model = VLVAE(_config()).eval()
    z = torch.randn(5, LATENT)
    words = model.generate_text(z)
    # Teacher-forcing the greedy words must reproduce the free-running distribution step by step
    # (step t sees word t-1), and each word is the argmax of its step.
    forced = model.text_distribution(z, words)
    torch.testing.assert_close(forced, model.text_distribution(z))
    torch.testing.assert_close(forced.argmax(-1), words)


def test_teacher_forced_log_py_is_sum_of_stepwise_log_probs():
    torch.manual_seed(4)
    model = VLVAE(_config()).eval()
    x, y = _batch()
    z = torch.randn(3, LATENT)
    probs = model.text_distribution(z, y)
    expected = probs.gather(-1, y.unsqueeze(-1)).squeeze(-1).log().sum(-1)
    torch.testing.assert_close(model.log_py(y, z), expected)


def test_leading_sample_dims_match_per_sample_calls():
    torch.manual_seed(5)
    model = VLVAE(_config()).eval()
    x, y = _batch()
    z = torch.randn(2, 3, LATENT)  # (k, batch, latent)
    log_px, log_py = model.log_px(x, z), model.log_py(y, z)
    assert log_px.shape == log_py.shape == (2, 3)
    for i in range(2):
        torch.testing.assert_close(log_px[i], model.log_px(x, z[i]))
        torch.testing.assert_close(log_py[i], model.log_py(y, z[i]))
    assert model.image_mean(z).shape == (2, 3, 3, SIDE, SIDE)
    assert model.generate_text(z).shape == (2, 3, LENGTH)


def test_log_px_is_beta_density_of_mapped_pixels():
    torch.manual_seed(6)
    model = VLVAE(_config()).eval()
    x, _ = _batch()
    z = torch.randn(3, LATENT)
    alpha = model.image_likelihood(z).mean
    mapped = 0.02 + 0.96 * x
    beta = torch.distributions.Beta(100 * alpha, 100 * (1 - alpha))
    torch.testing.assert_close(model.log_px(x, z), beta.log_prob(mapped).sum((1, 2, 3)), rtol=1e-4, atol=1e-2)


def test_joint_inference_needs_text():
    model = VLVAE(_config(joint_inference=True))
    x, _ = _batch()
    with pytest.raises(ValueError, match="pass y"):
        model.image_posterior(x)


def test_config_rejects_bad_sizes():
    with pytest.raises(VLVAEError, match="divisible"):
        ModelConfig(image_size=18, n_downsample=2)
    with pytest.raises(VLVAEError, match="latent_dim"):
        ModelConfig(latent_dim=1)


def test_forward_runs_the_shared_decoder_once_and_matches_the_separate_likelihoods():
    torch.manual_seed(0)
    model = VLVAE(_config()).eval()
    calls = []
    model.shared_decoder.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x, y = _batch()
    torch.manual_seed(1)
    out = model(x, y)
    assert len(calls) == 1
    torch.manual_seed(1)
    mean, logvar = model.posterior.encode(x, y)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    assert out.log_px.item() == pytest.approx(model.log_px(x, z).mean().item(), rel=1e-6)
    assert out.log_py.item() == pytest.approx(model.log_py(y, z).mean().item(), rel=1e-6)
