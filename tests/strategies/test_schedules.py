"""Trainability schedules as pure functions of (layout, step, state): what trains when, validation, cards."""
from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import strategies
from strategies.schedules import relative_change

DEPTH = 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(hidden_size=16, num_hidden_layers=DEPTH, num_attention_heads=2,
                                                    intermediate_size=32, vocab_size=50))


def _frozen_depth(layout, names) -> int:
    """How many bottom blocks are wholly outside ``names``."""
    d = 0
    while d < len(layout.blocks) and not (layout.blocks[d] & names):
        d += 1
    return d


def test_layout_blocks_cover_every_parameter_once(model):
    layout = strategies.layout_of(model)
    names = {n for n, _ in model.named_parameters()}
    parts = [*layout.blocks, layout.head]
    assert set().union(*parts) == names and sum(map(len, parts)) == len(names)
    assert all(n.startswith("bert.embeddings.") for n in layout.blocks[0])
    assert all(f".layer.{i}." in n for i in range(DEPTH) for n in layout.blocks[1 + i])
    assert layout.classifier == {"classifier.weight", "classifier.bias"} and layout.classifier < layout.head


def test_gradual_unfreeze_head_then_one_group_from_the_top(model):
    s = strategies.Schedule(model, "gradual_unfreeze", {"every": 2}, max_steps=20)
    layout = s.layout
    depths = [_frozen_depth(layout, s.trainable(t)) for t in range(12)]
    # head only (all DEPTH + 1 blocks frozen), then the top layer, ..., then the embeddings too
    assert depths == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0]
    assert all(layout.head <= s.trainable(t) for t in range(12))
    grouped = strategies.Schedule(model, "gradual_unfreeze", {"every": 3, "group": 2}, max_steps=20)
    assert [_frozen_depth(layout, grouped.trainable(t)) for t in (0, 3, 6, 9)] == [4, 2, 1, 0]


def test_progressive_freeze_follows_composer_layer_freezing(model):
    s = strategies.Schedule(model, "progressive_freeze", {"start": 0.5, "level": 1.0}, max_steps=16)
    depths = [_frozen_depth(s.layout, s.trainable(t)) for t in range(16)]
    # floor(level * (DEPTH + 1) * (t - start) / (1 - start)) blocks frozen at t = step / max_steps
    assert depths == [0] * 8 + [0, 0, 1, 1, 2, 2, 3, 3]
    half = strategies.Schedule(model, "progressive_freeze", {"start": 0.0, "level": 0.5}, max_steps=16)
    assert max(_frozen_depth(half.layout, half.trainable(t)) for t in range(16)) == 1
    assert s.ever() == frozenset(n for n, _ in model.named_parameters())


def test_lp_ft_probe_then_any_static_strategy(model):
    s = strategies.Schedule(model, "lp_ft", {"probe_steps": 3, "then": "freeze_attention"}, max_steps=10)
    assert [s.trainable(t) == s.layout.classifier for t in range(5)] == [True, True, True, False, False]
    assert s.trainable(3) == strategies.trainable_names(model, "freeze_attention")
    top = strategies.Schedule(model, "lp_ft", {"probe_steps": 2, "then": "top_k", "then_params": {"k": 1}}, 10)
    assert top.trainable(5) == strategies.trainable_names(model, "top_k", {"k": 1})


def test_auto_freeze_freezes_the_lowest_converged_block_only(model):
    s = strategies.Schedule(model, "auto_freeze", {"check_every": 5, "threshold": 0.1}, max_steps=100)
    flat = {"prev": [1.0, 1.0, 1.0, 1.0], "cur": [1.05, 1.0, 1.0, 1.0]}
    assert s.update(5, 0, flat) == 1                         # 5% < 10%: the embeddings freeze
    assert s.update(4, 0, flat) == 0                         # not a check step
    assert s.update(5, 0, {"prev": None, "cur": [1.0] * 4}) == 0   # one interval only: nothing to compare
    moving = {"prev": [1.0, 1.0, 1.0, 1.0], "cur": [1.0, 2.0, 1.0, 1.0]}
    assert s.update(10, 1, moving) == 1                      # layer 0 still moves: layer 1 waits (bottom-up only)
    assert s.update(10, 4, flat) == 4                        # every block frozen: the head never is
    assert s.trainable(0, 4) == s.layout.head
    assert _frozen_depth(s.layout, s.trainable(7, 2)) == 2
    capped = strategies.Schedule(model, "auto_freeze", {"check_every": 5, "max_frozen": 1}, 100)
    assert capped.update(10, 1, flat) == 1
    assert relative_change(2.0, 1.0) == 0.5 and relative_change(0.0, 1.0) == float("inf")


def test_static_strategies_are_schedules_that_never_change(model):
    s = strategies.Schedule(model, "top_k", {"k": 2}, max_steps=10)
    assert s.static and all(s.trainable(t, 3) == s.trainable(0) for t in range(10))
    assert s.ever() == strategies.trainable_names(model, "top_k", {"k": 2})


def test_step_zero_set_is_what_freeze_applies(model):
    frozen = strategies.freeze(model, "gradual_unfreeze", {"every": 4})
    assert frozen.names == strategies.layout_of(model).head
    assert strategies.summary("auto_freeze") and "Source:" in strategies.resolve("lp_ft").card


@pytest.mark.parametrize("name,params,path,fragment", [
    ("gradual_unfreeze", {"every": 0}, "strategy.params.every", "must be > 0"),
    ("gradual_unfreeze", {"every": "10"}, "strategy.params.every", "expected an integer"),
    ("progressive_freeze", {"start": 1.0}, "strategy.params.start", "must be < 1"),
    ("auto_freeze", {"threshold": -1}, "strategy.params.threshold", "must be > 0"),
    ("auto_freeze", {"check_evry": 5}, "strategy.params.check_evry", "did you mean"),
    ("lp_ft", {"probe_steps": 0}, "strategy.params.probe_steps", "must be > 0"),
])
def test_bad_schedule_params_name_the_key(name, params, path, fragment):
    with pytest.raises(strategies.StrategyError) as info:
        strategies.validate_params(name, params)
    assert info.value.path == path and fragment in str(info.value)


@pytest.mark.parametrize("params,path,fragment", [
    ({"then": "fulll"}, "strategy.params.then", "did you mean 'full'"),
    ({"then": "auto_freeze"}, "strategy.params.then", "static strategy"),
    ({"then": "top_k", "then_params": {"k": "2"}}, "strategy.params.then_params.k", "expected an integer"),
    ({"then": "top_k", "then_params": {"k": 9}}, "strategy.params.then_params.k", "must be in 1..3"),
])
def test_lp_ft_then_is_checked_at_config_time(model, params, path, fragment):
    with pytest.raises(strategies.StrategyError) as info:
        strategies.check_compatible("lp_ft", params, model.config)
    assert info.value.path == path and fragment in str(info.value)
