"""Three splits, each with one job: the test split is never seen before the final evaluation (curves, early
stopping and selection read validation only), and validation and training examples never overlap."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harness.config import DataConfig, build_config, expand
from harness.data import load_splits
from tests.conftest import tiny_sweep_dict


def test_no_test_example_is_used_before_the_final_evaluation(tmp_path, cache_dir, monkeypatch):
    import harness.train.trial as trial_mod

    events: list[tuple] = []
    real_make, real_step = trial_mod.make_engine, trial_mod._train_step

    def make(model, train, device, **kw):
        engine = real_make(model, train, device, **kw)
        forward = engine.forward

        def spied(batch, examples=None):
            events.append(("forward", examples[0] if examples is not None else None, len(batch["input_ids"])))
            return forward(batch, examples)

        engine.forward = spied
        return engine

    def step(run, *args, **kwargs):
        real_step(run, *args, **kwargs)
        events.append(("step", run.step))

    monkeypatch.setattr(trial_mod, "make_engine", make)
    monkeypatch.setattr(trial_mod, "_train_step", step)
    reports = []
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train={"max_steps": 12, "eval_every": 4})))
    result = trial_mod.run_trial(trial, lambda m, c=None: reports.append(m))
    last_step = max(i for i, e in enumerate(events) if e[0] == "step")
    test_at = [i for i, e in enumerate(events) if e[0] == "forward" and e[1] == "test"]
    assert test_at and min(test_at) > last_step                       # the test split only after training ended
    assert sum(e[2] for e in (events[i] for i in test_at)) == result["test"]["size"] == 64   # and only once
    assert {e[1] for e in events if e[0] == "forward"} == {"train", "val", "test"}
    assert all(not any("test" in k for k in m) for m in reports)      # what Tune / ASHA / searchers see
    assert all(k.startswith(("val_", "train_")) or k in ("step", "epoch", "lr", "grad_norm", "samples_per_s",
                                                          "tokens_per_s", "peak_mem_mb", "elapsed_s", "skipped_steps")
               for row in result["history"] for k in row)
    assert result["best"]["score"] == max(h["val_score"] for h in result["history"])


def test_validation_is_carved_from_train_and_never_overlaps(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    df = pd.DataFrame({"text": [f"review number {i} " + "word " * int(rng.integers(1, 9)) for i in range(n)],
                       "label": rng.integers(0, 2, n)})
    df.to_csv(tmp_path / "r.csv", index=False)
    s = load_splits(DataConfig(source=str(tmp_path / "r.csv"), val_size=80, train_size=300))
    train, val, test = set(s.train.texts), set(s.val.texts), set(s.test.texts)
    assert (len(train), len(val)) == (300, 80) and np.bincount(s.val.labels).tolist() == [40, 40]
    assert not train & val and not val & test and not train & test
    again = load_splits(DataConfig(source=str(tmp_path / "r.csv"), val_size=80, train_size=200))
    assert set(again.val.texts) == val                                 # the same validation whatever train_size
    none = load_splits(DataConfig(source=str(tmp_path / "r.csv"), val_size=0))
    assert len(none.val) == 0 and "choices read the test split" in none.info["from"]["val"]
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, data={"source": str(tmp_path / "r.csv"), "val_size": 0,
                                                                   "train_size": None, "test_size": None})))
    from harness.train.trial import run_trial

    result = run_trial(trial)
    assert result["selected_on"] == "test" and result["val"] is None   # the report calls this optimistic
