"""Where one stage-1 training step spends its time: a per-module table from ``torch.profiler``.

Profiles forward + backward + Adam of the VLVAE of a preset on random data of
the preset's shapes (batch from the preset), after warm-up steps. Each
top-level part of the model (image encoder, shared encoder, shared decoder,
image decoder, text decoder) is wrapped in a profiler range for its forward
and, through backward hooks, for its backward; the loss (likelihoods, KL,
objective) and the optimiser step get their own ranges; loading a batch from
a data set (``--data DIR``) is timed the same way when a data set is given.

    python benchmarks/profile_step.py --preset cpu --threads 2 --steps 20
    python benchmarks/profile_step.py --preset cpu --set model.arch=cyclegan  # the paper's, cpu scale
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from vlvae.config import apply_overrides, preset
from vlvae.data.dataset import ImageTextDataset, images_to_float
from vlvae.models.vlvae import VLVAE

#: Each part's modules (the text decoder is driven through ``logits``, not ``forward``, so its
#: submodules carry the ranges: the GRU cell once per word, the embedding, the head).
PARTS = {
    "image encoder": ["posterior.image_encoder"],
    "shared encoder": ["posterior.shared_encoder"],
    "shared decoder": ["shared_decoder"],
    "image decoder": ["image_decoder"],
    "text decoder (GRU)": [
        "text_decoder.embedding",
        "text_decoder.init_hidden",
        "text_decoder.cell",
        "text_decoder.head",
    ],
}


def _ranges(model: torch.nn.Module) -> None:
    """Open a profiler range around the forward and the backward of each part in PARTS."""
    for label, path in ((label, path) for label, paths in PARTS.items() for path in paths):
        module = model.get_submodule(path)
        state = {}

        def pre(mod, args, label=label, state=state):
            state["fwd"] = record_function(f"forward: {label}")
            state["fwd"].__enter__()

        def post(mod, args, out, state=state):
            state["fwd"].__exit__(None, None, None)

        def bpre(mod, grad_out, label=label, state=state):
            state["bwd"] = record_function(f"backward: {label}")
            state["bwd"].__enter__()

        def bpost(mod, grad_in, grad_out, state=state):
            state["bwd"].__exit__(None, None, None)

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        module.register_full_backward_pre_hook(bpre)
        module.register_full_backward_hook(bpost)


def profile_stage1(cfg, steps: int, data: Path | None) -> dict[str, float]:
    """Milliseconds per step of each range, over ``steps`` profiled steps."""
    m = cfg.model
    b = cfg.stage1.batch_size
    loader = None
    if data is not None:
        ds = ImageTextDataset(data, "train")
        m.image_size, m.vocab_size = ds.image_size, len(ds.vocab)
        loader = torch.utils.data.DataLoader(ds, batch_size=b, shuffle=True, drop_last=True)
    model = VLVAE(m)
    _ranges(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.stage1.lr, weight_decay=cfg.stage1.weight_decay)
    x = torch.rand(b, 3, m.image_size, m.image_size)
    y = torch.randint(m.vocab_size, (b, m.text_length))
    batches = iter(loader) if loader is not None else None

    def step():
        nonlocal x, y
        if batches is not None:
            with record_function("data: load + to float"):
                batch = next(batches)
                x, y = images_to_float(batch["image"]), batch["text"]
        # The image needs a gradient for the encoder's backward hook to fire (an extra input-gradient
        # of the first convolution, small beside the rest); the optimiser never sees it.
        x.requires_grad_(True)
        opt.zero_grad(set_to_none=True)
        with record_function("forward: whole model"):
            out = model(x, y, kl_weight=1.0, w_x=cfg.stage1.w_x, w_y=cfg.stage1.w_y)
        with record_function("backward: whole model"):
            out.loss.backward()
        with record_function("optimiser (Adam)"):
            opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith(("forward:", "backward:", "optimiser", "data:")):
            totals[ev.key] += ev.cpu_time_total / 1e3 / steps
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="cpu")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="config override key=value"
    )
    parser.add_argument("--steps", type=int, default=20, help="profiled steps (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--data", type=Path, default=None, help="a data set folder, to time batch loading too"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = apply_overrides(preset(args.preset), args.overrides)
    t = profile_stage1(cfg, args.steps, args.data)
    step_ms = (
        t["forward: whole model"]
        + t["backward: whole model"]
        + t["optimiser (Adam)"]
        + t.get("data: load + to float", 0.0)
    )
    print(
        f"preset {args.preset} ({cfg.model.arch}), batch {cfg.stage1.batch_size}, torch threads "
        f"{torch.get_num_threads()}: {step_ms:.1f} ms per step, "
        f"{1e3 * cfg.stage1.batch_size / step_ms:.0f} images/s"
    )
    print(f"{'part':<34} {'ms/step':>8} {'share':>6}")
    for key in sorted(t, key=lambda k: -t[k]):
        if "whole model" in key:
            continue
        print(f"{key:<34} {t[key]:8.1f} {100 * t[key] / step_ms:5.1f}%")
    for phase in ("forward", "backward"):
        rest = t[f"{phase}: whole model"] - sum(t.get(f"{phase}: {part}", 0.0) for part in PARTS)
        label = "likelihoods, KL, objective" if phase == "forward" else "likelihoods, KL, objective, leaves"
        print(f"{phase + ': ' + label:<34} {rest:8.1f} {100 * rest / step_ms:5.1f}%")
    for key in ("forward: whole model", "backward: whole model"):
        print(f"{key:<34} {t[key]:8.1f} {100 * t[key] / step_ms:5.1f}%")


if __name__ == "__main__":
    main()
