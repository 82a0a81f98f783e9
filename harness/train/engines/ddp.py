"""The torch backend's data-parallel form: ``DistributedDataParallel`` gradient all-reduce."""
from __future__ import annotations

import torch

from harness.train.engines.base import model_inputs

__all__ = ["DDPEngine"]


class DDPEngine:
    """A :class:`~harness.train.engines.TorchEngine` whose forward runs through ``DistributedDataParallel``.

    Gradients are averaged across ranks in backward (frozen parameters get no hook and no traffic); the
    optimizer, schedule, clipping and checkpoints are the inner engine's, identical on every rank.
    """

    def __init__(self, inner):
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.inner, self.model = inner, inner.model
        ids = [inner.device.index] if inner.device.type == "cuda" else None
        # buffers (position ids) are constants: no per-forward broadcast
        self.ddp = DDP(inner.model, device_ids=ids, broadcast_buffers=False)

    @property
    def skipped_steps(self) -> int:
        return self.inner.skipped_steps

    def forward(self, batch: dict, examples=None) -> torch.Tensor:
        with self.inner.autocast():
            return self.ddp(**model_inputs(batch)).logits

    def backward(self, loss: torch.Tensor) -> None:
        self.inner.backward(loss)

    def step(self) -> float:
        return self.inner.step()

    def current_lr(self) -> float:
        return self.inner.current_lr()

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return self.inner.trainable_state()

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.inner.load_trainable_state(tensors)
