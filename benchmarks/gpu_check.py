"""``python -m benchmarks.gpu_check``: throughput, memory and model FLOPs utilisation of the training engines.

BERT-base-shaped random model (``model.arch: bert``), bf16, fixed-length sequences (256 tokens, no padding):
{DeepSpeed ZeRO <stage>, torch autocast} × {full, freeze_attention}, each through the harness's own engine
(:func:`harness.train.engines.make_engine`), ``--steps`` timed steps after ``--warmup`` untimed ones.

Model FLOPs per step: see :func:`model_flops` (per Linear, read off autograd; the pooler and classifier
counted once per sequence, not per token). Full fine-tuning gives 6·N·T + 12·L·s·h·T with N the encoder's
Linear weights (T = batch × seq tokens, L layers, h hidden, s seq), plus 6·N_head per sequence. MFU = model FLOPs/s ÷ a bf16 matmul peak *measured* on the
same device (a large square ``torch.matmul``), so it is the fraction of what this GPU really sustains, not of
the datasheet figure. ``--smoke`` runs tiny sizes on CPU (used by the tests).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

__all__ = ["model_flops", "matmul_peak", "run_config", "mini_sweep", "mini_sweep_config", "main"]


def model_flops(model, seq: int, tokens: int) -> dict:
    """Forward / backward / total FLOPs of one optimizer step over ``tokens`` tokens in rows of ``seq``.

    Counted per Linear from what autograd really computes (``benchmarks.trial_throughput.linear_plan``, a hooked
    forward with the strategy applied): forward 2·in·out per token (pooler and classifier per sequence: they
    see one token each), backward 2·in·out for the input gradient where the Linear's input needs one and again
    for the weight gradient where the weight trains; attention 4·h·s² per sequence and layer forward, and
    again for each backward half (dP/dV, dQ/dK) that is needed. Cross-checked against
    ``torch.utils.flop_counter.FlopCounterMode`` in tests/benchmarks/test_flops.py. Full fine-tuning of
    BERT-base gives 6·N_enc·T + 6·N_head·T/s + 12·L·s·h·T (N: Linear weights only)."""
    from benchmarks.trial_throughput import batch_flops, linear_plan

    params = dict(model.named_parameters())
    trainable = frozenset(n for n, p in params.items() if p.requires_grad)
    plan = linear_plan(model, trainable)
    lengths = [seq] * (tokens // seq)
    forward = batch_flops(plan, lengths, backward=False)
    total = batch_flops(plan, lengths)
    n_all = sum(x["in"] * x["out"] for x in plan["linears"])
    n_train = sum(x["in"] * x["out"] for x in plan["linears"] if x["w_grad"])
    return {"forward": forward, "backward": total - forward, "total": total,
            "linear_params": n_all, "trainable_linear_params": n_train}


def matmul_peak(device, size: int, iters: int = 20, dtype=None) -> float:
    """Measured matmul FLOP/s on ``device`` in ``dtype`` (default bf16; best of ``iters`` after a warm-up)."""
    import torch

    dtype = dtype or torch.bfloat16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(iters):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mem_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_config(backend: str, strategy: str, args, device, peak: float) -> dict:
    """Build the model, apply the strategy, build the engine, time ``args.steps`` training steps."""
    import torch

    import strategies
    from harness.config import ModelConfig, TrainConfig
    from harness.train.engines import loss_fn, make_engine
    from harness.train.model import build_model

    torch.manual_seed(0)
    model_cfg = ModelConfig(arch="bert", overrides=args.overrides)
    train = TrainConfig(backend=backend, precision="auto", zero_stage=args.zero_stage if backend == "deepspeed" else 0,
                        batch_size=args.batch_size, max_steps=args.warmup + args.steps + 1, lr=1e-5,
                        device=device.type, grad_clip=1.0)
    model = build_model(model_cfg, train)
    strategies.apply_trainable(model, strategies.trainable_names(model, strategy, {}))
    trainable, total = strategies.count_params(model)
    tokens = args.batch_size * args.seq
    flops = model_flops(model, args.seq, tokens)          # on the CPU copy (a hooked 2 x 8 forward)
    model.to(device).train()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    engine = make_engine(model, train, device)
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, vocab, (args.batch_size, args.seq), generator=gen).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, 2, (args.batch_size,), generator=gen).to(device)}
    times, losses = [], []
    try:
        for i in range(args.warmup + args.steps):
            _sync(device)
            t = time.perf_counter()
            loss = loss_fn(engine.forward(batch), batch["labels"])
            engine.backward(loss)
            engine.step()
            _sync(device)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
            losses.append(float(loss.detach()))
        mem = _peak_mem_mb(device)
    finally:
        close = getattr(engine, "close", None)
        if close:
            close()
        del engine, model
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    step_s = sum(times) / len(times)
    achieved = flops["total"] / step_s
    return {"backend": backend if backend == "torch" else f"deepspeed-z{args.zero_stage}", "strategy": strategy,
            "trainable_params": trainable, "total_params": total, "batch_size": args.batch_size, "seq": args.seq,
            "step_ms": 1000 * step_s, "samples_per_s": args.batch_size / step_s, "tokens_per_s": tokens / step_s,
            "peak_mem_mb": mem, "model_tflops_per_step": flops["total"] / 1e12,
            "achieved_tflops": achieved / 1e12, "mfu": achieved / peak, "finite_loss": all(map(_finite, losses))}


_WORDS = ("the film was good bad great awful plot actor scene story music long short slow fast funny dull "
          "brilliant boring dark light ending start middle role voice camera cut").split()


def _synthetic_reviews(path, n: int, words: int, seed: int = 0) -> None:
    """A jsonl of ``n`` random reviews (``words`` words each, random labels): throughput needs no real data."""
    import random

    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"text": " ".join(rng.choice(_WORDS) for _ in range(words)), "label": i % 2}) + "\n")


def mini_sweep_config(args, folder: str, device: str) -> dict:
    """The 12-trial one-GPU sweep: freeze_attention, 4 lr x 3 seeds, BERT-base shape (smoke: tiny), bf16,
    ``--sweep-gpus-per-trial`` of the GPU each (several trials share it; run CUDA MPS for real concurrency)."""
    on_gpu = device == "cuda"
    return {
        "name": "gpu-mini-sweep",
        "model": {"arch": "bert", "overrides": args.overrides},
        "data": {"source": f"{folder}/reviews.jsonl", "train_size": 1024 if not args.smoke else 64,
                 "val_size": 64 if not args.smoke else 16, "test_size": 128 if not args.smoke else 16,
                 "max_length": args.seq, "curve_eval_size": 32 if not args.smoke else 16,
                 "cache_dir": f"{folder}/cache"},
        "train": {"max_steps": args.sweep_steps, "eval_every": args.sweep_steps, "batch_size": args.batch_size,
                  "precision": "auto", "device": device, "eval_batch_size": 128,
                  "pad_to_multiple_of": 64 if on_gpu else None},
        "strategy": {"name": "freeze_attention"},
        "search": {"lr": [1e-5, 2e-5, 5e-5, 1e-4], "seed": [0, 1, 2]},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": args.sweep_gpus_per_trial if on_gpu else 0},
        "logging": {"level": "warning", "wandb": {"mode": "disabled"}},
        "output": {"dir": f"{folder}/results", "plots": False, "save_model": "none"},
    }


def mini_sweep(args, device: str, dry_run: bool = False) -> dict:
    """Run the mini-sweep through ``python -m harness.sweep`` (Ray Tune, as a user would) and measure its
    throughput: all trials' training samples over the sweep's wall time. ``dry_run``: plan only."""
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        _synthetic_reviews(Path(folder) / "reviews.jsonl", 1400 if not args.smoke else 120,
                           args.seq if not args.smoke else 40)
        cfg_path = Path(folder) / "sweep.yaml"
        cfg_path.write_text(json.dumps(mini_sweep_config(args, folder, device)))   # JSON is YAML
        cmd = [sys.executable, "-m", "harness.sweep", str(cfg_path)] + (["--dry-run"] if dry_run else [])
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"mini-sweep failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        results = [json.loads(p.read_text()) for p in Path(folder).glob("results/*/trials/*/result.json")]
    samples = sum((r["throughput"] or {}).get("samples_per_s", 0) * r["timing"]["train_s"] for r in results
                  if r.get("throughput") and r.get("timing"))
    return {"trials": len(results), "wall_s": wall, "samples": samples,
            "samples_per_s": samples / wall if results else None, "status": sorted({r["status"] for r in results}),
            "plan": proc.stdout[-1500:] if dry_run else None}


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on CPU (checks the script, not the GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (smoke: 4)")
    p.add_argument("--seq", type=int, default=None, help="default 256 (smoke: 32)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; smoke: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; smoke: 1)")
    p.add_argument("--zero-stage", type=int, default=1, choices=[0, 1, 2])
    p.add_argument("--backends", default="deepspeed,torch")
    p.add_argument("--strategies", default="full,freeze_attention")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    p.add_argument("--mini-sweep", action="store_true", help="also run the 12-trial one-GPU sweep (harness.sweep)")
    p.add_argument("--sweep-steps", type=int, default=None, help="steps per mini-sweep trial (default 40; smoke: 2)")
    p.add_argument("--sweep-gpus-per-trial", type=float, default=0.25,
                   help="fraction of the GPU per mini-sweep trial (0.25: four at a time; use CUDA MPS)")
    p.add_argument("--dry-run", action="store_true", help="with --mini-sweep: check its plan, train nothing")
    args = p.parse_args(argv)
    smoke = args.smoke
    args.batch_size = args.batch_size or (4 if smoke else 32)
    args.seq = args.seq or (32 if smoke else 256)
    args.steps = args.steps or (3 if smoke else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 5)
    args.sweep_steps = args.sweep_steps or (2 if smoke else 40)
    args.overrides = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
                      if smoke else {})     # {}: bert-base (12 layers, hidden 768, 12 heads, 3072)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.smoke:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import torch

    from harness.train.precision import resolve as resolve_precision

    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("error: no CUDA device; use --smoke to check the script on CPU", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    # precision auto: bf16 on a GPU (and on a CPU with bf16 instructions); the peak is measured in the same dtype
    precision = resolve_precision("auto", device)
    peak = matmul_peak(device, 512 if args.smoke else 8192, iters=3 if args.smoke else 20,
                       dtype=torch.bfloat16 if precision == "bf16" else torch.float32)
    print(f"device: {name} | torch {torch.__version__} | measured {precision} matmul peak {peak / 1e12:.1f} TFLOP/s")
    print(f"model: bert{' (smoke: tiny)' if args.smoke else '-base'}, {precision}, batch {args.batch_size} x seq "
          f"{args.seq}, {args.steps} timed steps after {args.warmup} warm-up")
    rows = []
    for backend in [b for b in args.backends.split(",") if b and b != "none"]:
        for strategy in args.strategies.split(","):
            t = time.perf_counter()
            row = run_config(backend, strategy, args, device, peak)
            row["wall_s"] = time.perf_counter() - t
            rows.append(row)
            print(f"  {row['backend']:<14} {strategy:<17} {row['samples_per_s']:9.1f} samples/s "
                  f"{row['tokens_per_s']:11.0f} tokens/s  peak {row['peak_mem_mb']:8.0f} MiB  "
                  f"MFU {100 * row['mfu']:6.2f}%  ({row['achieved_tflops']:.3g} TFLOP/s, "
                  f"trainable {row['trainable_params']:,}/{row['total_params']:,})", flush=True)
    report = {"device": name, "torch": torch.__version__, "peak_bf16_tflops": peak / 1e12, "precision": precision,
              "args": {k: v for k, v in vars(args).items()}, "rows": rows}
    if args.mini_sweep:
        sweep = mini_sweep(args, device.type, dry_run=args.dry_run)
        report["mini_sweep"] = sweep
        if args.dry_run:
            print(f"mini-sweep (dry run): plan checked\n{sweep['plan']}")
        else:
            print(f"mini-sweep: {sweep['trials']} trials ({', '.join(sweep['status'])}) in {sweep['wall_s']:.1f}s, "
                  f"{sweep['samples_per_s']:.1f} training samples/s over the sweep's wall time "
                  f"({args.sweep_gpus_per_trial:g} GPU per trial)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    bad = [r for r in rows if not r["finite_loss"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
