"""Parameter roles: turn architecture-specific parameter names into architecture-neutral roles.

Strategies speak of roles (``embeddings``, ``attention``, ``ffn``, ``layernorm``, ``bias``, ``pooler``,
``classifier``, ``adapter``) and layer indices, never of names. The role map of the model's architecture
(:mod:`strategies.archs`: a built-in record, or the ``model.roles`` the config gave) must match every
parameter with exactly one of the primary roles; a parameter that none or two match is an error that lists
it, so a new architecture fails loudly instead of being frozen (or trained) by accident. ``layernorm`` (a
parameter of a norm module) and ``bias`` (a name ending in ``.bias``) are added on top. LoRA-injected names
(peft ``inject_adapter_in_model``) map too: ``...query.base_layer.weight`` like ``...query.weight``,
``...lora_A.<adapter>.weight`` to ``{adapter}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Iterable, Optional

from torch import nn

from strategies.archs import PRIMARY_ROLES, SUPPORTED_TYPES, TABLE, Arch, arch_for

__all__ = [
    "ROLES", "SUPPORTED_TYPES", "LORA_TARGETS", "ParamInfo", "UnmappedParameterError", "require_arch",
    "param_roles", "num_layers", "config_num_layers", "frozen_prefix_layers", "lora_targets", "lora_target_regex",
    "param_numel", "Layout", "layout_of",
]

ROLES = frozenset({*PRIMARY_ROLES, "layernorm", "bias", "adapter"})
LORA_TARGETS: dict[str, dict[str, str]] = {t: dict(a.roles.lora_targets) for t, a in TABLE.items()}
_ADAPTER = re.compile(r"^(?P<module>.+?)\.lora_[A-Za-z_]+\.")
_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)


class UnmappedParameterError(ValueError):
    """A model type or parameter name that the role maps do not cover."""


@dataclass(frozen=True)
class ParamInfo:
    """One parameter's roles and encoder layer index (None outside the encoder layers)."""

    name: str
    roles: frozenset[str]
    layer: int | None
    numel: int

    @property
    def shared(self) -> bool:
        """Attention/ffn without a layer: read by every layer (DeBERTa's relative-position embeddings)."""
        return self.layer is None and bool(self.roles & {"attention", "ffn"})


def param_numel(p: nn.Parameter) -> int:
    """Element count; ``ds_numel`` under DeepSpeed ZeRO-3, where the local tensor is a partition."""
    return int(getattr(p, "ds_numel", None) or p.numel())


def require_arch(hf_config: Any) -> Arch:
    """The architecture record of a HF config; an error naming ``model.roles`` where there is none."""
    arch = arch_for(hf_config)
    if arch is None:
        raise UnmappedParameterError(
            f"model_type {getattr(hf_config, 'model_type', None)!r} has no role table (built in: "
            f"{', '.join(SUPPORTED_TYPES)}); give one as model.roles, or use a strategy that needs none "
            "(full, rules)")
    return arch


def _where(arch: Arch, model_type: Any) -> str:
    return "model.roles" if not arch.builtin else f"the {model_type} role table (override it with model.roles)"


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or type(module).__name__.endswith(("LayerNorm", "RMSNorm"))


def param_roles(model: nn.Module) -> dict[str, ParamInfo]:
    """Map every parameter name of ``model`` (in ``named_parameters`` order) to its :class:`ParamInfo`."""
    model_type = getattr(model.config, "model_type", None)
    arch = require_arch(model.config)
    rm = arch.roles
    rules = [(role, re.compile(getattr(rm, role))) for role in PRIMARY_ROLES if getattr(rm, role)]
    norm_rx = re.compile(rm.layernorm) if rm.layernorm else None
    norms = set() if norm_rx else {n for n, m in model.named_modules() if _is_norm(m)}
    prefix = rm.layers + "." if rm.layers else None
    out: dict[str, ParamInfo] = {}
    unmapped: list[str] = []
    for name, p in model.named_parameters():
        adapter = _ADAPTER.match(name)
        key = adapter["module"] + ".weight" if adapter else name.replace(".base_layer.", ".")
        hits = [role for role, rx in rules if rx.search(key)]
        if len(hits) > 1:
            raise UnmappedParameterError(f"{_where(arch, model_type)}: parameter {name} is matched by more than "
                                         f"one role ({', '.join(hits)}); each must match exactly one")
        if not hits:
            unmapped.append(name)
            continue
        head = key[len(prefix):].split(".", 1)[0] if prefix and key.startswith(prefix) else ""
        layer = int(head) if head.isdigit() else None
        if adapter:
            out[name] = ParamInfo(name, frozenset({"adapter"}), layer, param_numel(p))
            continue
        extra = {"bias"} if key.endswith(".bias") else set()
        if (norm_rx.search(key) if norm_rx else key.rpartition(".")[0] in norms):
            extra.add("layernorm")
        out[name] = ParamInfo(name, frozenset({hits[0], *extra}), layer, param_numel(p))
    if unmapped:
        raise UnmappedParameterError(f"{_where(arch, model_type)}: no role ({', '.join(PRIMARY_ROLES)}) matches "
                                     f"{len(unmapped)} parameter(s): {', '.join(unmapped)}")
    return out


