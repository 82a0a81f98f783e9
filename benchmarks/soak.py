"""Soak: one sweep of many short trials through the real CLI on real Ray; the driver's and the workers' memory
must stay flat, and nothing may be left behind (no process, no scratch folder).

    flock /tmp/freezebench-bench.lock python benchmarks/soak.py [--trials 200] [--steps 2] [--json out.json]

Every second it samples the resident memory (RSS) of the driver (``harness.sweep``), of each Ray worker process
(``ray::...``: the trials) and of Ray's own daemons (GCS, raylet, agents), and how many trials are done. The
figures are RSS at the start (5% of the trials done: imports and the first trials warmed up), the middle (50%)
and the end (100%). Afterwards it looks for any process still carrying this run's marker in its environment and
for anything left in the sweep's private ``TMPDIR`` (trial scratch folders). Ray keeps its session logs under
``RAY_TMPDIR`` by design; their size is reported, then they are removed.

Exit status 1 when the sweep fails, a process or a scratch folder is left behind, or the driver or the largest
worker grew by more than ``--max-growth`` (default 10%) between start and end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.results.env import cpu_model  # noqa: E402
from tests.conftest import tiny_sweep_dict  # noqa: E402

_DONE = re.compile(r"\]\s+(\d+)/(\d+) done")
MB = 2**20


def config(work: Path, trials: int, steps: int) -> Path:
    data = tiny_sweep_dict(work, name="soak", search={"seed": list(range(trials))},
                           data={"train_size": 64, "eval_size": 32, "max_length": 32},
                           train={"max_steps": steps, "eval_every": steps}, output={"plots": False},
                           resources={"cpus_per_trial": 1, "num_cpus": 2})
    path = work / "soak.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def sample(driver: psutil.Process, log: Path, t0: float) -> dict | None:
    try:
        procs = driver.children(recursive=True)
    except psutil.Error:
        return None
    workers, daemons = {}, 0
    for p in procs:
        try:
            name = " ".join(p.cmdline()[:1])
        except psutil.Error:
            continue
        if name.startswith("ray::") and not name.startswith(("ray::IDLE", "ray::DashboardAgent",
                                                               "ray::RuntimeEnvAgent")):
            workers[p.pid] = _rss(p)
        else:
            daemons += _rss(p)
    done = _DONE.findall(log.read_text(errors="replace")[-4000:]) if log.exists() else []
    return {"t": round(time.time() - t0, 1), "done": int(done[-1][0]) if done else 0, "driver": _rss(driver),
            "workers": workers, "daemons": daemons}


def leftovers(marker: str, tmpdir: Path) -> tuple[list[str], list[str]]:
    procs = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            if p.environ().get("FB_SOAK") == marker:
                procs.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            continue
    return procs, sorted(str(p.relative_to(tmpdir)) for p in tmpdir.iterdir())


KEPT_BY_DESIGN = ("torchinductor_",)    # torch's compile cache under $TMPDIR: a cache, not a trial's scratch


def at(samples: list[dict], fraction: float, total: int) -> dict:
    """The first sample with ``fraction`` of the trials done and a trial running; for the end, the last sample
    in which a trial was still running (once all are done the workers are gone)."""
    running = [s for s in samples if s["workers"]] or samples
    if fraction >= 1:
        return running[-1]
    want = max(1, round(fraction * total))
    return next((s for s in running if s["done"] >= want), running[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--max-growth", type=float, default=0.10)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fb-soak-"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="fbsoak-", dir="/tmp"))
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    marker = secrets.token_hex(8)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(ray_tmp), "TMPDIR": str(tmpdir),
           "FREEZEBENCH_CACHE": str(work / "cache"), "WANDB_MODE": "disabled", "FB_SOAK": marker,
           "RAY_DISABLE_USAGE_STATS": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = work / "sweep.log"
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "harness.sweep", str(config(work, args.trials, args.steps))],
                            cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    driver = psutil.Process(proc.pid)
    samples = []
    while proc.poll() is None:
        s = sample(driver, log, t0)
        if s:
            samples.append(s)
        time.sleep(1.0)
    seconds = time.time() - t0
    time.sleep(10)                                         # give Ray's daemons time to exit after the driver
    procs, entries = leftovers(marker, tmpdir)
    files = [e for e in entries if not e.startswith(KEPT_BY_DESIGN)]
    ray_mb = sum(f.stat().st_size for f in ray_tmp.rglob("*") if f.is_file()) / MB
    results = list((work / "results" / "soak" / "trials").glob("*/result.json"))
    ok = sum(json.loads(r.read_text()).get("status") == "ok" for r in results)
    points = {name: at(samples, f, args.trials) for name, f in (("start", 0.05), ("middle", 0.5), ("end", 1.0))}
    figures = {
        "cpu": cpu_model(), "trials": args.trials, "steps": args.steps, "ok": ok, "rc": proc.returncode,
        "seconds": round(seconds, 1), "samples": len(samples),
        "worker_pids_seen": len({pid for s in samples for pid in s["workers"]}),   # Tune reuses actors or not
        "rss_mb": {name: {"done": s["done"], "driver": round(s["driver"] / MB, 1),
                          "worker_max": round(max(s["workers"].values(), default=0) / MB, 1),
                          "workers": len(s["workers"]), "ray_daemons": round(s["daemons"] / MB, 1)}
                   for name, s in points.items()},
        "left_processes": procs, "left_tmp": files, "tmp_caches": [e for e in entries if e not in files],
        "ray_session_mb": round(ray_mb, 1),
    }
    start, end = figures["rss_mb"]["start"], figures["rss_mb"]["end"]
    growth = {k: (end[k] - start[k]) / start[k] if start[k] else 0.0 for k in ("driver", "worker_max")}
    figures["growth"] = {k: round(v, 4) for k, v in growth.items()}
    print(json.dumps(figures, indent=2))
    print(f"\n| trials | seconds | RSS driver start/middle/end (MB) | RSS largest worker start/middle/end (MB) "
          f"| left behind |\n|---|---|---|---|---|\n| {ok}/{args.trials} ok | {seconds:.0f} | "
          + " / ".join(f"{figures['rss_mb'][n]['driver']:.0f}" for n in points) + " | "
          + " / ".join(f"{figures['rss_mb'][n]['worker_max']:.0f}" for n in points) + " | "
          + f"{len(procs)} processes, {len(files)} temp entries |")
    if args.json:
        Path(args.json).write_text(json.dumps({**figures, "series": samples}, indent=1))
    shutil.rmtree(ray_tmp, ignore_errors=True)
    failed = (proc.returncode != 0 or ok != args.trials or procs or files
              or any(v > args.max_growth for v in growth.values()))
    if not failed:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} for inspection", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
