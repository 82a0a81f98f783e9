"""The sweep-wide frozen-prefix store (``train.shared_prefix``): the same logits as the per-trial cache, one
computation however many trials ask at once, a key that follows what the features depend on."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import strategies
from harness.data.batching import collate
from harness.data.tokenize_cache import TokenizedSplit
from harness.train import prefix_cache
from tests.support.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[2]


def _split(n=20, seed=3) -> TokenizedSplit:
    rng = np.random.default_rng(seed)
    ids = [np.concatenate([[101], rng.integers(1000, 2000, rng.integers(3, 40)), [102]]).astype(np.int32)
           for _ in range(n)]
    return TokenizedSplit(ids, rng.integers(0, 2, n))


def _inputs(split, idx):
    batch = collate([split.input_ids[i] for i in idx], split.labels[idx], pad_id=0)
    return {k: batch[k] for k in ("input_ids", "attention_mask")}


def _autocast(dtype):
    return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == torch.bfloat16 else contextlib.nullcontext


def _model(strategy, params):
    model = tiny_model("bert")
    names = strategies.trainable_names(model, strategy, params)
    strategies.apply_trainable(model, names)
    return model, names


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("strategy,params,level", [("head_only", {}, "pooled"), ("top_k", {"k": 1}, "hidden")])
def test_shared_prefix_gives_the_per_trial_logits(tmp_path, strategy, params, level, dtype):
    split = _split()
    model, names = _model(strategy, params)
    own = prefix_cache.PrefixCache(model, names, dtype)
    shared = prefix_cache.PrefixCache(model, names, dtype)
    assert own.plan.level == level
    key = prefix_cache.prefix_key(model, names, shared.plan, "data", dtype)
    computed = shared.share(prefix_cache.SharedPrefix(tmp_path, key), model, {"train": split}, _inputs, 7,
                            _autocast(dtype))
    assert computed == ["train"]
    model.eval()
    with torch.no_grad(), _autocast(dtype)():
        for idx in np.array_split(np.random.default_rng(0).permutation(len(split)), 4):
            batch = _inputs(split, idx)
            a = own.logits(model, batch, ("train", idx)).float()
            b = shared.logits(model, batch, ("train", idx)).float()
            # the entries are computed in other batches (other padding): equal up to the GEMMs' rounding
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5 if dtype == torch.float32 else 2e-2)
    assert shared.stats["eval"]["computed"] == 0 and shared.stats["eval"]["hits"] == len(split)
    # a second trial reads what the first wrote, computes nothing
    again = prefix_cache.PrefixCache(model, names, dtype)
    assert again.share(prefix_cache.SharedPrefix(tmp_path, key), model, {"train": split}, _inputs, 7,
                       _autocast(dtype)) == []
    mapped = again._stores["train"]
    assert isinstance(mapped, prefix_cache.MappedSplit) and len(mapped) == len(split)
    for ex in range(len(split)):
        assert torch.equal(mapped[ex], shared._stores["train"][ex])


def test_key_follows_the_frozen_weights_not_the_head():
    a, names = _model("head_only", {})
    plan = prefix_cache.plan(a, names)
    key = prefix_cache.prefix_key(a, names, plan, "d", torch.bfloat16)
    with torch.no_grad():
        a.classifier.weight.add_(1.0)                        # trainable: another lr/seed gives another head
    assert prefix_cache.prefix_key(a, names, plan, "d", torch.bfloat16) == key
    assert prefix_cache.prefix_key(a, names, plan, "other data", torch.bfloat16) != key
    assert prefix_cache.prefix_key(a, names, plan, "d", torch.float32) != key
    b = tiny_model("bert", seed=1)                           # another random init of the frozen part
    strategies.apply_trainable(b, names)
    assert prefix_cache.prefix_key(b, names, plan, "d", torch.bfloat16) != key


_WORKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np, torch
    sys.path.insert(0, {root!r})
    import strategies
    from harness.train import prefix_cache
    from tests.train.test_shared_prefix import _split, _inputs, _model
    barrier = {barrier!r}
    open(barrier + "." + sys.argv[1], "w").close()
    import glob
    while len(glob.glob(barrier + ".*")) < 2:              # both processes start the fill together
        time.sleep(0.01)
    model, names = _model("top_k", {{"k": 1}})
    cache = prefix_cache.PrefixCache(model, names, torch.float32)
    key = prefix_cache.prefix_key(model, names, cache.plan, "data", torch.float32)
    real = cache._compute_split
    def slow(*a, **k):                                     # a fill long enough for the other to arrive
        time.sleep(1.0)
        return real(*a, **k)
    cache._compute_split = slow
    computed = cache.share(prefix_cache.SharedPrefix({store!r}, key), model,
                           {{"train": _split(40), "test": _split(9, seed=5)}}, _inputs, 8, __import__("contextlib").nullcontext)
    rows = {{s: [cache._stores[s][i].sum().item() for i in range(len(cache._stores[s]))] for s in ("train", "test")}}
    print(json.dumps({{"computed": computed, "rows": rows}}))
""")


def test_two_processes_fill_one_store_once(tmp_path):
    store = tmp_path / "prefix_cache"
    code = _WORKER.format(root=str(ROOT), barrier=str(tmp_path / "barrier"), store=str(store))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    log = [json.loads(line) for line in (store / prefix_cache.COMPUTED_LOG).read_text().splitlines()]
    assert sorted(x["split"] for x in log) == ["test", "train"]           # each split computed exactly once
    assert sorted(s for o in outs for s in o["computed"]) == ["test", "train"]
    assert sorted(len(o["computed"]) for o in outs) == [1, 1]             # side by side: neither waited idle
    assert outs[0]["rows"] == outs[1]["rows"]                              # both read the same, whole data
    assert len(outs[0]["rows"]["train"]) == 40 and len(outs[0]["rows"]["test"]) == 9
    (key_dir,) = [p for p in store.iterdir() if p.is_dir()]
    assert sorted(p.name for p in key_dir.iterdir()) == [".test.lock", ".train.lock", "test", "train"]   # no tmp


def test_training_split_is_shared_only_where_it_pays():
    assert prefix_cache.shares_train(64, 128) and prefix_cache.shares_train(3840, 1920)
    assert not prefix_cache.shares_train(15_000, 120 * 16)      # the quickstart: lazy per-trial training fills
