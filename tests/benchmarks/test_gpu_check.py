"""The prepared GPU check: its FLOP count, and a smoke run on CPU (the GPU run itself needs a lent GPU)."""
from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import strategies  # noqa: E402
from benchmarks import gpu_check  # noqa: E402
from harness.config import ModelConfig  # noqa: E402
from harness.train.model import build_model  # noqa: E402


def _bert_base(strategy: str):
    import torch

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bert"))
    strategies.apply_trainable(model, strategies.trainable_names(model, strategy, {}))
    return model


def test_flops_of_bert_base():
    """BERT-base shape, the formula's closed forms (FlopCounterMode agreement: tests/benchmarks/test_flops.py)."""
    seq, batch, L, h = 256, 32, 12, 768
    tokens = seq * batch
    full = gpu_check.model_flops(_bert_base("full"), seq, tokens)
    encoder, head = L * (4 * h * h + 2 * h * 3072), h * h + 2 * h     # Linear weights; pooler + classifier
    assert full["linear_params"] == encoder + head
    assert full["total"] == 6 * encoder * tokens + 6 * head * batch + 12 * L * seq * h * tokens
    fa = gpu_check.model_flops(_bert_base("freeze_attention"), seq, tokens)
    assert fa["forward"] == full["forward"]
    attn = 4 * h * h
    # no weight gradients for the attention projections; in layer 0 nothing below the FFN's first Linear
    # trains, so no input gradient of q, k, v, the attention output or that Linear, and no attention backward
    assert fa["backward"] == (full["backward"] - 2 * L * attn * tokens - 2 * attn * tokens - 2 * h * 3072 * tokens
                              - 8 * seq * h * tokens)
    head_only = gpu_check.model_flops(_bert_base("head_only"), seq, tokens)   # no backward through the encoder
    assert head_only["backward"] == 2 * (2 * h) * batch               # the classifier's weight gradient only


@pytest.mark.timeout(600)
def test_smoke_run_on_cpu(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--smoke", "--steps", "2", "--warmup", "1", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "samples/s" in text and "MFU" in text
    report = json.loads(out.read_text())
    combos = {(r["backend"], r["strategy"]) for r in report["rows"]}
    assert combos == {("deepspeed-z1", "full"), ("deepspeed-z1", "freeze_attention"), ("torch", "full"),
                      ("torch", "freeze_attention")}
    for r in report["rows"]:
        assert r["samples_per_s"] > 0 and r["tokens_per_s"] == pytest.approx(r["samples_per_s"] * 32)
        assert 0 < r["mfu"] < 1 and r["peak_mem_mb"] > 0 and r["finite_loss"]
    fa = next(r for r in report["rows"] if r["strategy"] == "freeze_attention")
    assert fa["trainable_params"] < fa["total_params"]


def test_gpu_check_script_parses_and_its_mini_sweep_plan_is_valid(tmp_path, capsys):
    """The GPU run itself needs a GPU; here: the shell script parses, and the 12-trial mini-sweep's config passes
    the sweep's own pre-flight (harness.sweep --dry-run) with the tiny sizes on CPU."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert subprocess.run(["bash", "-n", str(root / "benchmarks" / "gpu_check.sh")]).returncode == 0
    out = tmp_path / "mini.json"
    assert gpu_check.main(["--smoke", "--backends", "none", "--mini-sweep", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mini-sweep (dry run)" in text and "12 trials" in text
    cfg = gpu_check.mini_sweep_config(gpu_check.parse_args([]), "/x", "cuda")
    assert cfg["resources"]["gpus_per_trial"] == 0.25 and cfg["train"]["pad_to_multiple_of"] == 64
    assert len(cfg["search"]["lr"]) * len(cfg["search"]["seed"]) == 12
