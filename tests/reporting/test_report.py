"""The report layer end to end on synthetic result.json files: files, CSV header, determinism, HTML, CLI."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import report as report_cli
from harness import reporting as report
from harness.reporting.columns import row_columns
from harness.results import write_json_atomic
from tests.reporting.synth import make_result, make_sweep, write_predictions, write_sweep  # noqa: F401 (W&B test)

REQUIRED = ["strategy", "lr", "batch_size", "scheduler", "grad_clip", "metric", "n_seeds", "n_ok", "val_score_mean",
            "val_score_std", "test_score_mean", "test_score_std", "test_score_ci95", "test_score_min", "test_score_max",
            "test_accuracy_mean", "oscillation", "loss_roughness", "trainable_params", "total_params",
            "trainable_ratio", "samples_per_s", "tokens_per_s", "peak_mem_mb", "wall_s", "steps_to_80", "steps_to_90"]
SUMMARY_HEAD = ["strategy", "verdict", "metric", "test_score_mean", "diff_vs_full", "diff_ci_low", "diff_ci_high",
                "seeds_needed"]
ROOT = Path(__file__).resolve().parents[2]


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
    assert [p.name for p in pngs] == ["score_vs_cost.png", "stability.png", "train_loss_vs_step.png",
                                      "val_score_vs_step.png"]
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
    assert (lora["n_seeds"], lora["n_ok"], lora["n_failed"], lora["n_running"], lora["test_score_mean"]) == \
        ("2", "0", "1", "1", "")
    assert by[("head_only", "5e-05")]["n_diverged"] == "1"
    assert by[("bitfit", "5e-05")]["n_stopped"] == "1" and by[("bitfit", "5e-05")]["test_score_std"] == ""
    with open(folder / "summary.csv", newline="") as fh:
        assert next(csv.reader(fh))[:len(SUMMARY_HEAD)] == SUMMARY_HEAD


def _with_predictions(tmp_path: Path) -> Path:
    folder = make_sweep(tmp_path, "preds")
    labels = np.random.default_rng(0).integers(0, 2, 500)
    for path in sorted((folder / "trials").glob("*/result.json")):
        r = json.loads(path.read_text())
        if r["status"] == "ok" and r["strategy"] in ("full", "top_k(k=2)"):
            preds = np.where(np.random.default_rng(r["index"]).random(500) < 0.1, 1 - labels, labels)
            write_predictions(folder, r, labels, preds)
    return folder


def test_rerender_with_the_cli_is_byte_identical(tmp_path):
    folder = _with_predictions(tmp_path)
    names = ("comparison.csv", "comparison.md", "summary.csv")
    seen = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-m", "harness.report", str(folder), "--no-plots"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        seen.append({n: (folder / n).read_bytes() for n in names})
    assert seen[0] == seen[1]
    top_k = next(s for s in json.loads((folder / "comparison.json").read_text())["summary"]
                 if s["strategy"] == "top_k(k=2)")
    assert top_k["boot_ci_low"] is not None and top_k["boot_ci_low"] < top_k["boot_ci_high"]


def test_rerender_in_process_is_byte_identical(sweep):
    folder, _, _ = sweep
    before = {n: (folder / n).read_bytes() for n in ("comparison.csv", "comparison.md", "summary.csv", "report.html")}
    report.write_report(folder, console=lambda s: None)
    assert {n: (folder / n).read_bytes() for n in before} == before


def test_json_and_markdown_content(sweep):
    folder, _, _ = sweep
    data = json.loads((folder / "comparison.json").read_text())
    meta = data["metadata"]
    assert meta["sweep"] == "synth" and meta["n_trials"] == 19 and "generated_at" in meta
    assert (meta["metric"], meta["margin"], meta["cost"], meta["selected_on_test"]) == ("accuracy", 0.01, "params",
                                                                                     False)
    assert set(REQUIRED) <= set(meta["column_definitions"])
    assert set(meta["summary_columns"]) <= set(meta["column_definitions"])
    verdicts = {s["strategy"]: (s["verdict"], s["note"]) for s in data["summary"]}
    assert verdicts["full"][0] == "baseline" and verdicts["head_only"][0] == "inferior"
    assert verdicts["bitfit"][0] == "inconclusive" and "too few seeds" in verdicts["bitfit"][1]
    assert verdicts["lora(alpha=16,r=8)"] == (None, "no ok trial")
    assert data["summary"][-1]["strategy"] == "lora(alpha=16,r=8)"
    scores = [s["test_score_mean"] for s in data["summary"] if s["test_score_mean"] is not None]
    assert scores == sorted(scores, reverse=True)
    assert {p["status"] for p in data["problems"]} == {"diverged", "failed", "stopped", "running"}
    assert data["recommendation"] == meta["recommendation"] and data["recommendation"].endswith(".")
    md = (folder / "comparison.md").read_text()
    assert "CUDA out of memory. Tried" in md and "| baseline |" in md and "generated" not in md
    assert md.index("**Recommendation:**") < md.index("## Verdicts") < md.index("## All configurations")
    assert "optimistic" not in md


def test_html_is_self_contained(sweep):
    folder, _, _ = sweep
    page = (folder / "report.html").read_text()
    assert 'src="http' not in page and 'href="http' not in page and "<link" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 4
    assert "synth" in page and "How to read this" in page and "CUDA out of memory" in page
    assert 'class="t inferior"' in page and 'class="t baseline"' in page


def test_console_summary_fits_120_columns(sweep):
    _, _, printed = sweep
    lines = printed[0].splitlines()
    assert max(len(line) for line in lines) <= 120
    assert any(line.startswith("bitfit ") and " inconclusive* " in line for line in lines)
    text = " ".join(printed[0].split())
    assert "* bitfit: too few seeds" in text and "lora(alpha=16,r=8): no ok trial" in text
    assert lines[-1].endswith(".") and "Recommendation: " in printed[0].split("\n\n")[-1]


def test_selected_on_test_is_flagged_everywhere(tmp_path):
    results = [make_result(i, s, seed=i % 3, with_val=False, level=0.9 - 0.01 * (s != "full"))
               for i, s in enumerate(["full"] * 3 + ["bitfit"] * 3)]
    folder = write_sweep(tmp_path / "notval", results)
    printed: list[str] = []
    report.write_report(folder, console=printed.append, plots=False)
    flag = "selected on test: optimistic"
    assert flag in " ".join(printed[0].split())
    assert flag in (folder / "comparison.md").read_text() and flag in (folder / "report.html").read_text()
    data = json.loads((folder / "comparison.json").read_text())
    assert data["metadata"]["selected_on_test"] is True and data["metadata"]["n_selected_on_test"] == 6
    assert data["recommendation"].endswith(f"; {flag}.")


def test_margin_and_cost_come_from_the_sweep_and_the_command_line(tmp_path):
    results = [make_result(i, "full", seed=i, test=0.900 + d, val=0.9) for i, d in enumerate((0, .002, -.002))]
    results += [make_result(10 + i, "bitfit", seed=i, test=0.885 + d, val=0.9, ratio=0.001)
                for i, d in enumerate((0, .003, -.001))]
    folder = write_sweep(tmp_path / "margin", results, config={"report": {"margin": 0.05}})
    line = lambda t: next(s for s in t["summary"] if s["strategy"] == "bitfit")  # noqa: E731
    assert line(report.build_tables(folder))["verdict"] == "non-inferior"       # 1.5 points behind, margin 5
    assert line(report.build_tables(folder, overrides={"margin": 0.005}))["verdict"] == "inferior"
    assert report_cli.main([str(folder), "--no-plots", "--margin", "0.005"]) == 0
    assert json.loads((folder / "comparison.json").read_text())["metadata"]["margin"] == 0.005
    before = (folder / "comparison.csv").read_bytes()
    assert report_cli.main([str(folder), "--no-plots", "--margin", "-1"]) == 2     # checked before writing
    assert (folder / "comparison.csv").read_bytes() == before


def test_bad_report_setting_names_the_key(tmp_path, capsys):
    folder = write_sweep(tmp_path / "bad", [make_result(0)], config={"report": {"cost": "money"}})
    assert report_cli.main([str(folder), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "report.cost" in err and "money" in err
    assert not (folder / "comparison.csv").exists()


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


def test_mixed_metrics_are_refused_naming_a_trial(tmp_path):
    folder = write_sweep(tmp_path / "mixed", [make_result(0), make_result(1, "bitfit", metric="f1")])
    with pytest.raises(ValueError, match=r"different metrics.*accuracy.*f1 \(e.g. trial t0001\)"):
        report.build_tables(folder)
    assert report_cli.main([str(folder), "--no-plots"]) == 2


def test_varied_hparam_becomes_a_column_and_defensive_fields(tmp_path):
    sweep = tmp_path / "wd"
    results = [make_result(i, "full", s, weight_decay=wd) for i, (wd, s) in enumerate([(0.0, 0), (0.0, 1), (0.1, 0)])]
    results[1]["history"][-2]["val_score"] = "nan"
    results.append({"schema": "freezebench.trial/2", "trial_id": "broken", "index": 9, "status": "failed",
                    "params": None, "history": [], "val": None, "test": None, "hparams": None,
                    "reason": "ValueError: bad"})
    for r in results:
        write_json_atomic(sweep / "trials" / r["trial_id"] / "result.json", r)
    t = report.build_tables(sweep)
    assert t["columns"][-1] == "weight_decay" and "weight_decay" in t["summary_columns"]
    assert t["summary_columns"].index("weight_decay") == t["summary_columns"].index("grad_clip") + 1
    assert [r["n_seeds"] for r in t["rows"]] == [2, 1, 1]
    report.write_report(sweep, console=lambda s: None, plots=False)
    assert (sweep / "report.html").is_file()


def test_schema_1_results_render_flagged_optimistic(tmp_path):
    """A 0.1 result (final.eval_accuracy, eval_accuracy curve, no val/test records) as the loader hands it over."""
    old = []
    for i, (strategy, acc) in enumerate([("full", 0.90), ("full", 0.91), ("bitfit", 0.89), ("bitfit", 0.895)]):
        r = make_result(i, strategy, seed=i % 2)
        for row in r["history"]:
            row["eval_accuracy"] = row.pop("val_score")
        for key in ("val", "test", "metric", "selected_on", "predictions"):
            r.pop(key)
        old.append({**r, "schema": "freezebench.trial/1", "final": {"step": 100, "eval_accuracy": acc}})
    folder = write_sweep(tmp_path / "old", old)
    t = report.build_tables(folder)
    assert t["selected_on_test"] and t["metric"] == "accuracy"
    by = {s["strategy"]: s for s in t["summary"]}
    assert by["full"]["test_score_mean"] == pytest.approx(0.905) and by["bitfit"]["verdict"] is not None
    assert t["rows"][0]["oscillation"] is not None                  # the old curve still feeds the stability
    assert t["recommendation"].endswith("selected on test: optimistic.")
