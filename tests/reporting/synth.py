"""Hand-made ``freezebench.trial/2`` results (and predictions.parquet files) for the reporting tests."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from harness.results import write_json_atomic

TOTAL = 22_700_000


def make_result(index: int, strategy: str = "full", seed: int = 0, *, status: str = "ok", level: float = 0.9,
                test: float | None = None, val: float | None = None, noise: float = 0.01, ratio: float = 1.0,
                speed: float = 50.0, wall: float | None = None, mem: float | None = None, max_steps: int = 100,
                eval_every: int = 10, stop_at: int | None = None, reason: str | None = None, sweep: str = "synth",
                metric: str = "accuracy", with_val: bool = True, **hparams) -> dict:
    """A result like the trial writes: a rising validation curve towards ``level`` with seeded noise; ``val`` /
    ``test`` set the final whole-split scores (default: the curve's last value, and that plus seeded noise)."""
    rng = np.random.default_rng(1000 * index + seed)
    hp = {"lr": 5e-5, "batch_size": 16, "scheduler": "linear", "grad_clip": 1.0, "seed": seed,
          "weight_decay": 0.01, "dropout": None, "attention_dropout": None, "label_smoothing": 0.0,
          "word_dropout": 0.0, "max_steps": max_steps, "grad_accum": 1, "precision": "bf16", "backend": "torch"}
    hp.update(hparams)
    last = stop_at if stop_at is not None else max_steps
    history = []
    if status != "failed":
        for step in range(0, last + 1, eval_every):
            score = 0.5 + (level - 0.5) * (1 - math.exp(-step / 25)) + float(rng.normal(0, noise)) * (step > 0)
            loss = None if step == 0 else 0.7 * math.exp(-step / 40) + 0.2 + float(rng.normal(0, 0.02))
            history.append({"step": step, "epoch": step / 1000, "train_loss": loss, "val_loss": 1 - score,
                            "val_score": score, f"val_{metric}": score, "lr": hp["lr"], "grad_norm": 1.0,
                            "samples_per_s": speed, "tokens_per_s": speed * 200, "peak_mem_mb": 900.0,
                            "elapsed_s": step / 10, "skipped_steps": 0})
    if status == "diverged":
        history[-1]["train_loss"] = "nan"
    done = status == "ok"
    v = val if val is not None else (history[-1]["val_score"] if history else None)
    te = test if test is not None else (v + float(rng.normal(0, noise / 2)) if v is not None else None)

    def record(split: str, score: float | None) -> dict | None:
        if not done or score is None:
            return None
        metrics = {metric: score, **({"accuracy": score} if metric in ("accuracy",) else {})}
        return {"split": split, "step": last, "loss": 0.3, "score": score, "metrics": metrics, "size": 1000}

    params = None if status == "failed" else {"trainable": int(TOTAL * ratio), "total": TOTAL,
                                              "ratio": int(TOTAL * ratio) / TOTAL}
    return {"schema": "freezebench.trial/2", "sweep": sweep, "trial_id": f"t{index:04d}", "index": index,
            "status": status, "reason": reason, "strategy": strategy, "strategy_name": strategy.split("(")[0],
            "strategy_params": {}, "hparams": hp, "config": {"train": dict(hp)},
            "metric": {"name": metric, "mode": "max",
                       "task": "regression" if metric in ("pearson", "spearman") else "classification"},
            "selected_on": "validation" if with_val else "test",
            "history": history, "val": record("val", v) if with_val else None, "test": record("test", te),
            "predictions": None, "best": None, "params": params,
            "train_losses": [0.5] * (0 if status == "failed" else last),
            "throughput": None if status == "failed" else {"samples_per_s": speed + seed, "tokens_per_s": speed * 200,
                                                           "padding_fraction": 0.1},
            "timing": {"wall_s": (wall if wall is not None else 30.0) + seed, "train_s": 25.0, "eval_s": 5.0},
            "memory": {"peak_mem_mb": mem if mem is not None else 900.0 * ratio + 100, "device": "cpu"}}


def write_sweep(folder: Path, results: Sequence[dict], config: dict | None = None) -> Path:
    for r in results:
        write_json_atomic(folder / "trials" / r["trial_id"] / "result.json", r)
    if config is not None:
        write_json_atomic(folder / "sweep.json", {"name": folder.name, "config": config})
    return folder


def write_predictions(folder: Path, result: dict, labels: np.ndarray, predictions: np.ndarray,
                      ids: np.ndarray | None = None) -> None:
    """predictions.parquet beside the result (columns as the trial writes them), and the result pointing to it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = np.arange(len(labels), dtype=np.int64) if ids is None else ids
    table = pa.table({"example_id": pa.array(ids, pa.int64()), "label": pa.array(labels),
                      "prediction": pa.array(predictions)})
    trial = folder / "trials" / result["trial_id"]
    trial.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, trial / "predictions.parquet")
    result["predictions"] = "predictions.parquet"
    write_json_atomic(trial / "result.json", result)


def make_sweep(root: Path, name: str = "synth") -> Path:
    """full, freeze_attention (two lrs), top_k, head_only (worse), bitfit (one seed), lora (all failed)."""
    sweep = root / name
    specs = [("full", dict(level=0.90, ratio=1.0, speed=40.0, wall=60.0)),
             ("freeze_attention", dict(level=0.91, ratio=0.52, speed=60.0, wall=45.0)),
             ("freeze_attention", dict(level=0.86, ratio=0.52, speed=60.0, wall=45.0, lr=1e-4)),
             ("top_k(k=2)", dict(level=0.895, ratio=0.35, speed=80.0, wall=35.0)),
             ("head_only", dict(level=0.70, ratio=0.001, speed=150.0, wall=20.0))]
    i = 0
    results = []
    for strategy, kw in specs:
        for seed in range(3):
            results.append(make_result(i, strategy, seed, sweep=name, **kw))
            i += 1
    results[-1] = make_result(i - 1, "head_only", 2, status="diverged", reason="training loss nan at step 40",
                              stop_at=40, sweep=name, ratio=0.001)
    results.append(make_result(i, "bitfit", 0, level=0.88, ratio=0.001, speed=120.0, sweep=name))
    results.append(make_result(i + 1, "bitfit", 1, status="stopped", stop_at=30, sweep=name, ratio=0.001))
    results.append(make_result(i + 2, "lora(alpha=16,r=8)", 0, status="failed", sweep=name,
                               reason="RuntimeError: CUDA out of memory.\nTried to allocate 2 GiB"))
    results.append(make_result(i + 3, "lora(alpha=16,r=8)", 1, status="running", stop_at=20, sweep=name))
    return write_sweep(sweep, results)
