"""Pre-flight checks (cheap: no weights, no data content) and the trial plan shown by ``--dry-run``.

Everything a sweep can know to be wrong before it loads a model or a data set is checked here, and raised as
one of :data:`INPUT_ERRORS` naming the offending key; the CLIs turn that into exit code 2.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import torch

import strategies
from harness.config import (ConfigError, SweepConfig, TrialConfig, expand, normalise_strategies, strategy_label,
                            strategy_path)
from harness.config.search import describe_space
from harness.data import DataError, check_source, resolve_format
from harness.data.reach import hub_cached, hub_endpoint, hub_offline, probe
from harness.train import prefix_cache
from harness.train.engines.deepspeed_config import check_sweep
from harness.train.model import (ModelSourceError, build_model, check_head, check_model, load_hf_config,
                                 resolve_source)
from harness.train.precision import resolve, slow_bf16_reason
from harness.train.scheduled import check_schedule
from harness.train.trial import pick_device

__all__ = ["preflight", "check_hub", "check_local_machine", "precision_notes", "plan_rows", "format_plan",
           "format_search_plan", "check_searcher", "INPUT_ERRORS"]

INPUT_ERRORS: tuple[type[BaseException], ...] = (ConfigError, strategies.StrategyError, DataError, ModelSourceError)


def _rebase(cfg: SweepConfig, i: int, exc: "strategies.StrategyError") -> ConfigError:
    """Re-root a strategy error's ``strategy.params.k`` path at the config entry it came from."""
    base = strategy_path(cfg, i)
    path = exc.path or ""
    message = str(exc)[len(path) + 2:] if path and str(exc).startswith(path + ": ") else str(exc)
    if path.startswith("model"):          # the model section is what to change (model.roles, model.roles.layers)
        return ConfigError(path, f"{message} (needed by {base}: {normalise_strategies(cfg)[i].name})")
    suffix = path[len("strategy"):] if path.startswith("strategy") else (f".{path}" if path else "")
    return ConfigError(base + suffix, message)


def _hub_ids(cfg: SweepConfig) -> list[tuple[str, str, str]]:
    """(config key, Hub id, repo type) of every source the sweep would fetch from the Hugging Face Hub."""
    named = (("model.name", cfg.model.name), ("model.tokenizer", cfg.model.tokenizer))
    # a hub id is what resolves to neither a local folder nor an installed package's folder
    out = [(key, name, "model") for key, name in named if name and not Path(resolve_source(name)).is_dir()]
    if resolve_format(cfg.data) == "hub":
        out.append(("data.source", cfg.data.source, "dataset"))
    return out


def check_hub(cfg: SweepConfig, skip_if_unreachable: bool = False, console=print) -> bool:
    """Look once whether the Hub answers, when the sweep names a Hub id (and HF_HUB_OFFLINE is not set): the
    HF clients would otherwise retry for ~30 s per file and then fail. Unreachable: ConfigError naming the key,
    with what to do; or, with ``skip_if_unreachable`` (``harness.submit`` on a login node), a note and False."""
    ids = _hub_ids(cfg)
    if not ids or hub_offline():
        return True
    why = probe(hub_endpoint())
    if why is None:
        return True
    key, repo, kind = ids[0]
    if skip_if_unreachable:
        console(f"note: the Hugging Face Hub ({hub_endpoint()}) cannot be reached from here ({why}): skipped the "
                f"checks that need {repo!r}'s configuration; the job repeats them when it starts")
        return False
    cached = hub_cached(repo, cfg.model.revision if kind == "model" else None, kind)
    what, flag = ("a folder with config.json", "") if kind == "model" else ("a folder or file", " --repo-type dataset")
    hint = ("it is in the local Hugging Face cache: run with HF_HUB_OFFLINE=1 to use that copy" if cached else
            f"use a local path instead ({what}), or download it where there is internet "
            f"(`hf download {repo}{flag}`) and run with HF_HUB_OFFLINE=1")
    raise ConfigError(key, f"{repo!r} is a Hugging Face Hub id, but the Hub ({hub_endpoint()}) cannot be reached "
                           f"({why}); {hint}")


