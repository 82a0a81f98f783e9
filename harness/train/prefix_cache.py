"""Frozen-prefix caching (``train.cache_frozen_prefix: true``, opt-in).

When a strategy freezes the embeddings and the bottom n encoder layers, their output for a review never
changes during training. This module runs that frozen prefix once per example, in eval mode (so *without
dropout*: the only semantic change, see docs/performance.md), keeps the result in RAM, and trains only the
rest of the model on it. Entries are made lazily by example index, for the training and the evaluation
split alike, so the first epoch pays for the prefix once and every later epoch and evaluation is free.

What is cached depends on how much is frozen (:func:`plan`):

* ``hidden`` (n < depth, e.g. ``top_k``): the hidden states after layer n-1, one (length, hidden) tensor per
  review, unpadded; the top layers, pooler and classifier then run on them with the attention mask.
* ``cls`` (all layers frozen but the head before the classifier trains, e.g. ``bottom_k`` with k = depth,
  RoBERTa/ELECTRA ``head_only``): the last layer's first-token vector, all that the head reads.
* ``pooled`` (all layers and the pooler frozen, e.g. BERT/DistilBERT ``head_only``): the classifier's input.

Entries are stored in the training precision (bf16 under bf16 autocast, fp32 otherwise) and fed back in
fp32. The model is never rebuilt: for each call the frozen modules are swapped out of the forward path
(embeddings -> pass-through, encoder layers -> the trainable top ones) and swapped back in afterwards, so
parameter names, checkpoints and the optimizer are those of the uncached model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from harness.config import ConfigError
from strategies.roles import frozen_prefix_layers, num_layers, param_roles

__all__ = ["KEY", "CachePlan", "check_config", "plan", "PrefixCache", "for_trial"]

KEY = "train.cache_frozen_prefix"
_LAYER_PARENT = {"distilbert": "transformer"}      # where the layer ModuleList lives under the base model
_POOLED_TYPES = ("bert", "distilbert")              # logits = classifier(dropout(pooler-role output))


@dataclass(frozen=True)
class CachePlan:
    layers: int        # frozen bottom encoder layers
    depth: int         # encoder layers in all
    level: str         # "hidden" | "cls" | "pooled"


def check_config(train: Any, resources: Any = None) -> None:
    """Refuse, from the config alone, the settings under which a cache would be wrong or unsupported."""
    if not getattr(train, "cache_frozen_prefix", False):
        return
    if train.backend == "deepspeed":
        raise ConfigError(KEY, "is not supported with train.backend: deepspeed (use backend: torch)")
    if train.word_dropout > 0:
        raise ConfigError(KEY, f"cannot be used with train.word_dropout {train.word_dropout:g}: the augmentation "
                               "changes a review's tokens every epoch, so its frozen-prefix output changes too")
    if resources is not None and getattr(resources, "workers_per_trial", 1) > 1:
        raise ConfigError(KEY, "is not supported with resources.workers_per_trial > 1")


def plan(model: nn.Module, trainable: frozenset[str]) -> CachePlan:
    """What to cache for this model and trainable set; ConfigError if nothing frozen is worth caching."""
    n = frozen_prefix_layers(model, trainable)
    if n < 0:
        raise ConfigError(KEY, "the strategy trains embedding parameters, so there is no frozen prefix to cache")
    if n == 0:
        raise ConfigError(KEY, "the strategy trains parameters of encoder layer 0, so no encoder layer is wholly "
                               "frozen and there is no frozen prefix worth caching")
    depth = num_layers(model)
    if n < depth:
        return CachePlan(n, depth, "hidden")
    pooler = [name for name, info in param_roles(model).items() if "pooler" in info.roles]
    frozen_pooler = not any(name in trainable for name in pooler)
    if model.config.model_type in _POOLED_TYPES and pooler and frozen_pooler:
        return CachePlan(n, depth, "pooled")
    return CachePlan(n, depth, "cls")


class _PassThrough(nn.Module):
    """Stands in for the embeddings: hands the cached hidden states (``inputs_embeds``) straight through."""

    def forward(self, input_ids=None, inputs_embeds=None, *args, **kwargs):
        return inputs_embeds


@contextlib.contextmanager
def _swapped(module: nn.Module, **attrs) -> Iterator[None]:
    old = {name: getattr(module, name) for name in attrs}
    try:
        for name, value in attrs.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in old.items():
            setattr(module, name, value)


class PrefixCache:
    """Lazily filled cache of the frozen prefix's output per (split, example index); computes logits."""

    def __init__(self, model: nn.Module, trainable: frozenset[str], dtype: torch.dtype = torch.float32):
        self.plan = plan(model, trainable)
        self.dtype = dtype
        self.base = getattr(model, model.base_model_prefix)
        self.layer_parent = getattr(self.base, _LAYER_PARENT.get(model.config.model_type, "encoder"))
        layers = list(self.layer_parent.layer)
        self.bottom = nn.ModuleList(layers[: self.plan.layers])
        self.top = nn.ModuleList(layers[self.plan.layers:])
        self.passthrough = _PassThrough()
        self.has_pooler = getattr(self.base, "pooler", None) is not None
        self._stores: dict[str, dict[int, torch.Tensor]] = {}    # split name -> example index -> entry
        # per mode of the model at the time ("train": fills paid inside training steps, "eval": in evaluations)
        self.stats = {mode: {"computed": 0, "tokens": 0, "sq_tokens": 0, "hits": 0} for mode in ("train", "eval")}
        self.bytes = 0

    # ------------------------------------------------------------------------------------------ public
    def logits(self, model: nn.Module, batch: dict, examples: tuple[str, np.ndarray]) -> torch.Tensor:
        """Logits for ``batch``, whose rows are ``examples`` = (split name, example indices); fills the cache
        where it misses."""
        split, example_ids = examples
        store = self._stores.setdefault(split, {})
        ids = [int(i) for i in np.asarray(example_ids)]
        missing = [row for row, ex in enumerate(ids) if ex not in store]
        stats = self.stats["train" if model.training else "eval"]
        if missing:
            inputs = {k: v[missing] for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            lengths = self._fill(model, store, [ids[r] for r in missing], inputs)
            stats["computed"] += len(missing)
            stats["tokens"] += sum(lengths)
            stats["sq_tokens"] += sum(n * n for n in lengths)
        stats["hits"] += len(ids) - len(missing)
        device = batch["input_ids"].device
        entries = [store[ex] for ex in ids]
        if self.plan.level == "pooled":
            h = torch.stack(entries).to(device=device, dtype=torch.float32)
            return model.classifier(model.dropout(h))
        if self.plan.level == "cls":
            h = torch.stack(entries).to(device=device, dtype=torch.float32)[:, None, :]
            mask = torch.ones(h.shape[:2], dtype=torch.int64, device=device)
            return self._suffix(model, h, mask, nn.ModuleList())
        lengths = [len(e) for e in entries]
        h = nn.utils.rnn.pad_sequence(entries, batch_first=True).to(device=device, dtype=torch.float32)
        mask = (torch.arange(h.shape[1])[None, :] < torch.tensor(lengths)[:, None]).to(device=device,
                                                                                       dtype=torch.int64)
        return self._suffix(model, h, mask, self.top)

    def entries(self, split: str) -> int:
        return len(self._stores.get(split, {}))

    # ----------------------------------------------------------------------------------------- private
    def _suffix(self, model: nn.Module, h: torch.Tensor, mask: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        extra = {"embeddings_project": nn.Identity()} if hasattr(self.base, "embeddings_project") else {}
        with _swapped(self.base, embeddings=self.passthrough, **extra), _swapped(self.layer_parent, layer=layers):
            return model(inputs_embeds=h, attention_mask=mask).logits

    @torch.no_grad()
    def _fill(self, model: nn.Module, store: dict, ids: list[int], inputs: dict[str, torch.Tensor]) -> list[int]:
        """Run the prefix on ``inputs`` (input_ids, attention_mask, and token_type_ids for pairs)."""
        lengths = inputs["attention_mask"].sum(1).tolist()
        width = max(lengths)
        inputs = {k: v[:, :width] for k, v in inputs.items()}
        was_training = model.training
        model.eval()                                     # the prefix runs without dropout
        try:
            rows = self._prefix(model, inputs)
        finally:
            model.train(was_training)
        for ex, row, length in zip(ids, rows, lengths):
            entry = (row[:length] if self.plan.level == "hidden" else row).to("cpu", self.dtype).clone()
            store[ex] = entry
            self.bytes += entry.numel() * entry.element_size()
        return lengths

    def _prefix(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.plan.level == "pooled":
            captured: list[torch.Tensor] = []
            hook = model.classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            try:
                model(**inputs)
            finally:
                hook.remove()
            return captured[0]
        no_pooler = {"pooler": None} if self.has_pooler else {}
        layers = self.bottom if self.plan.level == "hidden" else self.layer_parent.layer
        with _swapped(self.base, **no_pooler), _swapped(self.layer_parent, layer=layers):
            hidden = self.base(**inputs).last_hidden_state
        return hidden if self.plan.level == "hidden" else hidden[:, 0]


def for_trial(cfg: Any, model: nn.Module, trainable: frozenset[str]) -> PrefixCache | None:
    """The trial's cache (None unless ``train.cache_frozen_prefix``); ConfigError where caching is refused."""
    if not cfg.train.cache_frozen_prefix:
        return None
    check_config(cfg.train, cfg.resources)
    return PrefixCache(model, trainable, torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32)
