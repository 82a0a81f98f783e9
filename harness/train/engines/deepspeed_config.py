"""The DeepSpeed config of a trial: built from ``train.*``, optionally merged into the user's JSON.

Pure data (never imports deepspeed), so :func:`harness.preflight.preflight` can check every trial before anything
is trained. Rules, each failure a :class:`ConfigError` naming ``train.deepspeed_config.<dotted key>``:

- the trial owns batch size, accumulation, precision, ZeRO stage, clipping, optimizer and schedule; the user's
  file may repeat a trial value but never contradict it (``train_batch_size`` must equal micro batch ×
  accumulation × workers);
- ``"auto"`` is refused anywhere: it is a Hugging Face Trainer convention that would hide a choice;
- an unknown top-level key is refused (with a "did you mean");
- fp16 on a CPU trial is refused.
Everything else in the user's file (bucket sizes, offload, communication dtype, logging …) passes through.
"""
from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

from harness.config import ConfigError, TrainConfig
from harness.train.distributed import workers_per_trial

__all__ = ["KNOWN_KEYS", "TRIAL_OWNED", "load_user_config", "build_ds_config", "check_trial", "check_sweep"]

ROOT = "train.deepspeed_config"

# Top-level keys DeepSpeed 0.19's DeepSpeedConfig reads (recorded from the installed version).
KNOWN_KEYS = frozenset({
    "activation_checkpointing", "aio", "amp", "autotuning", "bf16", "bfloat16", "checkpoint", "comet",
    "comms_logger", "communication_data_type", "compile", "compression_training", "csv_monitor",
    "curriculum_learning", "data_efficiency", "data_types", "dataloader_drop_last", "datastates_ckpt",
    "disable_allgather", "disable_python_gc", "dump_state", "eigenvalue", "elasticity", "expert_parallel",
    "flops_profiler", "fp16", "gradient_accumulation_steps", "gradient_allreduce_op", "gradient_clipping",
    "gradient_predivide_factor", "graph_harvesting", "hybrid_engine", "log_level",
    "managed_gradient_accumulation", "memory_breakdown", "nebula", "optimizer", "pipeline",
    "prescale_gradients", "progressive_layer_drop", "quantize_training", "scheduler",
    "seq_parallel_communication_data_type", "sequence_parallel_size", "sparse_attention", "sparse_gradients",
    "steps_per_print", "tensor_parallel", "tensorboard", "timers", "torch_autocast", "train_batch_size",
    "train_micro_batch_size_per_gpu", "use_data_before_expert_parallelism", "vocabulary_size",
    "wall_clock_breakdown", "wandb", "weight_quantization", "zero_allow_untested_optimizer",
    "zero_force_ds_cpu_optimizer", "zero_optimization",
})

# Keys whose value the trial decides, with the train.* field that decides it (for the error message).
TRIAL_OWNED = {
    "train_micro_batch_size_per_gpu": "train.batch_size",
    "gradient_accumulation_steps": "train.grad_accum",
    "train_batch_size": "train.batch_size × train.grad_accum × workers",
    "gradient_clipping": "train.grad_clip (null → 0.0)",
    "bf16.enabled": "train.precision",
    "fp16.enabled": "train.precision",
    "fp16.loss_scale": "train.precision: fp16 uses dynamic loss scaling (0)",
    "zero_optimization.stage": "train.zero_stage",
    "managed_gradient_accumulation": "the harness (the engine relies on DeepSpeed's micro-step counting)",
}
# Sections the trial builds itself: present in the user's file they would replace the harness's choice.
FORBIDDEN = {
    "optimizer": "the trial's AdamW over trainable parameters (harness/train/optim.py) is the optimizer",
    "scheduler": "the trial's LambdaLR schedule (train.scheduler, train.warmup_ratio) is the schedule",
    "amp": "precision comes from train.precision",
    "torch_autocast": "precision comes from train.precision",
}