def config_num_layers(hf_config: Any) -> int | None:
    """Encoder depth from a HF config (DistilBERT calls it ``n_layers``); None where the config does not say."""
    n = getattr(hf_config, "n_layers", None) if hf_config.model_type == "distilbert" else None
    n = n if n is not None else getattr(hf_config, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) else None


def _layer_list(model: nn.Module) -> nn.Module | None:
    arch = arch_for(model.config)
    path = arch.roles.layers if arch else None
    try:
        return model.get_submodule(path) if path else None
    except AttributeError:
        return None


def num_layers(model: nn.Module) -> int:
    """Number of encoder layers of ``model``: the length of its layer list (``model.roles.layers``)."""
    layers = _layer_list(model)
    if isinstance(layers, (nn.ModuleList, nn.Sequential)):
        return len(layers)
    arch = require_arch(model.config)
    if not arch.builtin:
        raise UnmappedParameterError("model.roles.layers: not set, or not a list of modules in the model: "
                                     "strategies that count layers (top_k, bottom_k) need it")
    return int(config_num_layers(model.config))


def frozen_prefix_layers(model: nn.Module, trainable: frozenset[str]) -> int:
    """-1 if any embeddings parameter trains, else how many bottom encoder layers are wholly frozen (0 when a
    parameter every layer reads trains)."""
    infos = [i for n, i in param_roles(model).items() if n in trainable]
    if any("embeddings" in i.roles for i in infos):
        return -1
    if any(i.shared for i in infos):
        return 0
    hot = {i.layer for i in infos if i.layer is not None}
    depth, k = num_layers(model), 0
    while k < depth and k not in hot:
        k += 1
    return k


def lora_targets(hf_config: Any) -> dict[str, str]:
    """LoRA target name -> module path inside one encoder layer, for this config's architecture."""
    return dict(require_arch(hf_config).roles.lora_targets)


def lora_target_regex(hf_config: Any, targets: Iterable[str]) -> str:
    """A regex (peft ``target_modules`` as a string is full-matched) selecting ``targets`` in every layer.
    ``hf_config`` may be a ``model_type`` string for a built-in architecture."""
    config = SimpleNamespace(model_type=hf_config) if isinstance(hf_config, str) else hf_config
    arch = require_arch(config)
    table = arch.roles.lora_targets
    unknown = sorted(set(targets) - set(table))
    if unknown or not arch.roles.layers:
        allowed = ", ".join(table) or "(none: model.roles.lora_targets is empty)"
        raise ValueError(f"unknown LoRA target(s) {unknown}; allowed: {allowed}" if unknown else
                         "LoRA needs model.roles.layers (where the encoder layers are)")
    alternatives = "|".join(re.escape(table[t]) for t in targets)
    return rf"{re.escape(arch.roles.layers)}\.\d+\.({alternatives})"


@dataclass(frozen=True)
class Layout:
    """A model's parameter names by depth block, bottom to top (what schedules and layer-wise lr decay read):
    block 0 = the embeddings (with the parameters every layer reads), block 1 + i = encoder layer i, and the
    head (pooler, classifier, anything outside the layers); and the run's length."""

    blocks: tuple[frozenset[str], ...]    # blocks[0] embeddings (+ shared), blocks[1 + i] encoder layer i
    head: frozenset[str]                  # pooler, classifier and anything outside the layers: never frozen
    classifier: frozenset[str]            # the new head alone (lp_ft's probe)
    max_steps: Optional[int] = None
    model: Optional[nn.Module] = None     # only for delegating to a static strategy (lp_ft's `then`)

    @property
    def depth(self) -> int:
        """Encoder layers."""
        return len(self.blocks) - 1

    def above(self, frozen: int) -> frozenset[str]:
        """Everything but the bottom ``frozen`` blocks."""
        return self.head.union(*self.blocks[frozen:])


def layout_of(model: nn.Module, max_steps: int | None = None) -> Layout:
    """The :class:`Layout` of a prepared model (role table required)."""
    infos = param_roles(model)
    depth = num_layers(model)
    blocks: list[set[str]] = [set() for _ in range(depth + 1)]
    head, classifier = set(), set()
    for name, info in infos.items():
        if "embeddings" in info.roles or info.shared:
            blocks[0].add(name)
        elif info.layer is not None:
            blocks[1 + info.layer].add(name)
        else:
            head.add(name)
            if "classifier" in info.roles:
                classifier.add(name)
    return Layout(tuple(frozenset(b) for b in blocks), frozenset(head), frozenset(classifier), max_steps, model)
