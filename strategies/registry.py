"""One small, loud registry of freeze strategies.

A strategy is a pure function ``fn(model, **params) -> frozenset[str]`` of trainable parameter names,
registered under a lowercase unique name with :func:`register`. Its docstring is its *method card*
(what trains, source, caveats). An optional ``transform(model, **params)`` changes the model in place
first (LoRA injection); an optional ``check(hf_config, **params)`` rejects params a config cannot take.
A strategy speaks of parameter roles unless registered with ``roles=False`` (``full``, ``rules``): only those
run on an architecture without a role table (:mod:`strategies.archs`).
A *schedule* (:func:`register_schedule`, :mod:`strategies.schedules`) is a strategy whose trainable set changes
during the run: a pure ``fn(layout, step, state, **params) -> frozenset[str]`` over the model's
:class:`~strategies.schedules.Layout` (parameter names by depth block), the optimizer step and a small integer
state that only an optional ``update(layout, step, state, stats, **params) -> int`` changes (auto_freeze's frozen
depth, from gradient norms). A static strategy is the schedule that never changes.
Parameters are validated against the function's signature at config time, without a model: a pydantic
dataclass is made from the params after ``model`` (their annotations, as the strict types of
:mod:`strategies.validation`, and defaults), and its errors read like the config's (``strategy.params.k:
expected an integer, got str '2'``).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import inspect
import re
import sys
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pydantic
from pydantic import ConfigDict, TypeAdapter, ValidationError
from torch import nn

from strategies.archs import SUPPORTED_TYPES, arch_for
from strategies.roles import layout_of
from strategies.validation import describe, strict_type

__all__ = [
    "Strategy", "StrategyError", "UnknownStrategyError", "register", "resolve", "available", "summary",
    "validate_params", "check_compatible", "register_schedule",
]

StrategyFn = Callable[..., frozenset]
Transform = Callable[..., nn.Module]
Check = Callable[..., None]
_NAME = re.compile(r"^[a-z0-9_]+$")


class StrategyError(ValueError):
    """A strategy is misused; the message names the dotted key (``strategy.params.k``) when there is one."""

    def __init__(self, message: str, path: str = ""):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnknownStrategyError(StrategyError):
    """No strategy is registered under that name."""


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: StrategyFn
    transform: Transform | None = None
    check: Check | None = None
    needs_roles: bool = True    # False: works on any model, by parameter names alone
    schedule: bool = False      # True: fn(layout, step, state, **params), the trainable set changes with the step
    update: Callable[..., int] | None = None   # schedules only: update(layout, step, state, stats, **params)

    @property
    def card(self) -> str:
        """The method card: the strategy function's docstring."""
        return inspect.getdoc(self.fn) or ""

    def __call__(self, model: nn.Module, params: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Trainable names for an already prepared model (params validated, defaults filled); for a schedule,
        those of step 0 (what a dry run and the parameter counts show)."""
        valid = validate_params(self.name, params)
        if self.schedule:
            return self.fn(layout_of(model), 0, 0, **valid)
        return self.fn(model, **valid)


_REGISTRY: dict[str, Strategy] = {}


def register(name: str, transform: Transform | None = None, check: Check | None = None,
             roles: bool = True) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering ``fn`` as strategy ``name``; duplicates and bad names raise StrategyError.
    ``roles=False``: the strategy reads parameter names only, so it needs no role table."""
    if not _NAME.match(name):
        raise StrategyError(f"strategy name {name!r} must match [a-z0-9_]+")
    if name in _REGISTRY:
        raise StrategyError(f"strategy {name!r} is already registered (by {_REGISTRY[name].fn.__module__})")

    def deco(fn: StrategyFn) -> StrategyFn:
        if name in _REGISTRY:
            raise StrategyError(f"strategy {name!r} is already registered")
        if not inspect.getdoc(fn) and sys.flags.optimize < 2:
            raise StrategyError(f"strategy {name!r} needs a docstring: its method card")
        _check_signature(name, fn)
        _REGISTRY[name] = Strategy(name, fn, transform, check, roles)
        return fn

    return deco


def _check_signature(name: str, fn: Callable) -> None:
    kinds = [p.kind for p in list(inspect.signature(fn).parameters.values())[_fixed(fn):]]
    if any(k in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD,
                 inspect.Parameter.POSITIONAL_ONLY) for k in kinds):
        raise StrategyError(f"strategy {name!r}: params after `model` must be plain keyword parameters")


