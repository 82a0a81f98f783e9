"""Sampled searches (``search.algorithm: random | optuna | bohb``): the plan as *studies*, and the trial one sample
becomes. Pure (no Ray): the Ray adapter turns a study's distributions into Tune's search space and a searcher.

A study is one cell of the grid - a strategy and one value of every other list axis - with the sweep's seeds.
Every study gets ``search.num_samples`` configurations from its own searcher (the same budget for every
strategy), and each configuration runs once per seed; the searcher sees the mean over the seeds.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from harness.config.expand import TrialConfig, _fmt, _slug, expand, strategy_label, trial_from_dict
from harness.config.schema import SHORT_NAMES, SweepConfig

__all__ = ["Study", "studies", "sampled_trial", "sampled", "describe_space"]


@dataclasses.dataclass(frozen=True)
class Study:
    index: int
    label: str                 # readable and unique: the strategy (and the grid values of the other list axes)
    template: TrialConfig      # the cell's trial at the first seed, distribution axes at their placeholders
    seeds: tuple[int, ...]
    space: dict[str, dict]     # axis -> {distribution: args}, in SAMPLED_AXES order
    algorithm: str
    num_samples: int

    @property
    def strategy(self) -> str:
        return self.template.strategy_label

    @property
    def n_trials(self) -> int:
        return self.num_samples * len(self.seeds)


def sampled(cfg: SweepConfig) -> bool:
    return cfg.search.algorithm != "grid"


def studies(cfg: SweepConfig) -> list[Study]:
    """One study per grid cell (strategy x the other list axes), in the grid's order."""
    trials = expand(cfg)
    seeds = tuple(dict.fromkeys(t.train.seed for t in trials))
    space = {a: {k: list(v) for k, v in dataclasses.asdict(d).items() if v is not None}
             for a, d in cfg.search.sampled.items()}
    listed = [a for a in SHORT_NAMES if isinstance(getattr(cfg.search, a), list) and len(getattr(cfg.search, a)) > 1]
    out = []
    for t in (t for t in trials if t.train.seed == seeds[0]):
        parts = [_slug(strategy_label(t.strategy))] + [f"{SHORT_NAMES[a]}{_fmt(getattr(t.train, a))}" for a in listed]
        out.append(Study(index=len(out), label="_".join(p for p in parts if p), template=t, seeds=seeds, space=space,
                         algorithm=cfg.search.algorithm, num_samples=cfg.search.num_samples))
    return out


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else _fmt(value) if value is not None else "none"


def sampled_trial(template: dict, study: str, algorithm: str, n: int, values: dict, seed: int,
                  index: int) -> TrialConfig:
    """The trial of sample ``n`` of a study at ``seed``: the template (a ``TrialConfig.to_dict()``) with the sampled
    ``values`` - re-validated, so a value out of the axis's range fails here. Its id is readable and unique in the
    sweep: ``<study>_n<sample>_<axis><value>..._s<seed>`` (values rounded for the eye; ``sample.values`` and
    ``hparams`` keep them exact)."""
    data = dict(template)
    data["train"] = {**template["train"], **values, "seed": seed}
    parts = [study, f"n{n:03d}", *(f"{SHORT_NAMES[a]}{_short(v)}" for a, v in values.items()), f"s{seed}"]
    data.update(trial_id=_slug("_".join(p for p in parts if p)), index=index,
                sample={"algorithm": algorithm, "study": study, "n": n, "values": dict(values)})
    return trial_from_dict(data)


def describe_space(space: dict[str, dict]) -> str:
    """``lr ~ loguniform[1e-05, 0.001], scheduler ~ choice[linear, cosine]`` (the plan's one-line view)."""
    return ", ".join(f"{a} ~ {name}[{', '.join(map(_short, args))}]" for a, d in space.items()
                     for name, args in d.items())
