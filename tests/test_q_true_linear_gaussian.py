"""q_True's objective (Eqn 3, ``vlvae.objectives.text_elbo``) recovers the exact posterior of a
linear-Gaussian model.

Model: p(z) = N(0, I_d), p(y|z) = N(W z + b, σ² I_n), with W's columns orthogonal so that
the exact posterior is a diagonal Gaussian:

    Σ = (I + WᵀW/σ²)⁻¹,   m = Σ Wᵀ(y − b)/σ²,   p(y) = N(y; b, W Wᵀ + σ² I).

A diagonal Gaussian q(z|y) (free mean and log-std per y, reparameterised) fitted by
maximising the repository's ``text_elbo`` with Adam must reach (m, Σ), and the ELBO of every
sample at the optimum must equal log p(y) (the bound is tight when q is the posterior).
"""

import math
from dataclasses import replace

import torch
from torch.distributions import MultivariateNormal, Normal
from zuko.distributions import DiagNormal

from vlvae.config import preset
from vlvae.objectives import text_elbo
from vlvae.training.tasks import TextPosteriorTask

D, N, SIGMA = 3, 6, 0.5


def _model():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(N, D, generator=g, dtype=torch.float64))
    W = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)  # orthogonal columns of norms 2, 1, 0.5
    b = torch.randn(N, generator=g, dtype=torch.float64)
    y = torch.randn(4, N, generator=g, dtype=torch.float64) * 2.0 + b  # four observations
    return W, b, y


def _exact_posterior(W, b, y):
    cov = torch.linalg.inv(torch.eye(D, dtype=W.dtype) + W.T @ W / SIGMA**2)
    mean = (y - b) @ W @ cov.T / SIGMA**2
    return mean, cov


def _whitened_noise(k, generator):
    """k standard-normal draws per (y, dim), rescaled to empirical mean 0 and variance 1 per dim.

    WᵀW is diagonal, so log p(y, z) is a sum over dims of quadratics in z_i: the sample average
    of the ELBO then equals its expectation, and the optimisation is noise free and converges tightly.
    """
    eps = torch.randn(k, 4, D, generator=generator, dtype=torch.float64)
    eps = eps - eps.mean(0)
    return eps / eps.pow(2).mean(0).sqrt()


def _elbo_terms(W, b, y, mean, log_std, eps):
    std = log_std.exp()
    z = mean + std * eps  # reparameterised, (k, 4, D)
    log_py = Normal(z @ W.T + b, SIGMA).log_prob(y).sum(-1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_qz = Normal(mean, std).log_prob(z).sum(-1)
    return text_elbo(log_py, log_pz, log_qz)


def test_exact_posterior_is_diagonal():
    W, b, y = _model()
    _, cov = _exact_posterior(W, b, y)
    torch.testing.assert_close(cov, torch.diag(torch.diagonal(cov)))


def test_text_elbo_fit_recovers_exact_posterior_and_log_evidence():
    W, b, y = _model()
    exact_mean, exact_cov = _exact_posterior(W, b, y)
    exact_var = torch.diagonal(exact_cov).expand(4, D)
    log_evidence = MultivariateNormal(b, W @ W.T + SIGMA**2 * torch.eye(N, dtype=W.dtype)).log_prob(y)

    mean = torch.zeros(4, D, dtype=torch.float64, requires_grad=True)
    log_std = torch.zeros(4, D, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([mean, log_std], lr=0.1)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.995)
    g = torch.Generator().manual_seed(1)
    for _ in range(800):
        loss = -_elbo_terms(W, b, y, mean, log_std, _whitened_noise(8, g)).mean(0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    with torch.no_grad():
        torch.testing.assert_close(mean, exact_mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.exp(2 * log_std), exact_var, rtol=1e-5, atol=0)

        # Tight bound: with fresh (unwhitened) samples, every sample's ELBO is log p(y).
        eps = torch.randn(2000, 4, D, generator=g, dtype=torch.float64)
        per_sample = _elbo_terms(W, b, y, mean, log_std, eps)
        torch.testing.assert_close(per_sample.mean(0), log_evidence, rtol=0, atol=1e-6)
        assert per_sample.std(0).max() < 1e-6

        # ...and a q away from the posterior is a strictly looser bound (the check discriminates).
        wide = _elbo_terms(W, b, y, mean, log_std + math.log(2.0), eps).mean(0)
        assert (wide < log_evidence - 0.1).all()


def test_text_posterior_task_fits_q_true_to_the_exact_posterior():
    """The real stage-2 path: TextPosteriorTask(objective="true") with the project's TextPosterior
    (its Gaussian kind), against a frozen stand-in VLVAE whose p(y|z) is linear-Gaussian in z
    (each discrete text y stands for an observation vector obs(y)). Its training objective, the
    task's objective (the registry's q_True entry), must bring q(z|y) to the exact posterior of
    every text."""

    W, b, obs = (t.float() for t in _model())
    mean, cov = (t.float() for t in _exact_posterior(W.double(), b.double(), obs.double()))

    class LinearGaussianVLVAE(torch.nn.Module):
        """p(z) = N(0, I); p(y|z) = N(obs(y); W z + b, σ² I), where text y = (i, i, ..., i) means obs[i]."""

        def standard_prior(self):
            return DiagNormal(torch.zeros(D), torch.ones(D))

        def log_py(self, y, z):
            o = obs[y[..., 0]]
            return Normal(z @ W.T + b, SIGMA).log_prob(o).sum(-1)

    cfg = preset("tiny")
    cfg.model = replace(
        cfg.model, vocab_size=len(obs), text_length=3, latent_dim=D, logvar_min=-12.0, logvar_max=4.0
    )
    stage = replace(cfg.text_posterior, posterior_family="gaussian")
    task = TextPosteriorTask(cfg.model, stage, ".", 0, LinearGaussianVLVAE(), "true")
    y = torch.arange(len(obs)).unsqueeze(1).expand(-1, 3)
    torch.manual_seed(0)
    opt = torch.optim.Adam(task.trainable().parameters(), lr=1e-2)
    steps = 2000
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=1e-4)
    batch = y.repeat(64, 1)
    for _ in range(steps):
        opt.zero_grad()
        loss = -task._value(task.fitted, {"text": batch}, task.posterior(batch)).mean()
        loss.backward()
        opt.step()
        schedule.step()
    q = task.posterior(y)
    torch.testing.assert_close(q.mean, mean, atol=0.03, rtol=0)
    torch.testing.assert_close(q.variance, torch.diagonal(cov).expand_as(q.variance), atol=0.01, rtol=0.1)
