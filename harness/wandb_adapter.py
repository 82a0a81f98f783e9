"""Weights & Biases adapter: the only module that imports ``wandb`` (and ``wandb_workspaces``), always lazily.

* :func:`resolve_mode` - ``logging.wandb.mode``; ``null`` means online when an API key is configured
  (``WANDB_API_KEY`` or a netrc entry for the W&B host), else offline. Nothing here ever prompts or logs in.
* :class:`TrialTracker` - one run per trial (group = sweep, job_type = strategy, name = trial id, a run id
  derived from sweep + trial id so a resumed trial resumes its run). It wraps the trial's ``report`` callable,
  so :mod:`harness.trial` stays W&B-free. Only rank 0 logs. A W&B error never fails a trial.
* :func:`prepare_sweep` / :func:`log_sweep_summary` - console lines and the per-sweep ``summary`` run
  (comparison tables, plots, ``report.html`` as an artifact).
* :func:`publish_report` - a W&B Report (wandb-workspaces); saved online, written as JSON offline.
* :func:`read_offline_run` - reads a ``run-<id>.wandb`` transaction log back with wandb's protobuf records.

Runs live in ``results/<sweep>/wandb/``; see docs/wandb.md.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import netrc
import os
import queue
import re
import secrets
import shlex
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional
from urllib.parse import urlparse

__all__ = ["MODES", "Mode", "api_key_configured", "resolve_mode", "run_id", "process_rank", "TrialTracker",
           "prepare_sweep", "log_sweep_summary", "sync_command", "build_report", "publish_report",
           "iter_records", "read_offline_run", "offline_runs"]

log = logging.getLogger("freezebench.wandb")

MODES = ("online", "offline", "disabled")
SALT_FILE = "freezebench-sweep-uid"       # under results/<sweep>/wandb/: one per sweep folder (see run_id)
# result.json history row -> W&B metric (logged at step = optimizer step)
EVAL_METRICS = {"eval_accuracy": "eval/accuracy", "eval_loss": "eval/loss", "train_loss": "train/loss",
                "lr": "train/lr", "grad_norm": "train/grad_norm", "epoch": "train/epoch",
                "skipped_steps": "train/skipped_steps", "samples_per_s": "perf/samples_per_s",
                "tokens_per_s": "perf/tokens_per_s", "peak_mem_mb": "perf/peak_mem_mb",
                "elapsed_s": "perf/elapsed_s"}
_REPORT_FILES = ("report.html", "comparison.md", "comparison.csv", "comparison.json", "summary.csv")


# ------------------------------------------------------------------------------------------------ mode
class Mode(NamedTuple):
    mode: str            # online | offline | disabled
    why: str             # one phrase for the console


def _wandb_host(environ) -> str:
    return urlparse(environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"


def api_key_configured(environ=None) -> bool:
    """True when ``WANDB_API_KEY`` is set or a netrc file has a password for the W&B host. Never reads the key
    into anything but this boolean; never prompts."""
    environ = os.environ if environ is None else environ
    if environ.get("WANDB_API_KEY", "").strip():
        return True
    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(_wandb_host(environ))
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def resolve_mode(configured: Optional[str], environ=None) -> Mode:
    """``logging.wandb.mode`` if set, else ``WANDB_MODE`` from the environment, else online with a key and
    offline without. Online without a key falls back to offline (W&B would otherwise prompt for a login)."""
    environ = os.environ if environ is None else environ
    env = {"dryrun": "offline", "run": "online"}.get(environ.get("WANDB_MODE", ""), environ.get("WANDB_MODE", ""))
    key = api_key_configured(environ)
    if configured:
        mode, why = configured, "logging.wandb.mode"
    elif env in MODES:
        mode, why = env, "WANDB_MODE"
    else:
        mode, why = ("online", "an API key is configured") if key else ("offline", "no API key is configured")
    if mode == "online" and not key:
        return Mode("offline", f"{why} asks for online but no API key is configured")
    return Mode(mode, why)


def _salt(sweep_dir: Path) -> str:
    try:
        return (sweep_dir / "wandb" / SALT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def run_id(sweep: str, name: str, salt: str = "") -> str:
    """Deterministic W&B run id ([a-z0-9-], <= 53 chars): readable trial-id prefix + hash of (salt, sweep, name).

    ``salt`` is created once per sweep folder (:func:`prepare_sweep`): a resumed sweep keeps its run ids, a sweep
    started over with ``--overwrite`` gets new ones instead of appending to the old runs."""
    digest = hashlib.sha256(f"{salt}\0{sweep}\0{name}".encode()).hexdigest()[:12]
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return f"{slug}-{digest}" if slug else digest


def process_rank(environ=None) -> int:
    """This process's rank in a multi-process trial (``RANK`` as set by torchrun / DeepSpeed), else 0."""
    environ = os.environ if environ is None else environ
    try:
        return int(environ.get("RANK", "0"))
    except ValueError:
        return 0


