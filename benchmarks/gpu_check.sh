#!/usr/bin/env bash
# One prepared GPU check (< 8 minutes on one H100/H200):
#  1. DeepSpeed and torch engines x {full, freeze_attention}, BERT-base-shaped random model, bf16, seq 256:
#     samples/s, tokens/s, peak memory and MFU (against a bf16 matmul peak measured on the same GPU);
#  2. a 12-trial one-GPU mini-sweep (freeze_attention, 4 lr x 3 seeds, harness.sweep on Ray Tune, a quarter
#     of the GPU per trial: start CUDA MPS first for real concurrency, `nvidia-cuda-mps-control -d`): its
#     training samples/s over the sweep's wall time.
# Writes gpu_check.json and gpu_mini_sweep.json (in $OUT when set). Extra arguments go to both runs of
# benchmarks/gpu_check.py, e.g. `--batch-size 64`; `benchmarks/gpu_check.sh --smoke --dry-run` checks the
# script on CPU (tiny sizes, the mini-sweep's plan only).
#
# Needs: the project installed with torch (CUDA build) and deepspeed (`DS_BUILD_OPS=0 pip install
# --no-build-isolation deepspeed`); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${OUT:-.}"
python - <<'PY'
import torch, transformers
try:
    import deepspeed
    ds = deepspeed.__version__
except ImportError:
    ds = "not installed (the deepspeed rows will fail)"
print(f"torch {torch.__version__} (cuda {torch.version.cuda}), deepspeed {ds}, "
      f"transformers {transformers.__version__}, GPUs: {torch.cuda.device_count()}")
PY
timeout 270 python -m benchmarks.gpu_check --out "$dir/gpu_check.json" "$@"
exec timeout 200 python -m benchmarks.gpu_check --backends none --mini-sweep --out "$dir/gpu_mini_sweep.json" "$@"
