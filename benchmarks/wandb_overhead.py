"""W&B's added wall time on a tiny sweep: the same 2 strategies x 2 seeds sweep through the real CLI (real Ray),
with ``logging.wandb.mode: disabled`` and ``offline`` alternately, no API key, no network.

    python benchmarks/wandb_overhead.py [--repeats 2] [--steps 12] [--out /tmp/fb-wandb-bench]

First one trial per fresh process (as a Ray worker runs it), alternating modes: wall time, CPU time of the
process and its children (wandb-core included; CPU time is robust to other load on a shared machine) and the time
the trial waited on W&B. Then the whole sweep through the CLI: wall time including Ray start-up, the report and
the W&B summary run - what a user waits for, but noisy on a busy machine.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import tiny_sweep_dict  # noqa: E402


def sweep_config(out: Path, mode: str, steps: int, name: str) -> Path:
    data = tiny_sweep_dict(out, name=name, search={"strategy": ["full", "freeze_attention"], "seed": [0, 1]},
                           train={"max_steps": steps, "eval_every": max(1, steps // 3)},
                           logging={"wandb": {"mode": mode}})
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_once(out: Path, mode: str, steps: int, name: str, env: dict) -> dict:
    cfg = sweep_config(out, mode, steps, name)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(cfg)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    sweep = out / "results" / name
    trial_s = [json.loads(p.read_text())["timing"]["wall_s"] for p in sweep.glob("trials/*/result.json")]
    runs = len(list((sweep / "wandb").glob("offline-run-*")))
    summary = re.search(r"W&B: summary run \S+ \(([\d.]+)s\)", proc.stdout)
    return {"mode": mode, "wall_s": wall, "cpu_s": cpu, "trial_wall_s": sum(trial_s) / len(trial_s),
            "wandb_runs": runs, "summary_s": float(summary.group(1)) if summary else 0.0}


_ONE_TRIAL = """
import sys, time
t0 = time.perf_counter()
from harness.config import load_config
from harness.config.expand import expand
from harness.train.trial import run_trial
from harness.adapters.wandb import TrialTracker
trial = expand(load_config(sys.argv[1]))[int(sys.argv[2])]
with TrialTracker(trial) as tracker:
    run_trial(trial, tracker.wrap(lambda m, c=None: None))
print(f"{time.perf_counter() - t0:.3f} {tracker.seconds:.3f}")
"""


def trial_process(out: Path, mode: str, steps: int, index: int, env: dict) -> dict:
    """One trial in a fresh process, as a Ray worker runs it: wall, CPU of the process and its children
    (wandb-core included), and the time the trial waited on W&B."""
    cfg = sweep_config(out, mode, steps, f"proc_{mode}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", _ONE_TRIAL, str(cfg), str(index)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"trial process failed:\n{proc.stderr[-2000:]}")
    wall, waited = map(float, proc.stdout.split()[-2:])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"mode": mode, "wall_s": wall, "cpu_s": cpu, "waited_s": waited}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--out", default=None)
    p.add_argument("--no-sweep", action="store_true", help="only the per-trial-process measurement")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="fb-wandb-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    env.update(NETRC=str(out / "no-netrc"), RAY_DISABLE_USAGE_STATS="1", TOKENIZERS_PARALLELISM="false",
               FREEZEBENCH_CACHE=env.get("FREEZEBENCH_CACHE", str(out / "cache")))
    trows = []
    for i in range(2 * args.repeats):
        for mode in ("disabled", "offline") if i % 2 == 0 else ("offline", "disabled"):
            row = trial_process(out, mode, args.steps, i % 4, env)
            trows.append(row)
            print(f"{mode:9s} trial process wall {row['wall_s']:5.2f}s  cpu {row['cpu_s']:5.2f}s  "
                  f"waited on W&B {row['waited_s']:.3f}s", flush=True)
    for key, label in (("wall_s", "trial process wall"), ("cpu_s", "trial process CPU")):
        med = {m: statistics.median(r[key] for r in trows if r["mode"] == m) for m in ("disabled", "offline")}
        over = med["offline"] - med["disabled"]
        print(f"median {label}: disabled {med['disabled']:.2f}s, offline {med['offline']:.2f}s -> "
              f"W&B adds {over:+.2f}s ({100 * over / med['disabled']:+.1f}%)")
    if args.no_sweep:
        return 0
    rows = []
    for i in range(args.repeats):
        for mode in ("disabled", "offline") if i % 2 == 0 else ("offline", "disabled"):
            row = run_once(out, mode, args.steps, f"bench_{mode}_{i}", env)
            rows.append(row)
            print(f"{mode:9s} sweep wall {row['wall_s']:6.1f}s  cpu {row['cpu_s']:6.1f}s  mean trial "
                  f"{row['trial_wall_s']:5.2f}s  summary run {row['summary_s']:4.1f}s  W&B runs {row['wandb_runs']}",
                  flush=True)
    for key, label in (("wall_s", "sweep wall"), ("cpu_s", "CPU time (reaped processes)")):
        med = {m: statistics.median(r[key] for r in rows if r["mode"] == m) for m in ("disabled", "offline")}
        over = med["offline"] - med["disabled"]
        print(f"median {label}: disabled {med['disabled']:.1f}s, offline {med['offline']:.1f}s -> "
              f"W&B adds {over:+.1f}s ({100 * over / med['disabled']:+.1f}%)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
