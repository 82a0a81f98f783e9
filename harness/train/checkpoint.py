"""Trial checkpoints: trainable weights as safetensors, the rest as a ``weights_only``-loadable torch file.

A checkpoint folder holds ``trainable.safetensors`` (only the parameters that train), ``state.pt``
(optimizer, scheduler, RNG, data position, history) and ``done`` written last. A folder without ``done``,
or one that fails to load, is treated as corrupt: the caller falls back to an older one or starts over.
"""
from __future__ import annotations

import logging
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "rng_state", "set_rng_state",
           "checkpoint_step", "newest_first"]

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing files or cannot be read."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
             "python_pos": random.getstate()[2],
             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | Path, trainable: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write into ``folder.tmp`` then rename, so a crash mid-write leaves no half checkpoint behind."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
    torch.save(state, tmp / "state.pt")
    (tmp / "done").write_text(f"{int(state.get('step', 0))}\n")  # last: marks the folder complete
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    folder = Path(folder)
    if not (folder / "done").exists():
        raise CheckpointError(f"{folder}: incomplete checkpoint (no 'done' marker)")
    try:
        tensors = load_file(str(folder / "trainable.safetensors"))
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors / pickle errors have many types
        raise CheckpointError(f"{folder}: unreadable checkpoint: {exc}") from exc
    return tensors, state


def checkpoint_step(folder: str | Path) -> int:
    """The step a complete checkpoint was taken at (-1 when incomplete or unreadable)."""
    try:
        return int((Path(folder) / "done").read_text().strip())
    except (OSError, ValueError):
        return -1


def newest_first(folders) -> list[str]:
    """Distinct checkpoint folders ordered by step, newest first; incomplete ones last (they are tried, and
    refused with a warning, only when nothing better exists)."""
    unique = list(dict.fromkeys(str(f) for f in folders))
    return sorted(unique, key=checkpoint_step, reverse=True)
