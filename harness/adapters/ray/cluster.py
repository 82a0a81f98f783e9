"""Starting or joining Ray: a private local Ray on loopback by default, ``--address`` for a cluster."""
from __future__ import annotations

import logging
import os

import ray

from harness.adapters.shims import keep_ray_on_loopback

__all__ = ["init_ray"]


def init_ray(address: str | None, num_cpus: int | None, num_gpus: int | None = None) -> None:
    """Local Ray by default (bound to 127.0.0.1, no dashboard); ``address`` joins an existing cluster."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
        return
    os.environ.setdefault("RAY_NODE_IP_ADDRESS", "127.0.0.1")
    keep_ray_on_loopback()
    # address="local": a new Ray of our own, never one found through /tmp/ray/ray_current_cluster (written by
    # any `ray start` on this machine, e.g. another user's) or RAY_ADDRESS - that is what --address is for
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
             _node_ip_address="127.0.0.1", **kwargs)
