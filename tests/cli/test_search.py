"""Sampled searches (search.algorithm random / optuna / bohb) through the real CLI.

Cheap: malformed distributions and misused keys exit 2 naming the key, before Ray starts; ``--dry-run`` prints
strategies x budget x seeds and the space. Slow (real Ray Tune, the tiny model): an optuna sweep gives every
strategy exactly its budget, each configuration with every seed, grouped in the table; a random sweep killed with
SIGKILL finishes its budget on ``--resume`` without rerunning a finished trial.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from harness.config import build_config
from harness.config.schema import ConfigError
from harness.config.search import sampled_trial, studies
from tests.conftest import ROOT, tiny_sweep_dict
from tests.support.guards import forbid_model_loads, forbid_ray
from tests.support.sweep_kill import sigkill_when
from tests.support.tune_state import as_killed_before_first_snapshot

SPACE = {"lr": {"loguniform": [1e-4, 1e-2]}, "weight_decay": {"uniform": [0.0, 0.1]}}


def _search(tmp_path: Path, algorithm: str = "optuna", budget: int = 4, **extra) -> dict:
    return tiny_sweep_dict(tmp_path, name="search",
                           search={"algorithm": algorithm, "num_samples": budget, "strategy": ["full", "head_only"],
                                   "seed": [0, 1], **SPACE, **extra},
                           train={"max_steps": 4, "eval_every": 2},
                           data={"train_size": 64, "val_size": 16, "test_size": 16, "max_length": 32},
                           output={"dir": str(tmp_path / "results"), "save_model": "none", "plots": False})


# ------------------------------------------------------------------------------------------ cheap: no Ray
@pytest.mark.parametrize("search, key, fragment", [
    ({"lr": {"loguniform": [0, 1e-3]}}, "search.lr.loguniform[0]", "low > 0"),
    ({"lr": {"gaussian": [1e-5, 1e-3]}}, "search.lr.gaussian", "unknown distribution"),
    ({"lr": {"choice": []}}, "search.lr.choice", "non-empty"),
    ({"weight_decay": {"uniform": [0.1, 0.01]}}, "search.weight_decay.uniform", "must be below"),
    ({"dropout": {"uniform": [0.0, 1.0]}}, "search.dropout.uniform[1]", "< 1"),
    ({"lr": {"choice": [1e-4, -1]}}, "search.lr.choice[1]", "> 0"),
    ({"batch_size": {"randint": [8, 16.5]}}, "search.batch_size.randint", "whole numbers"),
    ({"lr": {"randint": [1, 3]}}, "search.lr.randint", "integer axes"),
    ({"scheduler": {"uniform": [0, 1]}}, "search.scheduler.uniform", "choice"),
    ({"lr": {"loguniform": [1e-5, 1e-3], "choice": [1e-4]}}, "search.lr", "exactly one key"),
    ({"seed": {"choice": [0, 1]}}, "search.seed", "grid axis"),
    ({"lr": {"loguniform": [1e-5, 1e-3]}, "algorithm": "grid", "num_samples": None}, "search.lr", "grid cannot"),
    ({"num_samples": None}, "search.num_samples", "required"),
    ({"lr": [1e-3], "weight_decay": [0.01]}, "search.algorithm", "none"),
])
def test_malformed_search_names_the_key(tmp_path, search, key, fragment):
    data = _search(tmp_path)
    data["search"] = {k: v for k, v in {**data["search"], **search}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert str(info.value).startswith(f"{key}:"), info.value
    assert fragment in str(info.value), info.value


@pytest.fixture
def guarded(monkeypatch):
    forbid_model_loads(monkeypatch)
    forbid_ray(monkeypatch)
    import harness.adapters.ray.search as search_adapter

    monkeypatch.setattr(search_adapter, "run_search", lambda *a, **k: pytest.fail("Ray was started"))


def test_malformed_distribution_exits_2_before_ray(tmp_path, guarded, capsys):
    from harness import sweep

    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(_search(tmp_path)))
    for value, key in (("{loguniform: [0, 1e-3]}", "search.lr.loguniform[0]"), ("{normal: [0, 1]}", "search.lr.normal"),
                       ("{choice: []}", "search.lr.choice")):
        rc = sweep.main([str(path), "--set", f"search.lr={value}"])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith(f"error: {key}:"), err
    assert not list(tmp_path.rglob("trials"))


def test_dry_run_prints_the_plan(tmp_path, guarded, capsys):
    from harness import sweep

    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(_search(tmp_path, batch_size={"choice": [8, 16]})))
    assert sweep.main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 strategies x 4 configurations x 2 seeds = 16 trials" in out, out
    assert "lr ~ loguniform[0.0001, 0.01]" in out and "batch_size ~ choice[8, 16]" in out, out
    assert sweep.main([str(path), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["trials"] == 16 and [s["strategy"] for s in plan["studies"]] == ["full", "head_only"]
    assert not list(tmp_path.rglob("trials"))


def test_sampled_trial_ids_are_readable_unique_and_validated(tmp_path):
    plan = studies(build_config(_search(tmp_path)))
    assert [s.label for s in plan] == ["full", "head_only"] and plan[0].n_trials == 8
    template = plan[1].template.to_dict()
    ids = {sampled_trial(template, "head_only", "optuna", n, {"lr": 1e-3, "weight_decay": 0.01}, seed, 0).trial_id
           for n in range(3) for seed in (0, 1)}
    assert len(ids) == 6 and "head_only_n002_lr0.001_wd0.01_s1" in ids, ids
    t = sampled_trial(template, "head_only", "optuna", 0, {"lr": 3.14159e-4}, 1, 0)
    assert t.train.lr == 3.14159e-4 and t.train.seed == 1 and t.sample["values"] == {"lr": 3.14159e-4}
    with pytest.raises(ConfigError):   # a searcher's value out of the axis's range fails validation
        sampled_trial(template, "head_only", "optuna", 0, {"lr": -1.0}, 0, 0)


# ------------------------------------------------------------------------------------------ slow: real Ray Tune
def _start(cfg: Path, *extra: str, log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.sweep", str(cfg), *extra], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _results(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "search" / "trials").glob("*/result.json"):
        with contextlib.suppress(OSError, json.JSONDecodeError):
            found[path.parent.name] = json.loads(path.read_text())
    return found


def _check_budget(out: Path, budget: int, seeds=(0, 1)) -> None:
    """Every strategy: exactly ``budget`` sampled configurations, each run with every seed; the table groups them
    by strategy + hyper-parameters (one row per configuration, its seeds together)."""
    results = _results(out)
    assert all(r["status"] == "ok" for r in results.values()), {k: r["status"] for k, r in results.items()}
    by_sample = defaultdict(list)
    for r in results.values():
        assert r["sample"] and r["sample"]["values"]["lr"] == r["hparams"]["lr"]
        by_sample[(r["strategy"], r["sample"]["n"])].append(r["hparams"]["seed"])
    for strategy in ("full", "head_only"):
        samples = sorted(n for s, n in by_sample if s == strategy)
        assert samples == list(range(budget)), (strategy, samples)
    assert all(sorted(s) == list(seeds) for s in by_sample.values()), by_sample
    table = json.loads((out / "search" / "comparison.json").read_text())
    rows = [r for r in table["rows"] if r["strategy"] in ("full", "head_only")]
    assert len(rows) == 2 * budget, [(r["strategy"], r.get("lr")) for r in rows]
    assert all(r["n_ok"] == len(seeds) for r in rows), rows


@pytest.mark.slow
def test_optuna_sweep_gives_every_strategy_its_budget(tmp_path, cache_dir):
    cfg = tmp_path / "search.yaml"
    cfg.write_text(yaml.safe_dump(_search(tmp_path, "optuna")))
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}
    log = tmp_path / "sweep.log"
    assert _start(cfg, log=log, env=env).wait(timeout=600) == 0, log.read_text()[-4000:]
    _check_budget(tmp_path / "results", 4)
    text = log.read_text()
    assert "ETA" in text and "16/16 done" in text, text[-2000:]
    assert len(list((tmp_path / "results" / "search" / "_tune").glob("search.*"))) == 2   # one study per strategy


@pytest.mark.slow
def test_random_sweep_resumes_after_sigkill(tmp_path, cache_dir):
    out = tmp_path / "results"
    cfg = tmp_path / "search.yaml"
    data = _search(tmp_path, "random")
    data["train"].update(max_steps=40, eval_every=4, checkpoint_every=8)   # trials long enough to be caught mid-way
    cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}

    def some_finished_and_others_running() -> bool:
        res = _results(out).values()
        return sum(r["status"] == "ok" for r in res) >= 3 and any(r["status"] == "running" for r in res)

    # settle: let Tune's state snapshot and searcher state lag (or not): both must resume
    sigkill_when(_start(cfg, log=tmp_path / "sweep.log", env=env), some_finished_and_others_running,
                 tmp_path / "sweep.log", settle=2)
    before = {k: r["started_at"] for k, r in _results(out).items() if r["status"] == "ok"}
    assert before
    log = tmp_path / "sweep-resume.log"
    assert _start(cfg, "--resume", log=log, env=env).wait(timeout=600) == 0, log.read_text()[-4000:]
    _check_budget(out, 4)
    after = _results(out)
    unplanned = {p.name for p in (out / "search" / "unplanned").glob("*")} if (out / "search" / "unplanned").exists() \
        else set()
    for key, started in before.items():   # a finished trial is kept, never run again
        if key not in unplanned:
            assert after[key]["started_at"] == started, key


@pytest.mark.slow
def test_a_study_killed_before_its_first_snapshot_resumes(tmp_path, cache_dir):
    """The window the SIGKILL test hits only by chance: Tune writes a study's ``tuner.pkl`` when its Tuner is
    built, before any experiment state or searcher state. A driver killed there leaves a study that
    ``Tuner.can_restore`` accepts but ``Tuner.restore`` cannot rebuild (Tune pickles neither the ``param_space``
    nor ``num_samples``: its searcher would have no space). ``--resume`` starts that study again from the config
    and runs its whole budget; the study that had finished is not rerun."""
    out = tmp_path / "results"
    cfg = tmp_path / "search.yaml"
    cfg.write_text(yaml.safe_dump(_search(tmp_path, "random", budget=1)))
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}
    log = tmp_path / "sweep.log"
    assert _start(cfg, log=log, env=env).wait(timeout=600) == 0, log.read_text()[-4000:]
    exp = out / "search" / "_tune" / "search.head_only"
    as_killed_before_first_snapshot(exp)
    for path in (out / "search" / "trials").glob("head_only_*"):
        shutil.rmtree(path)
    before = {k: r["started_at"] for k, r in _results(out).items()}
    assert before and all(k.startswith("full_") for k in before)
    log = tmp_path / "sweep-resume.log"
    assert _start(cfg, "--resume", log=log, env=env).wait(timeout=600) == 0, log.read_text()[-4000:]
    _check_budget(out, 1)
    after = _results(out)
    assert all(after[k]["started_at"] == started for k, started in before.items())   # study full: not rerun


def test_html_keeps_the_best_configurations_per_strategy_at_scale():
    from harness.reporting.html import _best_rows

    rows = [{"strategy": s, "val_score_mean": v / 1000} for s in ("full", "head_only") for v in range(1000)]
    shown, note = _best_rows(rows, limit=100)
    assert len(shown) == 100 and {r["strategy"] for r in shown} == {"full", "head_only"}
    assert min(r["val_score_mean"] for r in shown) == 0.95 and "Showing 100 of 2,000" in note
    assert _best_rows(rows[:50], limit=100) == (rows[:50], "")
