"""The report layer end to end on synthetic result.json files: files, CSV header, determinism, HTML, CLI."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import report as report_cli
from harness import reporting as report
from harness.results import write_json_atomic
from harness.reporting.stats import row_columns

REQUIRED = ["strategy", "lr", "batch_size", "scheduler", "grad_clip", "n_seeds", "n_ok", "acc_mean", "acc_std",
            "acc_ci95", "acc_min", "acc_max", "oscillation", "loss_roughness", "trainable_params", "total_params",
            "trainable_ratio", "samples_per_s", "tokens_per_s", "peak_mem_mb", "wall_s", "steps_to_80", "steps_to_90"]
ROOT = Path(__file__).resolve().parents[2]


def make_result(index: int, strategy: str = "full", seed: int = 0, *, status: str = "ok", level: float = 0.9,
                noise: float = 0.01, ratio: float = 1.0, speed: float = 50.0, max_steps: int = 100,
                eval_every: int = 10, stop_at: int | None = None, reason: str | None = None,
                sweep: str = "synth", **hparams) -> dict:
    """A result.json like harness/train/trial.py writes: a rising accuracy curve towards ``level`` with seeded noise."""
    rng = np.random.default_rng(1000 * index + seed)
    hp = {"lr": 5e-5, "batch_size": 16, "scheduler": "linear", "grad_clip": 1.0, "seed": seed,
          "weight_decay": 0.01, "dropout": None, "attention_dropout": None, "label_smoothing": 0.0,
          "word_dropout": 0.0, "max_steps": max_steps, "grad_accum": 1, "precision": "bf16", "backend": "torch"}
    hp.update(hparams)
    last = stop_at if stop_at is not None else max_steps
    history = []
    if status != "failed":
        for step in range(0, last + 1, eval_every):
            acc = 0.5 + (level - 0.5) * (1 - math.exp(-step / 25)) + float(rng.normal(0, noise)) * (step > 0)
            loss = None if step == 0 else 0.7 * math.exp(-step / 40) + 0.2 + float(rng.normal(0, 0.02))
            history.append({"step": step, "train_loss": loss, "eval_loss": 1 - acc, "eval_accuracy": acc,
                            "lr": hp["lr"], "grad_norm": 1.0, "samples_per_s": speed, "tokens_per_s": speed * 200,
                            "peak_mem_mb": 900.0, "elapsed_s": step / 10})
    if status == "diverged":
        history[-1]["train_loss"] = "nan"
    total = 22_700_000
    final = None
    if status in ("ok", "diverged"):
        final = {"step": last, "eval_accuracy": history[-1]["eval_accuracy"] if status == "ok" else 0.5,
                 "eval_loss": 0.3, "eval_size": 1000, "train_loss": 0.3}
    return {"schema": "freezebench.trial/1", "sweep": sweep, "trial_id": f"t{index:04d}", "index": index,
            "status": status, "reason": reason, "strategy": strategy, "strategy_name": strategy.split("(")[0],
            "hparams": hp, "params": None if status == "failed" else
            {"trainable": int(total * ratio), "total": total, "ratio": int(total * ratio) / total},
            "history": history, "train_losses": [0.5] * (0 if status == "failed" else last), "final": final,
            "throughput": None if status == "failed" else {"samples_per_s": speed + seed, "tokens_per_s": speed * 200},
            "timing": {"wall_s": 30.0 + seed, "train_s": 25.0, "eval_s": 5.0},
            "memory": {"peak_mem_mb": 900.0 * ratio + 100}}


def make_sweep(root: Path, name: str = "synth") -> Path:
    """full, freeze_attention (two lrs), top_k, head_only (worse), bitfit (one seed), lora (all failed)."""
    sweep = root / name
    specs = [("full", dict(level=0.90, ratio=1.0, speed=40.0)),
             ("freeze_attention", dict(level=0.91, ratio=0.52, speed=60.0)),
             ("freeze_attention", dict(level=0.86, ratio=0.52, speed=60.0, lr=1e-4)),
             ("top_k(k=2)", dict(level=0.895, ratio=0.35, speed=80.0)),
             ("head_only", dict(level=0.70, ratio=0.001, speed=150.0))]
    i = 0
    results = []
    for strategy, kw in specs:
        for seed in range(3):
            results.append(make_result(i, strategy, seed, sweep=name, **kw))
            i += 1
    results[-1] = make_result(i - 1, "head_only", 2, status="diverged", reason="training loss nan at step 40",
                              stop_at=40, sweep=name, ratio=0.001)
    results.append(make_result(i, "bitfit", 0, level=0.88, ratio=0.001, speed=120.0, sweep=name))
    results.append(make_result(i + 1, "bitfit", 1, status="stopped", stop_at=30, sweep=name, ratio=0.001))
    results.append(make_result(i + 2, "lora(alpha=16,r=8)", 0, status="failed", sweep=name,
                               reason="RuntimeError: CUDA out of memory.\nTried to allocate 2 GiB"))
    results.append(make_result(i + 3, "lora(alpha=16,r=8)", 1, status="running", stop_at=20, sweep=name))
    for r in results:
        write_json_atomic(sweep / "trials" / r["trial_id"] / "result.json", r)
    return sweep


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    folder = make_sweep(tmp_path_factory.mktemp("results"))
    printed: list[str] = []
    return folder, report.write_report(folder, console=printed.append), printed


def test_writes_every_file(sweep):
    folder, paths, printed = sweep
    for name in ("comparison.csv", "comparison.json", "comparison.md", "summary.csv", "report.html"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0
    pngs = sorted((folder / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["accuracy_vs_step.png", "accuracy_vs_throughput.png", "stability.png",
                                      "train_loss_vs_step.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    assert set(paths.values()) >= {folder / "comparison.csv", folder / "report.html", *pngs}
    text = "\n".join(printed)
    assert "freeze_attention" in text and "verdict" in text and str(folder / "comparison.csv") in text


def test_csv_header_and_rows(sweep):
    folder, _, _ = sweep
    with open(folder / "comparison.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:len(REQUIRED)] == REQUIRED
    assert rows[0] == row_columns([]) and len(rows) == 1 + 7  # seven configurations, nothing dropped
    by = {(r[0], r[1]): dict(zip(rows[0], r)) for r in rows[1:]}
    lora = by[("lora(alpha=16,r=8)", "5e-05")]
    assert (lora["n_seeds"], lora["n_ok"], lora["n_failed"], lora["n_running"], lora["acc_mean"]) == \
        ("2", "0", "1", "1", "")
    assert by[("head_only", "5e-05")]["n_diverged"] == "1"
    assert by[("bitfit", "5e-05")]["n_stopped"] == "1" and by[("bitfit", "5e-05")]["acc_std"] == ""


def test_rerender_is_byte_identical(sweep):
    folder, _, _ = sweep
    before = {n: (folder / n).read_bytes() for n in ("comparison.csv", "comparison.md", "summary.csv", "report.html")}
    report.write_report(folder, console=lambda s: None)
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_json_and_markdown_content(sweep):
    folder, _, _ = sweep
    data = json.loads((folder / "comparison.json").read_text())
    meta = data["metadata"]
    assert meta["sweep"] == "synth" and meta["n_trials"] == 19 and "generated_at" in meta
    assert set(REQUIRED) <= set(meta["column_definitions"])
    verdicts = {s["strategy"]: (s["verdict"], s["note"]) for s in data["summary"]}
    assert verdicts["full"][0] == "baseline" and verdicts["head_only"][0] == "worse"
    assert verdicts["bitfit"] == ("indistinguishable", "too few seeds")
    assert verdicts["lora(alpha=16,r=8)"] == (None, "no ok trial")
    assert data["summary"][-1]["strategy"] == "lora(alpha=16,r=8)"
    accs = [s["acc_mean"] for s in data["summary"] if s["acc_mean"] is not None]
    assert accs == sorted(accs, reverse=True)
    assert {p["status"] for p in data["problems"]} == {"diverged", "failed", "stopped", "running"}
    md = (folder / "comparison.md").read_text()
    assert "CUDA out of memory. Tried" in md and "| baseline |" in md and "generated" not in md


def test_html_is_self_contained(sweep):
    folder, _, _ = sweep
    page = (folder / "report.html").read_text()
    assert 'src="http' not in page and 'href="http' not in page and "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 4
    assert "synth" in page and "How to read this" in page and "CUDA out of memory" in page
    assert 'class="t worse"' in page


def test_console_summary_fits_120_columns(sweep):
    _, _, printed = sweep
    lines = printed[0].splitlines()
    assert max(len(line) for line in lines) <= 120
    assert any(line.startswith("bitfit") and line.endswith("indistinguishable*") for line in lines)
    assert "* bitfit: too few seeds; lora(alpha=16,r=8): no ok trial" in lines


def test_cli_renders_and_exits_2_without_results(tmp_path):
    folder = make_sweep(tmp_path, "cli")
    ok = subprocess.run([sys.executable, "-m", "harness.report", str(folder), "--no-plots"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "comparison.csv" in ok.stdout and not (folder / "plots").exists()
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        assert report_cli.main([str(target)]) == 2
    bad = subprocess.run([sys.executable, "-m", "harness.report", str(tmp_path / "empty")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no result files" in bad.stderr


def test_varied_hparam_becomes_a_column_and_defensive_fields(tmp_path):
    sweep = tmp_path / "wd"
    results = [make_result(i, "full", s, weight_decay=wd) for i, (wd, s) in enumerate([(0.0, 0), (0.0, 1), (0.1, 0)])]
    results[1]["history"][-2]["eval_accuracy"] = "nan"
    results.append({"schema": "freezebench.trial/1", "trial_id": "broken", "index": 9, "status": "failed", "params": None, "history": [],
                    "final": None, "hparams": None, "reason": "ValueError: bad"})
    for r in results:
        write_json_atomic(sweep / "trials" / r["trial_id"] / "result.json", r)
    t = report.build_tables(sweep)
    assert t["columns"][-1] == "weight_decay" and t["summary_columns"][5] == "weight_decay"
    assert [r["n_seeds"] for r in t["rows"]] == [2, 1, 1]
    report.write_report(sweep, console=lambda s: None, plots=False)
    assert (sweep / "report.html").is_file()
