"""``benchmarks.shared_prefix`` builds the sweep a user would run: a valid config at the harness's own defaults."""
from benchmarks.shared_prefix import parse_args, sweep_dict
from harness.config import build_config


def test_benchmark_sweep_is_valid_and_uses_the_default_eval_batch(tmp_path):
    args = parse_args(["--strategy", "top_k", "--k", "2", "--lrs", "1e-3,2e-3"])
    per_trial, shared = (build_config(sweep_dict(args, str(tmp_path), s)) for s in (False, True))
    assert per_trial.train.eval_batch_size is None          # resolved per device by the trial (16 on CPU)
    assert (per_trial.train.shared_prefix, shared.train.shared_prefix) == (False, True)
    assert shared.strategy.params == {"k": 2} and list(shared.search.lr) == [1e-3, 2e-3]
    explicit = build_config(sweep_dict(parse_args(["--eval-batch-size", "64"]), str(tmp_path), True))
    assert explicit.train.eval_batch_size == 64
