#!/usr/bin/env bash
# The paper preset on a GPU for a few hundred steps: stage-1 images/s and peak memory, then every stage.
# One prepared script for a lent accelerator (see the README); about 5 minutes, most of it building data.
#   bash benchmarks/gpu_paper_smoke.sh [DATA_CACHE_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-${TMPDIR:-/tmp}/vlvae-gpu-smoke}"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
# Stage 1 alone first, timed for 60 s (a few hundred steps of 20 at 112 px), so its figure comes back
# even if the rest runs out of time; then all stages for 15 s each, and the bf16-mixed precision.
python benchmarks/train_throughput.py --preset paper --stage vlvae --seconds 60 --n 4096 --data "$cache"
python benchmarks/train_throughput.py --preset paper --seconds 15 --n 4096 --data "$cache"
python benchmarks/train_throughput.py --preset paper --stage vlvae --seconds 30 --n 4096 --data "$cache" \
    --set precision=bf16-mixed
