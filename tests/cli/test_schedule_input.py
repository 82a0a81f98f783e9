"""Schedules and layer-wise lr decay at the front door: what cannot run exits 2 naming the key, before any model
load or Ray start (the guards fail the test otherwise)."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import tiny_sweep_dict
from tests.support.guards import forbid_model_loads, forbid_ray


@pytest.fixture
def guarded(monkeypatch):
    forbid_model_loads(monkeypatch)
    forbid_ray(monkeypatch)


def _run(tmp_path, capsys, **sections) -> tuple[int, str, str]:
    from harness import sweep

    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path, **sections)))
    rc = sweep.main([str(path), "--dry-run"])
    captured = capsys.readouterr()
    return rc, captured.err, captured.out


@pytest.mark.parametrize("sections,fragments", [
    ({"strategy": {"name": "auto_freeze"}, "train": {"backend": "deepspeed"}},
     ["strategy.name: 'auto_freeze' changes the trainable set", "deepspeed", "train.backend deepspeed"]),
    ({"search": {"strategy": ["full", {"name": "gradual_unfreeze"}]}, "resources": {"workers_per_trial": 2}},
     ["search.strategy[1].name: 'gradual_unfreeze'", "DDP", "workers_per_trial 2"]),
    ({"strategy": {"name": "progressive_freeze"}, "train": {"cache_frozen_prefix": True}},
     ["strategy.name: 'progressive_freeze'", "cache_frozen_prefix"]),
    ({"strategy": {"name": "full", "lr_decay": 1.5}}, ["strategy.lr_decay: must be <= 1, got 1.5"]),
    ({"strategy": {"name": "full", "lr_decay": 0}}, ["strategy.lr_decay: must be > 0"]),
    ({"strategy": {"name": "lp_ft", "params": {"then": "top_k", "then_params": {"k": 7}}}},
     ["strategy.params.then_params.k: must be in 1..2"]),
    ({"strategy": {"name": "auto_freeze", "params": {"threshold": "low"}}}, ["strategy.params.threshold"]),
])
def test_refused_before_any_model_or_ray(tmp_path, capsys, guarded, sections, fragments):
    rc, err, _ = _run(tmp_path, capsys, **sections)
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_the_same_strategy_with_and_without_lr_decay_are_two_entries(tmp_path, capsys, guarded):
    rc, err, out = _run(tmp_path, capsys, search={"strategy": ["full", {"name": "full", "lr_decay": 0.9}]})
    assert rc == 0, err
    assert "full(lr_decay=0.9)" in out and "\nfull " in out
