"""Tiny randomly initialised encoders for tests: built from a config, no download."""
from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

__all__ = ["TINY", "tiny_config", "tiny_model"]

# Small enough to train in milliseconds, big enough to have every role (embeddings, attention, ffn, ...).
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512)
_DISTIL = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512)


def tiny_config(arch: str = "bert", num_labels: int = 2, **overrides):
    base = dict(_DISTIL if arch == "distilbert" else TINY)
    if arch == "electra":
        base["embedding_size"] = 16
    base.update(overrides)
    return AutoConfig.for_model(arch, num_labels=num_labels, **base)


def tiny_model(arch: str = "bert", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(arch, **overrides))