def preflight(cfg: SweepConfig, *, skip_if_hub_unreachable: bool = False, console=print) -> list[TrialConfig]:
    """Everything that can be checked before a model or data set is loaded. Raises one of INPUT_ERRORS.

    ``skip_if_hub_unreachable``: when the Hub cannot be reached, skip (with a note) the checks that need the
    model's configuration instead of failing - for ``harness.submit``, whose job runs elsewhere."""
    trials = expand(cfg)
    check_searcher(cfg)
    strats = normalise_strategies(cfg)
    params = []
    for i, strat in enumerate(strats):
        try:
            params.append(strategies.validate_params(strat.name, strat.params))
        except strategies.StrategyError as exc:
            raise _rebase(cfg, i, exc) from None
    check_source(cfg.data)
    _check_schedules(cfg, trials, strats)
    _check_trains(cfg, trials)
    if not check_hub(cfg, skip_if_hub_unreachable, console):
        return trials
    try:
        hf = load_hf_config(cfg.model, cfg.train)
    except Exception as exc:  # noqa: BLE001 - transformers' config validation raises several types
        if isinstance(exc, INPUT_ERRORS):
            raise
        key = ("model.overrides" if cfg.model.overrides else "model.arch") if cfg.model.arch else "model.name"
        raise ConfigError(key, f"cannot load the model configuration: {exc}") from None
    check_head(cfg.model)
    positions = getattr(hf, "max_position_embeddings", None)
    if isinstance(positions, int) and hf.model_type in ("roberta", "xlm-roberta", "camembert"):
        pad = getattr(hf, "pad_token_id", None)
        positions -= (1 if pad is None else pad) + 1   # position ids start after the padding index
    if isinstance(positions, int) and cfg.data.max_length > positions:
        raise ConfigError("data.max_length", f"{cfg.data.max_length} exceeds the {positions} positions the model "
                                             f"has (max_position_embeddings of {hf.model_type})")
    for i, strat in enumerate(strats):
        try:
            strategies.check_compatible(strat.name, params[i], hf)
        except strategies.StrategyError as exc:
            raise _rebase(cfg, i, exc) from None
        if strat.lr_decay is not None and strategies.arch_for(hf) is None:
            raise ConfigError(f"{strategy_path(cfg, i)}.lr_decay", f"layer-wise lr decay needs the encoder layers, "
                              f"and model_type {hf.model_type!r} has no role table: give one as model.roles")
    _check_model(cfg, trials, strats)   # the first model build (meta device): after every check without one
    _check_prefix_caches(cfg, trials, strats, params)
    return trials


def _check_model(cfg: SweepConfig, trials: list[TrialConfig], strats: list) -> None:
    """On a meta-device model: the attention implementation loads, and the role map (built in or
    ``model.roles``) covers every parameter exactly once wherever a strategy (or the cache) will read it."""
    on_cpu = all(t.train.device == "cpu" for t in trials)
    model = check_model(cfg.model, trials[0].train if trials else cfg.train, cuda=False if on_cpu else None)
    arch = strategies.arch_for(model.config)
    wanted = cfg.model.roles is not None or any(strategies.resolve(s.name).needs_roles for s in strats) \
        or any(t.train.cache_frozen_prefix for t in trials)
    if arch is None or not wanted:
        return
    try:
        strategies.param_roles(model)
    except strategies.UnmappedParameterError as exc:
        text = str(exc)
        raise ConfigError("model.roles", text.removeprefix("model.roles: ")) from None
    rm = arch.roles
    if rm.layers is not None:
        try:
            layers = model.get_submodule(rm.layers)
        except AttributeError:
            layers = None
        if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
            raise ConfigError("model.roles.layers", f"{rm.layers!r} is not a list of encoder layers in the model "
                                                    f"({type(model).__name__})")
        for name, path in rm.lora_targets.items():
            try:
                layers[0].get_submodule(path)
            except AttributeError:
                raise ConfigError(f"model.roles.lora_targets.{name}",
                                  f"{path!r} is no module of {rm.layers}.0") from None


