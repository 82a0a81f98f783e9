"""What a trial's training actually cost: model FLOPs of its steps and the mean trainable ratio over steps.

The FLOP count is the benchmark's (``benchmarks/trial_throughput``, which imports it from here), per batch from
the real (unpadded) lengths: forward 2·in·out per token for every Linear (pooler and classifier per review) +
4·h·Σlᵢ² for attention scores and values; backward 2·in·out per token for each Linear whose input needs a
gradient (activation gradients stop at the lowest trainable layer) plus the same for each Linear whose weight
trains, and 4·h·Σlᵢ² per attention half (dP,dV / dQ,dK) that needs it. Which Linears need what is read off
autograd itself (:func:`linear_plan`: a hooked forward on a few tokens), not assumed, so a schedule's frozen
bottom, which autograd never records (no parameter below it requires a gradient), costs its forward only.
Embedding look-ups, norms and softmax are not counted (as in MFU conventions). Hand-written: no well-kept
library counts FLOPs per trainable set with real lengths (fvcore/torch's FlopCounterMode count one traced
shape and not which gradients autograd skips).

How long a trial will take, relative to the others of its sweep (:func:`schedule`):

Unit: one encoder layer's forward over one batch row. A step runs the forward through every layer that is
not served from a frozen-prefix cache, and the backward (about twice a forward: input and weight gradients)
through every layer above the lowest trainable one. So ``full`` and ``freeze_attention`` cost ~3·depth per row,
``top_k`` depth + 2k (k + 2k with the cache), ``head_only`` depth (~0 with the cache). Only the ranking
matters: :func:`harness.config.schedule.longest_first` starts the most expensive trials first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

import strategies
from harness.config.schedule import longest_first
from harness.train.model import build_model

__all__ = ["linear_plan", "batch_flops", "cached_flops", "CostMeter", "step_units", "trial_cost", "estimate",
           "schedule"]


def _layer_of(name: str) -> int | None:
    parts = name.split(".layer.", 1)
    return int(parts[1].split(".", 1)[0]) if len(parts) == 2 else None


def linear_plan(model: torch.nn.Module) -> dict:
    """Per Linear (name, in, out): does its input / output need a gradient, does its weight train? Read off
    autograd on a tiny hooked forward with the model's current ``requires_grad`` flags, in eval mode (no dropout
    draws, so the RNG stream of the run is untouched)."""
    seen: dict[str, tuple[bool, bool]] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, (args[0].requires_grad,
                                                                                   out.requires_grad)))
             for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        token = min(1000, int(getattr(model.config, "vocab_size", 2)) - 1)
        model(input_ids=torch.full((2, 8), token, device=device),
              attention_mask=torch.ones(2, 8, dtype=torch.int64, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    linears = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and name in seen:
            linears.append({"name": name, "in": mod.in_features, "out": mod.out_features,
                            "per_token": ".layer." in name, "layer": _layer_of(name),
                            "in_grad": seen[name][0], "out_grad": seen[name][1],
                            "w_grad": mod.weight.requires_grad})
    layers = sorted({x["layer"] for x in linears if x["layer"] is not None})
    attention = []
    for i in layers:
        own = {x["name"].split(f".layer.{i}.", 1)[1]: x for x in linears if x["layer"] == i}
        q = next((v for k, v in own.items() if k.endswith(("self.query", "q_lin", "query_proj"))), None)
        o = next((v for k, v in own.items() if k.endswith(("attention.output.dense", "out_lin"))), None)
        if q is None or o is None:   # a layout without a table (model.roles): its Linears count, QKᵀ/PV do not
            continue
        attention.append({"layer": i, "pv_grad": o["in_grad"], "qk_grad": q["out_grad"]})
    return {"linears": linears, "attention": attention, "hidden": model.config.hidden_size}


def batch_flops(plan: dict, lengths: Iterable[int], layers: set[int] | None = None, backward: bool = True) -> float:
    """Model FLOPs of one batch with real lengths ``lengths`` (see the module docstring). ``layers`` limits the
    count to those encoder layers (and, if ``None`` is among them, to the head)."""
    lengths = [int(n) for n in lengths]
    tokens = float(sum(lengths))
    sq = float(sum(n * n for n in lengths))
    rows = float(len(lengths))
    total = 0.0
    for x in plan["linears"]:
        if layers is not None and x["layer"] not in layers:
            continue
        one = 2.0 * (tokens if x["per_token"] else rows) * x["in"] * x["out"]
        total += one * (1 + (backward and x["in_grad"]) + (backward and x["w_grad"]))
    for a in plan["attention"]:
        if layers is not None and a["layer"] not in layers:
            continue
        one = 4.0 * plan["hidden"] * sq       # QKᵀ and PV, 2·l²·h each
        total += one * (1 + (backward and a["pv_grad"]) + (backward and a["qk_grad"]))
    return total


def cached_flops(plan: dict, frozen: int, batches: Iterable[Iterable[int]], fills: dict) -> float:
    """FLOPs of steps run on a frozen-prefix cache: the trainable top per step plus the frozen prefix once per
    training review the cache had to compute (``fills``: the cache's ``stats["train"]``)."""
    depth = len(plan["attention"])
    head = [x for x in plan["linears"] if x["layer"] is None]
    # everything frozen but the classifier: the cache holds the pooler's output, the pooler ran in the prefix
    in_prefix = {x["name"] for x in head if frozen == depth and not x["w_grad"] and not x["in_grad"]}
    suffix = {**plan, "linears": [x for x in plan["linears"] if x["name"] not in in_prefix]}
    total = sum(batch_flops(suffix, b, layers=set(range(frozen, depth)) | {None}) for b in batches)
    per_token = sum(2.0 * x["in"] * x["out"] for x in plan["linears"] if x["layer"] is not None and x["layer"] < frozen)
    per_review = sum(2.0 * x["in"] * x["out"] for x in head if x["name"] in in_prefix)
    return (total + per_token * fills["tokens"] + 4.0 * plan["hidden"] * frozen * fills["sq_tokens"]
            + per_review * fills["computed"])


@dataclass
class CostMeter:
    """Running totals of a trial's training cost (checkpointed with the trial: :meth:`state_dict`)."""

    total_params: int
    ratio_sum: float = 0.0          # Σ over steps of trainable/total
    steps: int = 0
    flops: float = 0.0              # uncached steps: counted per step with the plan of the step's trainable set
    cached_lengths: list = field(default_factory=list)   # cached steps: lengths per batch, counted at the end
    _plans: dict = field(default_factory=dict, repr=False)

    def add_step(self, model: torch.nn.Module, names: frozenset[str], trainable: int, lengths: list[int],
                 cached: bool) -> None:
        self.ratio_sum += trainable / self.total_params if self.total_params else 0.0
        self.steps += 1
        if cached:
            self.cached_lengths.append([int(n) for n in lengths])
            return
        if names not in self._plans:
            self._plans[names] = linear_plan(model)
        self.flops += batch_flops(self._plans[names], lengths)

    def summary(self, model: torch.nn.Module, prefix: Any = None) -> dict:
        """``cost`` of the result: mean trainable ratio over steps and training FLOPs spent."""
        flops = self.flops
        if self.cached_lengths and prefix is not None:
            flops += cached_flops(linear_plan(model), prefix.plan.layers, self.cached_lengths, prefix.stats["train"])
        return {"trainable_ratio_mean": self.ratio_sum / self.steps if self.steps else None,
                "train_flops": flops, "steps": self.steps}

    def state_dict(self) -> dict:
        return {"ratio_sum": self.ratio_sum, "steps": self.steps, "flops": self.flops,
                "cached_lengths": self.cached_lengths}

    def load_state_dict(self, state: dict) -> None:
        self.ratio_sum, self.steps, self.flops = float(state["ratio_sum"]), int(state["steps"]), float(state["flops"])
        self.cached_lengths = [list(b) for b in state["cached_lengths"]]


# ---- scheduling: the relative cost of a planned trial ----------------------------------------------------


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
    try:
        costs = estimate(trials)
    except Exception:  # noqa: BLE001 - ordering is an optimisation, never a reason to fail a sweep
        return list(trials)
    return longest_first(trials, costs)
