"""Hostile strings in the batch script: ``harness.submit`` turns config paths, results paths and ``--set`` values
into ``slurm/sweep.sbatch``, which bash runs. Quotes, ``$(...)``, backticks, ``;``, ``&&``, newlines and globs
must reach the sweep byte for byte and never the shell.

The rendered script is *run* by bash with a stub environment (no SLURM, no Ray): stub ``scontrol`` and ``srun``,
and a stub ``python`` - itself at a hostile path - that records its arguments. Every hostile string would
``touch`` a file in a marker folder if any shell evaluated it; the folder must stay empty, and the arguments the
stub saw for ``-m harness.sweep`` must equal what went in. ``#SBATCH`` values that bash or sbatch could
misread are refused with exit 2.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import submit
from harness.adapters.slurm.script import TEMPLATE, render
from tests.conftest import tiny_sweep_dict

STUB_PYTHON = r'''#!/bin/bash
# records each call: one file of NUL-separated arguments
printf '%s\0' "$@" > "$FB_STUB_LOG/call.$$.$RANDOM"
case "$1" in
    -c) echo stubtoken ;;                            # RAY_AUTH_TOKEN="$("$PYTHON" -c ...)"
    -) cat > /dev/null ;;                            # wait_for_ray: a script on stdin; all nodes "alive"
esac
[[ " $* " == *" start "* ]] && exec sleep 60         # `ray start --block`: stays up until stop_ray
exit 0
'''


def hostile(marker: Path) -> list[str]:
    m = str(marker)
    return [f"$(touch {m}/dollar)", f"`touch {m}/backtick`", f"a; touch {m}/semicolon", f"b && touch {m}/and",
            f"c\ntouch {m}/newline", f"d'; touch {m}/quote; '", f'e"; touch {m}/dquote; "', f"f\\'$(touch {m}/bs)",
            f"g | touch {m}/pipe", "$HOME ${IFS} $0 $1 !! *", f"h\r\ntouch {m}/crlf", "-e", "--resume", "é ünï ☃"]


def stubbed(tmp: Path) -> tuple[Path, Path, dict]:
    """The stub environment: a stub python at a hostile path, stub scontrol/srun on PATH, a call log."""
    bin_dir = tmp / "stub bin $(touch x) `y`;z"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(STUB_PYTHON)
    python.chmod(0o755)
    tools = tmp / "tools"
    tools.mkdir()
    (tools / "scontrol").write_text('#!/bin/bash\n[[ "$1 $2" == "show hostnames" ]] && echo node1\nexit 0\n')
    (tools / "srun").write_text("#!/bin/bash\nexit 0\n")
    for tool in tools.iterdir():
        tool.chmod(0o755)
    calls = tmp / "calls"
    calls.mkdir()
    env = {"PATH": f"{tools}:{os.environ['PATH']}", "HOME": str(tmp), "SLURM_JOB_ID": "987651",
           "SLURM_JOB_NODELIST": "node1", "SLURM_CPUS_PER_TASK": "2", "FB_HEAD_IP": "127.0.0.1",
           "FB_STUB_LOG": str(calls), "FB_RAY_TIMEOUT": "20"}
    return python, calls, env


def run_script(script: str, tmp: Path, env: dict) -> list[list[str]]:
    path = tmp / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    work = tmp / "cwd"
    work.mkdir()
    proc = subprocess.run(["bash", str(path)], cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(work)) == [], os.listdir(work)     # nothing created where the job runs
    calls = [p.read_bytes().split(b"\0")[:-1] for p in (Path(env["FB_STUB_LOG"])).iterdir()]
    return [[a.decode() for a in call] for call in calls]


def sweep_call(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if c[:2] == ["-m", "harness.sweep"]]
    return call


def test_rendered_script_runs_hostile_settings_as_plain_arguments(tmp_path):
    marker = tmp_path / "marker"
    marker.mkdir()
    bad = hostile(marker)
    python, _, env = stubbed(tmp_path)
    config = str(tmp_path / f"conf {bad[0]} {bad[1]} {bad[2]}\nRESULTS=$(touch {marker}/reparse).yaml")
    results = str(tmp_path / f"res {bad[3]} {bad[6]}\nPYTHON=`touch {marker}/reparse2`")
    overrides = [f"logging.wandb.project={b}" for b in bad] + [f"{b}={b}" for b in bad[:3]]
    script = render(TEMPLATE.read_text(), config=config, overrides=overrides, results=results, python=str(python),
                    job_name="fb-x", nodes=1, gpus_per_node=0, cpus_per_node=2, time="10", signal_before=60,
                    log=str(tmp_path / "log-%j.out"))
    args = sweep_call(run_script(script, tmp_path, env))
    want = ["-m", "harness.sweep", config, "--address", args[4], "--resume", "--wait-for-lock", "150", "--set",
            f"output.dir={results}"]
    want += [a for o in overrides for a in ("--set", o)]
    assert args == want                                     # byte for byte, in order, nothing split or merged
    assert re.fullmatch(r"127\.0\.0\.1:\d+", args[4])
    assert sorted(os.listdir(marker)) == []                 # no hostile string reached a shell
    assert Path(results).is_dir()                           # the job made the folder it was given, under its name


def test_submit_with_hostile_paths_and_values_hands_them_to_the_sweep_unchanged(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "marker"
    marker.mkdir()
    bad = hostile(marker)
    python, _, env = stubbed(tmp_path)
    # a file name holds no "/": these would touch files in the job's working directory (checked empty)
    config = tmp_path / "sweep $(touch pwned1) `touch pwned2` d'; touch pwned3; '\na; touch pwned4 \"&&id\".yaml"
    config.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path)))
    # an #SBATCH --output path may not hold whitespace or quotes; $(...), backticks and ; are inert there
    results = tmp_path / f"res$(touch${{IFS}}{marker}/r1)`touch${{IFS}}{marker}/r2`;x"
    overrides = [f"logging.wandb.project={b}" for b in bad] + [f"data.text_column={bad[4]}"]
    monkeypatch.setattr(sys, "executable", str(python))      # the script's PYTHON: the stub at a hostile path
    rc = submit.main([str(config), "--nodes", "1", "--gpus-per-node", "0", "--cpus-per-node", "2", "--time", "10",
                      "--results", str(results), "--partition", f"gpu;touch${{IFS}}{marker}/p", "--dry-run",
                      *[a for o in overrides for a in ("--set", o)]])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert re.search(rf"^#SBATCH --partition=gpu;touch\$\{{IFS\}}{re.escape(str(marker))}/p\s", out.out, re.M)
    args = sweep_call(run_script(out.out, tmp_path, env))
    assert args[2] == str(config.resolve())
    assert args[5:] == ["--resume", "--wait-for-lock", "150", "--set", f"output.dir={results}",
                        *[a for o in overrides for a in ("--set", o)]]
    assert sorted(os.listdir(marker)) == []


@pytest.mark.parametrize("option, value", [
    ("--job-name", "fb\ntouch /tmp/fb-pwned"), ("--job-name", "two words"), ("--partition", "gpu\nid"),
    ("--account", "a'b"), ("--account", 'a"b'), ("--partition", "gpu\\"), ("--time", "10\nid"),
    ("--results", "/tmp/with space/res"),
], ids=lambda v: repr(v))
def test_values_that_would_break_an_sbatch_line_exit_2(option, value, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path)))
    rc = submit.main([str(config), "--nodes", "1", "--gpus-per-node", "0", "--cpus-per-node", "2", "--dry-run",
                      option, value])
    captured = capsys.readouterr()
    assert rc == 2, captured.err
    assert "#SBATCH" in captured.err or "--time" in captured.err, captured.err
    assert captured.out == ""                               # no script printed
