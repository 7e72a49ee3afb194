"""Training throughput (examples/s) of each stage for a preset's architecture.

Runs forward + backward + Adam on random data of the preset's shapes, after a
warm-up, for: stage 1 (VLVAE, weighted ELBO), stage 2 (q_Agg and q_True, the
VLVAE frozen) and stage 3 (aggregate prior), and the Two Objects classifier.
q_Agg and the prior re-encode the images at every step here; training draws
z from a table of q(z|x) made once per fit, so it runs faster than printed.

    python benchmarks/train_throughput.py --preset cpu --preset paper --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from vlvae.config import preset
from vlvae.models.classifier import RelationalSlotClassifier
from vlvae.objectives import aggregate_cross_entropy, prior_cross_entropy, text_elbo
from vlvae.models.posteriors import AggregatePrior, TextPosterior
from vlvae.models.vlvae import VLVAE


def _time(step, seconds: float, batch: int) -> float:
    step()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - start)


def measure(name: str, seconds: float, device: str) -> dict:
    cfg = preset(name)
    m = cfg.model
    b1, b2, bc = cfg.vlvae.batch_size, cfg.text_posterior.batch_size, cfg.classifier.batch_size
    x = lambda b: torch.rand(b, 3, m.image_size, m.image_size, device=device)  # noqa: E731
    y = lambda b: torch.randint(m.vocab_size, (b, m.text_length), device=device)  # noqa: E731
    out = {}

    model = VLVAE(m).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb, yb = x(b1), y(b1)

    def vlvae_step():
        opt.zero_grad()
        model(xb, yb, kl_weight=1.0, w_x=cfg.vlvae.w_x, w_y=cfg.vlvae.w_y).loss.backward()
        opt.step()

    out["stage 1: VLVAE"] = (_time(vlvae_step, seconds, b1), b1)
    model.eval().requires_grad_(False)
    q = TextPosterior(m).to(device)
    opt_q = torch.optim.Adam(q.parameters(), lr=1e-4)
    xb, yb = x(b2), y(b2)

    def agg_step():
        opt_q.zero_grad()
        with torch.no_grad():
            z = model.image_posterior(xb).sample()
        (-aggregate_cross_entropy(q(yb).log_prob(z)).mean()).backward()
        opt_q.step()

    def true_step():
        opt_q.zero_grad()
        d = q(yb)
        z = d.rsample()
        (-text_elbo(model.log_py(yb, z), model.prior().log_prob(z), d.log_prob(z)).mean()).backward()
        opt_q.step()

    out["stage 2: q_Agg"] = (_time(agg_step, seconds, b2), b2)
    out["stage 2: q_True"] = (_time(true_step, seconds, b2), b2)
    p = AggregatePrior(m).to(device)
    opt_p = torch.optim.Adam(p.parameters(), lr=1e-4)

    def prior_step():
        opt_p.zero_grad()
        with torch.no_grad():
            z = model.image_posterior(xb).sample()
        (-prior_cross_entropy(p().log_prob(z)).mean()).backward()
        opt_p.step()

    out["stage 3: prior"] = (_time(prior_step, seconds, b2), b2)
    c = cfg.classifier
    clf = RelationalSlotClassifier(m.image_size, [2, 8, 2, 3] * 2, 4, c.base_channels, c.n_downsample,
                              c.n_res_blocks).to(device)
    opt_c = torch.optim.Adam(clf.parameters(), lr=1e-4)
    xc, rc = x(bc), torch.randint(4, (bc,), device=device)

    def clf_step():
        opt_c.zero_grad()
        sum(l.logsumexp(-1).mean() for l in clf(xc, rc)).backward()
        opt_c.step()

    out["classifier"] = (_time(clf_step, seconds, bc), bc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="presets to measure (default: cpu and paper)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per stage")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, {args.seconds:.0f} s per stage")
    print(f"{'preset':<8} {'stage':<18} {'batch':>6} {'examples/s':>11}")
    for name in args.preset or ["cpu", "paper"]:
        for stage, (rate, batch) in measure(name, args.seconds, args.device).items():
            print(f"{name:<8} {stage:<18} {batch:>6} {rate:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
