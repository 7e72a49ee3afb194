"""Throughput of the CLEVR-style CPU renderer (``vlvae.datasets.two_objects.render``).

Spawns one worker process per CPU core (each with ``torch.set_num_threads(1)``,
as the data generator does); each renders batches of random two-object scenes
from ``vlvae.datasets.two_objects.scene.sample_scene``. Prints images per second for every
(size, supersample) combination.

Usage: python benchmarks/render.py [--batches-per-worker 4] [--batch 64]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
import torch

from vlvae.datasets.two_objects.render import render_scenes
from vlvae.datasets.two_objects.scene import sample_scene


def _work(args: tuple[int, int, int, int, int]) -> tuple[int, float]:
    seed, size, supersample, batch, n_batches = args

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    batches = [[sample_scene(rng) for _ in range(batch)] for _ in range(n_batches)]
    render_scenes(batches[0][:4], size, supersample=supersample)  # warm-up
    t0 = time.perf_counter()
    for scenes in batches:
        render_scenes(scenes, size, supersample=supersample)
    return batch * n_batches, time.perf_counter() - t0


def _warm(_: int) -> None:
    """Start a worker (a spawned process imports this module, the renderer with it), untimed."""
    torch.set_num_threads(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches-per-worker", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 112])
    parser.add_argument("--supersample", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        pool.map(_warm, range(args.workers))  # start-up and imports, untimed
        for size in args.sizes:
            for ss in args.supersample:
                jobs = [
                    (1000 * w + size + ss, size, ss, args.batch, args.batches_per_worker)
                    for w in range(args.workers)
                ]
                t0 = time.perf_counter()
                results = pool.map(_work, jobs)
                wall = time.perf_counter() - t0
                n = sum(r[0] for r in results)
                busy = max(r[1] for r in results)
                # Wall time also includes sampling the scenes; the slowest
                # worker's render time gives the renderer's own throughput.
                rows.append((size, ss, n, n / busy, n / wall))
    print(f"workers={args.workers}  batch={args.batch}  torch threads/worker=1")
    print(f"{'size':>6} {'supersample':>11} {'images':>7} {'img/s (render)':>15} {'img/s (wall)':>13}")
    for size, ss, n, rate, wall_rate in rows:
        print(f"{size:>6} {ss:>11} {n:>7} {rate:>15.1f} {wall_rate:>13.1f}")


if __name__ == "__main__":
    main()
