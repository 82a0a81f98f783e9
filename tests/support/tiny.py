"""Tiny randomly initialised encoders for tests: built from a config, no download."""
from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

__all__ = ["TINY", "ARCHS", "tiny_config", "tiny_model"]

# Small enough to train in milliseconds, big enough to have every role (embeddings, attention, ffn, ...).
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512)
_DISTIL = dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=512)
_SMALL_VOCAB = dict(vocab_size=2048)    # token ids in the tests stay below 2048
_PER_ARCH = {
    "electra": dict(embedding_size=16),
    # DeBERTa-v3's settings (microsoft/deberta-v3-base): relative positions in log buckets, shared key
    # projections, a LayerNorm on the relative-position table, no absolute positions. 32 buckets, so the
    # test sequences (up to ~45 tokens) reach the logarithmic part. initializer_range 0.1: at 0.02 the gradient
    # reaching the relative-position table's LayerNorm (~1e-7) is below what one SGD step can add to a 1.0.
    "deberta-v2": dict(_SMALL_VOCAB, initializer_range=0.1, relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
                       norm_rel_ebd="layer_norm", share_att_key=True, max_relative_positions=-1, position_buckets=32,
                       type_vocab_size=0),
    # local_attention 8: the second layer's sliding window (ModernBERT alternates global/local) really cuts
    "modernbert": dict(_SMALL_VOCAB, local_attention=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                       cls_token_id=1, sep_token_id=2),
}
# every architecture with a built-in role table, and the layout each one stands for
ARCHS = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "deberta-v2", "modernbert")


def tiny_config(arch: str = "bert", num_labels: int = 2, **overrides):
    base = dict(_DISTIL if arch == "distilbert" else TINY)
    base.update(_PER_ARCH.get(arch, {}))
    base.update(overrides)
    return AutoConfig.for_model(arch, num_labels=num_labels, **base)


def tiny_model(arch: str = "bert", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config(arch, **overrides))
