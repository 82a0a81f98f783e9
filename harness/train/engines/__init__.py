"""Training engines, all built *after* the freeze strategy was applied (torchtune's order).

:func:`make_engine` picks one: :class:`TorchEngine` (autocast), :class:`DDPEngine` (torch, several ranks) or
:class:`DeepSpeedEngine` (``train.backend: deepspeed``). They share the :class:`Engine` interface.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from harness.config import TrainConfig
from harness.train import prefix_cache
from harness.train.distributed import rank_world
from harness.train.engines.base import (AUTOCAST_DTYPES, Engine, Examples, load_trainable_state, loss_fn,
                                        trainable_state)
from harness.train.engines.ddp import DDPEngine
from harness.train.engines.deepspeed_engine import DeepSpeedEngine
from harness.train.engines.torch_engine import TorchEngine
from harness.train.precision import resolve
from harness.train.prefix_cache import PrefixCache

__all__ = ["Engine", "Examples", "TorchEngine", "DDPEngine", "DeepSpeedEngine", "make_engine", "loss_fn", "trainable_state",
           "load_trainable_state", "AUTOCAST_DTYPES"]


def make_engine(model: torch.nn.Module, train: TrainConfig, device: torch.device,
                prefix: PrefixCache | None = None, lr_decay: float | None = None) -> Engine:
    """The engine for ``train.backend`` (DeepSpeed imports deepspeed only here, when asked for). ``prefix``: the
    trial's frozen-prefix cache (torch backend, one worker; pre-flight refuses it elsewhere). ``lr_decay``: the
    strategy's layer-wise lr decay (optimizer parameter groups). The optimizer covers the parameters that have
    ``requires_grad`` now: a schedule sets every parameter it will ever train before this call."""
    train = replace(train, precision=resolve(train.precision, device))   # auto: bf16 where it is native
    if prefix is not None and (train.backend != "torch" or rank_world()[1] > 1):
        raise ValueError(f"{prefix_cache.KEY} needs train.backend torch and one worker")
    if train.backend == "deepspeed":
        return DeepSpeedEngine(model, train, device, lr_decay=lr_decay)
    engine = TorchEngine(model, train, device, prefix=prefix, lr_decay=lr_decay)
    return DDPEngine(engine) if rank_world()[1] > 1 else engine   # multi-worker trial: DDP gradient all-reduce