_SCHEDULE_ARGS = ("layout", "step", "state")


def _fixed(fn: Callable) -> int:
    """How many leading arguments are not params: ``model``, or a schedule's ``layout, step, state``."""
    names = list(inspect.signature(fn).parameters)[:3]
    return 3 if tuple(names) == _SCHEDULE_ARGS else 1


def register_schedule(name: str, update: Callable[..., int] | None = None, transform: Transform | None = None,
                      check: Check | None = None) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator registering a trainability schedule ``fn(layout, step, state, **params)`` (see the module doc).
    Schedules read parameter roles, so they need a role table."""
    if not _NAME.match(name) or name in _REGISTRY:
        raise StrategyError(f"strategy name {name!r} must match [a-z0-9_]+ and be new")

    def deco(fn: StrategyFn) -> StrategyFn:
        if tuple(list(inspect.signature(fn).parameters)[:3]) != _SCHEDULE_ARGS:
            raise StrategyError(f"schedule {name!r} must take (layout, step, state, **params)")
        if not inspect.getdoc(fn) and sys.flags.optimize < 2:
            raise StrategyError(f"strategy {name!r} needs a docstring: its method card")
        _check_signature(name, fn)
        _REGISTRY[name] = Strategy(name, fn, transform, check, True, schedule=True, update=update)
        return fn

    return deco


def available() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def resolve(name: str) -> Strategy:
    """The strategy registered as ``name``; an unknown name says "did you mean ..." and lists all."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name), _REGISTRY, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    raise UnknownStrategyError(f"unknown strategy {name!r}{hint} Available: {', '.join(available())}",
                               "strategy.name")


def summary(name: str) -> str:
    """First line of the strategy's method card."""
    return (resolve(name).card.splitlines() or [""])[0]


@functools.cache
def _params_model(fn: StrategyFn) -> tuple[type, TypeAdapter]:
    """A pydantic dataclass of ``fn``'s params after ``model`` (a schedule's: after ``layout, step, state``;
    unknown keys forbidden), and its validator.

    An unannotated param takes its default's type; a mutable default is deep-copied for every call."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = []
    for p in list(inspect.signature(fn).parameters.values())[_fixed(fn):]:
        default = p.default
        tp = hints.get(p.name, type(default) if default not in (None, inspect.Parameter.empty) else Any)
        spec = (dataclasses.field() if default is inspect.Parameter.empty
                else dataclasses.field(default_factory=functools.partial(copy.deepcopy, default)))
        fields.append((p.name, strict_type(tp), spec))
    params = dataclasses.make_dataclass(f"{fn.__name__}_params", fields, kw_only=True)
    cls = pydantic.dataclasses.dataclass(params, config=ConfigDict(extra="forbid"))
    return cls, TypeAdapter(cls)


def validate_params(name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``params`` against strategy ``name``'s signature; returns them with defaults filled."""
    cls, adapter = _params_model(resolve(name).fn)
    try:
        valid = adapter.validate_python(dict(params or {}))
    except ValidationError as exc:
        path, message = describe(exc, cls, "strategy.params",
                                 unknown=f"unknown parameter for strategy {name!r}{{hint}}; allowed: {{allowed}}",
                                 required=f"required by strategy {name!r}")
        raise StrategyError(message, path) from None
    return {f.name: getattr(valid, f.name) for f in dataclasses.fields(valid)}


def _name_only() -> list[str]:
    return [n for n in available() if not _REGISTRY[n].needs_roles]


def check_compatible(name: str, params: Mapping[str, Any] | None, hf_config: Any) -> dict[str, Any]:
    """Cheap config-time checks of ``params`` against a HF config (no model); returns validated params."""
    strategy = resolve(name)
    valid = validate_params(name, params)
    model_type = getattr(hf_config, "model_type", None)
    if strategy.needs_roles and arch_for(hf_config) is None:
        raise StrategyError(f"strategy {name!r} selects parameters by role, and model_type {model_type!r} has no "
                            f"role table (built in: {', '.join(SUPPORTED_TYPES)}): give one as model.roles, or use "
                            f"a strategy that reads names only ({', '.join(_name_only())})", "model.roles")
    if strategy.check is not None:
        strategy.check(hf_config, **valid)
    return valid
