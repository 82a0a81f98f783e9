"""The SLURM batch script: ``slurm/sweep.sbatch`` rendered with an allocation and a sweep.

Every value that reaches the script is quoted with :func:`shlex.quote` (settings lines) or checked against a
strict pattern (``#SBATCH`` lines), so nothing from a config or the command line runs in the job's shell.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

__all__ = ["TEMPLATE", "parse_time", "render"]

TEMPLATE = Path(__file__).resolve().parents[3] / "slurm" / "sweep.sbatch"
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time(text: str) -> int:
    """SLURM's ``--time`` formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) in seconds; ValueError otherwise."""
    m = _TIME.match(text.strip())
    if not m or text.strip() in ("", "0"):
        raise ValueError(f"not a SLURM time limit: {text!r} (use e.g. 90, 04:00:00 or 1-12:00:00)")
    days, a, b, c = m.groups()
    nums = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:                                  # D-H[:M[:S]]
        h, mi, s = (nums + [0, 0])[:3]
        return ((int(days) * 24 + h) * 60 + mi) * 60 + s
    if len(nums) == 1:                                    # M
        return nums[0] * 60
    if len(nums) == 2:                                    # M:S
        return nums[0] * 60 + nums[1]
    return (nums[0] * 60 + nums[1]) * 60 + nums[2]        # H:M:S


def _sub(text: str, pattern: str, line) -> str:
    """Replace the one line matching ``pattern``; ``line(tail)`` gets the rest of the line (its comment)."""
    new, n = re.subn(pattern, lambda m: line(m.group(1) if m.groups() else ""), text, count=1, flags=re.MULTILINE)
    if n != 1:
        raise ValueError(f"batch script template: no line matches {pattern!r}")
    return new


_SET = "# set by harness.submit"


def _line(prefix: str, comment: str) -> str:
    """``prefix`` with ``comment`` in the template's comment column."""
    comment = comment.strip()
    return f"{prefix.ljust(45)} {comment}" if comment else prefix


def render(template: str, *, config: str, overrides: list[str], results: str, python: str, job_name: str,
           nodes: int, gpus_per_node: int, cpus_per_node: int, time: str, signal_before: int, log: str,
           partition: str | None = None, account: str | None = None) -> str:
    """The template with the allocation in its ``#SBATCH`` lines and the sweep in its settings lines
    (each site-specific line keeps its comment)."""
    s = template
    for key, value in (("job-name", job_name), ("nodes", nodes), ("cpus-per-task", cpus_per_node),
                       ("time", time), ("output", log), ("signal", f"B:USR1@{signal_before}")):
        s = _sub(s, rf"^#SBATCH --{key}=\S+(.*)$", lambda tail, k=key, v=value: _line(f"#SBATCH --{k}={v}", tail))
    if gpus_per_node:
        s = _sub(s, r"^#SBATCH --gpus-per-node=\S+(.*)$",
                 lambda tail: _line(f"#SBATCH --gpus-per-node={gpus_per_node}", tail))
    else:
        s = _sub(s, r"^#SBATCH --gpus-per-node=\S+.*$", lambda _: _line("##SBATCH --gpus-per-node=0", "# CPU only"))
    for key, value in (("partition", partition), ("account", account)):
        if value:
            s = _sub(s, rf"^##?SBATCH --{key}=\S+.*$", lambda _, k=key, v=value: _line(f"#SBATCH --{k}={v}", _SET))
    settings = {"CONFIG": shlex.quote(config), "RESULTS": shlex.quote(results), "PYTHON": shlex.quote(python),
                "SWEEP_ARGS": "(" + " ".join(shlex.quote(a) for o in overrides for a in ("--set", o)) + ")"}
    for name, value in settings.items():
        s = _sub(s, rf"^{name}=.*$", lambda _, n=name, v=value: _line(f"{n}={v}", _SET))
    return s
