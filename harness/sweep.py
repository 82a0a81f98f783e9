"""python -m harness.sweep CONFIG: validate the sweep, plan it, tokenize the data once, run every trial
through Ray Tune and write the comparison table (results/<sweep>/).

Exit codes: 0 done, 1 some trial failed, 2 bad input or another sweep holds the results folder (nothing
started), 3 stopped by SIGTERM/SIGUSR1 (Tune saved its state; rerun with --resume).

One writer per results folder: the sweep holds results/<sweep>/sweep.lock (host, pid, start time) for as long
as it runs and renews it; --resume takes over the lock of a sweep that died (see docs/reliability.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from harness.cli import parser
from harness.config import SweepConfig, load_config, sweep_schema, to_dict
from harness.config.search import sampled, studies
from harness.data import tokenize_cache
from harness.keep_models import keep_models
from harness.preflight import (INPUT_ERRORS, check_local_machine, format_plan, format_search_plan, plan_rows,
                               precision_notes, preflight)
from harness.reporting import NoResults, write_report
from harness.results import write_json_atomic
from harness.results.lock import LockHeld, SweepLock
from harness.train.model import load_tokenizer, tokenizer_source
from harness.train.cost import schedule

__all__ = ["main", "parse_args"]


def parse_args(argv=None) -> argparse.Namespace:
    p = parser("python -m harness.sweep", __doc__)
    p.add_argument("config", nargs="?", help="sweep YAML file, e.g. configs/freeze_grid.yaml")
    p.add_argument("--schema", action="store_true",
                   help="print the sweep file's JSON Schema (configs/sweep.schema.json) and exit")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=3e-5 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the trial plan with trainable counts; train nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: print the plan as JSON")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep (Tuner.restore)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over even if results exist (the old folder is kept as <name>.bak-N)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--wait-for-lock", type=float, default=0.0, metavar="SECONDS",
                   help="when another sweep holds the results folder, wait up to this long for it to finish or "
                        "go stale (a requeued SLURM job whose predecessor is still stopping; default 0)")
    args = p.parse_args(argv)
    if args.config is None and not args.schema:
        p.error("the following arguments are required: config (a sweep YAML file; or --schema)")
    return args


def _absolute_paths(cfg: SweepConfig) -> SweepConfig:
    """Relative paths are read against the folder the sweep was started in, as transformers and Hugging Face
    datasets read them; a Ray trial runs in its own working folder, so they go to the trials absolute. The model
    keys only where they name a local folder: anything else is a packaged model or a hub id."""
    def local(name: str | None) -> str | None:
        return str(Path(name).expanduser().resolve()) if name and Path(name).expanduser().is_dir() else name
    out = dataclasses.replace(cfg.output, dir=str(Path(cfg.output.dir).expanduser().resolve()))
    model = dataclasses.replace(cfg.model, name=local(cfg.model.name), tokenizer=local(cfg.model.tokenizer))
    return dataclasses.replace(cfg, output=out, model=model)


def _prepare_folder(sweep_dir: Path, resume: bool, overwrite: bool, lock: SweepLock) -> None:
    has_results = any(sweep_dir.glob("trials/*/result.json")) or (sweep_dir / "_tune").exists()
    if has_results and not resume:
        if not overwrite:
            raise SystemExit(f"error: {sweep_dir} already holds results; use --resume to continue that sweep or "
                             f"--overwrite to start over (the old folder is kept)")
        n = 1
        while sweep_dir.with_name(f"{sweep_dir.name}.bak-{n}").exists():
            n += 1
        sweep_dir.rename(sweep_dir.with_name(f"{sweep_dir.name}.bak-{n}"))
        lock.folder_renamed(sweep_dir.with_name(f"{sweep_dir.name}.bak-{n}"))   # our lock went with the folder
        print(f"moved old results to {sweep_dir.name}.bak-{n}")


def _tokenize_once(cfg: SweepConfig) -> str:
    tokenizer = load_tokenizer(cfg.model)
    return str(tokenize_cache.prepare(cfg.data, tokenizer, tokenizer_source(cfg.model),
                                      num_labels=cfg.model.num_labels, log=print))


def _write_sweep_json(sweep_dir: Path, cfg: SweepConfig, trials: list) -> None:
    write_json_atomic(sweep_dir / "sweep.json", {"name": cfg.name, "config": to_dict(cfg),
                                                 "trials": [t.trial_id for t in trials]})


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.schema:
        print(json.dumps(sweep_schema(), indent=2))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = _absolute_paths(load_config(args.config, args.overrides))
        trials = preflight(cfg)
        if args.dry_run:
            if sampled(cfg):   # the plan: studies x budget x seeds and the space; nothing is sampled
                print(format_search_plan(cfg, studies(cfg), plan_rows(cfg, trials), as_json=args.json))
            else:
                print(format_plan(plan_rows(cfg, trials), as_json=args.json))
            return 0
        if args.address is None:
            check_local_machine(cfg, trials)  # a local Ray runs the trials on this machine
        sweep_dir = Path(cfg.output.dir) / cfg.name
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:   # before anything is written: one writer per results folder
        lock = SweepLock(sweep_dir, console=print).acquire(takeover=args.resume or args.overwrite,
                                                           wait_s=args.wait_for_lock)
    except LockHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: output.dir: cannot write to {sweep_dir}: {exc}", file=sys.stderr)
        return 2
    with lock:
        return _run_locked(args, cfg, trials, sweep_dir, lock)


def _run_locked(args, cfg: SweepConfig, trials: list, sweep_dir: Path, lock: SweepLock) -> int:
    """Everything that writes to the results folder, while this sweep holds its lock."""
    try:
        _prepare_folder(sweep_dir, args.resume, args.overwrite, lock)
        tokenized = _tokenize_once(cfg)
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SystemExit, LockHeld) as exc:
        print(exc, file=sys.stderr)
        return 2
    plan = studies(cfg) if sampled(cfg) else None
    try:  # an unwritable results folder (or a full disk) is an error before anything starts
        sweep_dir.mkdir(parents=True, exist_ok=True)
        _write_sweep_json(sweep_dir, cfg, trials if plan is None else [])
    except OSError as exc:
        print(f"error: output.dir: cannot write to {sweep_dir}: {exc}", file=sys.stderr)
        return 2
    if plan is None:
        print(f"sweep {cfg.name}: {len(trials)} trials -> {sweep_dir}")
    else:
        print(f"sweep {cfg.name}: {cfg.search.algorithm} search, {len(plan)} strategies x {cfg.search.num_samples} "
              f"configurations x {len(plan[0].seeds)} seeds = {sum(s.n_trials for s in plan)} trials -> {sweep_dir}")
    if args.address is None:   # a local Ray: the trials run on this machine's CPU or GPU
        for note in precision_notes(cfg, trials):
            print(note)
    # the adapters import ray (seconds): only once a sweep really starts, not for --help or --dry-run
    from harness.adapters import wandb as wandb_adapter
    from harness.adapters.ray import finalize_results, init_ray, run_tune
    from harness.adapters.ray.search import realised_trials, run_search, set_aside_unplanned
    from harness.adapters.slurm.signals import EXIT_INTERRUPTED, graceful_stop

    wandb_adapter.prepare_sweep(cfg, sweep_dir, console=print)  # W&B mode, run folder, run-id salt
    init_ray(args.address, cfg.resources.num_cpus)
    grid = None
    with graceful_stop(console=print) as stop:   # SIGTERM/SIGUSR1 (SLURM): Tune saves its state and returns
        search = dict(metric=cfg.search.metric, mode=cfg.search.search_mode,
                      early_stopping=to_dict(cfg.search.early_stopping))
        if plan is None:
            grid = run_tune(schedule(trials), tokenized_path=tokenized, resume=args.resume,  # longest first
                            **search)
        else:   # one searcher per strategy, the same budget each
            grid = run_search(plan, tokenized_path=tokenized, resume=args.resume,
                              keep_going=lambda: not stop.requested, **search)
    if stop.interrupted(grid) or (plan is not None and len(grid) < sum(s.n_trials for s in plan)):
        print(f"interrupted ({stop.signal or 'stop signal'}): sweep state saved in {sweep_dir}; "
              f"continue with --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    if plan is not None:   # the trials are what the searchers sampled
        trials = realised_trials(grid)
        set_aside_unplanned(sweep_dir, {t.trial_id for t in trials}, console=print)
        _write_sweep_json(sweep_dir, cfg, trials)
    try:
        counts = finalize_results(trials, grid, console=print)
    except OSError as exc:  # e.g. the disk filled up while the trials ran
        print(f"error: cannot write the trial results under {sweep_dir}: {exc}", file=sys.stderr)
        return 1
    print("trials: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    n_errors = counts.get("failed", 0)
    try:
        write_report(sweep_dir, console=print, plots=cfg.output.plots)
    except NoResults as exc:
        print(f"no comparison table: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"error: cannot write the comparison table in {sweep_dir}: {exc}", file=sys.stderr)
        return 1
    try:
        keep_models(cfg, trials, sweep_dir, console=print)   # output.save_model: HF folders of the winners
    except (OSError, ValueError) as exc:
        print(f"error: cannot save the selected models under {sweep_dir}: {exc}", file=sys.stderr)
        return 1
    wandb_adapter.log_sweep_summary(cfg, sweep_dir, console=print)  # summary run + `wandb sync` hint
    print(f"results: {sweep_dir}/trials/*/result.json")
    return 1 if n_errors else 0


if __name__ == "__main__":
    sys.exit(main())
