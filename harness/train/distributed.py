"""Process groups and data parallelism for one trial, without Ray (the trial never imports ray).

- :func:`process_group` gives a single-process trial its own gloo/NCCL group on a free rendezvous port
  (concurrent trials on one node never collide) and destroys it at the end; inside a multi-worker trial the
  group already exists (Ray Train made it) and is left alone.
- :class:`ShardedStream`: every rank draws the same global batch of ``batch_size × world`` and keeps its
  rank-strided share (disjoint; length grouping keeps the shares of similar length).
(The torch backend's data-parallel engine is :class:`harness.train.engines.ddp.DDPEngine`.)
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["workers_per_trial", "rank_world", "is_primary", "global_mean", "free_port", "process_group",
           "ShardedStream"]

log = logging.getLogger("freezebench.parallel")
_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE")


def workers_per_trial(resources) -> int:
    """Data-parallel workers of one trial: ``gpus_per_trial`` when > 1 (one per GPU), else ``workers_per_trial``."""
    if resources.gpus_per_trial > 1:
        return int(resources.gpus_per_trial)
    return int(resources.workers_per_trial)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_primary() -> bool:
    return rank_world()[0] == 0


def global_mean(value: float, device: torch.device) -> float:
    """Mean of ``value`` over all ranks (``value`` itself with one rank)."""
    rank, world = rank_world()
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t)
    return float(t.item()) / world


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process_group(device: torch.device, init=None, destroy=None, attempts: int = 5):
    """Yield True if this call created a single-process group (and destroys it on exit), False if one existed.

    ``init(backend)`` performs the initialisation (default: ``torch.distributed.init_process_group``) and
    ``destroy()`` the teardown; DeepSpeed passes its own (they also reset DeepSpeed's cached groups). Another
    process may grab the free port between the check and the bind, so a failed rendezvous is retried on a new
    port. The rendezvous variables are restored on exit.
    """
    if dist.is_initialized():
        yield False
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    init = init or (lambda b: dist.init_process_group(backend=b))
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        for attempt in range(attempts):
            port = free_port()
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0",
                              WORLD_SIZE="1", LOCAL_WORLD_SIZE="1")
            try:
                init(backend)
                break
            except (RuntimeError, OSError) as exc:   # DistNetworkError (port taken) is a RuntimeError
                if dist.is_initialized() or attempt == attempts - 1:
                    raise
                log.warning("rendezvous on port %d failed (%s); retrying on another port", port, exc)
        log.info("process group: %s, 1 process, 127.0.0.1:%s", backend, os.environ["MASTER_PORT"])
        yield True
    finally:
        if dist.is_initialized():
            (destroy or dist.destroy_process_group)()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ShardedStream(Iterator[np.ndarray]):
    """This rank's share ``batch[rank::world]`` of every batch of a :class:`~harness.data.batching.BatchStream`.

    All ranks hold the same stream (same seed), so its state — and so a checkpoint — is rank independent.
    """

    def __init__(self, stream, rank: int, world: int):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.stream, self.rank, self.world = stream, rank, world

    def __next__(self) -> np.ndarray:
        batch = next(self.stream)
        share = batch[self.rank::self.world]
        return share if len(share) else batch[:1]   # a short last batch: never hand out an empty share

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
