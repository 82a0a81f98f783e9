"""Both FLOP counts behind MFU — the CPU benchmark's (trial_throughput.batch_flops over linear_plan) and the GPU
check's (gpu_check.model_flops) — against torch's own FlopCounterMode on a real forward + backward of a tiny
BERT at a fixed length (eager attention, so the attention matmuls are matmuls the counter sees)."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import strategies  # noqa: E402
from benchmarks import gpu_check, trial_throughput  # noqa: E402
from tests.support.tiny import tiny_model  # noqa: E402

SEQ, BATCH = 24, 3
CASES = [("full", {}), ("freeze_attention", {}), ("top_k", {"k": 1}), ("bottom_k", {"k": 1}), ("head_only", {}),
         ("bitfit", {})]


def _measured(model) -> tuple[int, int]:
    ids = torch.randint(1000, 2000, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fwd:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    with FlopCounterMode(display=False) as bwd:
        logits.float().sum().backward()
    return fwd.get_total_flops(), bwd.get_total_flops()


@pytest.mark.parametrize("strategy,params", CASES, ids=[s for s, _ in CASES])
def test_flop_counts_match_flop_counter_mode(strategy, params):
    model = tiny_model("bert", num_hidden_layers=3, attn_implementation="eager", hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0).train()
    names = strategies.trainable_names(model, strategy, params)
    strategies.apply_trainable(model, names)
    forward, backward = _measured(model)
    plan = trial_throughput.linear_plan(model, names)
    assert trial_throughput.batch_flops(plan, [SEQ] * BATCH, backward=False) == forward
    assert trial_throughput.batch_flops(plan, [SEQ] * BATCH) == forward + backward
    gpu = gpu_check.model_flops(model, SEQ, SEQ * BATCH)
    assert (gpu["forward"], gpu["backward"]) == (forward, backward)


def test_pooler_and_classifier_count_once_per_sequence():
    model = tiny_model("bert", attn_implementation="eager").train()
    h, layers = model.config.hidden_size, model.config.num_hidden_layers
    inter = model.config.intermediate_size
    full = gpu_check.model_flops(model, SEQ, SEQ * BATCH)
    encoder = layers * (4 * h * h + 2 * h * inter)
    head = h * h + h * 2                                   # pooler + classifier (2 labels)
    tokens = SEQ * BATCH
    # 6·N·T for the encoder's Linears, 6·N_head per *sequence*, 12·L·s·h·T for attention
    assert full["total"] == 6 * encoder * tokens + 6 * head * BATCH + 12 * layers * SEQ * h * tokens
    assert full["linear_params"] == encoder + head