# ------------------------------------------------------------------------------------------------ init
def _quiet_env() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


def _secrets(environ=None) -> list[str]:
    """The configured API key(s) (environment and netrc), only to redact them from what is sent to W&B."""
    environ = os.environ if environ is None else environ
    keys = [environ.get("WANDB_API_KEY", "").strip()]
    try:
        auth = netrc.netrc(environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc"))
        keys.append(((auth.authenticators(_wandb_host(environ)) or ("", "", ""))[2] or "").strip())
    except (OSError, netrc.NetrcParseError):
        pass
    return [k for k in keys if len(k) >= 8]


def _scrub(obj: Any, hidden: list[str]) -> Any:
    """Defence in depth: any string that contains the API key is replaced before it reaches W&B."""
    if isinstance(obj, dict):
        return {k: _scrub(v, hidden) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_scrub(v, hidden) for v in obj]
    if isinstance(obj, str) and any(h in obj for h in hidden):
        return "<redacted>"
    return obj


def _skip_idle_launch_probe() -> None:
    """Save about 0.7 CPU-seconds per trial process: at the end of ``wandb.init`` wandb imports its whole Launch
    package (and public API) only to apply Launch job inputs staged by ``wandb.sdk.launch.inputs``. Nothing can be
    staged unless that module was imported, so skip the probe exactly then. Behaviour is otherwise unchanged."""
    import sys

    from wandb.sdk import wandb_run

    probe = getattr(wandb_run.Run, "_detect_and_apply_job_inputs", None)
    if probe is None or getattr(probe, "_freezebench", False):
        return

    def detect_and_apply_job_inputs(self):
        if "wandb.sdk.launch.inputs.internal" in sys.modules:
            return probe(self)
        return None

    detect_and_apply_job_inputs._freezebench = True
    wandb_run.Run._detect_and_apply_job_inputs = detect_and_apply_job_inputs


def _init(mode: str, *, wandb_cfg, sweep_dir: Path, **kwargs):
    """``wandb.init`` without prompts; an online failure falls back to an offline run in the same folder."""
    _quiet_env()
    import wandb

    try:
        _skip_idle_launch_probe()
    except Exception:  # noqa: BLE001 - an optimisation only
        pass

    settings = wandb.Settings(silent=True, console="off", save_code=False, init_timeout=60,
                              x_disable_stats=True, x_save_requirements=False)
    (sweep_dir / "wandb").mkdir(parents=True, exist_ok=True)
    common = dict(project=wandb_cfg.project, entity=wandb_cfg.entity, tags=list(wandb_cfg.tags) or None,
                  dir=str(sweep_dir), resume="allow", reinit="create_new", settings=settings, **kwargs)
    try:
        return wandb.init(mode=mode, **common)
    except Exception as exc:  # noqa: BLE001 - W&B must never stop a sweep
        if mode != "online":
            raise
        log.warning("W&B online init failed (%s); logging this run offline instead", type(exc).__name__)
        return wandb.init(mode="offline", **common)


def _finish(run, exit_code: int = 0, timeout: float = 10.0) -> None:
    """``run.finish`` and, for an offline run, wait (bounded) until its transaction log holds the exit record:
    wandb 0.31 may return from ``finish`` before the service has flushed the file."""
    run.finish(exit_code=exit_code)
    try:
        offline = run.settings.mode in ("offline", "dryrun")
        path = Path(run.settings.sync_file)
    except Exception:  # noqa: BLE001 - best effort
        return
    deadline = time.monotonic() + timeout
    while offline and time.monotonic() < deadline:
        try:
            if any(rec.WhichOneof("record_type") == "exit" for rec in iter_records(path)):
                return
        except (OSError, ValueError, struct.error):
            pass
        time.sleep(0.05)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ------------------------------------------------------------------------------------------------ trial
class TrialTracker:
    """One W&B run per trial, used as a context manager around ``run_trial``::

        with TrialTracker(trial, rank=process_rank()) as tracker:
            run_trial(trial, tracker.wrap(report), ...)

    Every W&B call runs on one background thread: ``wandb.init`` overlaps the trial's set-up, a logged row is
    a queue put, and the trial waits for W&B only at the end, at most ``finish_timeout`` seconds. A no-op when
    the mode is ``disabled`` or ``rank != 0``. On exit the summary comes from the trial's ``result.json``
    (final / best accuracy, parameter counts, status). A W&B error is logged and never fails the trial.
    """

    def __init__(self, trial, *, rank: int = 0, environ=None, finish_timeout: Optional[float] = None):
        self.trial = trial
        self.sweep_dir = Path(trial.output.dir) / trial.sweep
        self.mode = resolve_mode(trial.logging.wandb.mode, environ).mode
        self.active = rank == 0 and self.mode != "disabled"
        self.finish_timeout = finish_timeout if finish_timeout is not None else (
            120.0 if self.mode == "online" else 30.0)
        self.seconds = 0.0          # time the trial itself spent waiting on W&B (queue puts + the final wait)
        self.run_id_used: Optional[str] = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None

    @property
    def run_id(self) -> str:
        return run_id(self.trial.sweep, self.trial.trial_id, _salt(self.sweep_dir))

    # -- trial thread
    def start(self) -> "TrialTracker":
        if self.active and self._thread is None:
            self._thread = threading.Thread(target=self._work, name="freezebench-wandb", daemon=True)
            self._thread.start()
        return self

    def log_eval(self, row: dict) -> None:
        if self._thread is None or not _finite(row.get("step")):
            return
        metrics = {name: row[k] for k, name in EVAL_METRICS.items() if _finite(row.get(k))}
        self._queue.put(("log", metrics, int(row["step"])))

    def wrap(self, report: Callable) -> Callable:
        """``report(metrics, checkpoint)`` that also queues the row for W&B (before Ray may stop the trial)."""
        def tracked(metrics: dict, checkpoint=None):
            self.log_eval(metrics)
            return report(metrics, checkpoint)
        return tracked

    def finish(self, error: Optional[BaseException] = None) -> None:
        if self._thread is None:
            return
        t = time.perf_counter()
        summary, status = self._summary(error)
        self._queue.put(("finish", summary, 1 if status in ("failed", "interrupted", "unknown") else 0))
        self._thread.join(self.finish_timeout)
        if self._thread.is_alive():
            log.warning("%s: W&B still busy after %.0fs; not waiting for it", self.trial.trial_id, self.finish_timeout)
        self._thread = None
        self.seconds += time.perf_counter() - t
        log.info("%s: W&B %s run %s (trial waited %.2fs on W&B)", self.trial.trial_id, self.mode,
                 self.run_id_used, self.seconds)

    def _summary(self, error: Optional[BaseException]) -> tuple[dict, str]:
        from harness.results import read_json, result_path

        try:
            result = read_json(result_path(self.trial.output.dir, self.trial.sweep, self.trial.trial_id))
        except (OSError, ValueError):
            result = {}
        status = result.get("status") or ("failed" if error else "unknown")
        if error is not None and status == "running":
            status = "interrupted"
        final, best, params = (result.get(k) or {} for k in ("final", "best", "params"))
        summary = {"status": status, "reason": result.get("reason") or (repr(error)[:500] if error else None),
                   "final/eval_accuracy": final.get("eval_accuracy"), "final/eval_loss": final.get("eval_loss"),
                   "final/step": final.get("step"), "final/eval_size": final.get("eval_size"),
                   "best/eval_accuracy": best.get("eval_accuracy"), "best/step": best.get("step"),
                   "params/trainable": params.get("trainable"), "params/total": params.get("total"),
                   "params/trainable_ratio": params.get("ratio"),
                   **{f"throughput/{k}": v for k, v in (result.get("throughput") or {}).items()},
                   **{f"timing/{k}": v for k, v in (result.get("timing") or {}).items()}}
        return _scrub({k: v for k, v in summary.items() if v is not None}, _secrets()), status

    # -- W&B thread
    def _work(self) -> None:
        t = self.trial
        run = None
        try:
            run = _init(self.mode, wandb_cfg=t.logging.wandb, sweep_dir=self.sweep_dir, id=self.run_id,
                        name=t.trial_id, group=t.sweep, job_type=t.strategy_label,
                        config=_scrub(t.to_dict(), _secrets()))
            self.run_id_used = run.id
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            log.warning("%s: W&B init failed (%s: %s); continuing without W&B", t.trial_id, type(exc).__name__, exc)
        while True:
            op, payload, arg = self._queue.get()
            if run is None:
                if op == "finish":
                    return
                continue
            try:
                if op == "log":
                    run.log(payload, step=arg)
                else:
                    run.summary.update(payload)
                    _finish(run, exit_code=arg)
                    return
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: W&B %s failed (%s: %s); continuing without W&B", t.trial_id, op,
                            type(exc).__name__, exc)
                if op == "finish":
                    return

    def __enter__(self) -> "TrialTracker":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.finish(exc)
        return False


