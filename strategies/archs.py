"""The per-architecture table: where each part of an encoder lives, in one record per ``model_type``.

Everything that needs to know an architecture's layout reads it here and nowhere else: the role map that
turns parameter names into roles (:mod:`strategies.roles`), the layer list LoRA targets sit in
(:mod:`strategies.lora`) and the module paths the frozen-prefix cache swaps (``harness/train/prefix_cache``).

A :class:`RoleMap` is also what a user writes as ``model.roles`` for an architecture without a built-in
record: role regexes (``re.search`` on parameter names; every parameter must match exactly one of
embeddings, attention, ffn, pooler, classifier), the dotted path of the encoder-layer list (``layers``: a
parameter under ``<layers>.<i>.`` belongs to layer i) and optional LoRA target paths inside one layer.
Decisions, per architecture (README "Freeze strategies" has the user-facing version):

* DeBERTa-v2/v3: ``encoder.rel_embeddings`` and ``encoder.LayerNorm`` (the relative-position table and its
  norm) are *attention*, with no layer index: every layer's attention reads them, nothing else does. Such
  "shared" parameters train only where the strategy trains attention in every layer, and the prefix cache is
  refused when they train (no layer is then wholly frozen). ``encoder.conv`` (xlarge models) is the same.
* ModernBERT: ``attn_norm``/``mlp_norm`` go with the sub-layer they normalise; ``final_norm`` and the
  pretrained ``head`` (dense + norm) are the *pooler* (the pretrained part between the last layer and the
  new ``classifier``). Query, key and value are one fused ``Wqkv``: LoRA offers ``qkv``, not per-Q/V targets,
  and ``bitfit`` is refused while the config has no bias terms (the default).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import field
from typing import Annotated, Any, Callable, Optional

from pydantic import AfterValidator, ConfigDict, StringConstraints
from pydantic.dataclasses import dataclass as pydantic_dataclass

from strategies.validation import Str

__all__ = ["PRIMARY_ROLES", "RoleMap", "Arch", "TABLE", "SUPPORTED_TYPES", "arch_for", "ROLES_ATTR"]

PRIMARY_ROLES = ("embeddings", "attention", "ffn", "pooler", "classifier")   # each parameter: exactly one
ROLES_ATTR = "freezebench_roles"   # the HF config attribute that carries a model.roles map to the model


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"bad regex ({exc})") from None
    return pattern


Regex = Annotated[Str, AfterValidator(_compiles)]
ModulePath = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z_][\w]*(\.[\w]+)*$")]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RoleMap:
    """``model.roles``: regexes (re.search on parameter names) per role, the layer list, LoRA targets."""

    embeddings: Optional[Regex] = None    # token/position embeddings and their norm
    attention: Optional[Regex] = None     # self-attention sub-layers (and what only they read)
    ffn: Optional[Regex] = None           # feed-forward sub-layers
    pooler: Optional[Regex] = None        # pretrained part between the last layer and the new classifier
    classifier: Optional[Regex] = None    # the new classification head
    layernorm: Optional[Regex] = None     # which parameters are norms (default: those of *LayerNorm/*RMSNorm modules)
    layers: Optional[ModulePath] = None   # dotted path of the encoder-layer list, e.g. mpnet.encoder.layer
    lora_targets: dict[Str, ModulePath] = field(default_factory=dict)   # name -> module path inside one layer

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _always(_config: Any) -> bool:
    return True


@dataclasses.dataclass(frozen=True)
class Arch:
    """One architecture's layout. Module paths are dotted, from the ``*ForSequenceClassification`` model."""

    roles: RoleMap
    builtin: bool = True
    # --- the frozen-prefix cache (harness/train/prefix_cache.py); empty ``embeddings``: no cache
    embeddings: tuple[str, ...] = ()      # modules a cached run passes its hidden states through
    after_stack: tuple[str, ...] = ()     # base-model modules run after the layers: a cache fill skips them
    bottom_only: tuple[str, ...] = ()     # encoder modules run after its first layer only: the cached top drops them
    head: Optional[tuple[str, str]] = None   # (dropout, classifier) when logits = classifier(dropout(pooler output))
    first_token: Callable[[Any], bool] = _always   # the head reads the first token only (for this HF config)
    tuple_layers: bool = False            # a layer returns (hidden, attentions) and the encoder needs >= 1 layer
    # --- strategies
    has_biases: Callable[[Any], bool] = _always   # the config has bias terms below the classifier (bitfit)


