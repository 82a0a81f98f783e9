"""Sampled searches on Ray Tune (``search.algorithm: random | optuna | bohb``): one Tuner per study (a strategy, or
a cell of the grid of list axes), each with its own searcher and the same budget, run one after the other.

Ray Tune does the searching: ``OptunaSearch`` (random: Optuna's ``RandomSampler``; optuna: its TPE sampler) or
``TuneBOHB`` with the ``HyperBandForBOHB`` scheduler, wrapped in ``Repeater`` so that every sampled
configuration runs once per seed and the searcher is told the mean over the seeds. Tune saves the searcher with
its experiment state, and ``Tuner.restore`` brings it back (``--resume``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ray import tune
from ray.tune.search import ConcurrencyLimiter, Repeater
from ray.tune.search.repeater import TRIAL_INDEX

from harness.adapters.ray.common import restored_tuner, resumable
from harness.adapters.ray.progress import ProgressCallback
from harness.adapters.ray.train import max_concurrent, trial_resources
from harness.adapters.ray.tune import SAMPLE_KEY, _trainable, asha, run_config, trial_of, tune_config
from harness.config.search import Study
from harness.results import load_result
from harness.results.recover import tune_experiment_dir

__all__ = ["run_search", "study_experiment_dir", "tune_space", "make_searcher", "SeedRepeater", "SearchGrid",
           "realised_trials", "set_aside_unplanned", "UNPLANNED_DIR"]

UNPLANNED_DIR = "unplanned"

INT_AXES = ("batch_size", "max_steps")


class SeedRepeater(Repeater):
    """``Repeater`` (one configuration, one trial per seed; the searcher sees the mean) that also numbers its
    samples (``__sample__``: trial ids and the table read it) and passes what BOHB needs on to the searcher:
    the intermediate results and pauses of each sample's first trial. Ray's Repeater forwards neither, so
    ``TuneBOHB`` behind it would never learn (it learns from intermediate results) and ``HyperBandForBOHB``'s
    ``on_pause`` would fail. Its state (groups, the sample counter) is saved by Tune with the experiment."""

    def __init__(self, searcher, repeat: int = 1):
        super().__init__(searcher, repeat=repeat, set_index=True)
        self.samples = 0
        self.primaries: set[str] = set()

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            if config.get(TRIAL_INDEX) == 0:     # the first trial of a new sample
                self.samples += 1
                self.primaries.add(trial_id)
            config[SAMPLE_KEY] = self.samples - 1
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.primaries:
            self.searcher.on_trial_result(trial_id, result)

    def on_pause(self, trial_id: str) -> None:
        if trial_id in self.primaries and hasattr(self.searcher, "on_pause"):
            self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        if trial_id in self.primaries and hasattr(self.searcher, "on_unpause"):
            self.searcher.on_unpause(trial_id)


def tune_space(space: dict[str, dict]) -> dict:
    """Tune's search space of a study's distributions. Integer axes sample integers; ranges include ``high``."""
    out = {}
    for axis, dist in space.items():
        (name, args), = dist.items()
        if name == "choice":
            out[axis] = tune.choice(list(args))
        elif axis in INT_AXES:
            lo, hi = int(args[0]), int(args[1]) + 1   # Tune's integer ranges exclude the upper bound
            out[axis] = tune.lograndint(lo, hi) if name == "loguniform" else tune.randint(lo, hi)
        else:
            out[axis] = tune.loguniform(*args) if name == "loguniform" else tune.uniform(*args)
    return out


def make_searcher(algorithm: str, metric: str, mode: str, seed: int, repeat: int):
    """The study's searcher, wrapped in :class:`SeedRepeater`; seeded, so a rerun of a sweep samples alike."""
    if algorithm in ("random", "optuna"):
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)   # no "A new study created" line per study
        sampler = optuna.samplers.RandomSampler(seed=seed) if algorithm == "random" else \
            optuna.samplers.TPESampler(seed=seed)
        inner = OptunaSearch(metric=metric, mode=mode, sampler=sampler)
    elif algorithm == "bohb":
        from ray.tune.search.bohb import TuneBOHB

        inner = TuneBOHB(metric=metric, mode=mode, seed=seed)
    else:   # pragma: no cover - the config allows no other
        raise ValueError(f"unknown search algorithm {algorithm!r}")
    return SeedRepeater(inner, repeat=repeat)


def study_experiment_dir(study: Study) -> Path:
    """``results/<sweep>/_tune/<sweep>.<study label>``: one Tune experiment per study."""
    t = study.template
    base = tune_experiment_dir(t.output.dir, t.sweep)
    return base.with_name(f"{t.sweep}.{study.label}")


