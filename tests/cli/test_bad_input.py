"""Bad-input tier: malformed configs and malformed data sets through the real CLI entry point (``sweep.main``).

Every case must end with exit code 2 and a message naming the config key (or the file and row) - before any
training starts: no model is loaded or built with weights (transformers' ``from_pretrained`` raises here, ``from_config``
outside the meta device too), Ray is never
started and nothing is written under ``results/<sweep>/trials``. Data-content errors surface when the sweep
tokenizes (before Ray starts). tests/cli/test_cli.py and tests/data/test_data.py hold further cases at their own layer.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import IMDB, tiny_sweep_dict
from tests.support.guards import forbid_model_loads, forbid_ray


@pytest.fixture
def guarded(monkeypatch):
    """No model load, no Ray: either one fails the test."""
    forbid_model_loads(monkeypatch)
    forbid_ray(monkeypatch)


def run_cli(path: Path, *extra: str, capsys) -> tuple[int, str]:
    from harness import sweep
    t0 = time.perf_counter()
    rc = sweep.main([str(path), *extra])
    assert time.perf_counter() - t0 < 60
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, fragments: list[str], root: Path) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not list(root.rglob("trials")), "a trial folder was written"
    assert not list(root.rglob("result.json"))


# --------------------------------------------------------------------------------------- malformed configs
def _set(path: str, value):
    """A mutation of the tiny sweep dict: set ``a.b.c`` (creating sections)."""
    def mutate(d: dict) -> dict:
        node, keys = d, path.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
        return d
    return mutate


def _drop(path: str):
    def mutate(d: dict) -> dict:
        node, keys = d, path.split(".")
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
        return d
    return mutate


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

# (id, mutation of the tiny sweep dict | raw YAML text | bytes, extra CLI args, fragments the error must name)
CONFIGS = [
    ("unknown_top_key", _set("trian", {"lr": 1e-3}), [], ["trian: unknown key", "did you mean 'train'"]),
    ("unknown_nested_key", _set("train.lr_rate", 1e-3), [], ["train.lr_rate: unknown key"]),
    ("string_for_int", _set("train.max_steps", "ten"), [], ["train.max_steps: expected an integer"]),
    ("float_for_int", _set("train.batch_size", 8.5), [], ["train.batch_size: expected an integer"]),
    ("bool_for_int", _set("train.max_steps", True), [], ["train.max_steps: expected an integer"]),
    ("string_for_bool", _set("train.compile", "yes"), [], ["train.compile: expected true or false"]),
    ("list_for_number", _set("train.lr", [0.1]), [], ["train.lr: expected a number"]),
    ("scalar_for_section", _set("train", 5), [], ["train: expected a mapping"]),
    ("string_for_strategy_section", _set("strategy", "full"), [], ["strategy: expected a mapping"]),
    ("empty_axis", _set("search.lr", []), [], ["search.lr: must not be empty"]),
    ("axis_not_a_list", _set("search.seed", 3), [], ["search.seed: expected a list"]),
    ("duplicate_strategy_names", _set("search.strategy", ["full", "full"]), [], ["search.strategy[1]: duplicate"]),
    ("duplicate_strategy_mappings", _set("search.strategy", [{"name": "top_k", "params": {"k": 1}},
                                                             {"name": "top_k", "params": {"k": 1}}]), [],
     ["search.strategy[1]: duplicate"]),
    ("duplicate_axis_values", _set("search.lr", [1e-3, 0.001]), [], ["search.lr[1]: duplicate"]),
    ("strategy_entry_not_name_or_mapping", _set("search.strategy", [42]), [], ["search.strategy[0]"]),
    ("strategy_param_wrong_type", _set("search.strategy", [{"name": "top_k", "params": {"k": "two"}}]), [],
     ["search.strategy[0].params.k"]),
    ("params_for_param_free_strategy", _set("strategy", {"name": "full", "params": {"k": 1}}), [],
     ["strategy.params.k"]),
    ("top_k_more_than_layers", _set("strategy", {"name": "top_k", "params": {"k": 3}}), [],
     ["strategy.params.k", "1..2"]),
    ("fp16_on_a_cpu_only_machine", _set("train.device", "auto"), ["--set", "train.precision=fp16"],
     ["train.precision", "fp16"]),
    ("cuda_without_a_gpu", _set("train.device", "cuda"), [], ["train.device", "no CUDA device"]),
    ("gpus_per_trial_without_a_gpu", _set("resources.gpus_per_trial", 1), [], ["resources.gpus_per_trial"]),
    ("cpus_per_trial_over_the_machine", _set("resources.cpus_per_trial", 4096), [],
     ["resources.cpus_per_trial", "4096"]),
    ("huge_max_steps", _set("train.max_steps", 10**12), [], ["train.max_steps: must be <= 10000000"]),
    ("huge_batch_size", _set("train.batch_size", 10**9), [], ["train.batch_size: must be <= 65536"]),
    ("huge_max_length", _set("data.max_length", 10**6), [], ["data.max_length: must be <= 8192"]),
    ("max_length_over_position_embeddings", _set("data.max_length", 1024), [],
     ["data.max_length", "1024", "512"]),
    ("nan_lr", "LR: .nan", [], ["train.lr", "nan"]),
    ("inf_lr", "LR: .inf", [], ["train.lr", "inf"]),
    ("negative_warmup", _set("train.warmup_ratio", -0.1), [], ["train.warmup_ratio: must be >= 0"]),
    ("name_with_path_traversal", _set("name", "../../etc"), [], ["name: '../../etc' must match"]),
    ("empty_name", _set("name", ""), [], ["name: expected a non-empty string"]),
    ("both_name_and_arch", _set("model.name", "bert-base-uncased"), [], ["model: set exactly one"]),
    ("unknown_arch", _set("model.arch", "gpt2"), [], ["model.arch", "allowed values"]),
    ("zero_labels", _set("model.num_labels", 0), [], ["model.num_labels: must be >= 1"]),
    ("unknown_hf_override", _set("model.overrides.not_a_key", 1), [], ["model.overrides", "not_a_key"]),
    ("hf_override_wrong_type", _set("model.overrides.hidden_size", "big"), [], ["model.overrides", "hidden_size"]),
    ("label_map_ids_not_contiguous", _set("data.label_map", {"neg": 0, "pos": 2}), [], ["data.label_map"]),
    ("checkpoint_not_at_an_eval", _set("train.checkpoint_every", 7), [], ["train.checkpoint_every"]),
    ("prefix_cache_for_a_strategy_training_embeddings",
     _set("search.strategy", ["head_only", {"name": "full", "train": {"cache_frozen_prefix": True}}]), [],
     ["search.strategy[1].train.cache_frozen_prefix", "embedding"]),
    ("prefix_cache_with_deepspeed_override", _set("search.strategy", [
        {"name": "head_only", "train": {"cache_frozen_prefix": True, "backend": "deepspeed"}}]), [],
     ["search.strategy[0].train.cache_frozen_prefix", "deepspeed"]),
    ("strategy_override_fp16_on_cpu", _set("search.strategy", [{"name": "head_only", "train": {"precision": "fp16"}}]),
     [], ["search.strategy[0].train.precision", "fp16"]),
    ("grace_period_over_max_steps", _set("search.early_stopping", {"enabled": True, "grace_period": 1000}), [],
     ["search.early_stopping.grace_period"]),
    ("data_source_not_a_string", _set("data.source", 12345), [], ["data.source: expected a non-empty string"]),
    ("data_source_a_device", _set("data.source", "/dev/zero"), [], ["data.source", "/dev/zero"]),
    ("missing_model_section", _drop("model"), [], ["model: set exactly one"]),
    ("yaml_list_not_mapping", "- a\n- b\n", [], ["<root>", "must hold a mapping"]),
    ("yaml_scalar_not_mapping", "42\n", [], ["<root>", "must hold a mapping", "int"]),
    ("yaml_syntax_error", "name: x\ntrain: {lr: 1e-3\n", [], ["is not valid YAML", "line"]),
    ("yaml_tab_indentation", "train:\n\tlr: 1\n", [], ["is not valid YAML"]),
    ("yaml_python_tag", "name: !!python/object/apply:os.system ['true']\n", [], ["is not valid YAML", "python/object"]),
    ("yaml_alias_bomb", "APPEND:search:\n  strategy:\n  - name: top_k\n    params:\n      k: 1\n      junk:\n"
     + "".join(f"        {line}\n" for line in BOMB.splitlines()), [], ["<root>", "expands to more than 100,000"]),
    ("yaml_self_reference", "APPEND:search:\n  strategy:\n  - name: top_k\n    params: &p {k: 1, me: *p}\n", [],
     ["<root>", "expands to more than"]),
    ("config_not_utf8", b"name: caf\xe9\n", [], ["cannot read config file"]),
    ("empty_config", "", [], ["model: set exactly one"]),
    ("override_without_value", _set("name", "tiny"), ["--set", "train.lr"], ["override must look like key.path=value"]),
    ("override_below_a_value", _set("name", "tiny"), ["--set", "train.lr.x=1"], ["train.lr: is not a section"]),
]


def _config_file(tmp_path: Path, spec) -> Path:
    path = tmp_path / "sweep.yaml"
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif isinstance(spec, str) and spec.startswith("LR: "):   # a YAML special float in train.lr
        text = yaml.safe_dump(tiny_sweep_dict(tmp_path)).replace("lr: 0.001", f"lr: {spec[4:]}")
        assert f"lr: {spec[4:]}" in text
        path.write_text(text)
    elif isinstance(spec, str) and spec.startswith("APPEND:"):  # the tiny sweep plus a raw YAML section
        path.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path)) + spec[len("APPEND:"):])
    elif isinstance(spec, str):
        path.write_text(spec)
    else:
        path.write_text(yaml.safe_dump(spec(tiny_sweep_dict(tmp_path))))
    return path


def test_config_fuzz_list_is_big_and_distinct():
    ids = [c[0] for c in CONFIGS]
    assert len(ids) >= 25 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("case, spec, extra, fragments", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_malformed_config_exits_2_before_training(case, spec, extra, fragments, tmp_path, cache_dir, guarded, capsys):
    rc, err = run_cli(_config_file(tmp_path, spec), *extra, capsys=capsys)
    assert_refused(rc, err, fragments, tmp_path)


def test_config_file_that_is_a_folder(tmp_path, guarded, capsys):
    rc, err = run_cli(tmp_path, capsys=capsys)
    assert_refused(rc, err, ["cannot read config file", str(tmp_path)], tmp_path)


# -------------------------------------------------------------------------------------- malformed data sets
@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    """60 negative + 60 positive real reviews with string labels."""
    df = pd.read_parquet(IMDB / "train-00000-of-00001.parquet")
    df = pd.concat([df.iloc[:60], df.iloc[-60:]]).reset_index(drop=True)
    return df.assign(label=df["label"].map({0: "negative", 1: "positive"}))


def _write(df: pd.DataFrame, path: Path) -> Path:
    {".csv": lambda: df.to_csv(path, index=False),
     ".jsonl": lambda: df.to_json(path, orient="records", lines=True, force_ascii=False),
     ".parquet": lambda: df.to_parquet(path, index=False)}[path.suffix]()
    return path


def _data_case(name: str, tmp: Path, df: pd.DataFrame) -> tuple[Path, dict, list[str]]:
    """(data file, data-section overrides, fragments besides the file path) for one malformed data set."""
    df = df.copy()
    if name == "missing_column":
        return _write(df.rename(columns={"text": "review"}), tmp / "d.csv"), {}, ["missing column 'text'"]
    if name == "duplicate_column":
        df.insert(0, "junk", "x")
        df.columns = ["text", "text", "label"]
        return _write(df, tmp / "d.csv"), {}, ["column 'text'", "2 times"]
    if name == "non_utf8_bytes":
        p = tmp / "d.csv"
        body = df.to_csv(index=False).encode().split(b"\n")
        body[3] = b'"caf\xe9 \xff\xfe",positive'
        p.write_bytes(b"\n".join(body))
        return p, {}, ["not valid UTF-8", "row 3"]
    if name == "empty_file":
        (tmp / "d.csv").write_bytes(b"")
        return tmp / "d.csv", {}, ["file is empty"]
    if name == "header_only":
        (tmp / "d.csv").write_text("text,label\n")
        return tmp / "d.csv", {}, ["no data rows"]
    if name == "one_class_only":
        return _write(df[df.label == "positive"], tmp / "d.csv"), {}, ["only 1 of 2 classes"]
    if name == "label_outside_mapping":
        df.loc[4, "label"] = "neutral"
        return _write(df, tmp / "d.csv"), {}, ["row 5", "'neutral' is not in data.label_map"]
    if name == "nan_label":
        df = df.assign(label=(df["label"] == "positive").astype(float))
        df.loc[6, "label"] = float("nan")
        return _write(df, tmp / "d.parquet"), {"label_map": None}, ["row 7", "label is missing"]
    if name == "label_out_of_range":
        df = df.assign(label=(df["label"] == "positive").astype(int))
        df.loc[3, "label"] = 7
        return _write(df, tmp / "d.jsonl"), {"label_map": None}, ["row 4", "outside the class ids 0..1"]
    if name == "fractional_label":
        df = df.assign(label=(df["label"] == "positive").astype(float))
        df.loc[8, "label"] = 0.5
        return _write(df, tmp / "d.csv"), {"label_map": None}, ["row 9", "not an integer class id"]
    if name == "ten_megabyte_review":
        df.loc[2, "text"] = "a rather long review " * 500_000
        return _write(df, tmp / "d.csv"), {}, ["row 3", "10,500,000 characters", "over the limit"]
    if name == "invalid_json_line":
        p = _write(df, tmp / "d.jsonl")
        lines = p.read_text(encoding="utf-8").split("\n")
        lines[2] = lines[2][:-2]
        p.write_text("\n".join(lines), encoding="utf-8")
        return p, {}, ["row 3 (line 3)", "invalid JSON"]
    if name == "json_line_not_an_object":
        p = _write(df, tmp / "d.jsonl")
        lines = p.read_text(encoding="utf-8").split("\n")
        lines[1] = '["a review", "positive"]'
        p.write_text("\n".join(lines), encoding="utf-8")
        return p, {}, ["row 2 (line 2)", "expected a JSON object"]
    if name == "text_not_a_string":
        df["text"] = df["text"].astype(object)
        df.loc[2, "text"] = 12345
        return _write(df, tmp / "d.jsonl"), {}, ["row 3", "text must be a string"]
    if name == "whitespace_only_review":
        df.loc[5, "text"] = " <br /><br />  "
        return _write(df, tmp / "d.csv"), {}, ["row 6", "empty or whitespace-only"]
    if name == "ragged_csv_row":
        p = tmp / "d.csv"
        body = df.to_csv(index=False).split("\n")
        body[4] = "unquoted, comma,positive"
        p.write_text("\n".join(body), encoding="utf-8")
        return p, {}, ["row 4", "3 fields, the header has 2"]
    if name == "not_parquet":
        (tmp / "d.parquet").write_bytes(b"PAR1" + os.urandom(3000))
        return tmp / "d.parquet", {}, ["cannot read parquet"]
    if name == "eval_file_one_class":
        src = _write(df, tmp / "d.csv")
        evals = _write(df[df.label == "negative"], tmp / "eval.csv")
        return evals, {"source": str(src), "test_source": str(evals)}, ["only 1 of 2 classes"]
    if name == "fewer_rows_than_train_size":
        return _write(df, tmp / "d.csv"), {"train_size": 5000}, ["data.train_size 5000"]
    if name == "named_pipe":
        os.mkfifo(tmp / "d.csv")                              # reading it would block forever
        return tmp / "d.csv", {}, ["is not a file"]
    raise AssertionError(name)


DATASETS = ["missing_column", "duplicate_column", "non_utf8_bytes", "empty_file", "header_only", "one_class_only",
            "label_outside_mapping", "nan_label", "label_out_of_range", "fractional_label", "ten_megabyte_review",
            "invalid_json_line", "json_line_not_an_object", "text_not_a_string", "whitespace_only_review",
            "ragged_csv_row", "not_parquet", "eval_file_one_class", "fewer_rows_than_train_size", "named_pipe"]


@pytest.mark.parametrize("name", DATASETS)
def test_malformed_dataset_exits_2_naming_file_and_row(name, tmp_path, reviews, cache_dir, guarded, capsys):
    path, data, fragments = _data_case(name, tmp_path, reviews)
    section = {"source": str(path), "label_map": {"negative": 0, "positive": 1}, "train_size": None,
               "test_size": None, **data}
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path, data=section)))
    rc, err = run_cli(config, capsys=capsys)
    assert_refused(rc, err, [str(path), *fragments], tmp_path)
