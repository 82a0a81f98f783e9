"""One trial, end to end, in plain PyTorch. Never imports ray: the sweep hands it a ``report`` callable.

Order (torchtune's recipe): seed → data → model → strategy (trainable set) → apply → log counts →
optimizer over trainable params only → engine → loop (evaluate the validation curve at step 0, every
``eval_every`` steps and at the end) → (``train.load_best``: back to the best validation point's weights) → the
whole validation set (what selection reads) → the test split, once (``test`` and ``predictions.parquet``) →
``result.json``. No test example is seen before that last evaluation.
"""
from __future__ import annotations

import logging
import math
import random
import resource
import shutil
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

import strategies
from harness.config import TrialConfig
from harness.data import batching, tokenize_cache
from harness.data.tokenize_cache import TokenizedData
from harness.results import PREDICTIONS_FILE, new_result, now, result_path, write_json_atomic
from harness.results.schema import Timing
from harness.results.metrics import default_metric, task_of
from harness.results.predictions import write_predictions
from harness.train import prefix_cache
from harness.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from harness.train.distributed import ShardedStream, global_mean, rank_world
from harness.train.engines import Engine, loss_fn, make_engine
from harness.train.engines.base import MODEL_INPUTS, load_trainable_state, trainable_state
from harness.train.evaluate import Evaluation, collate_split, eval_batch_size, evaluate, to_device
from harness.train.export import save_trainable
from harness.train.model import build_model, load_tokenizer, tokenizer_source
from harness.train.precision import resolve as resolve_precision
from harness.train.scheduled import Trainability

__all__ = ["run_trial", "Report", "Diverged", "pick_device", "metric_of"]

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


def metric_of(cfg: TrialConfig) -> str:
    """The trial's selection metric: ``train.metric``, else accuracy (classification) / pearson (regression)."""
    return cfg.train.metric or default_metric(cfg.model.num_labels)


@dataclass
class _Setup:
    device: torch.device
    pad_id: int
    special: set
    data: TokenizedData
    engine: Engine
    curve: str                 # the split the curve reads: "val", or "test" when there is no validation set
    curve_idx: np.ndarray


class _Run:
    """State of one trial; keeps run_trial readable."""

    def __init__(self, cfg: TrialConfig, report: Report, tokenized_path: str | None, scratch: Path):
        self.cfg, self.report, self.scratch = cfg, report, scratch
        self.t0 = time.time()
        self.metric = metric_of(cfg)
        self.result = new_result(cfg)
        self.result["metric"] = {"name": self.metric, "mode": "max", "task": task_of(cfg.model.num_labels)}
        self.tokenized_path = tokenized_path
        self.train_s = self.eval_s = self.test_s = 0.0
        self.samples = self.tokens = self.padded = 0
        self.step = 0
        self.window_losses: list[float] = []
        self.window_norms: list[float] = []
        # fixed costs (result ``timing``, see harness.results.schema.Timing)
        self.times = dict.fromkeys(("setup_s", "data_load_s", "model_load_s", "prefix_s", "checkpoint_s", "write_s"),
                                   0.0)
        self.lengths: list[int] = []   # real lengths of the current step's reviews (cost accounting)
        self.trainability: Trainability | None = None   # the strategy's trainable set per step (set up in _setup)
        self.final_val: Evaluation | None = None   # the whole validation set at the last step, when the curve read it
        self.best: dict | None = None   # train.load_best: {step, score, tensors} of the best curve point so far

    @property
    def path(self) -> Path:
        return result_path(self.cfg.output.dir, self.cfg.sweep, self.cfg.trial_id)

    def write(self) -> None:
        t = time.perf_counter()
        write_json_atomic(self.path, self.result)
        self.times["write_s"] += time.perf_counter() - t


