"""Optimizer over trainable parameters only, and the learning-rate schedules."""
from __future__ import annotations

import math

import torch

from harness.config import TrainConfig

__all__ = ["param_groups", "build_optimizer", "lr_lambda", "build_scheduler", "warmup_steps"]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases and LayerNorm (1-d) parameters. Frozen ones excluded,
    so they get neither momentum nor weight decay (composer's LayerFreezing caveat)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, train.weight_decay)
    if not groups:
        raise ValueError("no trainable parameters: the strategy froze everything")
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def warmup_steps(train: TrainConfig) -> int:
    return int(round(train.warmup_ratio * train.max_steps))


def lr_lambda(train: TrainConfig):
    """Multiplier of the base lr at a given optimizer step: warmup, then constant / linear / cosine to 0."""
    warm, total, kind = warmup_steps(train), train.max_steps, train.scheduler

    def fn(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total - warm))
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(train))
