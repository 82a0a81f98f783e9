"""One validator vocabulary for the sweep config and the strategy params, and the ONE translator of its errors.

Both :mod:`harness.config` (the sweep file) and :mod:`strategies.registry` (a strategy's params, checked against
its signature) validate with pydantic v2 over the strict types below, and both report a
:class:`pydantic.ValidationError` through :func:`describe`, so the same mistake reads the same wherever it is
made: ``train.max_steps: expected an integer, got bool True`` and ``strategy.params.k: expected an integer, got
bool True``. This module is the lowest layer (``strategies/`` never imports ``harness``).

The types: an :data:`Int` refuses bools, strings and floats; a float marked :data:`NUMBER` takes ints and numeric
strings (YAML 1.1 reads ``5e-5`` as a string) but refuses bools and NaN/inf; a :data:`Str` is a string with
something other than blanks in it; a :data:`Bool` is exactly true or false; a :data:`List` is a list (a tuple is
taken as one); a ``dict`` is a mapping (pydantic's own check). Bounds: ``Annotated[Int, Field(gt=0)]``, and for
a float ``Annotated[float, Field(gt=0), NUMBER]`` (``NUMBER`` last: see :class:`_Number`).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BeforeValidator, GetCoreSchemaHandler, Strict, StringConstraints, ValidationError
from pydantic_core import PydanticKnownError, core_schema

__all__ = ["Int", "NUMBER", "Float", "Str", "Bool", "List", "strict_type", "describe", "UNKNOWN_KEY"]

T = TypeVar("T")


def _as_float(value: Any) -> Any:
    """An int or a numeric string (``"5e-5"``) as a float, so errors show the number as read (-1 -> -1.0);
    anything else unchanged, for the strict float check to refuse."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Number:
    """``Annotated`` marker making a float strict (no bools), finite, and open to ints and numeric strings.

    It goes after the bounds, ``Annotated[float, Field(gt=0), NUMBER]``, so pydantic checks them on the float
    schema itself: the JSON Schema then shows them, and an error shows the number as read (``got -1.0``).
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        schema = handler(source)
        if schema["type"] != "float":
            raise TypeError(f"NUMBER marks a float and goes after its bounds, not on {source!r}")
        schema.update(strict=True, allow_inf_nan=False)
        return core_schema.no_info_before_validator_function(_as_float, schema)

    def __repr__(self) -> str:
        return "NUMBER"


def _list_only(value: Any) -> Any:
    """A list (or a tuple, as one) goes on to the item checks; a set, a generator, a string... is refused."""
    if isinstance(value, tuple):
        return list(value)
    if not isinstance(value, list):
        raise PydanticKnownError("list_type")
    return value


NUMBER = _Number()
NON_BLANK = r"\S"
Int = Annotated[int, Strict()]
Float = Annotated[float, NUMBER]   # with bounds write Annotated[float, Field(...), NUMBER] instead
Str = Annotated[str, StringConstraints(strict=True, min_length=1, pattern=NON_BLANK)]
Bool = Annotated[bool, Strict()]
List = Annotated[list[T], BeforeValidator(_list_only)]

_STRICT = {int: Int, float: Float, str: Str, bool: Bool}   # a dict is already only a mapping


def strict_type(tp: Any) -> Any:
    """A plain annotation (``int``, ``list[str]``, ``float | None``, ``Literal[...]``) as the strict types above."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and tp in _STRICT:
        return _STRICT[tp]
    if tp in (list, tuple):
        return List[Any]
    if origin in (list, tuple):
        return List[strict_type(args[0]) if args else Any]
    if origin in (Union, types.UnionType):
        return Union[tuple(strict_type(a) for a in args)]
    if origin is Annotated:
        if args[0] is float:   # the bounds first, then NUMBER
            return Annotated[(float, *tp.__metadata__, NUMBER)]
        return Annotated[(strict_type(args[0]), *tp.__metadata__)]
    return tp   # Literal, Any, None, a dataclass: pydantic's own check is already strict enough