def _setup(run: _Run) -> _Setup:
    t_setup = time.perf_counter()
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
    run.times["data_load_s"] = time.perf_counter() - t_setup
    t_model = time.perf_counter()
    frozen = strategies.freeze(build_model(cfg.model, cfg.train), cfg.strategy.name, cfg.strategy.params)
    model = frozen.model
    log.info("%s: trainable params: %s || all params: %s || trainable%%: %.4f", cfg.trial_id,
             f"{frozen.trainable:,}", f"{frozen.total:,}", 100 * frozen.ratio)
    run.result["params"] = {"trainable": frozen.trainable, "total": frozen.total, "ratio": frozen.ratio}
    model.to(device).train()
    trainability = run.trainability = Trainability(cfg, model, frozen.total)   # a schedule: all it will train, for now
    prefix = prefix_cache.for_trial(cfg, model, frozen.names)  # None unless train.cache_frozen_prefix (may refuse)
    engine = make_engine(model, cfg.train, device, prefix=prefix, lr_decay=cfg.strategy.lr_decay)
    trainability.begin(model)   # the optimizer covers the union; step 0's set is what trains first
    run.times["model_load_s"] = time.perf_counter() - t_model
    if prefix is not None:  # train.shared_prefix: the sweep's frozen-prefix features, computed once, mapped
        t_prefix = time.perf_counter()
        pad = tokenizer.pad_token_id

        def inputs(split, idx):
            batch = collate_split(split, idx, pad)
            return {k: batch[k].to(device) for k in MODEL_INPUTS if k in batch}

        shared = prefix_cache.share_for_trial(cfg, prefix, model, data, inputs, engine.autocast,
                                               eval_batch_size(cfg.train, device))
        if shared["shared"]:
            run.result["shared_prefix"] = shared
        run.times["prefix_s"] = time.perf_counter() - t_prefix
    curve = "val" if len(data.val) else "test"       # no validation set: choices read the test split (optimistic)
    run.result["selected_on"] = "validation" if curve == "val" else "test"
    if cfg.train.load_best and curve == "test":   # the config check refuses val_size 0; a set that came out empty
        run.result.setdefault("warnings", []).append("train.load_best ignored: no validation set (the best point "
                                                     "would be picked on the test split)")
    every = np.arange(len(data.split(curve)))
    curve_idx = every[: cfg.data.curve_eval_size] if cfg.data.curve_eval_size else every
    run.times["setup_s"] = time.perf_counter() - t_setup
    return _Setup(device, tokenizer.pad_token_id, set(tokenizer.all_special_ids), data, engine, curve, curve_idx)


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
        if "trainability" in state:   # schedule position (auto_freeze's depth and gradient norms), cost so far
            run.trainability.load_state_dict(state["trainability"])
        run.best = state.get("best")
        run.result["resumed_from_step"] = run.step
        log.info("%s: resumed from step %d (%s)", run.cfg.trial_id, run.step, folder)
        return
    if restore_from:
        log.warning("%s: no usable checkpoint; starting from scratch", run.cfg.trial_id)
        run.result.setdefault("warnings", []).append("no usable checkpoint; started from scratch")


def _checkpoint(run: _Run, engine: Engine, stream) -> str:
    t = time.perf_counter()
    try:
        return _save_checkpoint(run, engine, stream)
    finally:
        run.times["checkpoint_s"] += time.perf_counter() - t


def _save_checkpoint(run: _Run, engine: Engine, stream) -> str:
    state = {"step": run.step, "engine": engine.state_dict(), "stream": stream.state_dict(), "rng": rng_state(),
             "result": {"history": run.result["history"], "train_losses": run.result["train_losses"]},
             "train_s": run.train_s, "eval_s": run.eval_s, "samples": run.samples, "tokens": run.tokens,
             "padded": run.padded, "trainability": run.trainability.state_dict()}
    if run.best is not None:      # train.load_best: a resumed trial still knows its best point
        state["best"] = run.best
    return str(save_checkpoint(run.scratch / f"step_{run.step:07d}", engine.trainable_state(), state))


def _evaluate(run: _Run, s: _Setup, split: str, idx: np.ndarray) -> Evaluation:
    t = time.perf_counter()
    ev = evaluate(s.engine, s.data.split(split), split, idx, eval_batch_size(run.cfg.train, s.device), s.pad_id,
                  s.device, run.cfg.model.num_labels, run.cfg.train.label_smoothing,
                  pad_to_multiple_of=run.cfg.train.pad_to_multiple_of)
    if split == "test" and s.curve != "test":
        run.test_s += time.perf_counter() - t
    else:
        run.eval_s += time.perf_counter() - t
    return ev


def _record_eval(run: _Run, s: _Setup, last: bool = False) -> dict:
    """One point of the learning curve. At the last step the whole validation set is evaluated once (selection
    reads it) and the curve point is read off it, whether the curve reads all of the set or part of it."""
    if last and s.curve == "val":
        run.final_val = _evaluate(run, s, "val", np.arange(len(s.data.val)))
        whole = len(s.curve_idx) == len(s.data.val)
        ev = run.final_val if whole else run.final_val.subset(s.curve_idx, run.cfg.model.num_labels,
                                                                run.cfg.train.label_smoothing)
    else:
        ev = _evaluate(run, s, s.curve, s.curve_idx)
    engine = s.engine
    row = {
        "step": run.step, "epoch": run.samples / max(1, len(s.data.train)),
        "train_loss": float(np.mean(run.window_losses)) if run.window_losses else None,
        "val_loss": ev.loss, "val_score": ev.score(run.metric), **{f"val_{k}": v for k, v in ev.metrics.items()},
        "lr": engine.current_lr(), "grad_norm": float(np.mean(run.window_norms)) if run.window_norms else None,
        "samples_per_s": run.samples / run.train_s if run.train_s else None,
        "tokens_per_s": run.tokens / run.train_s if run.train_s else None,
        "peak_mem_mb": peak_memory_mb(s.device), "elapsed_s": time.time() - run.t0,
        "skipped_steps": engine.skipped_steps,
    }
    run.window_losses, run.window_norms = [], []
    run.result["history"].append(row)
    return row


