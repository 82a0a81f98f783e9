"""``train.backend: deepspeed``: the :class:`~harness.train.engines.Engine` protocol over a DeepSpeed engine.

Built after the freeze strategy was applied (torchtune's order): the client optimizer is the AdamW over
trainable parameters only from :mod:`harness.train.optim` (weight-decay groups), the schedule its LambdaLR; both go
to ``deepspeed.initialize`` with ``model_parameters`` = the trainable parameters. Frozen parameters are in no
optimizer group, so DeepSpeed neither updates, decays nor partitions them (under bf16/fp16 DeepSpeed casts
the whole module, frozen weights included, to the low precision once at start).

The trial divides each micro-batch loss by ``grad_accum`` and calls ``backward`` ``grad_accum`` times, then
``step`` once; DeepSpeed wants ``backward``+``step`` per micro-batch and counts the boundary itself, so
``backward`` scales nothing (``scale_wrt_gas=False``) and takes DeepSpeed's (no-op) micro-step for every
micro-batch but the last.

Checkpoints stay ``weights_only``-loadable: the optimizer state of every rank (ZeRO 1/2 and the bf16
optimizer partition it) is gathered to rank 0 as plain tensors and numbers, without DeepSpeed's objects
(loss scaler → its numbers; the slice mappings used only by universal checkpoints are dropped).
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch
import torch.distributed as dist

from harness.config import TrainConfig
from harness.train import cpu_fast
from harness.train.distributed import process_group
import harness.train.engines.deepspeed_config as ds_config
from harness.train.engines.base import load_trainable_state, model_inputs, trainable_state
from harness.train.optim import build_optimizer, build_scheduler

__all__ = ["DeepSpeedEngine", "import_deepspeed"]

log = logging.getLogger("freezebench.deepspeed")
_PLAIN = (torch.Tensor, int, float, str, bool, type(None), torch.dtype, torch.Size)


def import_deepspeed(device: torch.device):
    """Import deepspeed with the accelerator that matches ``device`` (DS_ACCELERATOR is read at import)."""
    want = "cpu" if device.type == "cpu" else "cuda"
    have = os.environ.setdefault("DS_ACCELERATOR", want)
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    actual = get_accelerator().device_name()
    if (want == "cpu") != (actual == "cpu"):
        raise RuntimeError(f"DeepSpeed's accelerator is {actual!r} (DS_ACCELERATOR={have}) but the trial runs "
                           f"on {device}; start the process with DS_ACCELERATOR={want}")
    return deepspeed


def _to_plain(node: Any, path: str = "") -> Any:
    """Plain containers, tensors (on CPU) and numbers only; anything else raises (caught as a bug early)."""
    if isinstance(node, torch.Tensor):
        return node.detach().cpu().clone()
    if isinstance(node, dict):
        return {k: _to_plain(v, f"{path}.{k}") for k, v in node.items()}
    if isinstance(node, (list, tuple)) and type(node) in (list, tuple):
        return type(node)(_to_plain(v, f"{path}[{i}]") for i, v in enumerate(node))
    if isinstance(node, bool) or node is None or isinstance(node, (torch.dtype, torch.Size)):
        return node
    for kind in (int, float, str):          # also strips subclasses such as DeepSpeed's ZeroStageEnum
        if isinstance(node, kind):
            return kind(node)
    raise TypeError(f"optimizer state{path}: {type(node).__name__} is not weights_only-safe")


class DeepSpeedEngine:
    """AdamW over trainable parameters through DeepSpeed (ZeRO 0/1/2, bf16 / fp16 dynamic scaling / fp32)."""

    def __init__(self, model: torch.nn.Module, train: TrainConfig, device: torch.device,
                 lr_decay: float | None = None):
        deepspeed = import_deepspeed(device)
        self.train_cfg, self.device = train, device
        self._stack = contextlib.ExitStack()
        try:
            def init(backend: str) -> None:
                deepspeed.init_distributed(dist_backend=backend, verbose=False, auto_mpi_discovery=False)

            self.owns_group = self._stack.enter_context(
                process_group(device, init=init, destroy=deepspeed.comm.destroy_process_group))
            init("nccl" if device.type == "cuda" else "gloo")   # wraps a group Ray Train made; no-op otherwise
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            user = ds_config.load_user_config(train.deepspeed_config) if train.deepspeed_config else None
            self.config = ds_config.build_ds_config(train, self.world, user, on_cpu=device.type == "cpu")
            if device.type == "cpu":  # the same CPU dropout/attention paths as TorchEngine (same RNG use)
                cpu_fast.tune_malloc()
                cpu_fast.install(model)
            # on CPU as before (the stock loop under DeepSpeed's wrappers); on CUDA fused, as before
            optimizer = build_optimizer(model, train, lr_decay, fused=None if device.type == "cuda" else False)
            scheduler = build_scheduler(optimizer, train)
            trainable = [p for p in model.parameters() if p.requires_grad]
            self.ds, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=model, optimizer=optimizer, lr_scheduler=scheduler, model_parameters=trainable,
                config=self.config, dist_init_required=False)
        except BaseException:
            self._stack.close()
            raise
        self.model = self.ds.module
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # plain fp32 without ZeRO: DeepSpeed clips but does not keep the norm; measure it ourselves
        self._own_norm = train.precision == "fp32" and train.zero_stage == 0
        log.info("DeepSpeed engine: ZeRO %d, %s, %d rank(s), optimizer %s", train.zero_stage, train.precision,
                 self.world, type(self.optimizer).__name__)

    # ------------------------------------------------------------------------------------------- training
    @property
    def skipped_steps(self) -> int:
        return int(self.ds.skipped_steps)

    def forward(self, batch: dict, examples=None) -> torch.Tensor:
        return self.ds(**model_inputs(batch)).logits

    def backward(self, loss: torch.Tensor) -> None:
        self.ds.backward(loss, scale_wrt_gas=False)   # the trial already divided by grad_accum
        if not self.ds.is_gradient_accumulation_boundary():
            self.ds.step()                            # a micro-step: DeepSpeed only counts it

    def step(self) -> float:
        norm = None
        if self._own_norm:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        self.ds.step()
        if norm is None:
            norm = self.ds.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # ---------------------------------------------------------------------------------------- checkpoints
    def _partitioned(self) -> bool:
        return hasattr(self.optimizer, "_load_legacy_checkpoint")   # ZeRO 1/2 and the bf16 optimizer
    # Without ZeRO: bf16 and fp16 wrap the AdamW in DeepSpeed's FP16 (un)fused optimizer (fp32 master copies,
    # loss scale), fp32 leaves the AdamW as it is.

    def _optimizer_state(self) -> dict:
        state = dict(self.optimizer.state_dict())
        state.pop("param_slice_mappings", None)   # universal-checkpoint metadata (DeepSpeed objects)
        scaler = state.pop("loss_scaler", None)
        plain = _to_plain(state)
        if scaler is not None:
            plain["loss_scaler_state"] = _to_plain({k: v for k, v in vars(scaler).items() if isinstance(v, _PLAIN)})
        return plain

    def state_dict(self) -> dict:
        """Collective when partitioned on several ranks: every rank must call it (rank 0 gets the whole)."""
        mine = self._optimizer_state()
        if self._partitioned() and self.world > 1:
            gathered = [None] * self.world if self.rank == 0 else None
            dist.gather_object(mine, gathered, dst=0)
            per_rank = gathered if self.rank == 0 else []
        else:
            per_rank = [mine]
        ds = self.ds
        return {"optimizer_per_rank": per_rank, "scheduler": self.scheduler.state_dict(),
                "world_size": self.world, "zero_stage": self.train_cfg.zero_stage,
                "precision": self.train_cfg.precision, "skipped_steps": int(ds.skipped_steps),
                "global_steps": int(ds.global_steps), "global_samples": int(ds.global_samples),
                "micro_steps": int(ds.micro_steps)}

    def load_state_dict(self, state: dict) -> None:
        for key in ("zero_stage", "precision"):
            if state[key] != getattr(self.train_cfg, key):
                raise ValueError(f"checkpoint has {key} {state[key]!r}, the trial {getattr(self.train_cfg, key)!r}")
        per_rank = [dict(s) for s in state["optimizer_per_rank"]]
        if self._partitioned() and state["world_size"] != self.world:
            raise ValueError(f"checkpoint was taken on {state['world_size']} rank(s), this trial has {self.world}")
        mine = per_rank[self.rank] if self._partitioned() and len(per_rank) > 1 else per_rank[0]
        scaler_state = mine.pop("loss_scaler_state", None)
        for sd in per_rank:
            sd.pop("loss_scaler_state", None)
        if self._partitioned():
            self.optimizer.load_state_dict(per_rank, load_optimizer_states=True, load_from_fp32_weights=True)
        elif not isinstance(self.optimizer, torch.optim.Optimizer):   # bf16/fp16 without ZeRO
            self.optimizer.load_state_dict(mine, load_optimizer_states=True)
        else:                                                         # the AdamW itself (fp32, ZeRO 0)
            self.optimizer.load_state_dict(mine)
        if scaler_state and getattr(self.optimizer, "loss_scaler", None) is not None:
            vars(self.optimizer.loss_scaler).update(scaler_state)
        self.scheduler.load_state_dict(state["scheduler"])
        ds = self.ds
        ds.skipped_steps, ds.global_steps = state["skipped_steps"], state["global_steps"]
        ds.global_samples, ds.micro_steps = state["global_samples"], state["micro_steps"]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return trainable_state(self.model)

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        load_trainable_state(self.model, tensors)

    # ------------------------------------------------------------------------------------------- teardown
    def close(self) -> None:
        """Release the DeepSpeed engine and the process group this engine created (if it created one)."""
        ds = getattr(self, "ds", None)
        if ds is not None and hasattr(ds, "destroy"):
            ds.destroy()
        self._stack.close()