_BERT_TARGETS = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                 "attention_output": "attention.output.dense", "ffn_in": "intermediate.dense",
                 "ffn_out": "output.dense"}


def _bert_like(p: str, pooled: bool = False) -> Arch:
    """BERT, RoBERTa, XLM-R, CamemBERT and ELECTRA share one layout under their base prefix."""
    layer = rf"^{p}\.encoder\.layer\.\d+\."
    roles = RoleMap(embeddings=rf"^{p}\.embeddings(_project)?\.", attention=layer + r"attention\.",
                    ffn=layer + r"(intermediate|output)\.", pooler=rf"^{p}\.pooler\.", classifier=r"^classifier\.",
                    layers=f"{p}.encoder.layer", lora_targets=_BERT_TARGETS)
    return Arch(roles, embeddings=(f"{p}.embeddings", f"{p}.embeddings_project"), after_stack=(f"{p}.pooler",),
                head=("dropout", "classifier") if pooled else None)


_DISTIL = r"^distilbert\.transformer\.layer\.\d+\."
_DEBERTA = r"^deberta\.encoder\."
_MODERN = r"^model\.layers\.\d+\."


def _modernbert_biases(c: Any) -> bool:
    return any(getattr(c, k, False) for k in ("attention_bias", "mlp_bias", "norm_bias", "classifier_bias"))


def _modernbert_first_token(c: Any) -> bool:
    return getattr(c, "classifier_pooling", "cls") == "cls"


TABLE: dict[str, Arch] = {
    "bert": _bert_like("bert", pooled=True),
    "roberta": _bert_like("roberta"),
    "xlm-roberta": _bert_like("roberta"),
    "camembert": _bert_like("roberta"),
    "electra": _bert_like("electra"),
    "distilbert": Arch(
        RoleMap(embeddings=r"^distilbert\.embeddings\.", attention=_DISTIL + r"(attention|sa_layer_norm)\.",
                ffn=_DISTIL + r"(ffn|output_layer_norm)\.", pooler=r"^pre_classifier\.", classifier=r"^classifier\.",
                layers="distilbert.transformer.layer",
                lora_targets={"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                              "attention_output": "attention.out_lin", "ffn_in": "ffn.lin1", "ffn_out": "ffn.lin2"}),
        embeddings=("distilbert.embeddings",), head=("dropout", "classifier")),
    "deberta-v2": Arch(
        RoleMap(embeddings=r"^deberta\.embeddings\.",
                attention=_DEBERTA + r"(layer\.\d+\.attention\.|rel_embeddings\.|LayerNorm\.|conv\.)",
                ffn=_DEBERTA + r"layer\.\d+\.(intermediate|output)\.", pooler=r"^pooler\.", classifier=r"^classifier\.",
                layers="deberta.encoder.layer",
                lora_targets={"query": "attention.self.query_proj", "key": "attention.self.key_proj",
                              "value": "attention.self.value_proj", "attention_output": "attention.output.dense",
                              "ffn_in": "intermediate.dense", "ffn_out": "output.dense"}),
        embeddings=("deberta.embeddings",), bottom_only=("deberta.encoder.conv",), head=("dropout", "classifier"),
        tuple_layers=True),
    "modernbert": Arch(
        RoleMap(embeddings=r"^model\.embeddings\.", attention=_MODERN + r"attn(_norm)?\.",
                ffn=_MODERN + r"mlp(_norm)?\.", pooler=r"^(model\.final_norm|head)\.", classifier=r"^classifier\.",
                layers="model.layers",
                lora_targets={"qkv": "attn.Wqkv", "attention_output": "attn.Wo", "ffn_in": "mlp.Wi",
                              "ffn_out": "mlp.Wo"}),
        embeddings=("model.embeddings",), after_stack=("model.final_norm",), head=("drop", "classifier"),
        first_token=_modernbert_first_token, has_biases=_modernbert_biases),
}
SUPPORTED_TYPES = tuple(sorted(TABLE))


def arch_for(hf_config: Any) -> Arch | None:
    """The layout for a HF config: its ``model.roles`` map if it carries one, else the built-in record, else None."""
    user = getattr(hf_config, ROLES_ATTR, None)
    if user:
        return Arch(user if isinstance(user, RoleMap) else RoleMap(**user), builtin=False)
    return TABLE.get(getattr(hf_config, "model_type", None))