def _keep_if_best(run: _Run, s: _Setup, row: dict) -> None:
    """train.load_best: a CPU copy of every parameter the strategy may train, at the best validation point so far
    (strictly better than the kept one: the earliest of ties, as Hugging Face's Trainer keeps it)."""
    if not run.cfg.train.load_best or s.curve != "val":
        return
    score = row["val_score"]
    if not math.isfinite(score) or (run.best is not None and score <= run.best["score"]):
        return
    kept = trainable_state(s.engine.model, run.trainability.ever)
    run.best = {"step": run.step, "score": float(score),
                "tensors": {n: t.to("cpu", copy=True) for n, t in kept.items()}}


def _load_best(run: _Run, s: _Setup) -> None:
    """Go back to the kept best point's weights (an ok trial whose last point is not the best), and record it."""
    best = run.best
    if best is None:
        return
    run.result["loaded_best"] = {"step": best["step"], "score": best["score"]}
    if best["step"] == run.step:
        return
    load_trainable_state(s.engine.model, best["tensors"], run.trainability.ever)
    run.final_val = None     # the last step's evaluation is not of these weights
    log.info("%s: train.load_best: back to step %d (validation %s %.4f)", run.cfg.trial_id, best["step"],
             run.metric, best["score"])


def _train_step(run: _Run, engine: Engine, stream, s: _Setup, gen: torch.Generator) -> None:
    tc = run.cfg.train
    t = time.perf_counter()
    total = 0.0
    for _ in range(tc.grad_accum):
        idx = next(stream)
        batch = collate_split(s.data.train, idx, s.pad_id, word_dropout=tc.word_dropout, generator=gen,
                              keep_ids=s.special, pad_to_multiple_of=tc.pad_to_multiple_of)
        run.samples += len(idx)
        run.tokens += int(batch["n_tokens"])
        run.padded += int(batch["input_ids"].numel())
        run.lengths += batch["attention_mask"].sum(1).tolist()
        batch = to_device(batch, s.device)
        loss = loss_fn(engine.forward(batch, examples=("train", idx)), batch["labels"], tc.label_smoothing) / tc.grad_accum
        engine.backward(loss)
        total += float(loss.detach())
    total = global_mean(total, s.device)  # ranks agree on the loss (and so on divergence)
    if not math.isfinite(total) or total > tc.diverge_loss:
        raise Diverged(f"training loss {total} at step {run.step + 1} (lr {engine.current_lr():g})")
    run.trainability.after_backward(engine.model)   # auto_freeze reads the gradient norms before they are cleared
    run.window_norms.append(engine.step())
    run.step += 1
    run.train_s += time.perf_counter() - t
    run.window_losses.append(total)
    run.result["train_losses"].append(total)


def _record(run: _Run, split: str, ev: Evaluation) -> dict:
    step = run.result["loaded_best"]["step"] if run.result.get("loaded_best") else run.step   # whose weights
    return {"split": split, "step": step, "loss": ev.loss, "score": ev.score(run.metric),
            "metrics": dict(ev.metrics), "size": int(len(ev.example_ids))}


def _final_evaluations(run: _Run, s: _Setup) -> None:
    """The whole validation set (selection reads it), then the test split, once, with its predictions."""
    res = run.result
    if res["status"] == "ok":
        _load_best(run, s)
    if s.curve == "val":
        # an ok trial evaluated the whole set with the curve's last point, at these weights; otherwise evaluate now
        current = run.final_val is not None and res["status"] == "ok"
        res["val"] = _record(run, "val", run.final_val if current else
                             _evaluate(run, s, "val", np.arange(len(s.data.val))))
    test = _evaluate(run, s, "test", np.arange(len(s.data.test)))
    res["test"] = _record(run, "test", test)
    if s.curve == "test":
        res["val"] = None
    t = time.perf_counter()
    write_predictions(run.path.parent / PREDICTIONS_FILE, test.example_ids, test.labels, test.predictions,
                      test.outputs if run.cfg.model.num_labels > 1 else None)
    run.times["write_s"] += time.perf_counter() - t
    res["predictions"] = PREDICTIONS_FILE


