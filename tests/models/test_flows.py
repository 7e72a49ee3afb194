"""The coupling flows (paper §5.1.1) against autograd Jacobians and the change-of-variables formula."""

import torch
from torch.autograd.functional import jacobian

from vlvae.models import AggregatePrior, ModelConfig, SigmoidAffineTransform, TextPosterior

LATENT = 5  # odd, so the halves differ in size


def _config(**kw):
    return ModelConfig(
        image_size=16,
        latent_dim=LATENT,
        vocab_size=6,
        text_length=3,
        embedding_dim=4,
        text_hidden=8,
        encoding_dim=6,
        flow_steps=3,
        flow_hidden=7,
        **kw,
    )


def _perturb(module, scale=0.5, seed=0):
    """Random parameters, so that no coupling is near the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _flows():
    torch.manual_seed(0)
    text = _perturb(TextPosterior(_config()).double())
    prior = _perturb(AggregatePrior(_config()).double())
    y = torch.tensor([[1, 4, 2]])
    context = text.encoder(y)[0]
    return [(text.distribution, context), (prior.distribution, None)]


def test_log_det_matches_autograd_jacobian_and_inverse():
    z = torch.randn(LATENT, dtype=torch.float64)
    for flow, context in _flows():
        transform = flow.transform(context)
        u, ladj = transform.call_and_ladj(z)
        jac = jacobian(transform, z)
        torch.testing.assert_close(ladj, torch.linalg.slogdet(jac).logabsdet)
        torch.testing.assert_close(transform.inv(u), z)


def test_log_prob_is_change_of_variables():
    z = torch.randn(LATENT, dtype=torch.float64)
    for flow, context in _flows():
        transform = flow.transform(context)
        base = flow.base(context)
        expected = base.log_prob(transform(z)) + torch.linalg.slogdet(jacobian(transform, z)).logabsdet
        torch.testing.assert_close(flow(context).log_prob(z), expected)


def test_sampling_direction_is_the_papers_eqn7():
    """In the sampling direction one coupling is z1' = z1·σ(z2) + μ(z2) with 0 < σ ≤ 1 + 1e-3."""
    shift, raw = torch.randn(3), 5 * torch.randn(3)
    t = SigmoidAffineTransform(shift, raw)
    u = torch.randn(3)
    sigma = torch.sigmoid(raw + 3.0) + 1e-3
    torch.testing.assert_close(t.inv(u), u * sigma + shift)
    assert (sigma > 0).all() and (sigma <= 1 + 1e-3).all()


def test_rsample_shapes_and_finite_log_prob():
    torch.manual_seed(1)
    text = TextPosterior(_config())
    q = text(torch.randint(6, (4, 3)))
    z = q.rsample((7,))
    assert z.shape == (7, 4, LATENT)
    assert q.sample().shape == (4, LATENT)
    assert torch.isfinite(q.log_prob(z)).all() and q.log_prob(z).shape == (7, 4)
    prior = AggregatePrior(_config())()
    z = prior.rsample((7,))
    assert z.shape == (7, LATENT) and torch.isfinite(prior.log_prob(z)).all()


def test_log_prob_finite_far_from_support():
    """docs/design.md §8: inverting a flow at far-out z overflowed to NaN; the guard keeps it finite."""
    torch.manual_seed(2)
    for kind in ("flow", "gaussian"):
        text = _perturb(TextPosterior(_config(), family=kind), scale=1.0)
        prior = _perturb(AggregatePrior(_config(), family=kind), scale=1.0)
        y = torch.randint(6, (3, 3))
        for value in (1e3, -1e3, 1e6):
            z = torch.full((3, LATENT), value)
            for log_p in (text(y).log_prob(z), prior().log_prob(z)):
                assert torch.isfinite(log_p).all(), (kind, value, log_p)
                assert (log_p < -1e3).all()


def test_gradients_reach_every_flow_parameter():
    torch.manual_seed(3)
    text = TextPosterior(_config())
    q = text(torch.randint(6, (4, 3)))
    (q.log_prob(torch.randn(4, LATENT)).sum() + q.rsample().sum()).backward()
    for name, p in text.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
