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
    model = build_model(ModelConfig(arch="bert"), meta=True)
    strategies.apply_trainable(model, strategies.trainable_names(model, strategy, {}))
    return model


def test_flops_of_bert_base():
    seq, tokens, L, h = 256, 32 * 256, 12, 768
    full = gpu_check.model_flops(_bert_base("full"), seq, tokens)
    n = full["nonembed_params"]
    assert 85_000_000 < n < 86_500_000                    # 12 × 7.08M encoder + pooler + classifier
    assert full["trainable_nonembed_params"] == n
    assert full["forward"] == 2 * n * tokens + 4 * L * seq * h * tokens
    assert full["total"] == 6 * n * tokens + 12 * L * seq * h * tokens
    fa = gpu_check.model_flops(_bert_base("freeze_attention"), seq, tokens)
    assert fa["forward"] == full["forward"]
    assert fa["trainable_nonembed_params"] < n
    assert fa["backward"] == full["backward"] - 2 * (n - fa["trainable_nonembed_params"]) * tokens
    head = gpu_check.model_flops(_bert_base("head_only"), seq, tokens)   # no backward through the encoder
    above_encoder = 768 * 768 + 768 + 768 * 2 + 2                         # pooler + classifier
    assert head["backward"] == 2 * above_encoder * tokens + 2 * head["trainable_nonembed_params"] * tokens


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
