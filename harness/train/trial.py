"""One trial, end to end, in plain PyTorch. Never imports ray: the sweep hands it a ``report`` callable.

Order (torchtune's recipe): seed → data → model → strategy (trainable set) → apply → log counts →
optimizer over trainable params only → engine → loop (evaluate at step 0, every ``eval_every`` steps and at
the end) → final evaluation on the whole evaluation subset → ``result.json``.
"""
from __future__ import annotations

import logging
import math
import random
import resource
import shutil
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

import strategies
from harness.config import TrialConfig
from harness.data import batching, tokenize_cache
from harness.results import new_result, now, result_path, write_json_atomic
from harness.train import prefix_cache
from harness.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from harness.train.distributed import ShardedStream, global_mean, rank_world
from harness.train.engines import Engine, loss_fn, make_engine
from harness.train.evaluate import evaluate, to_device
from harness.train.model import build_model, load_tokenizer, tokenizer_source

__all__ = ["run_trial", "Report", "Diverged", "pick_device"]

log = logging.getLogger("freezebench.trial")
Report = Callable[[dict, Optional[str]], None]


class Diverged(RuntimeError):
    """The training loss became NaN/inf or exceeded ``train.diverge_loss``."""


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is cuda but no CUDA device is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _Run:
    """State of one trial; keeps run_trial readable."""

    def __init__(self, cfg: TrialConfig, report: Report, tokenized_path: str | None, scratch: Path):
        self.cfg, self.report, self.scratch = cfg, report, scratch
        self.t0 = time.time()
        self.result = new_result(cfg)
        self.tokenized_path = tokenized_path
        self.train_s = self.eval_s = 0.0
        self.samples = self.tokens = self.padded = 0
        self.step = 0
        self.window_losses: list[float] = []
        self.window_norms: list[float] = []

    @property
    def path(self) -> Path:
        return result_path(self.cfg.output.dir, self.cfg.sweep, self.cfg.trial_id)

    def write(self) -> None:
        write_json_atomic(self.path, self.result)


def _setup(run: _Run):
    cfg = run.cfg
    device = pick_device(cfg.train.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.resources.cpus_per_trial) // rank_world()[1]))  # shared by workers
    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    path = run.tokenized_path or tokenize_cache.prepare(cfg.data, tokenizer, tokenizer_source(cfg.model),
                                                        num_labels=cfg.model.num_labels, log=log.info)
    data = tokenize_cache.load(path)
    frozen = strategies.freeze(build_model(cfg.model, cfg.train), cfg.strategy.name, cfg.strategy.params)
    model = frozen.model
    log.info("%s: trainable params: %s || all params: %s || trainable%%: %.4f", cfg.trial_id,
             f"{frozen.trainable:,}", f"{frozen.total:,}", 100 * frozen.ratio)
    run.result["params"] = {"trainable": frozen.trainable, "total": frozen.total, "ratio": frozen.ratio}
    model.to(device).train()
    prefix = prefix_cache.for_trial(cfg, model, frozen.names)  # None unless train.cache_frozen_prefix (may refuse)
    engine = make_engine(model, cfg.train, device, prefix=prefix)
    special = set(tokenizer.all_special_ids)
    return device, tokenizer.pad_token_id, special, data, engine


def _restore(run: _Run, engine: Engine, stream, restore_from) -> None:
    pristine = None  # weights, data position and RNG before any attempt: a checkpoint failing half-way is undone
    for folder in restore_from:
        try:
            tensors, state = load_checkpoint(folder)
            step, saved = int(state["step"]), {k: list(state["result"][k]) for k in ("history", "train_losses")}
            timing = [float(state[k]) for k in ("train_s", "eval_s")] + [int(state[k]) for k in ("samples", "tokens", "padded")]
            if pristine is None:
                pristine = ({k: v.detach().clone() for k, v in engine.trainable_state().items()},
                            stream.state_dict(), rng_state())
            engine.load_trainable_state(tensors)
            stream.load_state_dict(state["stream"])
            set_rng_state(state["rng"])
            engine.load_state_dict(state["engine"])  # last: optimizer/scheduler loads check before they change
        except Exception as exc:  # noqa: BLE001 - any unusable checkpoint is skipped, never fatal
            log.warning("%s: skipping checkpoint %s: %s", run.cfg.trial_id, folder, exc)
            run.result.setdefault("warnings", []).append(f"skipped checkpoint {folder}: {exc}")
            if pristine is not None:
                engine.load_trainable_state(pristine[0])
                stream.load_state_dict(pristine[1])
                set_rng_state(pristine[2])
            continue
        run.step = step
        run.result.update(saved)
        run.train_s, run.eval_s, run.samples, run.tokens, run.padded = timing
        run.result["resumed_from_step"] = run.step
        log.info("%s: resumed from step %d (%s)", run.cfg.trial_id, run.step, folder)
        return
    if restore_from:
        log.warning("%s: no usable checkpoint; starting from scratch", run.cfg.trial_id)
        run.result.setdefault("warnings", []).append("no usable checkpoint; started from scratch")


