"""Built-in freeze strategies, all written against parameter roles (see :mod:`strategies.roles`).

Each function is pure: it reads the model's parameter names and returns the trainable ones. Its
docstring is its method card: first line a one-sentence summary, then source and caveats.

Parameters every layer reads (``ParamInfo.shared``: DeBERTa's relative-position embeddings) train only where
a strategy trains that role in every layer (full, freeze_embeddings, top_k with k = depth), so a "frozen
layer" is frozen in what it computes, and a frozen bottom can still be cached.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from torch import nn

from strategies.archs import arch_for
from strategies.registry import StrategyError, register
from strategies.roles import ParamInfo, config_num_layers, num_layers, param_roles

__all__ = ["full", "freeze_embeddings", "freeze_attention", "head_only", "top_k", "bottom_k", "bitfit",
           "layernorm", "rules"]


def _select(model: nn.Module, keep: Callable[[ParamInfo], bool]) -> frozenset[str]:
    return frozenset(name for name, info in param_roles(model).items() if keep(info))


def _check_k(hf_config: Any, k: int, **_: Any) -> None:
    arch = arch_for(hf_config)
    if arch is not None and not arch.roles.layers:
        raise StrategyError("not set: strategies that count encoder layers (top_k, bottom_k) need the path of the "
                            "layer list", "model.roles.layers")
    depth = config_num_layers(hf_config)
    if depth is not None:
        _check_k_depth(k, depth)


def _check_k_depth(k: int, depth: int) -> None:
    if not 1 <= k <= depth:
        raise StrategyError(f"must be in 1..{depth} (the model's encoder layers), got {k}", "strategy.params.k")


@register("full", roles=False)
def full(model: nn.Module) -> frozenset[str]:
    """Every parameter trains: the full fine-tuning baseline.

    Source: Devlin et al. 2019 (BERT). Caveat: the most memory (gradients + optimizer state for all).
    Needs no role table: runs on any sequence-classification model.
    """
    return frozenset(name for name, _ in model.named_parameters())


@register("freeze_embeddings")
def freeze_embeddings(model: nn.Module) -> frozenset[str]:
    """All but the embeddings train (word, position, token-type embeddings and their LayerNorm frozen).

    Source: common practice; the embedding matrix is often a quarter of a BERT's parameters.
    Caveat: ELECTRA's embeddings_project counts as embeddings and is frozen too.
    """
    return _select(model, lambda i: "embeddings" not in i.roles)


@register("freeze_attention")
def freeze_attention(model: nn.Module) -> frozenset[str]:
    """Embeddings and attention frozen; feed-forward blocks, pooler and classifier train.

    Source: the seed study (BERT-base: 57,279,746 of 109,483,778 trainable, ratio 0.5232).
    Caveat: the attention sub-layer's output LayerNorm is frozen with the attention.
    """
    return _select(model, lambda i: bool(i.roles & {"ffn", "pooler", "classifier"}))


@register("head_only")
def head_only(model: nn.Module) -> frozenset[str]:
    """Only the classifier head trains (a linear probe; RoBERTa/ELECTRA heads have a dense layer too).

    Source: linear probing (e.g. Kumar et al. 2022). Caveat: BERT's pooler and DistilBERT's
    pre_classifier stay frozen, and the pooler was pretrained for next-sentence prediction.
    """
    return _select(model, lambda i: "classifier" in i.roles)


@register("top_k", check=_check_k)
def top_k(model: nn.Module, k: int = 2) -> frozenset[str]:
    """The top k encoder layers, pooler and classifier train; embeddings and lower layers frozen.

    Source: Lee et al. 2019, "What would Elsa do? Freezing layers during transformer fine-tuning".
    Caveat: k counts encoder layers (1..num_hidden_layers); a frozen bottom can be cached. Parameters every
    layer reads (DeBERTa's relative positions) train only with k = num_hidden_layers.
    """
    _check_k(model.config, k)
    depth = num_layers(model)
    _check_k_depth(k, depth)
    return _select(model, lambda i: (i.layer is not None and i.layer >= depth - k) or (i.shared and k == depth)
                   or bool(i.roles & {"pooler", "classifier"}))


@register("bottom_k", check=_check_k)
def bottom_k(model: nn.Module, k: int = 2) -> frozenset[str]:
    """Embeddings and the first k encoder layers frozen; everything above trains.

    Source: Lee et al. 2019 (freezing the lower layers costs little accuracy).
    Caveat: k = num_hidden_layers leaves only the pooler and classifier trainable; parameters every layer
    reads (DeBERTa's relative positions) stay frozen with the bottom that reads them.
    """
    _check_k(model.config, k)
    _check_k_depth(k, num_layers(model))
    return _select(model, lambda i: "embeddings" not in i.roles and not i.shared
                   and (i.layer is None or i.layer >= k))


def _no_biases(model_type: Any) -> StrategyError:
    return StrategyError(f"{model_type} has no bias terms below the classifier (ModernBERT: attention_bias, "
                         "mlp_bias, norm_bias and classifier_bias are false by default), so bitfit would train the "
                         "classifier alone: use head_only, or a config with biases", "strategy.name")


def _check_bitfit(hf_config: Any) -> None:
    arch = arch_for(hf_config)
    if arch is not None and not arch.has_biases(hf_config):
        raise _no_biases(hf_config.model_type)


@register("bitfit", check=_check_bitfit)
def bitfit(model: nn.Module) -> frozenset[str]:
    """All bias terms and the classifier train; every weight matrix is frozen.

    Source: Ben Zaken et al. 2021, "BitFit: Simple Parameter-efficient Fine-tuning".
    Caveat: attention key biases get (near) zero gradient: softmax is invariant to them. Refused on a model
    with no bias below the classifier (ModernBERT's default config), where it would be head_only.
    """
    infos = param_roles(model)
    if not any("bias" in i.roles and "classifier" not in i.roles for i in infos.values()):
        raise _no_biases(model.config.model_type)
    return frozenset(n for n, i in infos.items() if i.roles & {"bias", "classifier"})


@register("layernorm")
def layernorm(model: nn.Module) -> frozenset[str]:
    """All LayerNorm weights and biases (embeddings' too) and the classifier train.

    Source: LN-tuning (Qi et al. 2022, "Parameter-efficient tuning on layer normalization").
    Caveat: very few parameters; usually wants a higher learning rate.
    """
    return _select(model, lambda i: bool(i.roles & {"layernorm", "classifier"}))


def _compile(patterns: list[str], key: str) -> list[re.Pattern[str]]:
    out = []
    for i, pattern in enumerate(patterns):
        try:
            out.append(re.compile(pattern))
        except re.error as e:
            raise StrategyError(f"bad regex {pattern!r}: {e}", f"strategy.params.{key}[{i}]") from None
    return out


def _check_rules(hf_config: Any, train: list[str], freeze: list[str]) -> None:
    _compile(train, "train")
    _compile(freeze, "freeze")


@register("rules", check=_check_rules, roles=False)
def rules(model: nn.Module, train: list[str] = [], freeze: list[str] = []) -> frozenset[str]:  # noqa: B006
    """Regexes on parameter names (re.search): trains what matches a `train` pattern and no `freeze` one.

    An empty `train` list means "everything". Source: none, an escape hatch for ad-hoc experiments
    (like peft's regex ``target_modules``).
    Caveat: names are architecture-specific; a pattern that matches no parameter is an error. Needs no role
    table: runs on any sequence-classification model.
    """
    names = [n for n, _ in model.named_parameters()]
    compiled = {"train": _compile(train, "train"), "freeze": _compile(freeze, "freeze")}
    for key, patterns in compiled.items():
        for i, rx in enumerate(patterns):
            if not any(rx.search(n) for n in names):
                raise StrategyError(f"pattern {rx.pattern!r} matches no parameter", f"strategy.params.{key}[{i}]")
    return frozenset(n for n in names
                     if (not train or any(rx.search(n) for rx in compiled["train"]))
                     and not any(rx.search(n) for rx in compiled["freeze"]))
