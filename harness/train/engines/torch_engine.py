"""Plain PyTorch engine: AdamW over trainable parameters, a transformers schedule, autocast."""
from __future__ import annotations

import contextlib
import math

import torch

from harness.config import TrainConfig
from harness.train import cpu_fast
from harness.train.engines.base import AUTOCAST_DTYPES, Examples, load_trainable_state, model_inputs, trainable_state
from harness.train.optim import build_optimizer, build_scheduler
from harness.train.prefix_cache import PrefixCache

__all__ = ["TorchEngine"]


class TorchEngine:
    """AdamW over trainable parameters, LambdaLR schedule, autocast (bf16 / fp16 + GradScaler / fp32)."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, device: torch.device,
                 prefix: PrefixCache | None = None, lr_decay: float | None = None):
        self.model, self.train_cfg, self.device = model, train, device
        self.prefix = prefix   # train.cache_frozen_prefix: the frozen bottom runs once per example
        self.dtype = AUTOCAST_DTYPES[train.precision]
        if train.precision == "fp16" and device.type != "cuda":
            raise ValueError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.params = [p for p in model.parameters() if p.requires_grad]
        # what checkpoints hold: every parameter the optimizer covers (a schedule may freeze some of them later,
        # after they trained)
        self.names = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
        self.optimizer = build_optimizer(model, train, lr_decay)
        self.scheduler = build_scheduler(self.optimizer, train)
        self.scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
        self.max_norm = train.grad_clip if train.grad_clip is not None else math.inf
        self.skipped_steps = 0
        if device.type == "cpu":  # same semantics: fast dropout masks and attention dropout, warm allocator
            cpu_fast.tune_malloc()
            if not train.compile:  # under torch.compile inductor fuses dropout itself
                cpu_fast.install(model)
        self.forward_model = torch.compile(model) if train.compile else model

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def forward(self, batch: dict, examples: Examples | None = None) -> torch.Tensor:
        with self.autocast():
            if self.prefix is not None and examples is not None:
                return self.prefix.logits(self.model, batch, examples)
            return self.forward_model(**model_inputs(batch)).logits

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self) -> float:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < scale:
                self.skipped_steps += 1
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return float(norm)

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "skipped_steps": self.skipped_steps}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.model, self.names)

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, tensors, self.names)