def _checkpoint(run: _Run, engine: Engine, stream) -> str:
    state = {"step": run.step, "engine": engine.state_dict(), "stream": stream.state_dict(), "rng": rng_state(),
             "result": {"history": run.result["history"], "train_losses": run.result["train_losses"]},
             "train_s": run.train_s, "eval_s": run.eval_s, "samples": run.samples, "tokens": run.tokens,
             "padded": run.padded}
    return str(save_checkpoint(run.scratch / f"step_{run.step:07d}", engine.trainable_state(), state))


def _record_eval(run: _Run, engine: Engine, data, device, pad_id, curve_idx) -> dict:
    cfg = run.cfg
    t = time.perf_counter()
    eval_loss, acc = evaluate(engine, data.eval, "eval", curve_idx, cfg.train.eval_batch_size, pad_id, device,
                              cfg.train.label_smoothing)
    run.eval_s += time.perf_counter() - t
    row = {
        "step": run.step, "epoch": run.samples / max(1, len(data.train.labels)),
        "train_loss": float(np.mean(run.window_losses)) if run.window_losses else None,
        "eval_loss": eval_loss, "eval_accuracy": acc, "lr": engine.current_lr(),
        "grad_norm": float(np.mean(run.window_norms)) if run.window_norms else None,
        "samples_per_s": run.samples / run.train_s if run.train_s else None,
        "tokens_per_s": run.tokens / run.train_s if run.train_s else None,
        "peak_mem_mb": peak_memory_mb(device), "elapsed_s": time.time() - run.t0,
        "skipped_steps": engine.skipped_steps,
    }
    run.window_losses, run.window_norms = [], []
    run.result["history"].append(row)
    return row


def _train_step(run: _Run, engine: Engine, stream, data, device, pad_id, special, gen) -> None:
    tc = run.cfg.train
    t = time.perf_counter()
    total = 0.0
    for _ in range(tc.grad_accum):
        idx = next(stream)
        batch = batching.collate([data.train.input_ids[i] for i in idx], data.train.labels[idx], pad_id,
                                 word_dropout=tc.word_dropout, generator=gen, keep_ids=special)
        run.samples += len(idx)
        run.tokens += int(batch["n_tokens"])
        run.padded += int(batch["input_ids"].numel())
        batch = to_device(batch, device)
        loss = loss_fn(engine.forward(batch, examples=("train", idx)), batch["labels"], tc.label_smoothing) / tc.grad_accum
        engine.backward(loss)
        total += float(loss.detach())
    total = global_mean(total, device)  # ranks agree on the loss (and so on divergence)
    if not math.isfinite(total) or total > tc.diverge_loss:
        raise Diverged(f"training loss {total} at step {run.step + 1} (lr {engine.current_lr():g})")
    run.window_norms.append(engine.step())
    run.step += 1
    run.train_s += time.perf_counter() - t
    run.window_losses.append(total)
    run.result["train_losses"].append(total)


