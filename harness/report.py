"""python -m harness.report SWEEP_DIR: the comparison table of a sweep, from its stored results.

Writes comparison.{csv,json,md}, summary.csv, plots/*.png and report.html into the sweep folder (every one of
them is regenerated, so a damaged one is simply replaced). A trial whose result.json is damaged or missing is
first rebuilt from the copy its final report left in Ray Tune's record (results/<sweep>/_tune/).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from harness.adapters.wandb import publish_report   # imports wandb only when a report is built
from harness.cli import parser
from harness.reporting import NoResults, write_report
from harness.reporting.columns import COSTS
from harness.results import ResultSchemaError
from harness.results.lock import LOCK_FILE
from harness.results.lock_holder import describe, is_stale, read_holder
from harness.results.recover import recover_sweep

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    p = parser("python -m harness.report", __doc__)
    p.add_argument("sweep_dir", help="a sweep folder, e.g. results/quickstart (holds trials/*/result.json)")
    p.add_argument("--margin", type=float, metavar="M",
                   help="non-inferiority margin in metric units (default: the sweep's report.margin, else 0.01)")
    p.add_argument("--cost", choices=list(COSTS),
                   help="what 'cheapest' means in the recommendation and the Pareto plot (default: report.cost)")
    p.add_argument("--bootstrap-resamples", type=int, metavar="N",
                   help="resamples of the paired bootstrap over test examples x seeds; 0: none (default: 2000)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures (report.html has no plots)")
    p.add_argument("--wandb-report", nargs="?", const="auto", choices=["auto", "online", "offline"], metavar="MODE",
                   help="also build a W&B Report: saved when online (auto: when an API key is configured), else "
                        "its specification is written to <sweep>/wandb_report.json (see docs/wandb.md)")
    args = p.parse_args(argv)
    holder = read_holder(Path(args.sweep_dir) / LOCK_FILE)
    if holder and not is_stale(holder)[0]:   # reading is safe (results are written atomically); say it may grow
        print(f"note: a sweep is still writing to {args.sweep_dir} ({describe(holder)}): the table shows the trials "
              f"finished so far", file=sys.stderr)
    try:
        recover_sweep(args.sweep_dir, log=print)
        write_report(args.sweep_dir, plots=not args.no_plots,
                     overrides={"margin": args.margin, "cost": args.cost,
                                "bootstrap_resamples": args.bootstrap_resamples})
    except NoResults as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ResultSchemaError as exc:  # an unreadable result file Tune holds no copy of
        print(f"error: {exc} (and Ray Tune's record of the sweep holds no copy of it)", file=sys.stderr)
        return 2
    except ValueError as exc:   # a bad report setting (named), or results of different metrics
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # e.g. a full disk while rewriting a recovered result
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.wandb_report:
        try:
            publish_report(args.sweep_dir, args.wandb_report)
        except Exception as exc:  # noqa: BLE001 - the local report is written; say why W&B's is not
            print(f"error: W&B report not built: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
