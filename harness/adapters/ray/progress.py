"""Live console progress for a sweep: one line per evaluation and per finished trial, with counts and the
best configuration so far."""
from __future__ import annotations

import time

from ray import tune

__all__ = ["ProgressCallback"]


class ProgressCallback(tune.Callback):
    def __init__(self, trials, console=print, finished: dict[str, dict] | None = None):
        self.total = len(trials)
        self.max_steps = {t.trial_id: t.train.max_steps for t in trials}
        self.labels = {t.trial_id: t.strategy_label for t in trials}
        self.console = console
        self.done: dict[str, str] = {}
        self.running: set[str] = set()
        self.best: tuple[float, str] | None = None
        self.t0 = time.time()
        for tid, stored in (finished or {}).items():   # a resumed sweep: trials that finished before it stopped
            self._record(tid, stored.get("status", "ok"), (stored.get("val") or stored.get("test") or {}).get("score"))

    def _id(self, trial) -> str:
        return trial.config["trial"]["trial_id"]

    def _counts(self) -> str:
        pending = self.total - len(self.done) - len(self.running)
        best = f" | best so far {self.best[1]} val {self.best[0]:.4f}" if self.best else ""
        return (f"[{time.time() - self.t0:6.0f}s] {len(self.done)}/{self.total} done, {len(self.running)} running, "
                f"{max(0, pending)} pending{best}")

    def _record(self, tid: str, status: str, acc) -> None:
        self.done[tid] = status
        if status == "ok" and isinstance(acc, float) and (self.best is None or acc > self.best[0]):
            self.best = (acc, tid)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(self._id(trial))
        self.console(f"{self._counts()} | started {self._id(trial)}")

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.running.add(self._id(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self._id(trial)
        self.running.add(tid)
        if result.get("done") is True:
            return
        acc = result.get("val_score")
        sps = result.get("samples_per_s")
        speed = f" {sps:.1f} samples/s" if sps else ""
        loss = result.get("train_loss")
        loss_s = f" loss {loss:.4f}" if isinstance(loss, float) else ""
        self.console(f"  {tid} step {result.get('step')}/{self.max_steps.get(tid)} val {acc:.4f}{loss_s}{speed}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = self._id(trial)
        self.running.discard(tid)
        last = trial.last_result or {}
        status = last.get("status") or ("ok" if last.get("done") else "stopped early")
        acc = last.get("final_val_score", last.get("val_score"))
        self._record(tid, status, acc)
        acc_s = f" val {acc:.4f}" if isinstance(acc, float) else ""
        self.console(f"{self._counts()} | finished {tid}: {status}{acc_s}")

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = self._id(trial)
        self.running.discard(tid)
        self.done[tid] = "failed"
        self.console(f"{self._counts()} | FAILED {tid} (see its result.json for the reason)")
