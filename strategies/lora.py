"""LoRA as a freeze strategy: a transform injects adapters (peft), the strategy trains them + the head.

Targets are role-level names (``query``, ``key``, ``value``, ``attention_output``, ``ffn_in``,
``ffn_out``), mapped per architecture to module names inside one layer by the architecture table
(:mod:`strategies.archs`: ``query`` -> ``attention.self.query`` for BERT, ``attention.q_lin`` for DistilBERT,
``attention.self.query_proj`` for DeBERTa), so one sweep axis works across the BERT family. ModernBERT fuses
query, key and value into one projection (``attn.Wqkv``): it offers ``qkv`` instead, and refuses per-Q/V
targets at config time. A ``model.roles`` map names its own targets (``model.roles.lora_targets``).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from strategies.archs import arch_for
from strategies.registry import StrategyError, register
from strategies.roles import LORA_TARGETS, lora_target_regex, param_roles

__all__ = ["lora", "inject_lora", "TARGETS"]

TARGETS = tuple(sorted({t for table in LORA_TARGETS.values() for t in table}))   # over the built-in tables


def _check_lora(hf_config: Any, r: int, alpha: int, dropout: float, targets: list[str]) -> None:
    if r < 1:
        raise StrategyError(f"must be >= 1, got {r}", "strategy.params.r")
    if alpha <= 0:
        raise StrategyError(f"must be > 0, got {alpha}", "strategy.params.alpha")
    if not 0.0 <= dropout < 1.0:
        raise StrategyError(f"must be in [0, 1), got {dropout}", "strategy.params.dropout")
    arch = arch_for(hf_config)
    if arch is None:   # check_compatible refuses a role strategy there first, naming model.roles
        return
    table = arch.roles.lora_targets
    unknown = [t for t in targets if t not in table]
    if not targets or unknown:
        hint = ""
        if "qkv" in table and {"query", "key", "value"} & set(unknown):
            hint = (f"; {hf_config.model_type} fuses query, key and value into one projection ({table['qkv']}), "
                    "so they cannot be adapted one by one: use qkv")
        allowed = ", ".join(table) or "(none: give model.roles.lora_targets)"
        raise StrategyError(f"unknown or no targets {unknown or targets}; allowed for {hf_config.model_type}: "
                            f"{allowed}{hint}", "strategy.params.targets")
    if not arch.roles.layers:
        raise StrategyError("not set: LoRA targets are module paths inside each encoder layer", "model.roles.layers")


def inject_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
                targets: list[str] = ["query", "value"]) -> nn.Module:  # noqa: B006
    """Inject LoRA adapters named ``default`` into ``targets`` of every encoder layer, in place."""
    from peft import LoraConfig, inject_adapter_in_model  # heavy import, only when LoRA is used

    _check_lora(model.config, r, alpha, dropout, targets)
    if any("adapter" in i.roles for i in param_roles(model).values()):
        raise StrategyError("model already has LoRA adapters; prepare it only once", "strategy.name")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                        target_modules=lora_target_regex(model.config, targets))
    return inject_adapter_in_model(config, model)


@register("lora", transform=inject_lora, check=_check_lora)
def lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.1,
         targets: list[str] = ["query", "value"]) -> frozenset[str]:  # noqa: B006
    """LoRA adapters (rank r, scale alpha/r) on the target projections and the classifier train.

    Source: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models" (query/value default).
    Caveat: needs prepare_model (injects adapters via peft); base weights, pooler frozen; B starts at 0.
    """
    infos = param_roles(model)
    if not any("adapter" in i.roles for i in infos.values()):
        raise StrategyError("model has no LoRA adapters: call prepare_model(model, 'lora', params) first",
                            "strategy.name")
    return frozenset(n for n, i in infos.items() if i.roles & {"adapter", "classifier"})
