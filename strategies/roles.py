"""Parameter roles: turn architecture-specific parameter names into architecture-neutral roles.

Strategies speak of roles (``embeddings``, ``attention``, ``ffn``, ``layernorm``, ``bias``, ``pooler``,
``classifier``, ``adapter``) and layer indices, never of names. One small table per ``model_type`` maps
every parameter of a Hugging Face ``*ForSequenceClassification`` model to a :class:`ParamInfo`; a
parameter that no rule matches is an error that lists it, so a new architecture fails loudly instead
of being frozen (or trained) by accident. LoRA-injected names (peft ``inject_adapter_in_model``) map too:
``...query.base_layer.weight`` like ``...query.weight``, ``...lora_A.<adapter>.weight`` to ``{adapter}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from torch import nn

__all__ = [
    "ROLES", "SUPPORTED_TYPES", "LORA_TARGETS", "ParamInfo", "UnmappedParameterError", "param_roles",
    "num_layers", "config_num_layers", "frozen_prefix_layers", "lora_target_regex", "param_numel",
]

ROLES = frozenset({"embeddings", "attention", "ffn", "layernorm", "bias", "pooler", "classifier", "adapter"})

_Rule = tuple["re.Pattern[str]", frozenset[str]]


def _rules(*pairs: tuple[str, str]) -> tuple[_Rule, ...]:
    return tuple((re.compile(rx), frozenset(roles.split())) for rx, roles in pairs)


def _bert_like(p: str, *extra: tuple[str, str]) -> tuple[_Rule, ...]:
    """BERT, RoBERTa and ELECTRA share one layout under their own prefix."""
    layer = rf"^{p}\.encoder\.layer\.(?P<layer>\d+)\."
    return _rules((rf"^{p}\.embeddings\.", "embeddings"), *extra,
                  (layer + r"attention\.", "attention"),
                  (layer + r"(intermediate|output)\.", "ffn"),
                  (rf"^{p}\.pooler\.", "pooler"),
                  (r"^classifier\.", "classifier"))   # RoBERTa/ELECTRA: classifier.dense, classifier.out_proj


_DISTIL_LAYER = r"^distilbert\.transformer\.layer\.(?P<layer>\d+)\."
_TABLE: dict[str, tuple[_Rule, ...]] = {
    "bert": _bert_like("bert"),
    "roberta": _bert_like("roberta"),
    "electra": _bert_like("electra", (r"^electra\.embeddings_project\.", "embeddings")),
    "distilbert": _rules((r"^distilbert\.embeddings\.", "embeddings"),
                         (_DISTIL_LAYER + r"(attention|sa_layer_norm)\.", "attention"),
                         (_DISTIL_LAYER + r"(ffn|output_layer_norm)\.", "ffn"),
                         (r"^pre_classifier\.", "pooler"),
                         (r"^classifier\.", "classifier")),
}
SUPPORTED_TYPES = tuple(sorted(_TABLE))

# Role-level LoRA target names -> module path inside one encoder layer, per architecture.
_BERT_TARGETS = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                 "attention_output": "attention.output.dense", "ffn_in": "intermediate.dense",
                 "ffn_out": "output.dense"}
LORA_TARGETS: dict[str, dict[str, str]] = {
    "bert": _BERT_TARGETS, "roberta": _BERT_TARGETS, "electra": _BERT_TARGETS,
    "distilbert": {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                   "attention_output": "attention.out_lin", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2"},
}
_LAYER_PATH = {"bert": "bert.encoder.layer", "roberta": "roberta.encoder.layer",
               "electra": "electra.encoder.layer", "distilbert": "distilbert.transformer.layer"}
_ADAPTER = re.compile(r"^(?P<module>.+?)\.lora_[A-Za-z_]+\.")
_LAYERNORM = re.compile(r"(LayerNorm|layer_norm)\.(weight|bias)$")


class UnmappedParameterError(ValueError):
    """A model type or parameter name that the role tables do not cover."""


@dataclass(frozen=True)
class ParamInfo:
    """One parameter's roles and encoder layer index (None outside the encoder layers)."""

    name: str
    roles: frozenset[str]
    layer: int | None
    numel: int


def param_numel(p: nn.Parameter) -> int:
    """Element count; ``ds_numel`` under DeepSpeed ZeRO-3, where the local tensor is a partition."""
    return int(getattr(p, "ds_numel", None) or p.numel())


def _table(model_type: Any) -> tuple[_Rule, ...]:
    if model_type not in _TABLE:
        raise UnmappedParameterError(
            f"model_type {model_type!r} has no role table; supported: {', '.join(SUPPORTED_TYPES)}")
    return _TABLE[model_type]


def _classify(name: str, rules: Iterable[_Rule], numel: int) -> ParamInfo | None:
    adapter = _ADAPTER.match(name)
    key = adapter["module"] + ".weight" if adapter else name.replace(".base_layer.", ".")
    for rx, roles in rules:
        m = rx.match(key)
        if m is None:
            continue
        layer = m.groupdict().get("layer")
        layer_idx = int(layer) if layer is not None else None
        if adapter:
            return ParamInfo(name, frozenset({"adapter"}), layer_idx, numel)
        extra = {"bias"} if key.endswith(".bias") else set()
        if _LAYERNORM.search(key):
            extra.add("layernorm")
        return ParamInfo(name, roles | extra, layer_idx, numel)
    return None


def param_roles(model: nn.Module) -> dict[str, ParamInfo]:
    """Map every parameter name of ``model`` (in ``named_parameters`` order) to its :class:`ParamInfo`."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    rules = _table(model_type)
    out: dict[str, ParamInfo] = {}
    unmapped: list[str] = []
    for name, p in model.named_parameters():
        info = _classify(name, rules, param_numel(p))
        if info is None:
            unmapped.append(name)
        else:
            out[name] = info
    if unmapped:
        raise UnmappedParameterError(
            f"{model_type}: no role rule matches {len(unmapped)} parameter(s): {', '.join(unmapped)}")
    return out


def config_num_layers(hf_config: Any) -> int:
    """Encoder depth from a HF config (DistilBERT calls it ``n_layers``)."""
    n = getattr(hf_config, "n_layers", None) if hf_config.model_type == "distilbert" else None
    return int(n if n is not None else hf_config.num_hidden_layers)


def num_layers(model: nn.Module) -> int:
    """Number of encoder layers of ``model``."""
    return config_num_layers(model.config)


def frozen_prefix_layers(model: nn.Module, trainable: frozenset[str]) -> int:
    """-1 if any embeddings parameter trains, else how many bottom encoder layers are wholly frozen."""
    infos = [i for n, i in param_roles(model).items() if n in trainable]
    if any("embeddings" in i.roles for i in infos):
        return -1
    hot = {i.layer for i in infos if i.layer is not None}
    depth, k = num_layers(model), 0
    while k < depth and k not in hot:
        k += 1
    return k


def lora_target_regex(model_type: str, targets: Iterable[str]) -> str:
    """A regex (peft ``target_modules`` as a string is full-matched) selecting ``targets`` in every layer."""
    _table(model_type)  # unknown model_type -> UnmappedParameterError
    table = LORA_TARGETS[model_type]
    unknown = sorted(set(targets) - set(table))
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; allowed: {', '.join(table)}")
    alternatives = "|".join(re.escape(table[t]) for t in targets)
    return rf"{re.escape(_LAYER_PATH[model_type])}\.\d+\.({alternatives})"
