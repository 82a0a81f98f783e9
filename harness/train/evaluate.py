"""Evaluation of a model on a set of examples, batched by length (padding never changes the answer)."""
from __future__ import annotations

import numpy as np
import torch

from harness.data import batching
from harness.data.tokenize_cache import TokenizedSplit
from harness.train.engines import Engine, loss_fn

__all__ = ["evaluate", "to_device"]


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


@torch.no_grad()
def evaluate(engine: Engine, split: TokenizedSplit, split_name: str, indices: np.ndarray, batch_size: int,
             pad_id: int, device: torch.device, label_smoothing: float = 0.0) -> tuple[float, float]:
    """Mean loss and accuracy over ``indices`` of ``split`` (named ``split_name`` for a frozen-prefix cache)."""
    engine.model.eval()
    order = indices[np.argsort(split.lengths[indices], kind="stable")]
    loss_sum, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = to_device(batching.collate([split.input_ids[i] for i in idx], split.labels[idx], pad_id), device)
        logits = engine.forward(batch, examples=(split_name, idx))
        loss_sum += float(loss_fn(logits, batch["labels"], label_smoothing)) * len(idx)
        correct += int((logits.argmax(-1) == batch["labels"]).sum())
    engine.model.train()
    return loss_sum / len(order), correct / len(order)