# ------------------------------------------------------------------------------------------------ sweep
def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def sync_command(sweep_dir: str | Path) -> str:
    """The exact command that uploads this sweep's offline runs (run from the current directory)."""
    return f"wandb sync {shlex.quote(_rel(Path(sweep_dir) / 'wandb'))}/offline-run-*"


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
    if not _salt(sweep_dir):
        (folder / SALT_FILE).write_text(secrets.token_hex(6) + "\n", encoding="utf-8")
    where = f"project {cfg.logging.wandb.entity + '/' if cfg.logging.wandb.entity else ''}{cfg.logging.wandb.project}"
    console(f"W&B: {mode.mode} ({mode.why}); {where}, group {cfg.name}; run files in {_rel(folder)}")
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
    mode = resolve_mode(cfg.logging.wandb.mode)
    if mode.mode == "disabled":
        return None
    from harness.results import read_json

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
        run = _init(mode.mode, wandb_cfg=wb, sweep_dir=sweep_dir, id=run_id(cfg.name, "summary", _salt(sweep_dir)),
                    name=f"{cfg.name}-summary", group=cfg.name, job_type="summary",
                    config=_scrub({"sweep": cfg.name, "n_trials": meta.get("n_trials"),
                                   "sweep_config": _config_dict(cfg)}, _secrets()))
        import wandb

        payload = {"comparison": _table(wandb, meta["columns"], data["rows"]),
                   "summary": _table(wandb, meta["summary_columns"], data["summary"])}
        if data.get("problems"):
            payload["problems"] = _table(wandb, ["trial_id", "strategy", "status", "step", "reason"], data["problems"])
        for png in sorted((sweep_dir / "plots").glob("*.png")):
            payload[f"plots/{png.stem}"] = wandb.Image(str(png), caption=png.stem)
        run.log(payload)
        run.summary.update(_scrub({"n_trials": meta.get("n_trials"), "status_counts": meta.get("status_counts"),
                                   "headline": _headline(data)}, _secrets()))
        artifact = wandb.Artifact(f"{cfg.name}-report", type="report",
                                  description=f"freezebench comparison report of sweep {cfg.name}")
        for name in _REPORT_FILES:
            if (sweep_dir / name).is_file():
                artifact.add_file(str(sweep_dir / name), name=name)
        run.log_artifact(artifact)
        rid = run.id
        _finish(run)
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
        console(f"W&B: {len(offline_runs(sweep_dir))} offline run folder(s) in {_rel(sweep_dir / 'wandb')}; "
                f"upload them with:\n  {sync_command(sweep_dir)}")
    return rid