# --------------------------------------------------------------------------------------------- translator
UNKNOWN_KEY = "unknown key{hint}; allowed keys: {allowed}"
_UNKNOWN = {"unexpected_keyword_argument", "extra_forbidden", "invalid_key"}   # invalid_key: not a string
_MISSING = {"missing", "missing_argument", "missing_keyword_only_argument"}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}
_MESSAGES = {   # pydantic error type -> our wording; {got} is "<type> <repr>", {text} the repr alone
    "int_type": "expected an integer, got {got}",
    "float_type": "expected a number, got {number}",   # an unreadable string shows as written: got 'fast'
    "finite_number": "must be a finite number, got {text}",
    "bool_type": "expected true or false, got {text}",
    "string_type": "expected a non-empty string, got {text}",
    "string_too_short": "expected a non-empty string, got {text}",
    "string_pattern_mismatch": "{text} must match {pattern}",
    "list_type": "expected a list, got {got}",
    "too_short": "must not be empty",
    "dict_type": "expected a mapping, got {got}",
    "dataclass_type": "expected a mapping, got {got}",
}


def _bare(tp: Any) -> Any:
    """``tp`` without Annotated metadata and without an Optional around it."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def _type_at(root: Any, loc: tuple) -> Any:
    """The (bare) annotation a value at ``loc`` below ``root`` must have; Any where it cannot be told."""
    tp = _bare(root)
    for part in loc:
        if isinstance(part, int) and typing.get_origin(tp) is list:
            tp = (typing.get_args(tp) or (Any,))[0]
        elif isinstance(part, str) and dataclasses.is_dataclass(tp):
            tp = _hints(tp).get(part, Any)
        else:
            return Any
        tp = _bare(tp)
    return tp


def _dotted(prefix: str, loc: tuple) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _did_you_mean(word: Any, choices: list[str]) -> str:
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _message(err: dict, root: Any, unknown: str, required: str) -> str:
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    if kind in _UNKNOWN:
        parent = _type_at(root, loc[:-1])
        keys = [f.name for f in dataclasses.fields(parent)] if dataclasses.is_dataclass(parent) else []
        return unknown.format(hint=_did_you_mean(loc[-1], keys), allowed=", ".join(keys) or "(none)")
    if kind in _MISSING:
        return required
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        bound = ctx[key]   # a float's bounds come back as floats: show gt=0 as 0, not 0.0
        bound = int(bound) if isinstance(bound, float) and bound.is_integer() else bound
        return f"must be {sign} {bound}, got {value!r}"
    if kind == "literal_error":
        tp = _type_at(root, loc)
        allowed = [str(a) for a in typing.get_args(tp)] if typing.get_origin(tp) is Literal else [ctx["expected"]]
        return f"got {value!r}; allowed values: {', '.join(allowed)}{_did_you_mean(value, allowed)}"
    if kind == "value_error":   # a validator of ours raised ValueError: its own words, not pydantic's prefix
        return f"{ctx.get('error', err['msg'])}, got {value!r}"
    if kind == "string_pattern_mismatch" and not value.strip():   # blank: whatever the pattern, say so
        kind = "string_too_short"
    text = repr(value)
    return _MESSAGES.get(kind, "{msg}, got {text}").format(
        msg=err["msg"], text=text, got=f"{type(value).__name__} {text}",
        number=text if isinstance(value, str) else f"{type(value).__name__} {text}", pattern=ctx.get("pattern"))


def describe(error: ValidationError, root: Any, prefix: str = "", *, unknown: str = UNKNOWN_KEY,
             required: str = "required") -> tuple[str, str]:
    """The first mistake in ``error`` (raised validating ``root``) as ``(dotted path, message)``.

    ``prefix`` is the dotted path of the validated value itself (``train``, ``strategy.params``); list items
    show as ``search.lr[1]``. An unknown key is reported before other mistakes (a typo often explains them);
    ``unknown`` (with ``{hint}`` and ``{allowed}``) and ``required`` word those two for the caller.
    """
    errors = error.errors()
    first = next((e for e in errors if e["type"] in _UNKNOWN), errors[0])
    loc = tuple(first["loc"])
    if first["type"] in _UNKNOWN:   # a key, even one that is a number: train.1, not train[1]
        loc = (*loc[:-1], str(loc[-1]))
    return _dotted(prefix, loc), _message(first, root, unknown, required)