def _check_schedules(cfg: SweepConfig, trials: list[TrialConfig], strats: list) -> None:
    """A schedule (its trainable set changes during the run) with an engine that cannot follow it: exit 2 now."""
    for i, strat in enumerate(strats):
        for t in (t for t in trials if t.strategy_label == strategy_label(strat)):
            try:
                check_schedule(t.train, t.resources, strat.name, f"{strategy_path(cfg, i)}.name")
            except ConfigError as exc:
                text = str(exc)
                raise ConfigError(exc.path, text[len(exc.path) + 2:] + f" (train.backend {t.train.backend}, "
                                  f"workers_per_trial {t.resources.workers_per_trial})") from None


def _where(cfg: SweepConfig, trial: TrialConfig, key: str) -> str:
    """The config path a trial's ``train.<key>`` comes from: its strategy's overrides, or the train section."""
    strats = normalise_strategies(cfg)
    i = [strategy_label(s) for s in strats].index(trial.strategy_label)
    return f"{strategy_path(cfg, i)}.train.{key}" if key in strats[i].train else f"train.{key}"


def _rekey(exc: ConfigError, path: str) -> ConfigError:
    text = str(exc)
    return ConfigError(path, text[len(exc.path) + 2:] if exc.path and text.startswith(exc.path + ": ") else text)


def _check_trains(cfg: SweepConfig, trials: list[TrialConfig]) -> None:
    """Per-trial train settings (strategies may override the train section): DeepSpeed, prefix cache."""
    for t in trials:
        if t.train.deepspeed_config and not Path(t.train.deepspeed_config).is_file():
            raise ConfigError(_where(cfg, t, "deepspeed_config"), f"file not found: {t.train.deepspeed_config}")
        try:
            prefix_cache.check_config(t.train, t.resources)
        except ConfigError as exc:
            raise _rekey(exc, _where(cfg, t, "cache_frozen_prefix")) from None
    ds = [t for t in trials if t.train.backend == "deepspeed"]
    if ds:
        check_sweep(ds)   # merged DeepSpeed config of every trial: contradictions, unknown keys, fp16 on CPU


def _check_prefix_caches(cfg: SweepConfig, trials: list[TrialConfig], strats: list, params: list[dict]) -> None:
    """A strategy whose trials cache the frozen prefix must freeze one (checked on a meta-device model)."""
    for strat, p in zip(strats, params):
        mine = [t for t in trials if t.strategy_label == strategy_label(strat) and t.train.cache_frozen_prefix]
        if not mine:
            continue
        frozen = strategies.freeze(build_model(cfg.model, mine[0].train, meta=True), strat.name, p)
        try:
            prefix_cache.plan(frozen.model, frozen.names)
        except ConfigError as exc:
            raise _rekey(exc, _where(cfg, mine[0], "cache_frozen_prefix")) from None


SEARCH_PACKAGES = {"random": ("optuna",), "optuna": ("optuna",), "bohb": ("hpbandster", "ConfigSpace")}


