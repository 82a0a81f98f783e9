"""Live console progress for a sweep: a status line on trial ends (each one, but at most one every
``min_interval_s`` in a sweep of many short trials; failures, the last trial and, at debug level, every trial always) and every ``every_s``
seconds while trials run, with done / running / pending / failed, elapsed time, an ETA from the finished trials' durations and
the best validation score so far per strategy. ``logging.level: debug`` adds one line per evaluation and per
trial start. When stdout is a terminal the status line between those events is redrawn in place (a live bar).
"""
from __future__ import annotations

import sys
import time
from typing import Callable

from ray import tune

from harness.adapters.ray.common import ALREADY_FINISHED

__all__ = ["ProgressCallback", "trial_key", "format_eta"]

BEST_SHOWN = 4   # strategies named in the status line (the best ones); the rest as "+N more"


def trial_key(trial) -> str:
    """The freezebench trial id of a Tune trial: its name (the trial name creator sets it to the id)."""
    config = trial.config or {}
    return (config.get("trial") or {}).get("trial_id") or str(trial)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA ?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"ETA {h}h{m:02d}m" if h else f"ETA {m}m{s:02d}s" if m else f"ETA {s}s"


class ProgressCallback(tune.Callback):
    """``total``: trials the sweep will run; ``labels``: trial id -> strategy label for the ids known up front
    (a sampled search's trials are labelled by ``label_of`` when they start); ``finished``: results of trials
    that finished before a resume."""

    def __init__(self, total: int, labels: dict[str, str] | None = None, console: Callable[[str], None] = print,
                 finished: dict[str, dict] | None = None, max_steps: dict[str, int] | None = None,
                 label_of: Callable[[object], str] | None = None, debug: bool = False, every_s: float = 30.0,
                 mode: str = "max", live: bool | None = None, min_interval_s: float = 5.0):
        self.total = total
        self.labels = dict(labels or {})
        self.max_steps = dict(max_steps or {})
        self.label_of = label_of
        self.console = console
        self.debug = debug
        self.every_s = every_s
        self.min_interval_s = min_interval_s
        self.resumed = bool(finished)
        self.sign = 1.0 if mode == "max" else -1.0
        self.live = (console is print and sys.stdout.isatty()) if live is None else live
        self.done: dict[str, str] = {}
        self.running: dict[str, float] = {}       # trial id -> start time
        self.progress: dict[str, float] = {}      # running trial id -> fraction of its steps done (last report)
        self.durations: list[float] = []          # wall-clock seconds of the trials that finished here
        self.best: dict[str, tuple[float, str]] = {}   # strategy -> (validation score, trial id)
        self.first_start: float | None = None
        self.t0 = self.last_line = time.time()
        for tid, stored in (finished or {}).items():   # a resumed sweep: trials that finished before it stopped
            self._record(tid, stored.get("status", "ok"), (stored.get("val") or {}).get("score"),
                         stored.get("strategy"))

    # ------------------------------------------------------------------ the line
    def eta(self) -> float | None:
        """Work left / the rate at which work got done here, in trials: finished trials plus the fraction of
        its steps each running trial reported, over the time since the first trial started (that counts the
        gaps between trials - actor start-up, scheduling - as well as the trials' own durations, which alone
        would underestimate a sweep of short trials). Counting the running trials' steps makes the estimate
        fall while long trials run instead of rising until one finishes. None until some work is done."""
        if self.first_start is None:
            return None
        partial = sum(min(0.99, self.progress.get(tid, 0.0)) for tid in self.running)
        done = len(self.durations) + partial
        if done <= 0:
            return None
        rate = done / max(1e-6, time.time() - self.first_start)
        return max(0.0, self.total - len(self.done) - partial) / rate

    def status(self) -> str:
        failed = sum(1 for s in self.done.values() if s == "failed")
        pending = max(0, self.total - len(self.done) - len(self.running))
        line = (f"[{time.time() - self.t0:6.0f}s] {len(self.done) - failed}/{self.total} done, "
                f"{len(self.running)} running, {pending} pending, {failed} failed | {format_eta(self.eta())}")
        if self.best:
            ranked = sorted(self.best.items(), key=lambda kv: -self.sign * kv[1][0])
            shown = ", ".join(f"{label} {score:.4f}" for label, (score, _) in ranked[:BEST_SHOWN])
            more = f" +{len(ranked) - BEST_SHOWN} more" if len(ranked) > BEST_SHOWN else ""
            line += f" | best val: {shown}{more}"
        return line

    def _say(self, text: str) -> None:
        if self.live:
            sys.stdout.write("\r\033[K")
        self.console(text)
        self.last_line = time.time()

    # ------------------------------------------------------------------ bookkeeping
    def _label(self, trial, tid: str) -> str:
        if tid not in self.labels and self.label_of is not None:
            self.labels[tid] = self.label_of(trial)
        return self.labels.get(tid, tid)

    def _record(self, tid: str, status: str, score, label: str | None) -> None:
        self.done[tid] = status
        label = label or self.labels.get(tid, tid)
        if status == "ok" and isinstance(score, float) and score == score:
            if label not in self.best or self.sign * score > self.sign * self.best[label][0]:
                self.best[label] = (score, tid)

    def setup(self, **info):
        if self.resumed:   # once per run: what a resumed sweep already has
            self.resumed = False
            self._say(f"{self.status()} | resumed")

    def on_trial_start(self, iteration, trials, trial, **info):
        tid = trial_key(trial)
        self._label(trial, tid)
        self.running[tid] = time.time()
        self.first_start = self.first_start or self.running[tid]
        if self.debug:
            self._say(f"{self.status()} | started {tid}")

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.running.setdefault(trial_key(trial), time.time())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = trial_key(trial)
        self.running.setdefault(tid, time.time())
        if result.get("done") is True:
            return
        step = result.get("step")
        steps = self.max_steps.get(tid) or (trial.config.get("trial") or {}).get("train", {}).get("max_steps")
        if isinstance(step, int) and isinstance(steps, int) and steps > 0:
            self.progress[tid] = step / steps
        if self.debug:
            acc, loss, sps = result.get("val_score"), result.get("train_loss"), result.get("samples_per_s")
            acc_s = f" val {acc:.4f}" if isinstance(acc, float) else ""
            loss_s = f" loss {loss:.4f}" if isinstance(loss, float) else ""
            speed = f" {sps:.1f} samples/s" if sps else ""
            self._say(f"  {tid} step {result.get('step')}/{steps}{acc_s}{loss_s}{speed}")
        elif time.time() - self.last_line >= self.every_s:
            self._say(self.status())
        elif self.live:
            sys.stdout.write("\r\033[K" + self.status()[:200])
            sys.stdout.flush()

    def _finish(self, trial, timed: bool = True) -> str:
        """Drop the trial from the running set; ``timed``: its run time feeds the ETA."""
        tid = trial_key(trial)
        started = self.running.pop(tid, None)
        self.progress.pop(tid, None)
        if started is not None and timed:
            self.durations.append(time.time() - started)
        return tid

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        if last.get(ALREADY_FINISHED):   # finished after Tune's last snapshot: handed back, not run again
            tid = self._finish(trial, timed=False)
            self._record(tid, last.get("status") or "ok", last.get("final_val_score"), self._label(trial, tid))
            self._say(f"{self.status()} | {tid} had already finished; not rerun")
            return
        tid = self._finish(trial)
        status = last.get("status") or ("ok" if last.get("done") else "stopped early")
        acc = last.get("final_val_score", last.get("val_score"))
        self._record(tid, status, acc, self._label(trial, tid))
        acc_s = f" val {acc:.4f}" if isinstance(acc, float) else ""
        last = len(self.done) >= self.total
        if self.debug or last or len(self.durations) == 1 or status != "ok" or time.time() - self.last_line >= self.min_interval_s:
            self._say(f"{self.status()} | finished {tid}: {status}{acc_s}")
        elif self.live:
            sys.stdout.write("\r\033[K" + self.status()[:200])
            sys.stdout.flush()

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = self._finish(trial)
        self.done[tid] = "failed"
        self._say(f"{self.status()} | FAILED {tid} (see its result.json for the reason)")
