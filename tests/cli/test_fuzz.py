"""Fuzzing the front door (Hypothesis, seeded and bounded): every input ends in a valid config or a clean
ConfigError / DataError with a message - never another exception, never a hang.

* thousands of YAML documents: mutations of a valid sweep (known keys, wrong values of every type), random
  sections and keys, and raw YAML-ish text (flow maps, anchors, tags, tabs, colons);
* thousands of ``--set`` strings over known and unknown dotted keys;
* random bytes and random rows for each data reader (csv, jsonl, parquet) through ``load_splits``;
* a sample through the real CLI (``harness.sweep --dry-run``): exit 0 or 2, never a traceback.

``derandomize=True`` makes every run draw the same examples (a failure reproduces); the example counts keep the
whole file near a minute on a busy 2-core machine. Hypothesis prints the smallest failing input.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harness import sweep
from harness.config import ConfigError, build_config, load_config
from harness.config.expand import expand
from harness.config.schema import SweepConfig
from harness.data import DataError, load_splits
from tests.conftest import tiny_sweep_dict

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])

SECTIONS = {f.name: f.type for f in dataclasses.fields(SweepConfig)}


def _fields(section: str) -> list[str]:
    cls = {f.name: f for f in dataclasses.fields(SweepConfig)}[section].default_factory \
        if section != "name" else None
    try:
        return [f.name for f in dataclasses.fields(cls)] if cls else []
    except TypeError:
        return []


KNOWN = {s: _fields(s) for s in SECTIONS}
KEYS = sorted({k for ks in KNOWN.values() for k in ks} | set(SECTIONS))
STRATEGIES = ["full", "freeze_attention", "head_only", "top_k", "bottom_k", "bitfit", "lora", "rules", "nope"]

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.integers(-3, 300)
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(STRATEGIES + KEYS)
           | st.text(max_size=30))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), inner, max_size=4),
                      max_leaves=12)


@st.composite
def mutated_sweeps(draw) -> dict:
    """A valid tiny sweep with a few keys replaced, dropped or added (so validation runs deep, not only at
    the first unknown key)."""
    data = json.loads(json.dumps(tiny_sweep_dict(Path("/nonexistent-fuzz"))))
    data["search"] = {"seed": [0]}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        action = draw(st.sampled_from(["set", "set", "set", "drop", "section"]))
        if action == "section":
            data[section] = draw(values)
        elif action == "drop":
            data.pop(section, None)
        elif KNOWN[section]:
            node = data.setdefault(section, {})
            if isinstance(node, dict):
                node[draw(st.sampled_from(KNOWN[section]) | st.text(max_size=8))] = draw(values)
        else:
            data[section] = draw(values)
    return data


YAMLISH = st.text(alphabet=st.sampled_from(list("abcdefkmnlrst_0123456789 .:,-[]{}&*!|>'\"#%@\t\n\\?")) |
                  st.characters(), max_size=200)


def _load(path: Path, overrides=()) -> None:
    """load + expand: a config, or ConfigError with a message; anything else fails the test."""
    try:
        cfg = load_config(path, list(overrides))
        trials = expand(cfg)
    except ConfigError as exc:
        assert str(exc).strip(), "ConfigError without a message"
        event(f"ConfigError at {exc.path.split('.')[0] or '<file>'}")
        return
    event("valid config")
    for t in trials:                                   # ids name folders: they must be usable as file names
        assert "/" not in t.trial_id and 0 < len(t.trial_id.encode()) <= 255, t.trial_id


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=1500)
@given(doc=mutated_sweeps())
def test_yaml_mutations_of_a_valid_sweep_load_or_fail_cleanly(doc, work):
    path = work / "mutated.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load(path)


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=1500)
@given(text=YAMLISH)
def test_raw_yaml_text_loads_or_fails_cleanly(text, work):
    path = work / "raw.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _load(path)


@pytest.fixture(scope="module")
def base_config(work) -> Path:
    path = work / "base.yaml"
    data = tiny_sweep_dict(Path("/nonexistent-fuzz"))
    path.write_text(yaml.safe_dump(data))
    return path


DOTTED = st.sampled_from([f"{s}.{k}" for s, ks in KNOWN.items() for k in ks] + sorted(SECTIONS))
SET_VALUES = (YAMLISH | st.sampled_from(["[1, 2]", "{a: 1}", "{negative:0,positive:1}", "null", "~", "1e999",
                                         "nan", "-.inf", "[", "]", "{", "'", "&a [*a]", "!!python/none", "0x1F",
                                         "1_000", "2:30", "yes", "no", "[full, {name: top_k, params: {k: 2}}]"]))


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=2000)
@given(sets=st.lists(st.tuples(DOTTED | st.text(max_size=15), SET_VALUES), min_size=1, max_size=3),
       bare=st.booleans())
def test_set_overrides_load_or_fail_cleanly(sets, bare, base_config):
    overrides = [f"{k}={v}" for k, v in sets] + (["train.lr"] if bare else [])
    _load(base_config, overrides)


def test_flow_map_typo_gets_a_hint(base_config):
    """`{negative:0,positive:1}`: YAML needs a space after ':' - without one it reads two keys with no value."""
    with pytest.raises(ConfigError) as info:
        load_config(base_config, ["data.label_map={negative:0,positive:1}"])
    msg = str(info.value)
    assert msg.startswith("data.label_map: ") and "space after ':'" in msg and "{negative: 0" in msg, msg
    with pytest.raises(ConfigError) as info:
        build_config({**tiny_sweep_dict(Path("/x")), "model": {"arch": "bert", "overrides": {"hidden_size:32": None}}})
    assert "model.overrides" in str(info.value) and "space after ':'" in str(info.value)


# ------------------------------------------------------------------------------------------- data readers
CELLS = (st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True, allow_infinity=True)
         | st.text(max_size=40) | st.sampled_from(["0", "1", "pos", "neg", "", " ", "1.0", "1.5", "NaN", "\x00"]))
GOOD = st.tuples(st.text(min_size=1, max_size=40).filter(str.strip), st.sampled_from([0, 1]))
ROWS = st.lists(GOOD | GOOD | GOOD | st.tuples(CELLS, CELLS), max_size=30) | st.lists(GOOD, min_size=6, max_size=30)


def _data_cfg(path: Path, **extra):
    return build_config({**tiny_sweep_dict(path.parent), "data": {"source": str(path), "train_size": None,
                                                                    "test_size": None, **extra}}).data


def _read(path: Path, **extra) -> None:
    try:
        splits = load_splits(_data_cfg(path, **extra), 2)
    except DataError as exc:
        assert str(exc).strip() and (str(path) in str(exc) or "data." in str(exc)), str(exc)
        event("DataError")
        return
    event("read")
    assert len(splits.train.texts) == len(splits.train.labels) > 0
    texts = splits.train.texts + splits.val.texts + splits.test.texts
    assert all(isinstance(t, str) for t in texts)
    assert set(np.concatenate([splits.train.labels, splits.val.labels, splits.test.labels]).tolist()) <= {0, 1}


def _write_rows(path: Path, rows, fmt: str) -> None:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["text", "label"])
        writer.writerows([["" if c is None else c for c in r] for r in rows])
        path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass"))
    elif fmt == "jsonl":
        path.write_bytes("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows)
                         .encode("utf-8", "surrogatepass"))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        def column(values):
            kinds = {type(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
            return [None if v is None else (str(v) if len(kinds) > 1 else v) for v in values]
        table = pa.table({"text": column([r[0] for r in rows]), "label": column([r[1] for r in rows])})
        pq.write_table(table, path)


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=400)
@given(fmt=st.sampled_from(["csv", "jsonl", "parquet"]), rows=ROWS, label_map=st.booleans())
def test_random_rows_in_each_format_read_or_fail_cleanly(fmt, rows, label_map, work):
    path = work / f"rows.{fmt}"
    try:
        _write_rows(path, rows, fmt)
    except Exception:  # noqa: BLE001 - pyarrow cannot build some mixed columns: not an input we can make
        return
    _read(path, **({"label_map": {"neg": 0, "pos": 1}} if label_map else {}))


@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=400)
@given(fmt=st.sampled_from(["csv", "jsonl", "parquet"]), raw=st.binary(max_size=400), head=st.booleans())
def test_random_bytes_in_each_format_read_or_fail_cleanly(fmt, raw, head, work):
    path = work / f"bytes.{fmt}"
    prefix = {"csv": b"text,label\n", "jsonl": b'{"text": "a", "label": 0}\n', "parquet": b"PAR1"}[fmt]
    path.write_bytes((prefix if head else b"") + raw)
    _read(path)


# ------------------------------------------------------------------------------------------- the real CLI
@pytest.mark.timeout(300)
@settings(FUZZ, max_examples=60)
@given(doc=mutated_sweeps())
def test_cli_dry_run_exits_0_or_2_without_traceback(doc, work, cache_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")   # a random Hub id: one refused look, then exit 2
    if isinstance(doc.get("model"), dict) and (doc["model"].get("name") or doc["model"].get("tokenizer")):
        doc["model"] = {"arch": "bert"}                # never a download from a fuzzer, even from a live Hub
    path = work / "cli.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    rc = sweep.main([str(path), "--dry-run"])
    err = capsys.readouterr().err
    assert rc in (0, 2), err
    event(f"exit {rc}")
    assert "Traceback" not in err
    if rc == 2:
        assert err.startswith("error: ") and len(err.strip()) > len("error: "), err
