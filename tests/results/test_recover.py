"""Rebuilding a damaged result from Tune's record (harness/results/recover.py), in process. The real thing, with
Ray writing the record, is tests/cli/test_faults.py::test_corrupt_result_json_of_finished_trial_is_recovered_on_resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.config import build_config, config_hash
from harness.config.expand import expand
from harness.results import load_result, new_result, write_json_atomic
from harness.results.recover import TUNE_KEY, encode_result, load_or_recover, recover_sweep, tune_record
from tests.conftest import tiny_sweep_dict


@pytest.fixture
def finished(tmp_path):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path)))
    result = {**new_result(trial), "status": "ok", "history": [{"step": 0, "eval_accuracy": 0.5}],
              "train_losses": [0.7, float("nan")]}
    path = tmp_path / "results" / "tiny" / "trials" / trial.trial_id / "result.json"
    write_json_atomic(path, result)
    record = tune_record(tmp_path / "results", "tiny", trial.trial_id)
    record.parent.mkdir(parents=True)
    rows = [{"step": 0, "done": False, "config": {"x": 1}},
            {"done": True, "status": "ok", TUNE_KEY: encode_result(result)}]
    record.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"done": true, "trunc')   # a torn last line
    return {"trial": trial, "path": path, "record": record, "original": load_result(path)}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "deleted", "not_a_result"])
def test_damaged_result_is_rebuilt_whole_with_a_warning(damage, finished):
    path = finished["path"]
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\xff\x00garbage")
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "deleted":
        path.unlink()
    else:
        path.write_text('{"schema": "something/9"}')
    said = []
    rebuilt = load_or_recover(path, finished["record"], log=said.append,
                              config_hash=config_hash(finished["trial"]))
    assert {k: v for k, v in rebuilt.items() if k != "warnings"} == finished["original"]
    assert rebuilt["train_losses"][1] == "nan"                # strict JSON, as result.json stores it
    assert "rebuilt from Ray Tune's copy" in rebuilt["warnings"][-1] and len(said) == 1
    assert load_result(path) == rebuilt                       # written back


def test_nothing_to_rebuild_from_is_none_and_an_intact_result_is_untouched(finished, tmp_path):
    path, record = finished["path"], finished["record"]
    before = path.read_bytes()
    assert load_or_recover(path, record) == finished["original"] and path.read_bytes() == before
    path.write_text("{")
    assert load_or_recover(path, tmp_path / "no-record.json") is None
    assert load_or_recover(path, record, config_hash="another-plan") is None   # a copy of another configuration
    record.write_text('{"done": true}\n')                                   # no final report carried
    assert load_or_recover(path, record) is None
    assert path.read_text() == "{"                                          # nothing invented


def test_recover_sweep_rebuilds_every_damaged_or_missing_trial(finished):
    sweep_dir = finished["path"].parents[2]
    finished["path"].parent.rename(sweep_dir / "gone")
    assert recover_sweep(sweep_dir) == [finished["trial"].trial_id]
    assert recover_sweep(sweep_dir) == []                                   # nothing left to do
    assert isinstance(Path(finished["path"]).read_text(), str)
