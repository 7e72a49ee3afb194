"""Stage-1 levers: learning per image seen, variant against variant (issue 22's lever table).

Trains stage 1 (``vlvae train vlvae``) once per variant on the same data, seed and judge, each
variant a list of ``--set`` overrides of one preset, several at a time, and collects every
validation pass's reconstruction correctness (``val/correctness``, the judge's) and
log p(x|z) term (``val/log_px``) against steps and images seen into one table. Budgets are in
steps, so the curves do not depend on the machine: run it where it is fast (a GPU) and
multiply by each variant's images per second on the target CPU
(``benchmarks/train_throughput.py --set ...``) to get learning per CPU-second.

Usage:
    python benchmarks/stage1_levers.py --data DATA --classifier RUN/classifier --out OUT \\
        --variant base= --variant coord=model.coord_channels=true \\
        --variant coord_wx1=model.coord_channels=true,stage1.w_x=1.0 \\
        [--preset cpu] [--steps 10000] [--parallel 4] [--timeout-min 30] [--set accelerator=gpu]

Writes OUT/<variant>/ (each a run folder; its curve in stage1/logs/csv), OUT/levers.csv (variant,
step, images, minutes, correctness, log_px) and OUT/levers.json (each variant's last pass and its
wall time).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from vlvae.config import apply_overrides, preset


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: give NAME=key=value,key=value (or NAME= for none)")
    return name, [s for s in sets.split(",") if s]


def _passes(run: Path) -> list[dict]:
    """Every validation pass logged in ``run``'s CSV logs: step, minutes, correctness, log_px."""
    rows: dict[int, dict] = {}
    for path in sorted(run.glob("stage1/logs/csv/*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("val/correctness"):
                    step = int(row["step"])
                    rows[step] = {
                        "step": step,
                        "correctness": float(row["val/correctness"]),
                        "log_px": float(row["val/log_px"]) if row.get("val/log_px") else None,
                        "minutes": float(row["val/minutes"]) if row.get("val/minutes") else None,
                    }
    return [rows[k] for k in sorted(rows)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--classifier", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", action="append", required=True, help="NAME=key=value,key=value")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="stage-1 steps (default: the preset's), without the preset's image-decoder steps after "
        "them unless a variant or --set names stage1.decoder_steps",
    )
    ap.add_argument("--parallel", type=int, default=1, help="variants trained at once")
    ap.add_argument("--timeout-min", type=float, default=0.0, help="stop a variant after this (0: never)")
    ap.add_argument("--set", action="append", default=[], help="overrides for every variant")
    args = ap.parse_args()
    variants = [_variant(v) for v in args.variant]
    args.out.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("vlvae") or Path(sys.executable).with_name("vlvae")
    pending = list(variants)
    running: list[tuple[str, subprocess.Popen, float]] = []
    wall: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < args.parallel:
            name, sets = pending.pop(0)
            cmd = [str(exe), "train", "vlvae", "--data", str(args.data), "--out", str(args.out / name)]
            cmd += ["--preset", args.preset, "--classifier", str(args.classifier), "--no-progress"]
            steps = [f"stage1.steps={args.steps}"] if args.steps else []  # --steps wins over a variant's
            if args.steps and not any(s.startswith("stage1.decoder_steps=") for s in [*args.set, *sets]):
                steps.insert(0, "stage1.decoder_steps=0")  # a cut budget: whole-model steps only
            for s in [*args.set, *sets, *steps]:
                cmd += ["--set", s]
            log = (args.out / f"{name}.log").open("w")
            print("start", name, " ".join(sets) or "(preset)", flush=True)
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.time()))
        time.sleep(2)
        for item in list(running):
            name, proc, start = item
            over = args.timeout_min and time.time() - start > 60 * args.timeout_min
            if over:
                proc.terminate()
            if proc.poll() is not None or over:
                proc.wait()
                wall[name] = (time.time() - start) / 60
                print(f"done {name}: exit {proc.returncode}, {wall[name]:.1f} min", flush=True)
                running.remove(item)
    summary = {}
    with (args.out / "levers.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "step", "images", "minutes", "correctness", "log_px"])
        for name, sets in variants:
            passes = _passes(args.out / name)
            batch = _batch_size(args.preset, [*args.set, *sets])
            for p in passes:
                w.writerow([name, p["step"], p["step"] * batch, p["minutes"], p["correctness"], p["log_px"]])
            summary[name] = {
                "sets": sets,
                "wall_minutes": wall.get(name),
                "last": passes[-1] if passes else None,
            }
    (args.out / "levers.json").write_text(json.dumps(summary, indent=1))
    for name, s in summary.items():
        last = s["last"] or {}
        print(f"{name:16s} step {last.get('step')} correctness {last.get('correctness')}", end=" ")
        print(f"log_px {last.get('log_px')}")


def _batch_size(name: str, sets: list[str]) -> int:
    """Stage 1's batch size of preset ``name`` with the overrides ``sets``."""
    return apply_overrides(preset(name), list(sets)).stage1.batch_size


if __name__ == "__main__":
    main()
