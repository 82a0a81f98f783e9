"""Freeze strategies: which parameters of an encoder train (BERT, RoBERTa, XLM-R, CamemBERT, DistilBERT,
ELECTRA, DeBERTa-v2/v3, ModernBERT built in; any other through a ``model.roles`` map, see :mod:`strategies.archs`).

Order of use (freeze before any engine or optimizer exists)::

    params = check_compatible(name, params, hf_config)   # config time, no model
    frozen = freeze(model, name, params)                  # the one freeze step, which does:
    #   model = prepare_model(model, name, params)        # transform in place (LoRA injection), if any
    #   names = trainable_names(model, name, params)      # pure: a frozenset of parameter names
    #   apply_trainable(model, names)                     # requires_grad exactly for those
    #   trainable, total = count_params(model)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from torch import nn

from strategies import builtin as _builtin  # noqa: F401  (registers the built-in strategies)
from strategies import lora as _lora  # noqa: F401  (registers lora)
from strategies import schedules as _schedules  # noqa: F401  (registers the trainability schedules)
from strategies.registry import (Strategy, StrategyError, UnknownStrategyError, available, check_compatible,
                                 register, register_schedule, resolve, summary, validate_params)
from strategies.schedules import Layout, Schedule, layout_of
from strategies.archs import Arch, RoleMap, arch_for
from strategies.roles import (ROLES, SUPPORTED_TYPES, ParamInfo, UnmappedParameterError, frozen_prefix_layers,
                              num_layers, param_numel, param_roles, require_arch)

__all__ = [
    # registry
    "Strategy", "StrategyError", "UnknownStrategyError", "register", "resolve", "available", "summary",
    "validate_params", "check_compatible", "register_schedule",
    # schedules (trainable sets that change with the step)
    "Schedule", "Layout", "layout_of",
    # roles
    "ROLES", "SUPPORTED_TYPES", "ParamInfo", "UnmappedParameterError", "param_roles", "num_layers",
    "frozen_prefix_layers", "require_arch",
    # architectures
    "Arch", "RoleMap", "arch_for",
    # applying
    "prepare_model", "trainable_names", "apply_trainable", "count_params", "freeze", "Frozen",
]


def prepare_model(model: nn.Module, name: str, params: Mapping[str, Any] | None = None) -> nn.Module:
    """Run strategy ``name``'s transform (e.g. LoRA injection) on ``model`` in place; returns the model."""
    strategy = resolve(name)
    valid = validate_params(name, params)
    if strategy.transform is not None:
        model = strategy.transform(model, **valid)
    return model


def trainable_names(model: nn.Module, name: str, params: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The trainable parameter names strategy ``name`` selects on a prepared ``model``; never empty."""
    names = resolve(name)(model, params)
    if not isinstance(names, frozenset):
        raise StrategyError(f"strategy {name!r} returned {type(names).__name__}, not a frozenset of names")
    if not names:
        raise StrategyError(f"strategy {name!r} selected no trainable parameters", "strategy.params")
    return names


def apply_trainable(model: nn.Module, names: Iterable[str]) -> None:
    """Set ``requires_grad`` True exactly for ``names``, False for every other parameter."""
    wanted = set(names)
    if not wanted:
        raise ValueError("refusing to freeze every parameter: the trainable set is empty")
    params = dict(model.named_parameters())
    unknown = sorted(wanted - params.keys())
    if unknown:
        raise ValueError(f"{len(unknown)} name(s) are not parameters of the model: {', '.join(unknown)}")
    for n, p in params.items():
        p.requires_grad_(n in wanted)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; ``ds_numel`` under DeepSpeed ZeRO-3, else ``numel()``."""
    trainable = total = 0
    for p in model.parameters():
        n = param_numel(p)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


@dataclass(frozen=True)
class Frozen:
    """What :func:`freeze` did: the prepared model, the validated params, the trainable names and counts."""

    model: nn.Module
    params: dict
    names: frozenset[str]
    trainable: int
    total: int

    @property
    def ratio(self) -> float:
        return self.trainable / self.total if self.total else 0.0


def freeze(model: nn.Module, name: str, params: Mapping[str, Any] | None = None) -> Frozen:
    """The one freeze step: validate params → prepare the model (LoRA injection) → trainable names → apply →
    count. Everyone (the trial, pre-flight, the dry run, the strategy lister) calls this, on a real model or on
    a meta-device one."""
    valid = validate_params(name, params)
    model = prepare_model(model, name, valid)
    names = trainable_names(model, name, valid)
    apply_trainable(model, names)
    trainable, total = count_params(model)
    return Frozen(model, valid, names, trainable, total)
