#!/usr/bin/env bash
# The paper preset on a GPU for a few hundred steps: stage-1 images/s and peak memory, then every stage.
# One prepared script for a lent accelerator (see the README); about 5 minutes, most of it building data.
#   bash benchmarks/gpu_paper_smoke.sh [DATA_CACHE_DIR]
# Dry run of the evaluation part on a CPU machine (a few minutes):
#   SMOKE_ONLY_EVAL=1 SMOKE_DEVICE=cpu SMOKE_EVAL_PRESET=tiny SMOKE_STEPS=6 bash benchmarks/gpu_paper_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-${TMPDIR:-/tmp}/vlvae-gpu-smoke}"
if [ -z "${SMOKE_ONLY_EVAL:-}" ]; then  # SMOKE_ONLY_EVAL=1: the evaluation part only (below)
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
# Stage 1 alone first, timed for 60 s (a few hundred steps of 20 at 112 px), so its figure comes back
# even if the rest runs out of time; then all stages for 15 s each, and the bf16-mixed precision.
python benchmarks/train_throughput.py --preset paper --stage vlvae --seconds 60 --n 4096 --data "$cache"
python benchmarks/train_throughput.py --preset paper --seconds 15 --n 4096 --data "$cache"
python benchmarks/train_throughput.py --preset paper --stage vlvae --seconds 30 --n 4096 --data "$cache" \
    --set precision=bf16-mixed
fi

# Evaluation on the GPU against the CPU (issue 21 item 2): one small run (SMOKE_EVAL_PRESET, default
# quick, its stages cut to a few hundred steps) trained on the GPU, then the same evaluation with
# --device cuda and --device cpu on copies of it: the wall time of each and the largest difference
# between their metrics (the GPU draws other random numbers, so they agree within the Monte-Carlo
# errors, not to the digit). SMOKE_DEVICE=cpu runs the same commands on a machine without a GPU.
preset="${SMOKE_EVAL_PRESET:-quick}"
gpu="${SMOKE_DEVICE:-cuda}"
eval_dir="$cache/eval-$preset"
steps="--set stage1.steps=${SMOKE_STEPS:-300} --set text_posterior.steps=${SMOKE_STEPS:-300} --set prior.steps=${SMOKE_STEPS:-300}"
# shellcheck disable=SC2086
vlvae reproduce --preset "$preset" --out "$eval_dir" $steps --device "$gpu" > /dev/null
for device in "$gpu" cpu; do
  rm -rf "$eval_dir/run-$device" && cp -r "$eval_dir/run" "$eval_dir/run-$device"
  rm -f "$eval_dir/run-$device/metrics.json" "$eval_dir/run-$device/report.md"
  start=$(date +%s.%N)
  vlvae evaluate --run "$eval_dir/run-$device" --classifier "$eval_dir/classifier" --device "$device" \
      --examples 200 --no-figures > /dev/null
  echo "evaluate --device $device: $(python -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
done
python - "$eval_dir/run-$gpu/metrics.json" "$eval_dir/run-cpu/metrics.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for group in ("conditional", "prior"):
    for name, x in a["correctness"][group].items():
        y = b["correctness"][group][name]
        print(f"correctness {group}/{name}: {x['mean']:.4f} vs cpu {y['mean']:.4f} "
              f"(difference {x['mean'] - y['mean']:+.4f}, standard error {x['stderr_over_examples']:.4f})")
print("device recorded:", a.get("device"), "/", b.get("device"))
PY
# The CUDA tests of the suite (skipped on machines without a GPU).
python -m pytest -q -p no:cacheprovider tests/test_device.py tests/models/test_mixed_precision.py
