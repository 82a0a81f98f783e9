"""``train.precision: auto``: bf16 only where the CPU has bf16 instructions; the trial records what it ran at."""
from __future__ import annotations

import pytest
import torch

from harness.config import build_config
from harness.config.expand import expand
from harness.preflight import precision_notes
from harness.train import precision
from harness.train.trial import run_trial
from tests.conftest import tiny_sweep_dict


@pytest.fixture
def flags(monkeypatch):
    """Pretend to be a CPU with the given /proc/cpuinfo flags."""
    def use(*names):
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(names))
        precision.cpu_native_bf16.cache_clear()
    yield use
    precision.cpu_native_bf16.cache_clear()


@pytest.mark.parametrize("cpu_flags, expected", [
    (("fma", "avx2"), "fp32"),                                 # AVX2-only AMD EPYC: bf16 is emulated
    (("avx2", "avx512f", "avx512bw"), "fp32"),                 # AVX-512 without BF16 (Skylake) emulates too
    (("avx2", "avx512f", "avx512_bf16"), "bf16"),              # Zen 4, Cooper Lake
    (("avx2", "avx512f", "amx_bf16", "amx_tile"), "bf16"),     # Sapphire Rapids
    (("fp", "asimd", "bf16"), "bf16"),                         # Arm with BF16 (Graviton 3)
])
def test_auto_picks_bf16_only_on_cpus_with_bf16_instructions(flags, cpu_flags, expected):
    flags(*cpu_flags)
    assert precision.resolve("auto", "cpu") == expected
    for explicit in ("fp32", "bf16"):
        assert precision.resolve(explicit, "cpu") == explicit      # an explicit choice is honoured


def test_explicit_bf16_on_an_emulating_cpu_gets_a_warning_naming_the_key(flags, tmp_path):
    flags("fma", "avx2")
    cfg = build_config(tiny_sweep_dict(tmp_path, train={"precision": "bf16"}))
    notes = precision_notes(cfg, expand(cfg))
    assert len(notes) == 1 and notes[0].startswith("warning: train.precision: bf16: this CPU has no bf16")
    assert "auto" in notes[0] and "fp32" in notes[0]
    auto = build_config(tiny_sweep_dict(tmp_path, train={"precision": "auto"}))
    assert precision_notes(auto, expand(auto)) == ["precision: auto -> fp32 on this cpu (no bf16 instructions: "
                                                   "AMX, AVX512_BF16)"]
    flags("avx512_bf16")
    assert precision_notes(cfg, expand(cfg)) == []
    assert precision_notes(auto, expand(auto)) == ["precision: auto -> bf16 on this cpu"]


def test_default_is_auto():
    assert build_config({"name": "x", "model": {"name": "bert-base-uncased"}}).train.precision == "auto"


@pytest.mark.parametrize("cpu_flags, ran_at", [(("avx2",), "fp32"), (("amx_bf16",), "bf16")])
def test_trial_runs_at_the_resolved_precision_and_records_it(flags, cpu_flags, ran_at, tmp_path, cache_dir,
                                                             monkeypatch):
    flags(*cpu_flags)
    seen = []
    real = torch.autocast

    def spy(*args, **kwargs):     # what the engine really asks autocast for
        seen.append((kwargs.get("dtype"), kwargs.get("enabled", True)))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    cfg = build_config(tiny_sweep_dict(tmp_path, train={"precision": "auto", "max_steps": 4, "eval_every": 4}))
    (trial,) = expand(cfg)
    res = run_trial(trial)
    assert res["status"] == "ok"
    assert res["throughput"]["precision"] == ran_at
    assert res["hparams"]["precision"] == "auto" and res["config"]["train"]["precision"] == "auto"  # as written
    used = {dtype for dtype, enabled in seen if enabled}
    assert used == ({torch.bfloat16} if ran_at == "bf16" else set())
