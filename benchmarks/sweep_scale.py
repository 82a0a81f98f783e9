"""``python -m benchmarks.sweep_scale``: the harness's own cost per trial at scale, and the report at 10,000 results.

Two measurements (run under ``flock /tmp/freezebench-bench.lock``, as every benchmark here):

1. **A sweep of ``--trials`` trials** (default 500) of the smoke model (a 2-layer, 32-wide random BERT) for
   ``--steps`` optimizer steps each: a ``search.algorithm: random`` sweep (one strategy, ``--trials / 2``
   configurations x 2 seeds), run by ``python -m harness.sweep`` in a subprocess exactly as a user would. From
   the trials' own ``result.json`` timings and the wall clock it splits the cost per trial into: training +
   evaluation (the work), set-up inside the trial (model build, data load, result writing during the trial),
   Ray scheduling (the gap per trial slot between trials: actor start or reuse, Tune's bookkeeping), and the
   sweep's tail (final result files, report, model export). Harness overhead per trial = wall x slots / trials
   - training - evaluation.
2. **The report over ``--results`` synthetic results** (default 10,000; ``tests/reporting/synth.py``): wall time
   and peak RSS of ``python -m harness.report`` (with its plots and HTML).

Prints one table of figures with the CPU model and load average; ``--doc`` writes them into
``docs/performance.md`` between the ``sweep_scale`` markers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main", "sweep_config", "split_costs", "synthetic_sweep"]

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- sweep_scale:begin -->", "<!-- sweep_scale:end -->"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def sweep_config(trials: int, steps: int, data: str, out: Path, cpus_per_trial: int) -> dict:
    """A random search over lr of the smoke model: ``trials / 2`` configurations x 2 seeds, one strategy."""
    return {
        "name": "scale",
        "model": {"arch": "bert", "num_labels": 2,
                  "overrides": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "intermediate_size": 64}},
        "data": {"source": data, "train_size": 64, "val_size": 16, "test_size": 16, "max_length": 32},
        "train": {"max_steps": steps, "eval_every": steps, "lr": 1e-3, "batch_size": 8, "device": "cpu"},
        "search": {"algorithm": "random", "num_samples": max(1, trials // 2), "strategy": ["full"], "seed": [0, 1],
                   "lr": {"loguniform": [1e-4, 1e-2]}},
        "resources": {"cpus_per_trial": cpus_per_trial},
        "logging": {"wandb": {"mode": "disabled"}},
        "output": {"dir": str(out), "save_model": "none", "plots": False},
    }


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def split_costs(results: list[dict], wall_s: float, slots: int) -> dict:
    """Per-trial seconds: work (train + eval + test), set-up inside the trial, Ray scheduling (per slot), tail."""
    timed = [r for r in results if r.get("timing") and r.get("started_at") and r.get("finished_at")]
    work = [r["timing"].get("train_s", 0) + r["timing"].get("eval_s", 0) + r["timing"].get("test_s", 0)
            for r in timed]
    inside = [_ts(r["finished_at"]) - _ts(r["started_at"]) for r in timed]
    span = max(_ts(r["finished_at"]) for r in timed) - min(_ts(r["started_at"]) for r in timed)
    n = len(timed)
    per_slot = span * slots / n          # seconds of one slot each trial occupied, start of first to end of last
    return {"trials": n, "slots": slots, "wall_s": wall_s, "span_s": span,
            "mean_running": sum(inside) / span if span else None,   # trials that really ran at once, on average
            "work_s": statistics.mean(work), "setup_s": statistics.mean(inside) - statistics.mean(work),
            "scheduling_s": per_slot - statistics.mean(inside), "tail_and_start_s": wall_s - span,
            "overhead_per_trial_s": wall_s * slots / n - statistics.mean(work)}


def run_sweep(trials: int, steps: int, data: str, cpus_per_trial: int, workdir: Path) -> dict:
    import yaml

    out = workdir / "results"
    cfg_path = workdir / "scale.yaml"
    cfg_path.write_text(yaml.safe_dump(sweep_config(trials, steps, data, out, cpus_per_trial)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FREEZEBENCH_CACHE": str(workdir / "cache")}
    log = workdir / "sweep.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run([sys.executable, "-m", "harness.sweep", str(cfg_path), "--overwrite"], cwd=ROOT, env=env,
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    results = [json.loads(p.read_text()) for p in (out / "scale" / "trials").glob("*/result.json")]
    lines = log.read_text().splitlines()
    slots = max(1, int((os.cpu_count() or 1) // cpus_per_trial))
    costs = split_costs(results, wall, slots) if results else {}
    return {"rc": rc, "console_lines": len(lines), "log": str(log),
            "ok": sum(r.get("status") == "ok" for r in results), **costs}


def synthetic_sweep(root: Path, n: int) -> Path:
    """``n`` synthetic results: 10 strategies x (n / 20) configurations x 2 seeds."""
    from tests.reporting.synth import make_result, write_sweep

    strategies = ["full", "freeze_attention", "head_only", "top_k(k=2)", "top_k(k=4)", "bitfit", "lora(r=8)",
                  "freeze_embeddings", "bottom_k(k=2)", "ffn_only"]
    per = max(1, n // (len(strategies) * 2))
    results, i = [], 0
    for s_i, strategy in enumerate(strategies):
        for c in range(per):
            for seed in (0, 1):
                results.append(make_result(i, strategy, seed, level=0.85 + 0.01 * (s_i % 5), lr=1e-5 * (1 + c),
                                           ratio=1.0 / (1 + s_i)))
                i += 1
    return write_sweep(root / "synth", results)


def time_report(folder: Path, plots: bool = True) -> dict:
    cmd = [sys.executable, "-m", "harness.report", str(folder), *([] if plots else ["--no-plots"])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    html = folder / "report.html"
    return {"rc": proc.returncode, "wall_s": wall, "peak_rss_mb": max(rss, before) / 1024,
            "html_kb": html.stat().st_size / 1024 if html.exists() else None,
            "stderr_tail": proc.stderr[-800:] if proc.returncode else ""}


def _doc_section(fig: dict) -> str:
    s, r = fig.get("sweep") or {}, fig.get("report") or {}
    rows = [f"Measured {fig['date']} on {fig['cpu']} ({fig['cores']} cores, load average {fig['load']} at the "
            f"start, shared with other jobs), `python -m benchmarks.sweep_scale {fig['argv']}`.", ""]
    if s:
        rows += ["| sweep | figure |", "|---|---|",
                 f"| trials (ok) | {s.get('trials')} ({s.get('ok')}), {fig['steps']} steps each, {s.get('slots')} "
                 f"at a time |",
                 f"| wall clock | {s.get('wall_s', 0):.0f} s (first trial start to last end: {s.get('span_s', 0):.0f} s) |",
                 f"| trials running at once (mean) | {s.get('mean_running') or 0:.2f} |",
                 f"| training + evaluation per trial | {s.get('work_s', 0):.2f} s |",
                 f"| set-up inside the trial | {s.get('setup_s', 0):.2f} s |",
                 f"| Ray scheduling per trial slot | {s.get('scheduling_s', 0):.2f} s |",
                 f"| start-up + tail (results, report) | {s.get('tail_and_start_s', 0):.0f} s |",
                 f"| **harness overhead per trial** | **{s.get('overhead_per_trial_s', 0):.2f} s** |",
                 f"| console lines | {s.get('console_lines')} |", ""]
    if r:
        rows += [f"`python -m harness.report` over {fig['results']:,} synthetic results: "
                 f"{r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, report.html {r['html_kb'] or 0:.0f} kB "
                 f"(plots and HTML aggregate per strategy; rc {r['rc']})."]
    return "\n".join(rows)


def write_doc(fig: dict) -> None:
    text = DOC.read_text() if DOC.exists() else ""
    section = f"{BEGIN}\n{_doc_section(fig)}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text += "\n" + section + "\n"
    DOC.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--results", type=int, default=10_000, help="synthetic results for the report timing (0: skip)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "imdb"))
    p.add_argument("--cpus-per-trial", type=int, default=1)
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--workdir", default=None)
    p.add_argument("--doc", action="store_true", help="write the figures into docs/performance.md")
    args = p.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    fig = {"date": datetime.now().strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": os.cpu_count(),
           "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "argv": " ".join(argv or sys.argv[1:]),
           "steps": args.steps, "results": args.results}
    if not args.skip_sweep:
        fig["sweep"] = run_sweep(args.trials, args.steps, args.data, args.cpus_per_trial, work)
        print(json.dumps(fig["sweep"], indent=2), flush=True)
    if args.results:
        folder = synthetic_sweep(work, args.results)
        fig["report"] = time_report(folder)
        print(json.dumps(fig["report"], indent=2), flush=True)
    print(_doc_section(fig))
    (work / "figures.json").write_text(json.dumps(fig, indent=2))
    if args.doc:
        write_doc(fig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
