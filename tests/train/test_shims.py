"""The training layer's one reach into transformers' private state still reads what it says."""
from __future__ import annotations

from harness.train.cpu_fast import ATTN_IMPLEMENTATION, install
from harness.train.shims import attn_implementation
from tests.support.tiny import tiny_model


def test_attn_implementation_follows_the_public_setter():
    model = tiny_model("bert")
    assert attn_implementation(model.config) == "sdpa"
    model.set_attn_implementation("eager")
    assert attn_implementation(model.config) == "eager"


def test_cpu_fast_switches_attention_through_the_public_api():
    model = tiny_model("bert")
    assert install(model)["attention"] == f"sdpa -> {ATTN_IMPLEMENTATION}"
    assert attn_implementation(model.config) == ATTN_IMPLEMENTATION
    assert all(attn_implementation(m.config) == ATTN_IMPLEMENTATION for m in model.modules() if hasattr(m, "config"))
