"""The SLURM batch script: ``slurm/sweep.sbatch`` rendered with an allocation and a sweep.

Every value that reaches the script is quoted with :func:`shlex.quote` (settings lines) or checked against a
strict pattern (``#SBATCH`` lines), so nothing from a config or the command line runs in the job's shell
(tests/adapters/test_slurm_strings.py runs rendered scripts full of hostile strings to prove it).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

__all__ = ["TEMPLATE", "parse_time", "render", "check_sbatch_value"]

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


_SET = "# set by harness.submit"
# what an #SBATCH line may carry: bash reads the line as a comment (a newline would end it and start a command)
# and sbatch splits it at whitespace and strips quotes, so none of those may appear in a value
_SBATCH_VALUE = re.compile(r"^[^\s'\"\\]+$")


def check_sbatch_value(what: str, value: str) -> str:
    """``value`` if it can stand in an ``#SBATCH`` line unchanged; ValueError naming ``what`` otherwise."""
    if not _SBATCH_VALUE.match(value) or not value.isprintable():
        raise ValueError(f"{what}: {value!r} cannot go into an #SBATCH line (no whitespace, quotes, backslashes "
                         f"or control characters)")
    return value


def _line(prefix: str, comment: str) -> str:
    """``prefix`` with ``comment`` in the template's comment column."""
    comment = comment.strip()
    return f"{prefix.ljust(45)} {comment}" if comment else prefix


def render(template: str, *, config: str, overrides: list[str], results: str, python: str, job_name: str,
           nodes: int, gpus_per_node: int, cpus_per_node: int, time: str, signal_before: int, log: str,
           partition: str | None = None, account: str | None = None) -> str:
    """The template with the allocation in its ``#SBATCH`` lines and the sweep in its settings lines (each
    site-specific line keeps its comment).

    The template is matched line by line *before* any value goes in, so a value can never be matched again
    (a config path holding a newline and ``RESULTS=...`` stays inside its quotes). Settings values are
    :func:`shlex.quote`-d; ``#SBATCH`` values must pass :func:`check_sbatch_value`."""
    sbatch = {"job-name": job_name, "nodes": nodes, "cpus-per-task": cpus_per_node, "time": time, "output": log,
              "signal": f"B:USR1@{signal_before}"}
    for key, value in (*sbatch.items(), ("partition", partition), ("account", account)):
        if value is not None:
            check_sbatch_value(f"#SBATCH --{key}", str(value))
    settings = {"CONFIG": shlex.quote(config), "RESULTS": shlex.quote(results), "PYTHON": shlex.quote(python),
                "SWEEP_ARGS": "(" + " ".join(shlex.quote(a) for o in overrides for a in ("--set", o)) + ")"}
    rules = [(rf"^#SBATCH --{k}=\S+(.*)$", lambda tail, k=k, v=v: _line(f"#SBATCH --{k}={v}", tail))
             for k, v in sbatch.items()]
    if gpus_per_node:
        rules.append((r"^#SBATCH --gpus-per-node=\S+(.*)$",
                      lambda tail: _line(f"#SBATCH --gpus-per-node={gpus_per_node}", tail)))
    else:
        rules.append((r"^#SBATCH --gpus-per-node=\S+.*$()",
                      lambda _: _line("##SBATCH --gpus-per-node=0", "# CPU only")))
    rules += [(rf"^##?SBATCH --{k}=\S+.*$()", lambda _, k=k, v=v: _line(f"#SBATCH --{k}={v}", _SET))
              for k, v in (("partition", partition), ("account", account)) if v]
    rules += [(rf"^{n}=.*$()", lambda _, n=n, v=v: _line(f"{n}={v}", _SET)) for n, v in settings.items()]
    lines, used = template.split("\n"), set()
    for i, text in enumerate(lines):
        for j, (pattern, make) in enumerate(rules):
            m = re.match(pattern, text) if j not in used else None
            if m:
                lines[i], _ = make(m.group(1)), used.add(j)
                break
    missing = [pattern for j, (pattern, _) in enumerate(rules) if j not in used]
    if missing:
        raise ValueError(f"batch script template: no line matches {missing[0]!r}")
    return "\n".join(lines)
