"""One W&B run per trial, wrapped around the trial's ``report`` callable so the trial stays W&B-free."""
from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from harness.adapters.wandb.mode import api_keys, process_rank, run_id, salt, scrub, sweep_mode
from harness.adapters.wandb.session import finish_run, finite, init_run
from harness.results import load_result, result_path

__all__ = ["TrialTracker", "EVAL_METRICS", "process_rank"]

log = logging.getLogger("freezebench.wandb")
# result.json history row -> W&B metric (logged at step = optimizer step)
EVAL_METRICS = {"val_score": "val/score", "val_loss": "val/loss", "train_loss": "train/loss",
                "lr": "train/lr", "grad_norm": "train/grad_norm", "epoch": "train/epoch",
                "skipped_steps": "train/skipped_steps", "samples_per_s": "perf/samples_per_s",
                "tokens_per_s": "perf/tokens_per_s", "peak_mem_mb": "perf/peak_mem_mb",
                "elapsed_s": "perf/elapsed_s"}


class TrialTracker:
    """One W&B run per trial, used as a context manager around ``run_trial``::

        with TrialTracker(trial, rank=process_rank()) as tracker:
            run_trial(trial, tracker.wrap(report), ...)

    Every W&B call runs on one background thread: ``wandb.init`` overlaps the trial's set-up, a logged row is
    a queue put, and the trial waits for W&B only at the end, at most ``finish_timeout`` seconds. A no-op when
    the mode is ``disabled`` or ``rank != 0``. On exit the summary comes from the trial's ``result.json``
    (final / best accuracy, parameter counts, status). A W&B error is logged and never fails the trial.
    """

    def __init__(self, trial, *, rank: int = 0, environ=None, finish_timeout: Optional[float] = None):
        self.trial = trial
        self.sweep_dir = Path(trial.output.dir) / trial.sweep
        self.mode = sweep_mode(trial.logging.wandb.mode, self.sweep_dir, environ).mode
        self.active = rank == 0 and self.mode != "disabled"
        self.finish_timeout = finish_timeout if finish_timeout is not None else (
            120.0 if self.mode == "online" else 30.0)
        self.seconds = 0.0          # time the trial itself spent waiting on W&B (queue puts + the final wait)
        self.run_id_used: Optional[str] = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    @property
    def run_id(self) -> str:
        return run_id(self.trial.sweep, self.trial.trial_id, salt(self.sweep_dir))

    # -- trial thread
    def start(self) -> "TrialTracker":
        if self.active and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="freezebench-wandb", daemon=True)
            self._thread.start()
        return self

    def log_eval(self, row: dict) -> None:
        if self._thread is None or not finite(row.get("step")):
            return
        metrics = {name: row[k] for k, name in EVAL_METRICS.items() if finite(row.get(k))}
        metrics.update({f"val/{k[4:]}": v for k, v in row.items()        # val_accuracy, val_f1, ... -> val/accuracy
                        if k.startswith("val_") and k not in ("val_score", "val_loss") and finite(v)})
        self._queue.put(("log", metrics, int(row["step"])))

    def wrap(self, report: Callable) -> Callable:
        """``report(metrics, checkpoint)`` that also queues the row for W&B (before Ray may stop the trial)."""
        def tracked(metrics: dict, checkpoint=None):
            self.log_eval(metrics)
            return report(metrics, checkpoint)
        return tracked

    def finish(self, error: Optional[BaseException] = None) -> None:
        if self._thread is None:
            return
        t = time.perf_counter()
        summary, status = self._summary(error)
        self._queue.put(("finish", summary, 1 if status in ("failed", "interrupted", "unknown") else 0))
        self._thread.join(self.finish_timeout)
        if self._thread.is_alive():
            log.warning("%s: W&B still busy after %.0fs; not waiting for it", self.trial.trial_id, self.finish_timeout)
        self._thread = None
        self.seconds += time.perf_counter() - t
        log.info("%s: W&B %s run %s (trial waited %.2fs on W&B)", self.trial.trial_id, self.mode,
                 self.run_id_used, self.seconds)

    def _summary(self, error: Optional[BaseException]) -> tuple[dict, str]:
        try:
            result = load_result(result_path(self.trial.output.dir, self.trial.sweep, self.trial.trial_id))
        except (OSError, ValueError):
            result = {}
        status = result.get("status") or ("failed" if error else "unknown")
        if error is not None and status == "running":
            status = "interrupted"
        val, test, best, params = (result.get(k) or {} for k in ("val", "test", "best", "params"))
        summary = {"status": status, "reason": result.get("reason") or (repr(error)[:500] if error else None),
                   "metric": (result.get("metric") or {}).get("name"),
                   "val/final_score": val.get("score"), "test/score": test.get("score"), "test/loss": test.get("loss"),
                   **{f"test/{k}": v for k, v in (test.get("metrics") or {}).items()},
                   "test/step": test.get("step"), "test/size": test.get("size"),
                   "best/val_score": best.get("score"), "best/step": best.get("step"),
                   "params/trainable": params.get("trainable"), "params/total": params.get("total"),
                   "params/trainable_ratio": params.get("ratio"),
                   **{f"throughput/{k}": v for k, v in (result.get("throughput") or {}).items()},
                   **{f"timing/{k}": v for k, v in (result.get("timing") or {}).items()}}
        return scrub({k: v for k, v in summary.items() if v is not None}, api_keys()), status

    # -- W&B thread
    def _work(self) -> None:
        t = self.trial
        run = None
        try:
            run = init_run(self.mode, wandb_cfg=t.logging.wandb, sweep_dir=self.sweep_dir, id=self.run_id,
                        name=t.trial_id, group=t.sweep, job_type=t.strategy_label,
                        config=scrub(t.to_dict(), api_keys()))
            self.run_id_used = run.id
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            log.warning("%s: W&B init failed (%s: %s); continuing without W&B", t.trial_id, type(exc).__name__, exc)
        while True:
            op, payload, arg = self._queue.get()
            if run is None:
                if op == "finish":
                    return
                continue
            try:
                if op == "log":
                    run.log(payload, step=arg)
                else:
                    run.summary.update(payload)
                    finish_run(run, exit_code=arg)
                    return
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: W&B %s failed (%s: %s); continuing without W&B", t.trial_id, op,
                            type(exc).__name__, exc)
                if op == "finish":
                    return

    def __enter__(self) -> "TrialTracker":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.finish(exc)
        return False
