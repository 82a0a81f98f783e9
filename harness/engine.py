"""Training engines. The trial loop talks to one small interface; plain PyTorch (autocast) lives here,
DeepSpeed in :mod:`harness.ds_engine`. Both are built *after* the freeze strategy was applied."""
from __future__ import annotations

import contextlib
import math
from typing import Protocol

import torch
import torch.nn.functional as F

from harness import cpu_fast
from harness.config import TrainConfig
from harness.optim import build_optimizer, build_scheduler

__all__ = ["Engine", "TorchEngine", "trainable_state", "load_trainable_state", "AUTOCAST_DTYPES", "make_engine", "loss_fn"]

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class Engine(Protocol):
    model: torch.nn.Module
    skipped_steps: int

    def forward(self, batch: dict) -> torch.Tensor: ...            # logits
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> float: ...                                   # optimizer step; returns grad norm
    def current_lr(self) -> float: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
    def trainable_state(self) -> dict[str, torch.Tensor]: ...
    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None: ...


class TorchEngine:
    """AdamW over trainable parameters, LambdaLR schedule, autocast (bf16 / fp16 + GradScaler / fp32)."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, device: torch.device):
        self.model, self.train_cfg, self.device = model, train, device
        self.dtype = AUTOCAST_DTYPES[train.precision]
        if train.precision == "fp16" and device.type != "cuda":
            raise ValueError("train.precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(model, train)
        self.scheduler = build_scheduler(self.optimizer, train)
        self.scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
        self.max_norm = train.grad_clip if train.grad_clip is not None else math.inf
        self.skipped_steps = 0
        self.prefix = None  # a harness.prefix_cache.PrefixCache, attached by the trial (train.cache_frozen_prefix)
        if device.type == "cpu":  # same semantics: fast dropout masks and attention dropout, warm allocator
            cpu_fast.tune_malloc()
            if not train.compile:  # under torch.compile inductor fuses dropout itself
                cpu_fast.install(model)
        self.forward_model = torch.compile(model) if train.compile else model

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def forward(self, batch: dict) -> torch.Tensor:
        with self.autocast():
            if self.prefix is not None and "example_ids" in batch:
                return self.prefix.logits(self.model, batch)
            return self.forward_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

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
        return trainable_state(self.model)

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, tensors)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (what a checkpoint must hold)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy checkpointed trainable parameters in (device and dtype of the model's own tensors)."""
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing:
        raise ValueError(f"checkpoint lacks trainable parameters: {missing[:5]}")
    unknown = [n for n in tensors if n not in params]
    if unknown:
        raise ValueError(f"checkpoint holds unknown parameters: {unknown[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))


def make_engine(model: torch.nn.Module, train: TrainConfig, device: torch.device, **kwargs) -> Engine:
    if train.backend == "deepspeed":
        from harness.ds_engine import DeepSpeedEngine  # imported only when asked for

        return DeepSpeedEngine(model, train, device, **kwargs)
    from harness.parallel import DDPEngine, rank_world

    engine = TorchEngine(model, train, device)
    return DDPEngine(engine) if rank_world()[1] > 1 else engine   # multi-worker trial: DDP gradient all-reduce
