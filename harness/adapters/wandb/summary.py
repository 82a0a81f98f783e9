"""The sweep's side of W&B: announcing where runs go, one ``summary`` run with the comparison tables, plots
and ``report.html`` as an artifact, and the ``wandb sync`` command for offline runs."""
from __future__ import annotations

import json
import math
import os
import secrets
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Optional

from harness.adapters.wandb.mode import (FALLBACK_FILE, SALT_FILE, Mode, api_keys, base_url, entity_of, project_of,
                                         resolve_mode, run_id, salt, scrub, sweep_mode)
from harness.adapters.wandb.session import finish_run, init_run
from harness.config import to_dict
from harness.data.reach import probe
from harness.reporting.format import headline
from harness.results import read_json

__all__ = ["prepare_sweep", "log_sweep_summary", "sync_command", "offline_runs", "headline_of", "rel"]

_REPORT_FILES = ("report.html", "comparison.md", "comparison.csv", "comparison.json", "summary.csv")


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sync_command(sweep_dir: str | Path) -> str:
    """The exact command that uploads this sweep's offline runs (run from the current directory)."""
    return f"wandb sync {shlex.quote(rel(Path(sweep_dir) / 'wandb'))}/offline-run-*"


def prepare_sweep(cfg, sweep_dir: str | Path, console: Callable[[str], Any] = print) -> Mode:
    """Driver side, before the trials start: resolve the mode, create ``<sweep>/wandb/`` and its run-id salt
    (kept on ``--resume``), and say where the runs go."""
    sweep_dir = Path(sweep_dir)
    mode = resolve_mode(cfg.logging.wandb.mode)
    if mode.mode == "disabled":
        console(f"W&B: disabled ({mode.why})")
        return mode
    folder = sweep_dir / "wandb"
    folder.mkdir(parents=True, exist_ok=True)
    if not salt(sweep_dir):
        (folder / SALT_FILE).write_text(secrets.token_hex(6) + "\n", encoding="utf-8")
    (folder / FALLBACK_FILE).unlink(missing_ok=True)    # decided afresh by every run of the sweep
    if mode.mode == "online":
        why = probe(base_url())          # once per sweep, here; the trials read the verdict from FALLBACK_FILE
        if why is not None:
            mode = Mode("offline", f"online was asked for, but {base_url()} cannot be reached ({why}); every "
                                   f"run of this sweep logs offline instead, to be uploaded later")
            (folder / FALLBACK_FILE).write_text(mode.why + "\n", encoding="utf-8")
    entity = entity_of(cfg.logging.wandb)
    where = f"project {entity + '/' if entity else ''}{project_of(cfg.logging.wandb)}"
    console(f"W&B: {mode.mode} ({mode.why}); {where}, group {cfg.name}; run files in {rel(folder)}")
    return mode


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ", ".join("" if x is None else str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _table(wandb, columns: list[str], rows: list[dict]):
    return wandb.Table(columns=list(columns), data=[[_cell(r.get(c)) for c in columns] for r in rows],
                       allow_mixed_types=True)


def log_sweep_summary(cfg, sweep_dir: str | Path, console: Callable[[str], Any] = print) -> Optional[str]:
    """Driver side, after ``write_report``: one ``summary`` run (same group) with the comparison and per-strategy
    tables, the plots and ``report.html`` (+ CSV/Markdown/JSON) as an artifact. Prints where offline runs are and
    the ``wandb sync`` command. Returns the run id (None when disabled or on a W&B error)."""
    sweep_dir = Path(sweep_dir)
    mode = sweep_mode(cfg.logging.wandb.mode, sweep_dir)
    if mode.mode == "disabled":
        return None
    wb = cfg.logging.wandb
    t0 = time.perf_counter()
    # artifact files are staged under $WANDB_DATA_DIR (default ~/.local/share/wandb): keep them with the sweep
    old_data_dir = os.environ.get("WANDB_DATA_DIR")
    if old_data_dir is None:
        os.environ["WANDB_DATA_DIR"] = str(sweep_dir / "wandb" / "data")
    run = None
    try:
        if not (sweep_dir / "comparison.json").is_file():
            raise FileNotFoundError("no comparison.json (no trial results)")
        data = read_json(sweep_dir / "comparison.json")
        meta = data["metadata"]
        run = init_run(mode.mode, wandb_cfg=wb, sweep_dir=sweep_dir, id=run_id(cfg.name, "summary", salt(sweep_dir)),
                    name=f"{cfg.name}-summary", group=cfg.name, job_type="summary",
                    config=scrub({"sweep": cfg.name, "n_trials": meta.get("n_trials"),
                                   "sweep_config": _config_dict(cfg)}, api_keys()))
        import wandb

        payload = {"comparison": _table(wandb, meta["columns"], data["rows"]),
                   "summary": _table(wandb, meta["summary_columns"], data["summary"])}
        if data.get("problems"):
            payload["problems"] = _table(wandb, ["trial_id", "strategy", "status", "step", "reason"], data["problems"])
        for png in sorted((sweep_dir / "plots").glob("*.png")):
            payload[f"plots/{png.stem}"] = wandb.Image(str(png), caption=png.stem)
        run.log(payload)
        run.summary.update(scrub({"n_trials": meta.get("n_trials"), "status_counts": meta.get("status_counts"),
                                   "headline": headline_of(data)}, api_keys()))
        artifact = wandb.Artifact(f"{cfg.name}-report", type="report",
                                  description=f"freezebench comparison report of sweep {cfg.name}")
        for name in _REPORT_FILES:
            if (sweep_dir / name).is_file():
                artifact.add_file(str(sweep_dir / name), name=name)
        run.log_artifact(artifact)
        rid = run.id
        finish_run(run)
        run = None
        console(f"W&B: summary run {rid} ({time.perf_counter() - t0:.1f}s)")
    except Exception as exc:  # noqa: BLE001 - the sweep's own results are already written
        console(f"W&B: summary run not written ({type(exc).__name__}: {exc})")
        rid = None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
    finally:
        if old_data_dir is None:
            os.environ.pop("WANDB_DATA_DIR", None)
    if mode.mode == "offline":
        console(f"W&B: {len(offline_runs(sweep_dir))} offline run folder(s) in {rel(sweep_dir / 'wandb')}; "
                f"upload them with:\n  {sync_command(sweep_dir)}")
    return rid


def _config_dict(cfg) -> dict:
    return to_dict(cfg)


def headline_of(data: dict) -> Optional[str]:
    try:
        return headline({**data["metadata"], "summary": data["summary"]})
    except Exception:  # noqa: BLE001 - a summary line is a nicety
        return None


def offline_runs(sweep_dir: str | Path) -> list[Path]:
    return sorted(p for p in (Path(sweep_dir) / "wandb").glob("offline-run-*") if p.is_dir())
