"""Guards for tests that prove nothing expensive starts: no weights loaded (a weightless meta-device build, which
pre-flight uses for counts and checks, is allowed), no Ray."""
from __future__ import annotations

import torch

__all__ = ["forbid_model_loads", "forbid_ray"]


def forbid_model_loads(monkeypatch) -> None:
    import transformers

    auto = transformers.AutoModelForSequenceClassification
    real_from_config = auto.from_config

    def no_model(*a, **k):
        raise AssertionError("a model load started")

    def meta_only(*a, **k):
        if torch.get_default_device().type != "meta":
            raise AssertionError("a model build with weights started")
        return real_from_config(*a, **k)

    monkeypatch.setattr(auto, "from_pretrained", no_model)
    monkeypatch.setattr(auto, "from_config", meta_only)


def forbid_ray(monkeypatch) -> None:
    import harness.adapters.ray as ray_adapter

    def no_ray(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray_adapter, "init_ray", no_ray)
    monkeypatch.setattr(ray_adapter, "run_tune", no_ray)