def _finish(run: _Run, s: _Setup | None) -> None:
    res = run.result
    if s is not None and res["status"] in ("ok", "diverged"):
        _final_evaluations(run, s)
        res["skipped_steps"] = s.engine.skipped_steps
        if res["status"] == "ok" and run.cfg.output.save_model != "none" and rank_world()[0] == 0:
            t = time.perf_counter()
            res["weights"] = save_trainable(s.engine, run.path.parent)   # exported by the sweep at its end
            run.times["write_s"] += time.perf_counter() - t
    if res["history"]:
        best = max(res["history"], key=lambda r: r["val_score"] if r["val_score"] == r["val_score"] else -math.inf)
        res["best"] = {"score": best["val_score"], "step": best["step"]}
    if s is not None and run.trainability is not None:
        res["cost"] = run.trainability.summary(s.engine.model, getattr(s.engine, "prefix", None))
    res["throughput"] = {
        "samples_per_s": run.samples / run.train_s if run.train_s else None,
        "tokens_per_s": run.tokens / run.train_s if run.train_s else None,
        "padding_fraction": 1 - run.tokens / run.padded if run.padded else None,
        "precision": run.cfg.train.precision,     # what train.precision (auto) ran at on this machine
    }
    res["timing"] = Timing(wall_s=time.time() - run.t0, train_s=run.train_s, eval_s=run.eval_s, test_s=run.test_s,
                           **run.times)
    device = s.device if s is not None else None
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

    ``report(metrics, checkpoint_dir_or_None)`` is called once per evaluation of the validation curve. An
    exception inside the trial is recorded as status ``failed`` (with the reason) and re-raised so a scheduler
    may retry it.
    """
    report = report or (lambda metrics, checkpoint=None: None)
    scratch = Path(scratch_dir) if scratch_dir else result_path(cfg.output.dir, cfg.sweep, cfg.trial_id).parent / "ckpt"
    if isinstance(restore_from, (str, Path)):
        restore_from = [str(restore_from)]
    run = _Run(cfg, report, tokenized_path, scratch)   # the result records the config as written (precision auto)
    tc = cfg.train
    s: _Setup | None = None
    try:
        precision = resolve_precision(cfg.train.precision, pick_device(cfg.train.device))
        if precision != cfg.train.precision:   # everything below (engine, prefix cache key) sees the concrete one
            run.cfg = cfg = replace(cfg, train=replace(cfg.train, precision=precision))
            tc = cfg.train
            log.info("%s: train.precision auto -> %s", cfg.trial_id, precision)
        s = _setup(run)
        rank, world = rank_world()  # several ranks (multi-worker trial): each takes its share of every batch
        stream = batching.BatchStream(s.data.train.lengths, tc.batch_size * world, tc.seed,
                                      group_by_length=tc.length_grouping)
        if world > 1:
            stream = ShardedStream(stream, rank, world)
        _restore(run, s.engine, stream, restore_from or [])
        gen = torch.Generator().manual_seed(tc.seed + 1)
        if run.step == 0:
            run.report(_record_eval(run, s), None)
        while run.step < tc.max_steps:
            run.trainability.before_step(s.engine.model, run.step)   # the schedule's set for this step
            run.lengths = []
            _train_step(run, s.engine, stream, s, gen)
            run.trainability.after_step(s.engine.model, run.step, run.lengths,
                                        cached=getattr(s.engine, "prefix", None) is not None)
            if run.step % tc.eval_every == 0 or run.step == tc.max_steps:
                row = _record_eval(run, s, last=run.step == tc.max_steps)
                _keep_if_best(run, s, row)
                ckpt = None
                if tc.checkpoint_every and run.step % tc.checkpoint_every == 0 and run.step < tc.max_steps:
                    ckpt = _checkpoint(run, s.engine, stream)
                run.write()
                run.report(row, ckpt)
        run.result["status"] = "ok"
    except Diverged as exc:
        run.result.update(status="diverged", reason=str(exc))
        log.warning("%s diverged: %s", cfg.trial_id, exc)
    except BaseException as exc:
        if not (isinstance(exc, SystemExit) and not exc.code):   # SystemExit(0): the runner stops or pauses the
            reason = f"{type(exc).__name__}: {exc}"               # trial (ASHA, HyperBand): it stays "running"
            run.result.update(status="failed", reason=reason, traceback=traceback.format_exc(limit=20))
        try:
            _finish(run, s)
        finally:
            _close(s.engine if s is not None else None)
        raise
    try:
        _finish(run, s)
    finally:
        _close(s.engine if s is not None else None)
    shutil.rmtree(scratch, ignore_errors=True)
    return run.result
