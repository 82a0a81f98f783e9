"""How long a trial will take, relative to the others of its sweep, from its plan alone (no training).

Unit: one encoder layer's forward over one batch row. A step runs the forward through every layer that is
not served from a frozen-prefix cache, and the backward (about twice a forward: input and weight gradients)
through every layer above the lowest trainable one. So ``full`` and ``freeze_attention`` cost ~3·depth per row,
``top_k`` depth + 2k (k + 2k with the cache), ``head_only`` depth (~0 with the cache). Only the ranking
matters: :func:`harness.config.schedule.longest_first` starts the most expensive trials first.
"""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["step_units", "trial_cost", "estimate", "schedule"]


def step_units(depth: int, frozen: int, cached: bool) -> float:
    """Cost of one training row: ``frozen`` = wholly frozen bottom layers (-1: embeddings train)."""
    frozen = max(0, min(frozen, depth))
    backprop = depth - frozen
    forward = backprop if cached else depth
    return forward + 2.0 * backprop + 1.0          # + 1: embeddings / head, so head_only is never free


def trial_cost(steps: int, rows_per_step: int, depth: int, frozen: int, cached: bool) -> float:
    return float(steps) * rows_per_step * step_units(depth, frozen, cached)


def estimate(trials: Iterable[Any], model_cfg: Any = None) -> list[float]:
    """The cost of each trial, on meta-device models (no weights), one per distinct model section."""
    import strategies
    from harness.train.model import build_model

    models: dict[str, Any] = {}
    out = []
    for t in trials:
        cfg = model_cfg or t.model
        key = repr(cfg)
        if key not in models:
            models[key] = build_model(cfg, t.train, meta=True)
        model = models[key]
        names = strategies.trainable_names(model, t.strategy.name, t.strategy.params)
        depth = strategies.num_layers(model)
        frozen = strategies.frozen_prefix_layers(model, names)
        out.append(trial_cost(t.train.max_steps, t.train.batch_size * t.train.grad_accum, depth, frozen,
                              bool(t.train.cache_frozen_prefix)))
    return out


def schedule(trials: list) -> list:
    """``trials`` in the order to start them: longest first by :func:`estimate`; the plan's order where a cost
    cannot be estimated (a strategy or layout that needs weights to count layers)."""
    from harness.config.schedule import longest_first

    try:
        costs = estimate(trials)
    except Exception:  # noqa: BLE001 - ordering is an optimisation, never a reason to fail a sweep
        return list(trials)
    return longest_first(trials, costs)