def load_user_config(path: str | Path) -> dict:
    """Read the user's DeepSpeed JSON (an object at the top)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(ROOT, f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(ROOT, f"{path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(ROOT, f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _walk(node: Any, path: str):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _get(tree: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"{ROOT}.{part}", f"must be a JSON object, got {child!r}")
        node = child
    node[last] = value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def trial_values(train: TrainConfig, world_size: int) -> dict[str, Any]:
    """The dotted DeepSpeed keys the trial decides."""
    values = {
        "train_micro_batch_size_per_gpu": train.batch_size,
        "gradient_accumulation_steps": train.grad_accum,
        "train_batch_size": train.batch_size * train.grad_accum * world_size,
        "gradient_clipping": float(train.grad_clip) if train.grad_clip is not None else 0.0,
        "bf16.enabled": train.precision == "bf16",
        "fp16.enabled": train.precision == "fp16",
        "zero_optimization.stage": train.zero_stage,
    }
    if train.precision == "fp16":
        values["fp16.loss_scale"] = 0   # dynamic loss scaling
    return values


def check_trial(train: TrainConfig, user: dict | None, world_size: int, on_cpu: bool) -> None:
    """Raise ConfigError (naming the key) if ``user`` cannot be merged with this trial's values."""
    user = user or {}
    for key in user:
        if key not in KNOWN_KEYS:
            hint = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1)
            raise ConfigError(f"{ROOT}.{key}", "unknown DeepSpeed config key"
                              + (f"; did you mean {hint[0]!r}?" if hint else ""))
    for path, value in _walk(user, ROOT):
        if isinstance(value, str) and value.strip().lower() == "auto":
            raise ConfigError(path, '"auto" is not accepted: it would hide a choice; give the value '
                                    "(the trial's own values are filled in for you)")
    for key, why in FORBIDDEN.items():
        present, value = _get(user, key)
        if present and not (isinstance(value, dict) and value.get("enabled") is False):
            raise ConfigError(f"{ROOT}.{key}", f"remove it: {why}")
    if "bfloat16" in user:
        raise ConfigError(f"{ROOT}.bfloat16", 'use the key "bf16" (precision comes from train.precision)')
    fp16_user = _get(user, "fp16.enabled")
    if on_cpu and (train.precision == "fp16" or fp16_user == (True, True)):
        key = "train.precision" if train.precision == "fp16" else f"{ROOT}.fp16.enabled"
        raise ConfigError(key, "fp16 needs a CUDA GPU; this trial runs on CPU (use bf16 or fp32)")
    present, managed = _get(user, "managed_gradient_accumulation")
    if present and managed is not True:
        raise ConfigError(f"{ROOT}.managed_gradient_accumulation",
                          f"must be true or absent, got {managed!r}: {TRIAL_OWNED['managed_gradient_accumulation']}")
    for key, mine in trial_values(train, world_size).items():
        present, theirs = _get(user, key)
        if present and not _same(theirs, mine):
            raise ConfigError(f"{ROOT}.{key}", f"{theirs!r} contradicts the trial's {mine!r} "
                                               f"(set by {TRIAL_OWNED[key]}); remove the key or make them agree")


def build_ds_config(train: TrainConfig, world_size: int = 1, user: dict | None = None,
                    on_cpu: bool = False) -> dict:
    """The config handed to ``deepspeed.initialize``: the user's file (if any) with the trial's values in."""
    check_trial(train, user, world_size, on_cpu)
    config = copy.deepcopy(user or {})
    config.setdefault("steps_per_print", None)          # DeepSpeed's own progress lines: off unless asked
    config.setdefault("wall_clock_breakdown", False)
    for section in ("optimizer", "scheduler", "amp", "torch_autocast"):
        config.pop(section, None)                        # only ever present as {"enabled": false}
    for key, value in trial_values(train, world_size).items():
        _set(config, key, value)
    return config


def check_sweep(trials) -> None:
    """Pre-flight: every trial's merged config (a search axis such as batch_size may contradict the file).

    A trial runs on CPU when ``train.device`` is cpu or it asks Ray for no GPU (Ray then hides the GPUs).
    """
    cache: dict[str, dict] = {}
    for t in trials:
        path = t.train.deepspeed_config
        if path and path not in cache:
            cache[path] = load_user_config(path)
        user = cache[path] if path else None
        on_cpu = t.train.device == "cpu" or t.resources.gpus_per_trial == 0
        try:
            build_ds_config(t.train, workers_per_trial(t.resources), user, on_cpu)
        except ConfigError as exc:
            raise ConfigError(exc.path, f"{str(exc)[len(exc.path) + 2:]} [trial {t.trial_id}]") from None
