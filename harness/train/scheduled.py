"""The trial's side of a trainability schedule (:mod:`strategies.schedules`): which parameters train at each step.

Design (the simplest that is correct): the optimizer is built over every parameter the schedule will ever train
(:meth:`strategies.Schedule.ever`), and before each step ``requires_grad`` is set for exactly the scheduled set.
A parameter outside it has ``.grad`` None (``zero_grad(set_to_none=True)`` after every step), which torch's
AdamW skips entirely: no update, no weight decay, no moment update, and no state until its first gradient, so
a parameter that starts to train enters with fresh state and its group's current (scheduled) lr. Autograd never
records the frozen bottom (nothing below it requires a gradient), so it runs without backward: the compute
saving of progressive_freeze / auto_freeze is real, and :mod:`harness.train.cost` counts it from autograd.

Static strategies pass through unchanged (one set from the first step to the last). The position in the
schedule (auto_freeze's frozen depth, its gradient-norm intervals) and the cost so far are checkpointed
(:meth:`state_dict`), so a resumed run continues exactly where the interrupted one was.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch

import strategies
from harness.config import ConfigError, TrialConfig
from harness.train.cost import CostMeter

__all__ = ["Trainability", "check_schedule"]

log = logging.getLogger("freezebench.trial")


def check_schedule(train: Any, resources: Any, name: str, where: str = "strategy.name") -> None:
    """Refuse what a changing trainable set cannot run with (DeepSpeed builds its partitions and DDP its
    reducer once, over the parameters that train at start; the prefix cache over one frozen bottom)."""
    if not strategies.resolve(name).schedule:
        return
    if train.backend == "deepspeed":
        raise ConfigError(where, f"{name!r} changes the trainable set during the run, which the deepspeed engine "
                                 "cannot follow (its optimizer partitions are built once); use train.backend: torch")
    if getattr(resources, "workers_per_trial", 1) > 1:
        raise ConfigError(where, f"{name!r} changes the trainable set during the run, which DDP (resources."
                                 "workers_per_trial > 1) cannot follow; use one worker per trial")
    if train.cache_frozen_prefix:
        raise ConfigError(where, f"{name!r} changes the trainable set during the run; train.cache_frozen_prefix "
                                 "caches one fixed frozen bottom: leave it off (the frozen bottom of a schedule "
                                 "already runs without autograd)")


class Trainability:
    """The strategy's trainable set per step, applied to the model, and the trial's cost accounting."""

    def __init__(self, cfg: TrialConfig, model: torch.nn.Module, total: int):
        check_schedule(cfg.train, cfg.resources, cfg.strategy.name)
        self.schedule = strategies.Schedule(model, cfg.strategy.name, cfg.strategy.params, cfg.train.max_steps)
        self.meter = CostMeter(total)
        self.numel = {n: strategies.param_numel(p) for n, p in model.named_parameters()}
        self.state = 0                                   # auto_freeze: the frozen depth
        self.norms: dict[str, Any] = {"sum": None, "count": 0, "prev": None}   # per-block gradient norms
        self.changes: list[dict] = []                    # (step, trainable, state) each time the set changed
        self.current = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
        self.recorded: frozenset[str] | None = None     # the set of the last entry of ``changes``
        if not self.schedule.static:
            self.current = self.schedule.ever()
            strategies.apply_trainable(model, self.current)   # what the optimizer must cover
        self.ever: frozenset[str] = self.current             # every parameter that may train in this run

    def begin(self, model: torch.nn.Module) -> None:
        """After the engine is built: step 0's set is what trains first."""
        self.before_step(model, 0)

    def before_step(self, model: torch.nn.Module, step: int) -> None:
        names = self.schedule.trainable(step, self.state)
        if names != self.current:
            strategies.apply_trainable(model, names)
            for n, p in model.named_parameters():
                if n not in names:
                    p.grad = None                        # frozen: AdamW skips it (no update, decay or momentum)
            if step:
                log.info("step %d: %s now trains %s parameters (state %d)", step, self.schedule.strategy.name,
                         f"{self._count(names):,}", self.state)
        self.current = names
        if names != self.recorded:
            self.changes.append({"step": step, "trainable": self._count(names), "state": self.state})
            self.recorded = names

    def after_backward(self, model: torch.nn.Module) -> None:
        """auto_freeze: add this step's gradient norm of every block to the interval's sums."""
        if not self.schedule.needs_stats:
            return
        params = dict(model.named_parameters())
        norms = []
        for block in self.schedule.layout.blocks:
            sq = 0.0
            for n in block:
                g = params[n].grad
                if g is not None:
                    sq += float(g.detach().float().pow(2).sum())
            norms.append(math.sqrt(sq))
        total = self.norms["sum"] or [0.0] * len(norms)
        self.norms["sum"] = [a + b for a, b in zip(total, norms)]
        self.norms["count"] += 1

    def after_step(self, model: torch.nn.Module, step: int, lengths: list[int], cached: bool = False) -> None:
        """``step`` steps are done: count the step's cost; at a check step, let the schedule update its state."""
        self.meter.add_step(model, self.current, self._count(self.current), lengths, cached)
        every = self.schedule.check_every
        if not every or step % every or not self.norms["count"]:
            return
        cur = [s / self.norms["count"] for s in self.norms["sum"]]
        self.state = self.schedule.update(step, self.state, {"prev": self.norms["prev"], "cur": cur})
        self.norms = {"sum": None, "count": 0, "prev": cur}

    def summary(self, model: torch.nn.Module, prefix: Any = None) -> dict:
        """The result's ``cost``: mean trainable ratio over steps, training FLOPs, and the schedule's changes."""
        return {**self.meter.summary(model, prefix), "changes": list(self.changes), "final_state": self.state}

    def state_dict(self) -> dict:
        return {"state": self.state, "norms": dict(self.norms), "changes": list(self.changes),
                "meter": self.meter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.state = int(state["state"])
        self.norms = dict(state["norms"])
        self.changes = [dict(c) for c in state["changes"]]
        last = self.changes[-1] if self.changes else None
        self.recorded = self.schedule.trainable(last["step"], last["state"]) if last else None
        self.meter.load_state_dict(state["meter"])

    def _count(self, names: frozenset[str]) -> int:
        return sum(self.numel[n] for n in names)
