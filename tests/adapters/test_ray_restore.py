"""Repairs the Ray Tune adapter makes to an experiment folder before ``Tuner.restore`` (filesystem only; the
end-to-end drill is ``tests/cli/test_resume.py::test_resume_after_tune_rotated_away_the_checkpoint_its_snapshot_names``)."""
from __future__ import annotations

from harness.adapters.ray.common import refill_rotated_checkpoints, restore_candidates
from harness.train.checkpoint import checkpoint_step


def _checkpoint(folder, step: int):
    folder.mkdir(parents=True)
    (folder / "done").write_text(str(step))
    return folder


def test_tune_still_names_its_checkpoints_the_way_the_refill_matches():
    from ray.train._internal.storage import StorageContext

    assert StorageContext._make_checkpoint_dir_name(7) == "checkpoint_000007"   # noqa: SLF001


def test_refill_fills_only_rotated_indices_below_each_trials_newest(tmp_path):
    exp = tmp_path / "exp"
    a, b, c = exp / "trial_a", exp / "trial_b", exp / "trial_c"
    _checkpoint(a / "checkpoint_000002", 20), _checkpoint(a / "checkpoint_000003", 30)
    _checkpoint(b / "checkpoint_000000", 10)
    c.mkdir()                                             # no checkpoint yet: nothing to fill
    (exp / "experiment_state-x.json").write_text("{}")    # files beside the trial folders are left alone
    made = refill_rotated_checkpoints(exp)
    assert made == [a / "checkpoint_000000", a / "checkpoint_000001"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)
    assert sorted(p.name for p in b.iterdir()) == ["checkpoint_000000"] and not any(c.iterdir())
    assert refill_rotated_checkpoints(exp) == []          # idempotent: a second resume changes nothing


def test_a_trial_handed_a_refilled_folder_resumes_from_its_newest_checkpoint(tmp_path):
    trial = tmp_path / "trial"
    newest = _checkpoint(trial / "checkpoint_000004", 40)
    _checkpoint(trial / "checkpoint_000003", 30)
    refill_rotated_checkpoints(tmp_path)

    class HandedBack:                                     # what tune.get_checkpoint() returns: the snapshot's one
        path = str(trial / "checkpoint_000001")

    order = restore_candidates(HandedBack(), trial)
    assert order[0] == str(newest) and checkpoint_step(order[0]) == 40
    assert [checkpoint_step(p) for p in order[2:]] == [-1] * (len(order) - 2)   # empty refills are tried last
