"""Keeping the winner: a trial's trained weights, and a Hugging Face folder built from them.

A trial that ends ``ok`` (with ``output.save_model`` not ``none``) keeps its trainable parameters as
``trainable.safetensors`` in its trial folder (frozen parameters are the pretrained ones, so they need no copy).
After the sweep, :func:`export_model` turns the selected trial into a folder that
``AutoModelForSequenceClassification.from_pretrained`` loads: the same model build and freeze step as the trial,
its trained weights loaded, LoRA adapters merged into the base weights (so no peft is needed to load it),
``save_pretrained`` + the tokenizer + a model card naming the strategy, the trial and its sweep config.
With DeepSpeed the weights are those of the consolidated module (ZeRO ≤ 2 keeps every parameter whole on each
rank; under bf16 DeepSpeed keeps the module in bf16, and so does the export).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

import strategies
from harness.config import TrialConfig, to_dict
from harness.train.engines.base import Engine, load_trainable_state
from harness.train.model import build_model, load_tokenizer

__all__ = ["WEIGHTS_FILE", "save_trainable", "export_model", "merge_lora"]

WEIGHTS_FILE = "trainable.safetensors"


def save_trainable(engine: Engine, trial_dir: Path) -> str:
    """Write the trial's trainable parameters (as they are: fp32 masters, or DeepSpeed's module dtype)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in engine.trainable_state().items()}
    tmp = Path(trial_dir) / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(Path(trial_dir) / WEIGHTS_FILE)
    return WEIGHTS_FILE


def merge_lora(model: nn.Module) -> int:
    """Fold every peft LoRA layer into its base layer (W + B·A·scale) and put the base layer back in its place.
    Returns how many layers were merged."""
    merged = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if hasattr(child, "base_layer") and hasattr(child, "merge"):
                child.merge()
                setattr(parent, name, child.base_layer)
                merged += 1
    return merged


def _card(trial: TrialConfig, result: dict) -> str:
    test = result.get("test") or {}
    metric = (result.get("metric") or {}).get("name", "accuracy")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-classification", "tags: [freezebench]", "---", "",
        f"# {trial.sweep} / {trial.strategy_label}", "",
        f"Fine-tuned by freezebench with the freeze strategy **{trial.strategy_label}** "
        f"({(result.get('params') or {}).get('trainable')} of {(result.get('params') or {}).get('total')} "
        f"parameters trained) — the configuration selected on the validation split.",
        "",
        f"- trial: `{trial.trial_id}` (seed {trial.train.seed}); base model: `{trial.model.name or trial.model.arch}`",
        f"- test {metric}: {test.get('score')} on {test.get('size')} examples "
        f"(validation {metric}: {(result.get('val') or {}).get('score')})",
        "- loads with `AutoModelForSequenceClassification.from_pretrained(\"<this folder>\")`; "
        "the strategy and the trial's whole configuration are in `freezebench.json`.", ""]
    return "\n".join(lines)


def export_model(trial: TrialConfig, result: dict, trial_dir: Path, out_dir: Path) -> Path:
    """Build the trial's model, load its trained weights, merge LoRA, and ``save_pretrained`` into ``out_dir``."""
    weights = load_file(str(Path(trial_dir) / WEIGHTS_FILE))
    torch.manual_seed(trial.train.seed)       # as the trial did: a random-init (model.arch) build is the same model
    frozen = strategies.freeze(build_model(trial.model, trial.train), trial.strategy.name, trial.strategy.params)
    model = frozen.model
    dtypes = {v.dtype for v in weights.values()}
    if dtypes == {torch.bfloat16} or dtypes == {torch.float16}:
        model.to(next(iter(dtypes)))                      # DeepSpeed's module dtype: keep its exact values
    load_trainable_state(model, weights)
    merge_lora(model)
    for p in model.parameters():
        p.requires_grad_(True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    load_tokenizer(trial.model).save_pretrained(tmp)
    (tmp / "README.md").write_text(_card(trial, result), encoding="utf-8")
    (tmp / "freezebench.json").write_text(json.dumps({
        "strategy": {"name": trial.strategy.name, "params": trial.strategy.params, "label": trial.strategy_label},
        "trial_id": trial.trial_id, "metric": result.get("metric"), "val": result.get("val"),
        "test": result.get("test"), "config": to_dict(trial)}, indent=2, default=str), encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
