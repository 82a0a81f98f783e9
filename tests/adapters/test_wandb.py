"""W&B tracking with the real wandb client, offline (no account, no network), and real Ray.

Offline runs are read back from their ``run-<id>.wandb`` transaction logs with wandb's own protobuf records
(:func:`tests.support.wandb_reader.read_offline_run`).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.adapters import wandb as wa
from harness.adapters.wandb.mode import SALT_FILE, api_keys, scrub
from tests.support import wandb_reader as reader
from harness.config import build_config
from harness.config.expand import expand
from harness.results import result_path, write_json_atomic
from tests.conftest import ROOT, tiny_sweep_dict

PLANTED = "fb-planted-secret-" + secrets.token_hex(11)   # 40 characters, like a real W&B key


# ------------------------------------------------------------------------------------------------ unit
def _env(tmp_path, **kw) -> dict:
    env = {"NETRC": str(tmp_path / "no-netrc")}
    env.update({k: v for k, v in kw.items() if v is not None})
    return env


@pytest.mark.parametrize("configured, env, netrc_host, expected", [
    (None, {}, None, "offline"),                                    # no key anywhere -> offline, never a prompt
    (None, {"WANDB_API_KEY": PLANTED}, None, "online"),             # key in the environment
    (None, {}, "api.wandb.ai", "online"),                           # key in ~/.netrc (what `wandb login` writes)
    (None, {}, "example.org", "offline"),                           # netrc entry for another host only
    (None, {"WANDB_API_KEY": PLANTED, "WANDB_MODE": "offline"}, None, "offline"),
    (None, {"WANDB_MODE": "disabled"}, None, "disabled"),
    ("offline", {"WANDB_API_KEY": PLANTED}, None, "offline"),       # the config wins over key detection ...
    ("disabled", {"WANDB_MODE": "online"}, None, "disabled"),       # ... and over WANDB_MODE
    ("online", {}, None, "offline"),                                # online without a key: offline, not a prompt
])
def test_resolve_mode(tmp_path, configured, env, netrc_host, expected):
    environ = _env(tmp_path, **env)
    if netrc_host:
        (tmp_path / "no-netrc").write_text(f"machine {netrc_host}\n  login user\n  password {PLANTED}\n")
        os.chmod(tmp_path / "no-netrc", 0o600)
    mode = wa.resolve_mode(configured, environ)
    assert mode.mode == expected, mode
    assert PLANTED not in mode.why


def test_run_ids_are_deterministic_valid_and_salted():
    long_id = "lora(alpha=16,r=8)_lr5e-05_bs16_linear_clip1_" + "x" * 80 + "_s2"
    a = wa.run_id("freeze_grid", long_id, "salt1")
    assert a == wa.run_id("freeze_grid", long_id, "salt1")              # same trial -> same run (resume)
    assert re.fullmatch(r"[a-z0-9_-]{1,64}", a), a
    assert a != wa.run_id("other_sweep", long_id, "salt1")
    assert a != wa.run_id("freeze_grid", long_id, "salt2")              # --overwrite -> new salt -> new runs
    assert wa.run_id("s", "full_s0") != wa.run_id("s", "full_s1")


def test_process_rank():
    assert wa.process_rank({}) == 0
    assert wa.process_rank({"RANK": "3"}) == 3


def test_config_strings_holding_the_key_are_redacted(tmp_path):
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(f"machine api.wandb.ai\n  login user\n  password {PLANTED}x\n")
    hidden = api_keys({"WANDB_API_KEY": PLANTED, "NETRC": str(netrc_file)})
    assert hidden == [PLANTED, PLANTED + "x"]
    cfg = {"data": {"source": f"https://x/?token={PLANTED}"}, "tags": ["a", PLANTED], "lr": 1e-3}
    assert scrub(cfg, hidden) == {"data": {"source": "<redacted>"}, "tags": ["a", "<redacted>"], "lr": 1e-3}


def _trial(tmp_path, mode="offline", **sections):
    cfg = build_config(tiny_sweep_dict(tmp_path, logging={"wandb": {"mode": mode, "tags": ["unit"]}}, **sections))
    return expand(cfg)[0]


def _row(step, acc):
    return {"step": step, "epoch": step / 32, "train_loss": None if step == 0 else 0.69, "val_loss": 0.7,
            "val_score": acc, "val_accuracy": acc, "lr": 1e-3, "grad_norm": None if step == 0 else 0.5, "samples_per_s": 100.0,
            "tokens_per_s": 6400.0, "peak_mem_mb": 700.0, "elapsed_s": 1.0, "skipped_steps": 0}


@pytest.mark.parametrize("mode, rank", [("disabled", 0), ("offline", 1)])
def test_tracker_is_a_no_op_when_disabled_or_not_rank_zero(tmp_path, monkeypatch, mode, rank):
    monkeypatch.setattr(wa.tracker, "init_run", lambda *a, **k: pytest.fail("wandb.init was called"))
    seen = []
    with wa.TrialTracker(_trial(tmp_path, mode), rank=rank) as tracker:
        tracker.wrap(lambda m, c=None: seen.append(m["step"]))(_row(0, 0.5), None)
    assert seen == [0] and not (tmp_path / "results" / "tiny" / "wandb").exists()


def test_a_wandb_failure_never_fails_the_trial(tmp_path, monkeypatch, caplog):
    def broken(*a, **k):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(wa.tracker, "init_run", broken)
    seen = []
    with wa.TrialTracker(_trial(tmp_path)) as tracker:
        report = tracker.wrap(lambda m, c=None: seen.append(m["step"]))
        for step in (0, 4):
            report(_row(step, 0.5), None)
    assert seen == [0, 4]
    assert "W&B init failed" in caplog.text


def test_resumed_trial_resumes_its_run(tmp_path):
    """Same (sweep, trial id) -> same run id; the second attempt (a Ray retry or --resume) continues that run."""
    trial = _trial(tmp_path)
    sweep_dir = tmp_path / "results" / "tiny"
    for steps, status in (((0, 4), "running"), ((4, 8, 12), "ok")):
        with wa.TrialTracker(trial) as tracker:
            report = tracker.wrap(lambda m, c=None: None)
            for step in steps:
                report(_row(step, 0.5 + step / 100), None)
            write_json_atomic(result_path(trial.output.dir, trial.sweep, trial.trial_id), {
                "schema": "freezebench.trial/2", "trial_id": trial.trial_id, "status": status, "metric": {"name": "accuracy"},
                "test": {"step": 12, "score": 0.62, "metrics": {"accuracy": 0.62}} if status == "ok" else None,
                "best": {"score": 0.62, "step": 12}, "params": {"trainable": 10, "total": 100, "ratio": 0.1}})
        assert tracker.seconds < 30
    first, second = (reader.read_offline_run(d) for d in wa.offline_runs(sweep_dir))
    assert first["id"] == second["id"] == wa.run_id("tiny", trial.trial_id)     # no salt file: plain hash
    assert [h["_step"] for h in first["history"]] == [0, 4]
    assert [h["_step"] for h in second["history"]] == [4, 8, 12]
    assert second["summary"]["status"] == "ok" and second["summary"]["test/score"] == 0.62
    assert second["config"]["trial_id"] == trial.trial_id and second["job_type"] == "freeze_attention"
    assert second["tags"] == ["unit"] and second["exit_code"] == 0


def test_summary_run_and_offline_report_from_stored_results(tmp_path, capsys):
    """No Ray: a synthetic sweep folder -> write_report -> the summary run and the offline report spec."""
    from harness import report as report_cli
    from harness import reporting as report
    from tests.reporting.test_report import make_sweep

    sweep_dir = make_sweep(tmp_path / "results")
    report.write_report(sweep_dir, console=lambda *_: None)
    cfg = build_config(tiny_sweep_dict(tmp_path, name="synth", logging={"wandb": {"mode": "offline"}}))
    wa.prepare_sweep(cfg, sweep_dir)
    rid = wa.log_sweep_summary(cfg, sweep_dir)
    out = capsys.readouterr().out
    assert rid and f"wandb sync {sweep_dir}/wandb/offline-run-*" in out
    (run,) = [reader.read_offline_run(d) for d in wa.offline_runs(sweep_dir)]
    assert (run["job_type"], run["group"], run["id"]) == ("summary", "synth", rid)
    comparison = json.loads((sweep_dir / "comparison.json").read_text())
    table = json.loads((run["files_dir"] / run["summary"]["comparison"]["path"]).read_text())
    assert len(table["data"]) == len(comparison["rows"]) and "problems" in run["summary"]   # lora: all failed
    assert (sweep_dir / "wandb" / "data").is_dir()          # artifact staging stays with the sweep
    assert report_cli.main([str(sweep_dir), "--wandb-report", "offline"]) == 0
    doc = json.loads((sweep_dir / "wandb_report.json").read_text())
    assert doc["title"] == "freezebench: synth" and doc["project"] == "freezebench"
    assert "--wandb-report online" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ sweep
def _run(args, env, cwd=ROOT, timeout=900):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter()


def _sweep_env(tmp_path, cache_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(FREEZEBENCH_CACHE=str(cache_dir), NETRC=str(tmp_path / "no-netrc"), RAY_DISABLE_USAGE_STATS="1",
               TOKENIZERS_PARALLELISM="false", **extra)
    return env


def _sweep_yaml(tmp_path, name, mode) -> Path:
    data = tiny_sweep_dict(tmp_path, name=name, search={"strategy": ["full", "freeze_attention"], "seed": [0, 1]},
                           logging={"wandb": {"mode": mode, "project": "fb-test", "tags": ["ci"]}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def offline_sweep(tmp_path_factory, cache_dir):
    """2 strategies x 2 seeds through the real CLI on real Ray, W&B offline, with a planted API key in the
    environment (the mode is forced to offline, so nothing may try the network) and a fake HOME."""
    tmp = tmp_path_factory.mktemp("wandb-sweep")
    home = tmp / "home"
    home.mkdir()
    env = _sweep_env(tmp, cache_dir, WANDB_API_KEY=PLANTED, HOME=str(home))
    config = _sweep_yaml(tmp, "wb", "offline")
    warm, _ = _run(["-c", "import sys; from harness.config import load_config; from harness.sweep import "
                          "_tokenize_once; _tokenize_once(load_config(sys.argv[1]))", str(config)], env)
    assert warm.returncode == 0, warm.stderr[-3000:]          # tokenize first: the timed sweeps both hit the cache
    t0 = time.perf_counter()
    sweep, t1 = _run(["-m", "harness.sweep", str(config)], env)
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    report, _ = _run(["-m", "harness.report", str(tmp / "results" / "wb"), "--wandb-report"],
                     {**env, "WANDB_MODE": "offline"})
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return {"dir": tmp / "results" / "wb", "home": home, "tmp": tmp, "sweep": sweep, "report": report,
            "wall_s": t1 - t0}


@pytest.mark.slow
def test_offline_sweep_writes_one_run_per_trial_and_a_summary_run(offline_sweep):
    sweep_dir = offline_sweep["dir"]
    runs = [reader.read_offline_run(d) for d in wa.offline_runs(sweep_dir)]
    trials = [r for r in runs if r["job_type"] != "summary"]
    (summary,) = [r for r in runs if r["job_type"] == "summary"]
    assert len(trials) == 4
    assert {r["group"] for r in runs} == {"wb"} and {r["project"] for r in runs} == {"fb-test"}
    assert sorted(r["job_type"] for r in trials) == ["freeze_attention", "freeze_attention", "full", "full"]
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("trials/*/result.json")}
    assert sorted(r["name"] for r in trials) == sorted(results)
    for run in trials:
        res = results[run["name"]]
        assert run["config"]["trial_id"] == run["name"] and run["config"]["train"]["max_steps"] == 12
        assert run["tags"] == ["ci"] and run["exit_code"] == 0
        # per-step history: every evaluation at step = optimizer step, values as in result.json
        assert [h["_step"] for h in run["history"]] == [h["step"] for h in res["history"]] == [0, 4, 8, 12]
        assert [h["val/score"] for h in run["history"]] == [h["val_score"] for h in res["history"]]
        assert [h["val/accuracy"] for h in run["history"]] == [h["val_accuracy"] for h in res["history"]]
        last = run["history"][-1]
        assert {"val/loss", "train/loss", "train/lr", "train/grad_norm", "perf/samples_per_s",
                "perf/tokens_per_s", "perf/peak_mem_mb"} <= set(last)
        s = run["summary"]
        assert s["status"] == "ok" and s["test/score"] == res["test"]["score"]
        assert s["test/accuracy"] == res["test"]["metrics"]["accuracy"] and s["val/final_score"] == res["val"]["score"]
        assert s["best/val_score"] == res["best"]["score"]
        assert s["params/trainable"] == res["params"]["trainable"]
        assert s["params/trainable_ratio"] == pytest.approx(res["params"]["ratio"])
    # the resumable run id is derived from (sweep, trial id) and the sweep folder's salt
    salt = (sweep_dir / "wandb" / SALT_FILE).read_text().strip()
    assert {r["id"] for r in trials} == {wa.run_id("wb", t, salt) for t in results}
    # summary run: both tables, the plots and report.html as an artifact
    table = json.loads((summary["files_dir"] / summary["summary"]["comparison"]["path"]).read_text())
    comparison = json.loads((sweep_dir / "comparison.json").read_text())
    assert table["columns"] == comparison["metadata"]["columns"]
    assert sorted(row[0] for row in table["data"]) == ["freeze_attention", "full"]
    per_strategy = json.loads((summary["files_dir"] / summary["summary"]["summary"]["path"]).read_text())
    assert per_strategy["columns"] == comparison["metadata"]["summary_columns"] and len(per_strategy["data"]) == 2
    assert {f"plots/{p.stem}" for p in (sweep_dir / "plots").glob("*.png")} <= set(summary["history"][0])
    assert summary["summary"]["n_trials"] == 4
    records = reader.iter_records(summary["file"])
    artifacts = [rec.artifact for rec in records if rec.WhichOneof("record_type") == "artifact"]
    report_art = [a for a in artifacts if a.type == "report"]
    assert report_art and report_art[0].name == "wb-report"
    assert "report.html" in {e.path for e in report_art[0].manifest.contents}


@pytest.mark.slow
def test_console_names_the_run_folder_and_a_working_sync_command(offline_sweep):
    out = offline_sweep["sweep"].stdout
    assert "W&B: offline (logging.wandb.mode)" in out
    cmd = re.search(r"^\s*(wandb sync \S+/offline-run-\*)\s*$", out, re.M)
    assert cmd, out[-2000:]
    assert str(offline_sweep["dir"] / "wandb") in cmd.group(1)
    # the printed command, as a dry run (no network): wandb itself finds all 5 runs
    dry = subprocess.run(cmd.group(1).replace("wandb sync", "wandb sync --dry-run", 1), shell=True, cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert "Would sync 5 run(s)" in dry.stdout + dry.stderr, dry.stdout + dry.stderr


@pytest.mark.slow
def test_wandb_report_offline_writes_its_specification(offline_sweep):
    spec_path = offline_sweep["dir"] / "wandb_report.json"
    assert "--wandb-report online" in offline_sweep["report"].stdout
    doc = json.loads(spec_path.read_text())
    assert doc["project"] == "fb-test" and doc["title"] == "freezebench: wb"
    text = json.dumps(doc["spec"])
    grids = [b for b in doc["spec"]["blocks"] if b["type"] == "panel-grid"]
    plots = [p["config"] for g in grids for p in g["metadata"]["panelBankSectionConfig"]["panels"]
             if p["viewType"] == "Run History Line Plot"]
    acc = [p for p in plots if p["metrics"] == ["val/score"]]
    assert acc and acc[0]["groupBy"] == "jobType" and acc[0]["xAxis"] == "_step"
    assert '"value": "wb"' in text and '"name": "group"' in text           # run sets filter on the sweep's group
    assert "comparison" in text and "markdown-block" in text               # the logged table + a static one


@pytest.mark.slow
def test_planted_api_key_is_never_written(offline_sweep):
    """Every byte under the results folder (trial results, W&B run files, Ray's _tune folder, reports), the
    fake HOME (W&B's data/cache/config dirs) and the console output of the sweep and the report CLI."""
    needle = PLANTED.encode()
    scanned, leaks = 0, []
    for root in (offline_sweep["tmp"] / "results", offline_sweep["home"]):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                scanned += 1
                if needle in path.read_bytes():
                    leaks.append(str(path))
    assert scanned > 50 and any("_tune" in str(p) for p in (offline_sweep["tmp"] / "results").rglob("*"))
    assert not leaks, leaks
    for proc in (offline_sweep["sweep"], offline_sweep["report"]):
        assert PLANTED not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_disabled_mode_starts_no_wandb(tmp_path, cache_dir):
    """``mode: disabled``: the sweep says so once, writes no W&B folder and no run, and starts no summary run.
    (W&B's cost in time is measured by ``python -m benchmarks.wandb_overhead``, repeated runs, not here.)"""
    (tmp_path / "home").mkdir()
    proc, _ = _run(["-m", "harness.sweep", str(_sweep_yaml(tmp_path, "wb_off", "disabled"))],
                   _sweep_env(tmp_path, cache_dir, HOME=str(tmp_path / "home")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (tmp_path / "results" / "wb_off" / "wandb").exists()
    assert not list((tmp_path / "home").rglob("*.wandb"))
    w_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("W&B:")]
    assert w_lines == ["W&B: disabled (logging.wandb.mode)"], w_lines



def test_project_and_entity_follow_wandb_env_when_the_config_leaves_them_unset():
    from harness.adapters.wandb.mode import entity_of, project_of
    from harness.config import WandbConfig

    env = {"WANDB_PROJECT": "from-env", "WANDB_ENTITY": "team-env"}
    assert (project_of(WandbConfig(), env), entity_of(WandbConfig(), env)) == ("from-env", "team-env")
    assert (project_of(WandbConfig(project="mine", entity="me"), env), entity_of(WandbConfig(entity="me"), env)) \
        == ("mine", "me")
    assert (project_of(WandbConfig(), {}), entity_of(WandbConfig(), {})) == ("freezebench", None)