def check_searcher(cfg: SweepConfig) -> None:
    """The packages of ``search.algorithm`` are installed (the ``search`` extra), before Ray starts."""
    missing = [m for m in SEARCH_PACKAGES.get(cfg.search.algorithm, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError("search.algorithm", f"{cfg.search.algorithm} needs {', '.join(missing)}, which is not "
                                              "installed: pip install 'freezebench[search]'")


def format_search_plan(cfg: SweepConfig, plan: list, rows: list[dict], as_json: bool = False) -> str:
    """``--dry-run`` of a sampled search: strategies x budget x seeds, and the space (nothing is sampled)."""
    counts = {r["strategy"]: (r["trainable_params"], r["total_params"]) for r in rows}
    s = cfg.search
    seeds = list(plan[0].seeds)
    total = sum(st.n_trials for st in plan)
    if as_json:
        return json.dumps({"algorithm": s.algorithm, "num_samples": s.num_samples, "seeds": seeds,
                           "metric": s.metric, "mode": s.search_mode, "space": plan[0].space, "trials": total,
                           "studies": [{"study": st.label, "strategy": st.strategy, "trials": st.n_trials,
                                        "trainable_params": counts[st.strategy][0],
                                        "total_params": counts[st.strategy][1]} for st in plan]}, indent=2)
    goal = "maximises" if s.search_mode == "max" else "minimises"
    lines = [f"search: {s.algorithm}, {s.num_samples} configurations per strategy, each with seeds "
             f"{', '.join(map(str, seeds))}; the searcher {goal} the mean over seeds of {s.metric}",
             f"space: {describe_space(plan[0].space)}"]
    width = max(len(st.label) for st in plan)
    for st in plan:
        trainable, n = counts[st.strategy]
        lines.append(f"  {st.label.ljust(width)}  {st.num_samples} x {len(st.seeds)} seeds = {st.n_trials} trials  "
                     f"trainable {trainable:,} / {n:,} ({trainable / n:.4f})")
    lines.append(f"{len(plan)} strategies x {s.num_samples} configurations x {len(seeds)} seeds = {total} trials")
    return "\n".join(lines)


def check_local_machine(cfg: SweepConfig, trials: list[TrialConfig] | None = None) -> None:
    """A local sweep (no ``--address``) runs on this machine: what it cannot provide is an input error now,
    not trials that fail after loading a model (or wait for resources forever)."""
    r = cfg.resources
    cpus = r.num_cpus or os.cpu_count() or 1
    if r.cpus_per_trial > cpus:
        raise ConfigError("resources.cpus_per_trial", f"{r.cpus_per_trial:g} exceeds the {cpus} CPUs of this "
                                                      "machine: no trial could start")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if r.gpus_per_trial > gpus:
        raise ConfigError("resources.gpus_per_trial", f"{r.gpus_per_trial:g} exceeds the {gpus} GPUs of this "
                                                      "machine: no trial could start")
    if gpus:
        return
    for trial in trials or expand(cfg):
        t = trial.train
        if t.device == "cuda":
            raise ConfigError(_where(cfg, trial, "device"), "cuda, but this machine has no CUDA device")
        if t.precision == "fp16":
            raise ConfigError(_where(cfg, trial, "precision"), "fp16 needs a GPU and this machine has none "
                              f"(train.device: {t.device} runs on the CPU); use bf16 or fp32")


def precision_notes(cfg: SweepConfig, trials: list[TrialConfig]) -> list[str]:
    """What ``train.precision`` becomes on this machine, for a local sweep's console: ``auto`` resolved, and a
    warning for an explicit ``bf16`` a CPU can only emulate (each distinct setting once)."""
    notes: list[str] = []
    for trial in trials:
        t = trial.train
        device = pick_device(t.device)
        if t.precision == "auto":
            ran = resolve("auto", device)
            note = f"precision: auto -> {ran} on this {device.type}"
            if device.type == "cpu" and ran == "fp32":
                note += " (no bf16 instructions: AMX, AVX512_BF16)"
        else:
            reason = slow_bf16_reason(t.precision, device)
            note = f"warning: {_where(cfg, trial, 'precision')}: bf16: {reason}" if reason else None
        if note and note not in notes:
            notes.append(note)
    return notes


def plan_rows(cfg: SweepConfig, trials: list[TrialConfig]) -> list[dict]:
    """One row per trial with trainable counts, computed on a meta-device model (no weights loaded)."""
    counts: dict[str, tuple[int, int]] = {}
    for strat in normalise_strategies(cfg):
        model = build_model(cfg.model, next(t.train for t in trials if t.strategy == strat), meta=True)
        frozen = strategies.freeze(model, strat.name, strat.params)
        counts[strategy_label(strat)] = (frozen.trainable, frozen.total)
    rows = []
    for t in trials:
        trainable, total = counts[t.strategy_label]
        rows.append({"trial_id": t.trial_id, "strategy": t.strategy_label, "lr": t.train.lr,
                     "batch_size": t.train.batch_size, "scheduler": t.train.scheduler,
                     "grad_clip": t.train.grad_clip, "seed": t.train.seed, "max_steps": t.train.max_steps,
                     "trainable_params": trainable, "total_params": total,
                     "trainable_ratio": round(trainable / total, 6)})
    return rows


def format_plan(rows: list[dict], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(rows, indent=2)
    cols = ["strategy", "lr", "batch_size", "scheduler", "grad_clip", "seed", "trainable_params",
            "total_params", "trainable_ratio"]
    fmt = {"trainable_params": "{:,}", "total_params": "{:,}", "trainable_ratio": "{:.4f}", "lr": "{:g}"}
    cells = [[(fmt.get(c, "{}").format(r[c]) if r[c] is not None else "none") for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    lines.append(f"{len(rows)} trials")
    return "\n".join(lines)