def _config_dict(cfg) -> dict:
    from harness.config import to_dict

    return to_dict(cfg)


def _headline(data: dict) -> Optional[str]:
    try:
        from harness.report import headline

        return headline({**data["metadata"], "summary": data["summary"]})
    except Exception:  # noqa: BLE001 - a summary line is a nicety
        return None


def offline_runs(sweep_dir: str | Path) -> list[Path]:
    return sorted(p for p in (Path(sweep_dir) / "wandb").glob("offline-run-*") if p.is_dir())


# ------------------------------------------------------------------------------------------------ report
def _summary_markdown(data: dict) -> str:
    from harness.report import fmt

    cols = [c for c in ("strategy", "n_ok", "acc_mean", "acc_std", "trainable_ratio", "samples_per_s",
                        "diff_vs_full", "p_value", "verdict") if c in data["metadata"]["summary_columns"]]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in data["summary"]:
        lines.append("| " + " | ".join(fmt(c, row).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


def _sweep_settings(sweep_dir: Path, data: Optional[dict] = None):
    """(sweep name, WandbConfig) from ``sweep.json``; defaults when the folder has none."""
    from harness.config import WandbConfig, build_config
    from harness.results import read_json

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

    from harness.results import read_json

    sweep_dir = Path(sweep_dir)
    data = read_json(sweep_dir / "comparison.json")
    name, wb = _sweep_settings(sweep_dir, data)
    project = project or wb.project
    trials = wr.Runset(entity=entity, project=project, name=f"{name} trials",
                       filters=f"Metric('Group') = '{name}' and Metric('JobType') != 'summary'")
    summary_runs = wr.Runset(entity=entity, project=project, name=f"{name} summary",
                             filters=f"Metric('Group') = '{name}' and Metric('JobType') = 'summary'")

    def curve(metric: str, title: str):
        return wr.LinePlot(title=title, x="Step", y=[metric], groupby="JobType", groupby_aggfunc="mean",
                           groupby_rangefunc="minmax", title_x="optimizer step", title_y=metric)

    blocks = [
        wr.P(_headline(data) or ""),
        wr.H2("Best configuration per strategy"),
        wr.MarkdownBlock(text=_summary_markdown(data)),
        wr.H2("Evaluation accuracy by strategy (mean over runs, min-max band)"),
        wr.PanelGrid(runsets=[trials], panels=[curve("eval/accuracy", "eval accuracy by strategy"),
                                               curve("eval/loss", "eval loss by strategy"),
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
    from harness.results import write_json_atomic

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
    _quiet_env()
    if mode == "online":
        import wandb

        entity = wb.entity or wandb.Api().default_entity
        report = build_report(sweep_dir, entity=entity).save()
        console(f"W&B report saved: {report.url}")
        return report.url
    report = build_report(sweep_dir, entity="")
    model = report._to_model()  # noqa: SLF001 - the spec that Report.save() uploads
    path = write_json_atomic(sweep_dir / "wandb_report.json", {
        "format": "freezebench.wandb_report/1", "title": model.display_name, "description": model.description,
        "entity": wb.entity, "project": wb.project,
        "spec": json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True)),
        "publish": ["wandb login", sync_command(sweep_dir),
                    f"python -m harness.report {shlex.quote(_rel(sweep_dir))} --wandb-report online"]})
    console(f"W&B report (offline): specification written to {_rel(path)}\n"
            f"  publish later: `wandb login`, then `{sync_command(sweep_dir)}`, then\n"
            f"  python -m harness.report {shlex.quote(_rel(sweep_dir))} --wandb-report online")
    return path


# ------------------------------------------------------------------------------------------------ reading
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[Any]:
    """The ``wandb.proto`` ``Record`` messages of a ``run-<id>.wandb`` file.

    The file is wandb's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) then LevelDB-log
    framed records (32 KiB blocks; 7-byte record headers: CRC32 seeded with the type byte, length, type
    FULL/FIRST/MIDDLE/LAST). wandb 0.31 no longer ships its Python reader (``wandb.sdk.internal.datastore``);
    this follows the same format and decodes with wandb's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path}: not a W&B transaction log")
    seeds = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}
    pos, parts = _HEADER, None
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:      # block trailer padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind not in seeds or len(chunk) < length or zlib.crc32(chunk, seeds[kind]) & 0xFFFFFFFF != crc:
            break                                  # zero padding or a torn tail write: stop here
        if kind == _FULL:
            parts = [chunk]
        elif kind == _FIRST:
            parts = [chunk]
            continue
        elif parts is None:
            continue
        else:
            parts.append(chunk)
            if kind == _MIDDLE:
                continue
        record = pb.Record()
        record.ParseFromString(b"".join(parts))
        parts = None
        yield record


def _put(target: dict, item) -> None:
    """Set a config/summary/history item; nested keys (``["comparison", "path"]``) become nested dicts."""
    keys = [item.key] if item.key else list(item.nested_key)
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = json.loads(item.value_json)


def read_offline_run(path: str | Path) -> dict:
    """A plain view of an offline run (a ``offline-run-*`` folder or its ``.wandb`` file): identity, config,
    history rows (with ``_step``), merged summary and exit code."""
    path = Path(path)
    if path.is_dir():
        (path,) = sorted(path.glob("run-*.wandb"))
    out: dict = {"file": path, "files_dir": path.parent / "files", "config": {}, "history": [], "summary": {},
                 "exit_code": None}
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, name=r.display_name, group=r.run_group, job_type=r.job_type,
                       project=r.project, entity=r.entity, tags=list(r.tags))
            for item in r.config.update:
                _put(out["config"], item)
        elif kind == "config":
            for item in rec.config.update:
                _put(out["config"], item)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            row.setdefault("_step", rec.history.step.num)
            out["history"].append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out["summary"], item)
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out
