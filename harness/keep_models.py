"""Keep the winner (``output.save_model``): after the sweep, the selected configuration of each strategy becomes a
Hugging Face folder under ``results/<sweep>/models/<strategy>/`` (``best``), or every ok trial one in its own
trial folder (``all``). The selection is the report's (on validation); within the selected configuration the
seed with the best validation score is kept. The per-trial weight files are removed once exported."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from harness.config import SweepConfig, TrialConfig
from harness.reporting.stats import build_groups
from harness.reporting.summary import select
from harness.reporting.tables import sweep_metric
from harness.results import load_results, result_path, write_json_atomic
from harness.train.export import WEIGHTS_FILE, export_model

__all__ = ["keep_models", "MODELS_DIR"]

MODELS_DIR = "models"


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", label).strip("-")


def _selection_score(result: dict) -> float:
    record = result.get("val") or result.get("test") or {}
    score = record.get("score")
    return score if isinstance(score, (int, float)) and score == score else float("-inf")


def keep_models(cfg: SweepConfig, trials: list[TrialConfig], sweep_dir: Path,
                console: Callable[[str], Any] = print) -> dict[str, Path]:
    """Export the kept models; returns {trial id: folder}."""
    mode = cfg.output.save_model
    if mode == "none":
        return {}
    by_id = {t.trial_id: t for t in trials}
    results = [r for r in load_results(sweep_dir) if r.get("trial_id") in by_id]
    have = [r for r in results if r.get("status") == "ok" and r.get("weights")
            and (result_path(cfg.output.dir, cfg.name, r["trial_id"]).parent / WEIGHTS_FILE).is_file()]
    if mode == "all":
        chosen = {r["trial_id"]: result_path(cfg.output.dir, cfg.name, r["trial_id"]).parent / "model" for r in have}
    else:
        ready = {r["trial_id"] for r in have}
        chosen = {}
        selected = {strategy: g.trials for strategy, g in select(build_groups(results, sweep_metric(results))).items()
                    if g is not None}
        for strategy in dict.fromkeys(r.get("strategy") for r in have):
            # the selected configuration's trials; with no selectable group (e.g. every score undefined), all
            candidates = [r for r in selected.get(strategy) or [] if r["trial_id"] in ready] or \
                [r for r in have if r.get("strategy") == strategy]
            winner = max(candidates, key=_selection_score)
            chosen[winner["trial_id"]] = sweep_dir / MODELS_DIR / _slug(strategy)
    out: dict[str, Path] = {}
    for result in results:
        tid = result["trial_id"]
        path = result_path(cfg.output.dir, cfg.name, tid)
        if tid in chosen:
            out[tid] = export_model(by_id[tid], result, path.parent, chosen[tid])
            result["model_dir"] = str(out[tid])
            write_json_atomic(path, result)
            console(f"saved model: {result.get('strategy')} ({tid}) -> {out[tid]}")
        (path.parent / WEIGHTS_FILE).unlink(missing_ok=True)
    return out
