"""Services that are down, against closed (and silent) local ports: the Hugging Face Hub and the W&B server.

* Hub ids with no Hub: a clear exit 2 naming the key within seconds (one look, not ~30 s of retries), that
  says what to do (HF_HUB_OFFLINE=1 when the cache has it, else a local path); ``harness.submit --dry-run``
  still renders its script and says the model check was skipped.
* W&B online with a key and no server: the sweep looks once, says so once, logs every run offline (the summary
  run included), exits 0 in bounded time, and ``wandb sync --dry-run`` finds every run to upload later.
"""
from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import transformers
import yaml

from harness import submit, sweep
from harness.data.reach import probe
from tests.conftest import ROOT, tiny_sweep_dict
from tests.support import wandb_reader as reader

PLANTED = "fbdown0" + "9" * 33       # a 40-character API key that no server will ever see


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]     # nothing listens there once the socket is closed


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers (a black-holed proxy or a hung server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def http_port():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)   # answers 501
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_probe_is_bounded_and_any_answer_counts(silent_port, http_port):
    t0 = time.monotonic()
    assert "refused" in probe(f"http://127.0.0.1:{_closed_port()}", timeout=2).lower()
    assert time.monotonic() - t0 < 1.5
    t0 = time.monotonic()
    why = probe(f"http://127.0.0.1:{silent_port}", timeout=1.0)
    assert why and time.monotonic() - t0 < 2.0, why       # "timed out" / "no answer within 1 s"
    assert probe(f"http://127.0.0.1:{http_port}", timeout=2) is None   # a 501 is an answer


# ------------------------------------------------------------------------------------------- the Hub
def _config(tmp_path: Path, model: dict | None = None, **sections) -> Path:
    data = tiny_sweep_dict(tmp_path, **sections)
    if model is not None:
        data["model"] = model
    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def no_hub(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)

    def no_fetch(*a, **k):
        raise AssertionError("a Hub fetch was attempted")

    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        monkeypatch.setattr(cls, "from_pretrained", no_fetch)
    return monkeypatch


@pytest.mark.parametrize("section, key, hint", [
    ({"model": {"name": "fb-test-org/no-such-model"}}, "model.name", "local path"),
    ({"data": {"source": "fb-test-org/no-such-data"}}, "data.source", "local path"),
])
def test_hub_id_without_a_hub_exits_2_within_seconds(section, key, hint, tmp_path, cache_dir, no_hub, capsys):
    config = _config(tmp_path, **section)
    for args in ([str(config), "--dry-run"], [str(config)]):
        t0 = time.monotonic()
        rc = sweep.main(args)
        seconds = time.monotonic() - t0
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith(f"error: {key}: ") and "cannot be reached" in err and hint in err, err
        assert "HF_HUB_OFFLINE=1" in err and "Traceback" not in err
        assert seconds < 8, seconds                         # one look: no retries (they took 27-37 s)
    assert not (tmp_path / "results").exists()


def test_hub_id_in_the_local_cache_suggests_hf_hub_offline(tmp_path, no_hub, capsys):
    import huggingface_hub.constants

    snap = tmp_path / "hub" / "models--fb-test-org--cached" / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "bert"}')
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0123abc")
    no_hub.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    config = _config(tmp_path, model={"name": "fb-test-org/cached"})
    assert sweep.main([str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "in the local Hugging Face cache: run with HF_HUB_OFFLINE=1" in err, err


def test_submit_dry_run_without_network_renders_and_says_the_model_check_was_skipped(tmp_path, no_hub, capsys):
    config = _config(tmp_path, model={"name": "fb-test-org/no-such-model"})
    t0 = time.monotonic()
    rc = submit.main([str(config), "--nodes", "1", "--gpus-per-node", "0", "--cpus-per-node", "2", "--dry-run",
                      "--results", str(tmp_path / "res")])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert time.monotonic() - t0 < 8
    assert out.out.startswith("#!/bin/bash") and re.search(r"^CONFIG=", out.out, re.M)
    assert "cannot be reached" in out.err and "skipped the checks" in out.err, out.err


# ------------------------------------------------------------------------------------------- W&B
@pytest.fixture(scope="module")
def wandb_down(tmp_path_factory, cache_dir):
    """A 2-trial sweep, W&B online with a key, the server a closed local port."""
    tmp = tmp_path_factory.mktemp("wandb-down")
    (tmp / "home").mkdir()
    data = tiny_sweep_dict(tmp, name="wbdown", search={"seed": [0, 1]},
                           resources={"cpus_per_trial": 1, "num_cpus": 2}, output={"plots": False},
                           logging={"wandb": {"mode": "online", "project": "fb-test"}})
    config = tmp / "wbdown.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(FREEZEBENCH_CACHE=str(cache_dir), HOME=str(tmp / "home"), NETRC=str(tmp / "no-netrc"),
               WANDB_API_KEY=PLANTED, WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}", PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return {"proc": proc, "seconds": time.monotonic() - t0, "dir": tmp / "results" / "wbdown", "env": env}


@pytest.mark.slow
def test_wandb_server_down_falls_back_to_offline_once_and_finishes(wandb_down):
    proc = wandb_down["proc"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # online tries would cost >= 60 s per run (init_timeout), trials and summary run one after the other
    assert wandb_down["seconds"] < 150, wandb_down["seconds"]
    said = [ln for ln in proc.stdout.splitlines() if "cannot be reached" in ln]
    assert len(said) == 1 and said[0].startswith("W&B: offline (online was asked for, but http://127.0.0.1:"), said
    assert "W&B online init failed" not in proc.stdout + proc.stderr
    assert re.search(r"^W&B: summary run summary-\S+ \(", proc.stdout, re.M), proc.stdout[-2000:]   # not lost


@pytest.mark.slow
def test_wandb_offline_runs_of_a_down_server_can_be_synced_later(wandb_down):
    sweep_dir = wandb_down["dir"]
    runs = [reader.read_offline_run(d) for d in sorted((sweep_dir / "wandb").glob("offline-run-*"))]
    assert sorted(r["job_type"] for r in runs) == ["freeze_attention", "freeze_attention", "summary"]
    assert all(r["exit_code"] == 0 for r in runs)
    trials = [r for r in runs if r["job_type"] != "summary"]
    assert all([h["_step"] for h in r["history"]] == [0, 4, 8, 12] for r in trials)
    cmd = re.search(r"^\s*(wandb sync \S+/offline-run-\*)\s*$", wandb_down["proc"].stdout, re.M)
    assert cmd, wandb_down["proc"].stdout[-2000:]
    dry = subprocess.run(cmd.group(1).replace("wandb sync", "wandb sync --dry-run", 1), shell=True, cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**wandb_down["env"], "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert "Would sync 3 run(s)" in dry.stdout + dry.stderr, dry.stdout + dry.stderr
