"""The engine interface the trial loop talks to, and what every engine shares: the loss, autocast dtypes and
the trainable-state helpers a checkpoint uses."""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Engine", "Examples", "AUTOCAST_DTYPES", "MODEL_INPUTS", "model_inputs", "loss_fn", "trainable_state",
           "load_trainable_state"]

# Which examples a batch holds: (split name, example indices in that split). A frozen-prefix cache keys its
# entries on it; engines without a cache ignore it.
Examples = tuple[str, np.ndarray]

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict) -> dict:
    """The keyword arguments a Hugging Face model gets from a collated batch (token types only for pairs)."""
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy over classes; with one output (``num_labels: 1``) mean squared error on float labels, as
    Hugging Face's ``problem_type`` "regression" computes it."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.float().squeeze(-1), labels.float())
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class Engine(Protocol):
    model: torch.nn.Module
    skipped_steps: int

    def forward(self, batch: dict, examples: Optional[Examples] = None) -> torch.Tensor: ...   # logits
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> float: ...                                   # optimizer step; returns grad norm
    def current_lr(self) -> float: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def trainable_state(self) -> dict[str, torch.Tensor]: ...
    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None: ...


def trainable_state(model: torch.nn.Module, names: frozenset[str] | None = None) -> dict[str, torch.Tensor]:
    """The parameters that train (what a checkpoint must hold): ``names``, else those with ``requires_grad``."""
    return {n: p.detach() for n, p in model.named_parameters() if (p.requires_grad if names is None else n in names)}


def load_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor],
                         names: frozenset[str] | None = None) -> None:
    """Copy checkpointed trainable parameters (``names``, else those with ``requires_grad``) in (device and dtype
    of the model's own tensors)."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if (p.requires_grad if names is None else n in names) and n not in tensors]
    if missing:
        raise ValueError(f"checkpoint lacks trainable parameters: {missing[:5]}")
    unknown = [n for n in tensors if n not in params]
    if unknown:
        raise ValueError(f"checkpoint holds unknown parameters: {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))