def _finish(run: _Run, engine: Engine | None, device, data, pad_id, eval_all, curve_idx) -> None:
    res = run.result
    if engine is not None and res["status"] in ("ok", "diverged") and data is not None:
        if res["status"] == "ok" and len(eval_all) == len(curve_idx) and res["history"] \
                and res["history"][-1]["step"] == run.step:
            last = res["history"][-1]
            final_loss, final_acc = last["eval_loss"], last["eval_accuracy"]
        else:
            t = time.perf_counter()
            final_loss, final_acc = evaluate(engine, data.eval, "eval", eval_all, run.cfg.train.eval_batch_size,
                                             pad_id, device, run.cfg.train.label_smoothing)
            run.eval_s += time.perf_counter() - t
        res["final"] = {"step": run.step, "eval_accuracy": final_acc, "eval_loss": final_loss,
                        "eval_size": int(len(eval_all)),
                        "train_loss": res["history"][-1]["train_loss"] if res["history"] else None}
        res["skipped_steps"] = engine.skipped_steps
    if res["history"]:
        best = max(res["history"], key=lambda r: r["eval_accuracy"])
        res["best"] = {"eval_accuracy": best["eval_accuracy"], "step": best["step"]}
    res["throughput"] = {
        "samples_per_s": run.samples / run.train_s if run.train_s else None,
        "tokens_per_s": run.tokens / run.train_s if run.train_s else None,
        "padding_fraction": 1 - run.tokens / run.padded if run.padded else None,
    }
    res["timing"] = {"wall_s": time.time() - run.t0, "train_s": run.train_s, "eval_s": run.eval_s}
    res["memory"] = {"peak_mem_mb": peak_memory_mb(device) if device is not None else None,
                     "device": str(device) if device is not None else None}
    res["finished_at"] = now()
    run.write()


def _close(engine: Engine | None) -> None:
    """Release what an engine holds beyond memory (DeepSpeed: its process group)."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def run_trial(cfg: TrialConfig, report: Report | None = None, *, tokenized_path: str | None = None,
              restore_from: list[str] | str | None = None, scratch_dir: str | None = None) -> dict:
    """Run one trial and return its result (also written to ``results/<sweep>/trials/<id>/result.json``).

    ``report(metrics, checkpoint_dir_or_None)`` is called once per evaluation. An exception inside the
    trial is recorded as status ``failed`` (with the reason) and re-raised so a scheduler may retry it.
    """
    report = report or (lambda metrics, checkpoint=None: None)
    scratch = Path(scratch_dir) if scratch_dir else result_path(cfg.output.dir, cfg.sweep, cfg.trial_id).parent / "ckpt"
    if isinstance(restore_from, (str, Path)):
        restore_from = [str(restore_from)]
    run = _Run(cfg, report, tokenized_path, scratch)
    tc = cfg.train
    device = engine = data = pad_id = None
    eval_all = curve_idx = np.zeros(0, dtype=np.int64)
    try:
        device, pad_id, special, data, engine = _setup(run)
        eval_all = np.arange(len(data.eval.labels))
        curve_idx = eval_all[: cfg.data.curve_eval_size] if cfg.data.curve_eval_size else eval_all
        rank, world = rank_world()  # several ranks (multi-worker trial): each takes its share of every batch
        stream = batching.BatchStream(data.train.lengths, tc.batch_size * world, tc.seed, group_by_length=tc.length_grouping)
        if world > 1:
            stream = ShardedStream(stream, rank, world)
        _restore(run, engine, stream, restore_from or [])
        gen = torch.Generator().manual_seed(tc.seed + 1)
        if run.step == 0:
            run.report(_record_eval(run, engine, data, device, pad_id, curve_idx), None)
        while run.step < tc.max_steps:
            _train_step(run, engine, stream, data, device, pad_id, special, gen)
            if run.step % tc.eval_every == 0 or run.step == tc.max_steps:
                row = _record_eval(run, engine, data, device, pad_id, curve_idx)
                ckpt = None
                if tc.checkpoint_every and run.step % tc.checkpoint_every == 0 and run.step < tc.max_steps:
                    ckpt = _checkpoint(run, engine, stream)
                run.write()
                run.report(row, ckpt)
        run.result["status"] = "ok"
    except Diverged as exc:
        run.result.update(status="diverged", reason=str(exc))
        log.warning("%s diverged: %s", cfg.trial_id, exc)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        run.result.update(status="failed", reason=reason, traceback=traceback.format_exc(limit=20))
        try:
            _finish(run, engine, device, data, pad_id, eval_all, curve_idx)
        finally:
            _close(engine)
        raise
    try:
        _finish(run, engine, device, data, pad_id, eval_all, curve_idx)
    finally:
        _close(engine)
    shutil.rmtree(scratch, ignore_errors=True)
    return run.result
