"""python -m harness.submit CONFIG --nodes N --gpus-per-node G: validate a sweep, render
slurm/sweep.sbatch with the allocation and submit it with sbatch (--dry-run prints the script).

Exit codes: 0 submitted (or printed), 1 sbatch failed, 2 bad input (nothing submitted). See docs/slurm.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from harness.adapters.slurm.script import TEMPLATE, check_sbatch_value, parse_time, render
from harness.cli import parser
from harness.config import ConfigError, SweepConfig, load_config
from harness.preflight import INPUT_ERRORS, preflight

__all__ = ["main", "parse_args"]


def parse_args(argv=None) -> argparse.Namespace:
    p = parser("python -m harness.submit", __doc__)
    p.add_argument("config", help="sweep YAML file, e.g. configs/freeze_grid.yaml")
    p.add_argument("--nodes", type=int, required=True, help="nodes: Ray head on the first, one worker per other")
    p.add_argument("--gpus-per-node", type=int, required=True, help="GPUs per node (0 on CPU nodes)")
    p.add_argument("--cpus-per-node", type=int, default=8, help="CPUs per node handed to Ray (default 8)")
    p.add_argument("--time", default="04:00:00", help="wall-clock limit per run, SLURM format (default 04:00:00)")
    p.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    p.add_argument("--account", default=None, help="SLURM account to charge")
    p.add_argument("--job-name", default=None, help="job name (default: fb-<sweep name>)")
    p.add_argument("--results", default=None, help="results root on shared storage (default: output.dir)")
    p.add_argument("--signal-before", type=int, default=300, metavar="SECONDS",
                   help="USR1 this many seconds before the time limit: save, requeue, resume (default 300)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, passed on to the sweep (repeatable)")
    p.add_argument("--template", default=str(TEMPLATE), help="batch script template (default slurm/sweep.sbatch)")
    p.add_argument("--dry-run", action="store_true", help="print the rendered batch script; submit nothing")
    args = p.parse_args(argv)
    for name in ("nodes", "cpus_per_node"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.gpus_per_node < 0:
        p.error("--gpus-per-node must be 0 or more")
    return args


def _check_fits(cfg: SweepConfig, args) -> None:
    """A trial that can never be scheduled would leave the job waiting until its time limit."""
    r = cfg.resources
    if r.gpus_per_trial > 0 and args.gpus_per_node == 0:
        raise ConfigError("resources.gpus_per_trial", f"{r.gpus_per_trial} but --gpus-per-node is 0")
    if cfg.train.device == "cuda" and args.gpus_per_node == 0:
        raise ConfigError("train.device", "cuda but --gpus-per-node is 0")
    one_node = r.gpus_per_trial <= 1 and getattr(r, "workers_per_trial", 1) <= 1
    cpus, gpus = (args.cpus_per_node, args.gpus_per_node) if one_node else \
        (args.cpus_per_node * args.nodes, args.gpus_per_node * args.nodes)
    where = "--cpus-per-node" if one_node else "--cpus-per-node x --nodes"
    if r.cpus_per_trial > cpus:
        raise ConfigError("resources.cpus_per_trial", f"{r.cpus_per_trial} exceeds {where} ({cpus})")
    if r.gpus_per_trial > gpus:
        raise ConfigError("resources.gpus_per_trial", f"{r.gpus_per_trial} exceeds the GPUs available ({gpus})")


def _validate(args) -> SweepConfig:
    """The sweep's own validation (config, strategies, data source, model config) plus the allocation."""
    overrides = list(args.overrides) + ([f"output.dir={Path(args.results).expanduser().resolve()}"]
                                        if args.results else [])
    cfg = load_config(args.config, overrides)
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(
        cfg.output, dir=str(Path(cfg.output.dir).expanduser().resolve())))
    # a login node often has no internet: the checks that need a Hub model's configuration are then skipped,
    # with a note (the job runs them again when it starts), instead of failing the submission
    preflight(cfg, skip_if_hub_unreachable=True, console=lambda msg: print(msg, file=sys.stderr))
    _check_fits(cfg, args)
    try:
        limit = parse_time(args.time)
    except ValueError as exc:
        raise ConfigError("--time", str(exc)) from None
    if not 0 < args.signal_before < limit:
        raise ConfigError("--signal-before", f"{args.signal_before} s must be between 0 and the time limit "
                                             f"({limit} s)")
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = _validate(args)
        template = Path(args.template).read_text(encoding="utf-8")
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot read the batch script template: {exc}", file=sys.stderr)
        return 2
    results = cfg.output.dir
    logs = Path(results) / "slurm"
    job_name = args.job_name or f"fb-{cfg.name}"
    try:   # values of #SBATCH lines are checked (settings lines are quoted): nothing reaches the shell unquoted
        for what, value in (("--job-name", job_name), ("--partition", args.partition), ("--account", args.account),
                            ("--time", args.time), ("--results (the job log, #SBATCH --output)", str(logs))):
            if value is not None:
                check_sbatch_value(what, value)
        script = render(template, config=str(Path(args.config).resolve()), overrides=args.overrides,
                        results=results, python=sys.executable, job_name=job_name, nodes=args.nodes,
                        gpus_per_node=args.gpus_per_node, cpus_per_node=args.cpus_per_node, time=args.time,
                        signal_before=args.signal_before, log=str(logs / "%x-%j.out"), partition=args.partition,
                        account=args.account)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(script, end="")
        return 0
    if args.nodes > 1 and re.match(r"^/(tmp|dev/shm)(/|$)", results):
        print(f"warning: {results} looks node-local; every node must see the results folder", file=sys.stderr)
    logs.mkdir(parents=True, exist_ok=True)             # sbatch does not create the log folder
    try:
        proc = subprocess.run(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        print("error: sbatch not found (run this on a SLURM login node)", file=sys.stderr)
        return 1
    if proc.returncode != 0:
        print(f"error: sbatch failed ({proc.returncode}): {proc.stderr.strip()}", file=sys.stderr)
        return 1
    job_id = proc.stdout.strip().split(";")[0]
    (logs / f"{job_name}-{job_id}.sbatch").write_text(script, encoding="utf-8")
    log = logs / f"{job_name}-{job_id}.out"
    sweep_dir = Path(results) / cfg.name
    gpus = f"{args.gpus_per_node} GPUs" if args.gpus_per_node else "no GPUs"
    print(f"submitted job {job_id} ({job_name}): {args.nodes} node(s), {args.cpus_per_node} CPUs and {gpus} "
          f"per node, time limit {args.time}")
    print(f"  results: {sweep_dir}  (comparison.csv when the sweep is done)")
    print(f"  log:     {log}")
    print(f"  script:  {logs / f'{job_name}-{job_id}.sbatch'}")
    print(f"  watch:   squeue -j {job_id}   |   tail -f {log}")
    print(f"  cancel:  scancel {job_id}   (resubmit the same command to resume)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
