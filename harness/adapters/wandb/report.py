"""A W&B Report of a sweep (wandb-workspaces): saved online, or its specification written to disk offline."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Callable, Optional

from harness.adapters.shims import wandb_report_spec
from harness.adapters.wandb.mode import api_key_configured, entity_of, project_of, resolve_mode
from harness.adapters.wandb.session import quiet_env
from harness.adapters.wandb.summary import headline_of, rel, sync_command
from harness.config import WandbConfig, build_config
from harness.reporting.columns import verdict_columns
from harness.reporting.format import fmt
from harness.results import read_json, write_json_atomic

__all__ = ["build_report", "publish_report"]


def _summary_markdown(data: dict) -> str:
    meta = data["metadata"]
    cols = [c for c in verdict_columns(meta.get("cost", "params")) if c in meta["summary_columns"] or c == "pareto"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in data["summary"]:
        lines.append("| " + " | ".join(fmt(c, row).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


def _sweep_settings(sweep_dir: Path, data: Optional[dict] = None):
    """(sweep name, WandbConfig) from ``sweep.json``; defaults when the folder has none."""
    try:
        cfg = build_config(read_json(sweep_dir / "sweep.json")["config"])
        return cfg.name, cfg.logging.wandb
    except (OSError, ValueError, KeyError, TypeError):
        name = ((data or {}).get("metadata") or {}).get("sweep") or sweep_dir.name
        return str(name), WandbConfig()


def build_report(sweep_dir: str | Path, *, entity: str = "", project: Optional[str] = None):
    """A wandb-workspaces Report of a sweep: headline, summary table, eval accuracy/loss curves grouped by
    strategy (job type) over the sweep's trial runs, and the logged comparison tables of its summary run.
    ``entity=""`` builds it without touching the network (run sets then carry the project only)."""
    import wandb_workspaces.reports.v2 as wr

    sweep_dir = Path(sweep_dir)
    data = read_json(sweep_dir / "comparison.json")
    name, wb = _sweep_settings(sweep_dir, data)
    project = project or project_of(wb)
    trials = wr.Runset(entity=entity, project=project, name=f"{name} trials",
                       filters=f"Metric('Group') = '{name}' and Metric('JobType') != 'summary'")
    summary_runs = wr.Runset(entity=entity, project=project, name=f"{name} summary",
                             filters=f"Metric('Group') = '{name}' and Metric('JobType') = 'summary'")

    def curve(metric: str, title: str):
        return wr.LinePlot(title=title, x="Step", y=[metric], groupby="JobType", groupby_aggfunc="mean",
                           groupby_rangefunc="minmax", title_x="optimizer step", title_y=metric)

    blocks = [
        wr.P(headline_of(data) or ""),
        wr.H2("Best configuration per strategy"),
        wr.MarkdownBlock(text=_summary_markdown(data)),
        wr.H2("Validation score by strategy (mean over runs, min-max band)"),
        wr.PanelGrid(runsets=[trials], panels=[curve("val/score", "validation score by strategy"),
                                               curve("val/loss", "validation loss by strategy"),
                                               curve("train/loss", "train loss by strategy")]),
        wr.H2("Comparison table"),
        wr.PanelGrid(runsets=[summary_runs], panels=[wr.WeavePanelSummaryTable(table_name="summary"),
                                                     wr.WeavePanelSummaryTable(table_name="comparison")]),
    ]
    return wr.Report(project=project, entity=entity, title=f"freezebench: {name}"[:128],
                     description=f"Freeze strategies compared over {data['metadata'].get('n_trials')} trials "
                                 f"(sweep {name}, baseline {data['metadata'].get('baseline')}).",
                     blocks=blocks)


def publish_report(sweep_dir: str | Path, mode: str = "auto", console: Callable[[str], Any] = print) -> Path | str:
    """``python -m harness.report <sweep> --wandb-report [auto|online|offline]``.

    Online (auto with an API key): save the report and return its URL. Offline: write the report's specification
    to ``<sweep>/wandb_report.json`` and print how to publish it later."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / "comparison.json").is_file():
        raise FileNotFoundError(f"{sweep_dir}/comparison.json is missing: run `python -m harness.report` first")
    _, wb = _sweep_settings(sweep_dir)
    if mode == "auto":
        resolved = resolve_mode(None)
        mode = "online" if resolved.mode == "online" else "offline"
    elif mode == "online" and not api_key_configured():
        console("W&B report: online needs an API key (WANDB_API_KEY or `wandb login`); writing it offline")
        mode = "offline"
    quiet_env()
    if mode == "online":
        import wandb

        entity = entity_of(wb) or wandb.Api().default_entity
        report = build_report(sweep_dir, entity=entity).save()
        console(f"W&B report saved: {report.url}")
        return report.url
    report = build_report(sweep_dir, entity="")
    model = wandb_report_spec(report)
    path = write_json_atomic(sweep_dir / "wandb_report.json", {
        "format": "freezebench.wandb_report/1", "title": model.display_name, "description": model.description,
        "entity": entity_of(wb), "project": project_of(wb),
        "spec": json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True)),
        "publish": ["wandb login", sync_command(sweep_dir),
                    f"python -m harness.report {shlex.quote(rel(sweep_dir))} --wandb-report online"]})
    console(f"W&B report (offline): specification written to {rel(path)}\n"
            f"  publish later: `wandb login`, then `{sync_command(sweep_dir)}`, then\n"
            f"  python -m harness.report {shlex.quote(rel(sweep_dir))} --wandb-report online")
    return path
