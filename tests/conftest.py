"""Shared fixtures: paths to the shared data, a tiny trial config, an isolated tokenization cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "data").resolve()
IMDB = SHARED / "imdb"
ACL_SAMPLE = SHARED / "aclImdb_sample"

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenization cache for the whole test session (tokenize once, like a sweep does)."""
    path = tmp_path_factory.mktemp("fb-cache")
    os.environ["FREEZEBENCH_CACHE"] = str(path)
    return path


def tiny_sweep_dict(tmp_path: Path, **sections) -> dict:
    """A seconds-long sweep: tiny random BERT on 256 real IMDB reviews (precision auto, the default: fp32 on a CPU
    that only emulates bf16, where bf16 steps cost 2-3x; tests of bf16 itself ask for it)."""
    base = {
        "name": "tiny",
        "model": {"arch": "bert", "overrides": {"hidden_size": 32, "num_hidden_layers": 2,
                                                "num_attention_heads": 2, "intermediate_size": 64}},
        "data": {"source": str(IMDB), "train_size": 256, "val_size": 64, "test_size": 64, "max_length": 64},
        "train": {"max_steps": 12, "eval_every": 4, "lr": 1e-3, "batch_size": 8, "precision": "auto",
                  "device": "cpu"},
        "strategy": {"name": "freeze_attention"},
        "resources": {"cpus_per_trial": 1},
        "logging": {"wandb": {"mode": "disabled"}},
        "output": {"dir": str(tmp_path / "results"), "save_model": "none"},   # tests that keep models say so
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base
