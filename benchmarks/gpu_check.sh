#!/usr/bin/env bash
# One prepared GPU check (< 8 minutes on one H100): DeepSpeed and torch engines x {full, freeze_attention},
# BERT-base-shaped random model, bf16, seq 256. Prints samples/s, tokens/s, peak memory and MFU, and writes
# gpu_check.json (or $OUT/gpu_check.json when OUT is set). Extra arguments go to benchmarks/gpu_check.py,
# e.g. `benchmarks/gpu_check.sh --batch-size 64` or `benchmarks/gpu_check.sh --smoke` (tiny, on CPU).
#
# Needs: the project installed with torch (CUDA build) and deepspeed (`DS_BUILD_OPS=0 pip install
# --no-build-isolation deepspeed`); run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu_check.json"
python - <<'PY'
import torch, deepspeed, transformers
print(f"torch {torch.__version__} (cuda {torch.version.cuda}), deepspeed {deepspeed.__version__}, "
      f"transformers {transformers.__version__}, GPUs: {torch.cuda.device_count()}")
PY
exec timeout 450 python -m benchmarks.gpu_check --out "$out" "$@"
