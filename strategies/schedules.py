"""Trainability schedules: strategies whose trainable set changes during the run.

Each is a pure function ``fn(layout, step, state, **params) -> frozenset[str]`` of the model's
:class:`Layout` (its parameter names grouped by depth, from the parameter roles), the optimizer step about to be
taken (0-based: ``step`` steps are done) and an integer ``state`` that only the schedule's ``update`` changes
(auto_freeze's frozen depth; 0 for the others). Its docstring is its method card. The trial asks for the set
before every step; :class:`Schedule` binds one to a model and validated params.

Depth blocks, bottom to top: block 0 = the embeddings (with the parameters every layer reads, DeBERTa's
relative positions), block 1 + i = encoder layer i; the *head* (pooler, classifier, anything with no layer)
is never frozen by a schedule. "Frozen depth d" = blocks 0..d-1 frozen.

Every schedule's sets lie within the union of its first and last step's sets (they only grow, only shrink, or
switch once): the optimizer is built over that union (:meth:`Schedule.ever`), so a parameter that starts to
train enters it with no state and the group's current lr, and a frozen one (``requires_grad`` False, grad
None) gets no update, decay or momentum: torch's AdamW skips parameters whose ``.grad`` is None.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Mapping, Optional

from pydantic import Field
from torch import nn

from strategies.registry import StrategyError, UnknownStrategyError, register_schedule, resolve, validate_params
from strategies.roles import Layout, layout_of

__all__ = ["Layout", "layout_of", "Schedule", "gradual_unfreeze", "progressive_freeze", "lp_ft", "auto_freeze",
           "relative_change"]

Steps = Annotated[int, Field(gt=0)]


# ------------------------------------------------------------------------------------------------ schedules
@register_schedule("gradual_unfreeze")
def gradual_unfreeze(layout: Layout, step: int, state: int, every: Steps = 10, group: Steps = 1) -> frozenset[str]:
    """Head first, then one group of `group` encoder layers from the top every `every` steps, embeddings last.

    Source: Howard & Ruder 2018, ULMFiT ("gradual unfreezing"; fastai's ``freeze_to``). Steps 0..every-1 train
    the head (pooler + classifier); after k·every steps the top k·group layers train too; once every layer
    trains, the embeddings follow. Caveat: a short run may never reach the bottom (then it is top_k-like);
    each newly unfrozen parameter starts with fresh AdamW state at the current scheduled lr.
    """
    groups = math.ceil(layout.depth / group)
    stage = min(step // every, groups + 1)
    layers = min(stage * group, layout.depth)
    frozen = layout.depth + 1 - layers - (1 if stage > groups else 0)
    return layout.above(frozen)


@register_schedule("progressive_freeze")
def progressive_freeze(layout: Layout, step: int, state: int,
                       start: Annotated[float, Field(ge=0, lt=1)] = 0.5,
                       level: Annotated[float, Field(gt=0, le=1)] = 1.0) -> frozenset[str]:
    """Bottom-up freezing: from `start` of the run, blocks stop training one after another, embeddings first.

    Source: Brock et al. 2017, FreezeOut (layer i stops at a time growing with i); the schedule is composer's
    ``LayerFreezing`` (freeze_start, freeze_level): after a fraction t >= start of max_steps, the bottom
    floor(level · (depth + 1) · (t - start) / (1 - start)) blocks (embeddings, then layers 0, 1, ...) are frozen,
    so with level 1 only the head trains at the end. Caveat: a frozen block's activations need no autograd, so
    its backward is saved; the head never freezes.
    """
    if not layout.max_steps:
        return layout.above(0)
    t = step / layout.max_steps
    if t < start:
        return layout.above(0)
    frozen = math.floor(level * (layout.depth + 1) * (t - start) / (1 - start) + 1e-9)
    return layout.above(min(frozen, layout.depth + 1))


def _check_lp_ft(hf_config: Any, probe_steps: int, then: str, then_params: dict) -> None:
    try:
        inner = resolve(then)
    except UnknownStrategyError as exc:
        raise StrategyError(str(exc).split(": ", 1)[-1], "strategy.params.then") from None
    if inner.schedule:
        raise StrategyError(f"must name a static strategy (full, freeze_attention, top_k, ...), got {then!r}",
                            "strategy.params.then")
    try:
        valid = validate_params(then, then_params)
        if inner.check is not None:
            inner.check(hf_config, **valid)
    except StrategyError as exc:   # strategy.params.k of `then` is strategy.params.then_params.k here
        path = exc.path.replace("strategy.params", "strategy.params.then_params", 1)
        raise StrategyError(str(exc)[len(exc.path) + 2:] if exc.path else str(exc), path) from None


def _prepare_lp_ft(model: nn.Module, probe_steps: int = 50, then: str = "full",
                   then_params: dict = {}) -> nn.Module:  # noqa: B006
    inner = resolve(then)
    return inner.transform(model, **validate_params(then, then_params)) if inner.transform else model


@register_schedule("lp_ft", transform=_prepare_lp_ft, check=_check_lp_ft)
def lp_ft(layout: Layout, step: int, state: int, probe_steps: Steps = 50, then: str = "full",
          then_params: dict = {}) -> frozenset[str]:  # noqa: B006
    """Linear probing, then fine-tuning: the classifier alone for `probe_steps` steps, then strategy `then`.

    Source: Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution"
    (LP-FT). `then` is any static strategy (default full) with `then_params`. Caveat: the lr schedule runs over
    the whole run, so the fine-tuning phase starts at the decayed lr of step `probe_steps`; the probe's head
    enters fine-tuning with its AdamW state, the rest with none.
    """
    if step < probe_steps:
        return layout.classifier
    return resolve(then)(layout.model, then_params)


def relative_change(prev: float, cur: float) -> float:
    """|cur - prev| / prev: AutoFreeze's gradient-norm change between two intervals (inf when prev is 0)."""
    return abs(cur - prev) / prev if prev > 0 else math.inf


def _auto_update(layout: Layout, step: int, state: int, stats: Mapping[str, Any], check_every: int = 10,
                 threshold: float = 0.1, max_frozen: Optional[int] = None) -> int:
    """At a check step: freeze the lowest still-training block if its gradient-norm change fell below threshold.
    ``stats``: ``prev``/``cur``, the per-block mean gradient norms of the last two check intervals."""
    limit = layout.depth + 1 if max_frozen is None else min(max_frozen, layout.depth + 1)
    if step % check_every or state >= limit or stats.get("prev") is None:
        return state
    prev, cur = stats["prev"][state], stats["cur"][state]
    return state + 1 if relative_change(prev, cur) < threshold else state


@register_schedule("auto_freeze", update=_auto_update)
def auto_freeze(layout: Layout, step: int, state: int, check_every: Steps = 10,
                threshold: Annotated[float, Field(gt=0)] = 0.1,
                max_frozen: Optional[Annotated[int, Field(ge=1)]] = None) -> frozenset[str]:
    """Adaptive bottom-up freezing: the lowest training block freezes once its gradient norm stops changing.

    Every `check_every` steps the lowest still-training block freezes when its mean gradient norm changed by
    less than `threshold` (relative) between the last two intervals of `check_every` steps.

    Source: Liu et al. 2021, "AutoFreeze: Automatically Freezing Model Blocks to Accelerate Fine-tuning" (freezes
    converged front blocks, up to 2.55x faster BERT fine-tuning). The state is the frozen depth (checkpointed);
    blocks: embeddings, then each encoder layer; the head never freezes; `max_frozen` caps the depth. Caveat: a
    block whose norm is noisy (small batches) may never freeze; AutoFreeze's own test is a percentile rule
    over all layers, this one the per-block relative change.
    """
    return layout.above(state)


# --------------------------------------------------------------------------------------------- binding
class Schedule:
    """A strategy bound to a prepared model and validated params: the trainable set at any (step, state).

    Static strategies are schedules that never change (``static``)."""

    def __init__(self, model: nn.Module, name: str, params: Mapping[str, Any] | None, max_steps: int):
        self.strategy = resolve(name)
        self.params = validate_params(name, params)
        self.static = not self.strategy.schedule
        self.max_steps = max_steps
        self.layout = None if self.static else layout_of(model, max_steps)
        self._fixed = self.strategy(model, self.params) if self.static else None

    @property
    def needs_stats(self) -> bool:
        return self.strategy.update is not None

    @property
    def check_every(self) -> int:
        return int(self.params.get("check_every", 0)) if self.needs_stats else 0

    def trainable(self, step: int, state: int = 0) -> frozenset[str]:
        if self.static:
            return self._fixed
        names = self.strategy.fn(self.layout, step, state, **self.params)
        if not names:
            raise StrategyError(f"strategy {self.strategy.name!r} selected no trainable parameters at step {step}")
        return names

    def update(self, step: int, state: int, stats: Mapping[str, Any]) -> int:
        if self.strategy.update is None:
            return state
        return int(self.strategy.update(self.layout, step, state, stats, **self.params))

    def ever(self) -> frozenset[str]:
        """Every parameter the schedule can train in this run (union of the first and last steps' sets)."""
        return self.trainable(0) | self.trainable(self.max_steps)
