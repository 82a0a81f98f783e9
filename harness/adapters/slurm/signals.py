"""Graceful stop for the sweep driver: SIGTERM or SIGUSR1 makes Ray Tune save the sweep state and return.

SLURM sends SIGTERM on ``scancel``, ``scontrol requeue``, preemption and at the time limit (``KillWait``
seconds before SIGKILL); ``slurm/sweep.sbatch`` forwards its ``--signal=B:USR1@...`` warning as SIGTERM.
What Ray 2.x does on its own:

* Tune (``tune.run``, under ``Tuner.fit``) handles SIGINT and SIGUSR1: it leaves its loop, snapshots the
  experiment state (``runner.checkpoint(force=True, wait=True)``), stops the trials and returns normally.
* SIGTERM is *not* handled by Tune; ``ray.init`` installs ``sys.exit`` for it, which unwinds through Tune's
  loop without the final snapshot.

:func:`graceful_stop` routes SIGTERM (and SIGUSR1 outside Tune's loop) to Tune's handler, so every stop
signal ends in a saved state. Trials keep what they checkpointed (``train.checkpoint_every``); finished
trials are never rerun. The driver then exits with :data:`EXIT_INTERRUPTED`; ``--resume`` continues.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator

__all__ = ["EXIT_INTERRUPTED", "StopRequest", "graceful_stop"]

EXIT_INTERRUPTED = 3          # harness.sweep's exit code for "stopped by a signal; state saved; use --resume"
_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequest:
    """What :func:`graceful_stop` saw: the first stop signal's name, or None."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def interrupted(self, grid) -> bool:
        """A signal arrived, or Tune returned with trials neither finished nor errored (SIGUSR1/SIGINT that
        went straight to Tune's own handler)."""
        return self.requested or grid is None or grid.num_terminated + grid.num_errors < len(grid)


@contextlib.contextmanager
def graceful_stop(console: Callable[[str], None] = print) -> Iterator[StopRequest]:
    """Within the block (``Tuner.fit``), SIGTERM/SIGUSR1 ask Tune to save its state and return. A signal that
    arrives while Tune's loop is not running raises ``KeyboardInterrupt`` there (nothing to save yet)."""
    stop = StopRequest()

    def handler(signum, frame):
        name = signal.Signals(signum).name
        first = stop.signal is None
        stop.signal = stop.signal or name
        tune_handler = signal.getsignal(signal.SIGUSR1)   # Tune installs its stop handler on SIGUSR1 in fit()
        if callable(tune_handler) and tune_handler is not handler:
            if first:
                console(f"{name} received: Ray Tune saves the sweep state and stops (resume with --resume)")
            tune_handler(signal.SIGUSR1, frame)
            return
        raise KeyboardInterrupt(f"{name} received before Ray Tune started")

    previous = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    for sig in _SIGNALS:
        signal.signal(sig, handler)
    try:
        yield stop
    except KeyboardInterrupt:
        if not stop.requested:
            raise
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