class SearchGrid(list):
    """The results of every study's ``fit``, read like one ``ResultGrid`` (iteration, counts)."""

    def __init__(self, grids=()):
        super().__init__(r for g in grids for r in g)
        self.num_errors = sum(g.num_errors for g in grids)
        self.num_terminated = sum(g.num_terminated for g in grids)


def realised_trials(grid) -> list:
    """The TrialConfigs the searchers sampled, in sweep order (study, sample, seed)."""
    trials = {}
    for res in grid:
        if res.config:
            t = trial_of(res.config)
            trials[t.trial_id] = t
    return sorted(trials.values(), key=lambda t: t.index)


def set_aside_unplanned(sweep_dir: Path, planned: set[str], console=print) -> list[str]:
    """Move the result folders of sampled trials no searcher holds (a trial that finished after Tune's last
    state snapshot, then the driver was killed, and the restored searcher sampled something else in its place)
    to ``unplanned/``: every strategy's table then counts exactly its budget. Kept, not deleted."""
    moved = []
    for path in sorted((sweep_dir / "trials").glob("*/result.json")):
        try:
            stored = load_result(path)
        except ValueError:
            continue
        if (stored.get("config") or {}).get("sample") and stored.get("trial_id") not in planned:
            target = sweep_dir / UNPLANNED_DIR / path.parent.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.parent.rename(target)
            moved.append(path.parent.name)
    if moved:
        console(f"{len(moved)} trial(s) sampled before the interruption but not kept by the restored searcher: "
                f"moved to {sweep_dir / UNPLANNED_DIR} ({', '.join(moved[:3])}{', ...' if len(moved) > 3 else ''})")
    return moved


def _finished(study: Study, console) -> dict:
    """Results already written for this study (a resume): progress counts them as done."""
    folder = Path(study.template.output.dir) / study.template.sweep / "trials"
    out = {}
    prefix = f"{study.label}_n"
    for path in folder.glob(f"{prefix}*/result.json") if folder.is_dir() else ():
        try:
            stored = load_result(path)
        except ValueError:
            continue
        if stored.get("status") in ("ok", "diverged") and (stored.get("config") or {}).get("sample"):
            out[stored["trial_id"]] = stored
    return out


def _slots(res) -> int:
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus // max(res.cpus_per_trial, 1e-9)))


def run_search(studies: list[Study], *, tokenized_path: str | None, resume: bool, metric: str, mode: str,
               early_stopping: dict | None = None, console=print, extra_callbacks=(),
               keep_going: Callable[[], bool] = lambda: True) -> SearchGrid:
    first = studies[0].template
    res = first.resources
    # Tune lets a searcher without a ConcurrencyLimiter keep only one trial pending (waiting for its actor): with
    # trials of a few seconds, actor start-up then serialises the sweep. The limiter at the slots that fit lifts it.
    slots = max_concurrent(res) or _slots(res)
    trainable = tune.with_resources(_trainable, trial_resources(res))
    finished = {k: v for s in studies for k, v in _finished(s, console).items()} if resume else {}
    progress = ProgressCallback(sum(s.n_trials for s in studies), console=console, finished=finished,
                                label_of=lambda trial: trial.config["study"]["strategy"],
                                debug=first.logging.level == "debug", mode=mode)
    callbacks = [progress, *extra_callbacks]
    grids = []
    for study in studies:
        if not keep_going():
            break
        exp = study_experiment_dir(study)
        if resume and resumable(exp):
            console(f"resuming study {study.label} from {exp}")
            tuner = restored_tuner(exp, trainable, callbacks)
        else:
            console(f"study {study.label}: {study.algorithm}, {study.num_samples} configurations x "
                    f"{len(study.seeds)} seeds")
            t = study.template
            scheduler = asha(early_stopping, t.train.max_steps, metric, mode)
            if study.algorithm == "bohb":
                from ray.tune.schedulers import HyperBandForBOHB

                scheduler = HyperBandForBOHB(time_attr="step", metric=metric, mode=mode,
                                             max_t=max(t.train.max_steps, 1))
            param_space = {
                "values": tune_space(study.space), "tokenized_path": tokenized_path,
                "log_level": t.logging.level.upper(), "experiment_dir": str(exp),
                "study": {"template": t.to_dict(), "label": study.label, "strategy": study.strategy,
                          "algorithm": study.algorithm,
                          "seeds": list(study.seeds), "index_base": study.index * study.n_trials}}
            searcher = ConcurrencyLimiter(make_searcher(study.algorithm, metric, mode, seed=study.seeds[0] + study.index,
                                                        repeat=len(study.seeds)), max_concurrent=slots)
            tuner = tune.Tuner(trainable, param_space=param_space,
                               tune_config=tune_config(res, search_alg=searcher, scheduler=scheduler,
                                                       num_samples=study.n_trials, max_concurrent_trials=None),
                               run_config=run_config(res, exp, callbacks))
        grids.append(tuner.fit())
    return SearchGrid(grids)
