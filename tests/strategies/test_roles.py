"""Role tables: every parameter of every built-in architecture maps to the documented roles and layer; a
``model.roles`` map does the same for an architecture without a table, and says which parameter it misses."""
from __future__ import annotations

import re

import pytest

from strategies.archs import ROLES_ATTR, TABLE, RoleMap
from strategies.roles import (ROLES, ParamInfo, UnmappedParameterError, frozen_prefix_layers,
                              lora_target_regex, num_layers, param_roles)
from tests.support.tiny import ARCHS, tiny_model

EXPECT = {
    "bert": {
        "bert.embeddings.LayerNorm.bias": ({"embeddings", "layernorm", "bias"}, None),
        "bert.encoder.layer.0.attention.self.query.weight": ({"attention"}, 0),
        "bert.encoder.layer.1.attention.output.LayerNorm.weight": ({"attention", "layernorm"}, 1),
        "bert.encoder.layer.1.intermediate.dense.bias": ({"ffn", "bias"}, 1),
        "bert.encoder.layer.0.output.dense.weight": ({"ffn"}, 0),
        "bert.encoder.layer.0.output.LayerNorm.bias": ({"ffn", "layernorm", "bias"}, 0),
        "bert.pooler.dense.weight": ({"pooler"}, None),
        "classifier.bias": ({"classifier", "bias"}, None),
    },
    "roberta": {
        "roberta.embeddings.position_embeddings.weight": ({"embeddings"}, None),
        "roberta.encoder.layer.1.attention.self.value.bias": ({"attention", "bias"}, 1),
        "classifier.dense.weight": ({"classifier"}, None),
        "classifier.out_proj.bias": ({"classifier", "bias"}, None),
    },
    "electra": {
        "electra.embeddings_project.weight": ({"embeddings"}, None),
        "electra.encoder.layer.0.intermediate.dense.weight": ({"ffn"}, 0),
        "classifier.out_proj.weight": ({"classifier"}, None),
    },
    "distilbert": {
        "distilbert.embeddings.word_embeddings.weight": ({"embeddings"}, None),
        "distilbert.transformer.layer.0.attention.out_lin.bias": ({"attention", "bias"}, 0),
        "distilbert.transformer.layer.1.sa_layer_norm.weight": ({"attention", "layernorm"}, 1),
        "distilbert.transformer.layer.1.ffn.lin2.weight": ({"ffn"}, 1),
        "distilbert.transformer.layer.0.output_layer_norm.bias": ({"ffn", "layernorm", "bias"}, 0),
        "pre_classifier.weight": ({"pooler"}, None),
        "classifier.weight": ({"classifier"}, None),
    },
    "xlm-roberta": {
        "roberta.encoder.layer.0.attention.self.query.weight": ({"attention"}, 0),
        "roberta.embeddings.token_type_embeddings.weight": ({"embeddings"}, None),
        "classifier.out_proj.weight": ({"classifier"}, None),
    },
    "camembert": {
        "roberta.embeddings.word_embeddings.weight": ({"embeddings"}, None),
        "roberta.encoder.layer.1.output.LayerNorm.bias": ({"ffn", "layernorm", "bias"}, 1),
        "classifier.dense.bias": ({"classifier", "bias"}, None),
    },
    "deberta-v2": {
        "deberta.embeddings.LayerNorm.weight": ({"embeddings", "layernorm"}, None),
        "deberta.encoder.layer.0.attention.self.query_proj.weight": ({"attention"}, 0),
        "deberta.encoder.layer.1.attention.output.LayerNorm.bias": ({"attention", "layernorm", "bias"}, 1),
        "deberta.encoder.layer.1.output.dense.weight": ({"ffn"}, 1),
        "deberta.encoder.rel_embeddings.weight": ({"attention"}, None),             # shared by every layer
        "deberta.encoder.LayerNorm.bias": ({"attention", "layernorm", "bias"}, None),
        "pooler.dense.weight": ({"pooler"}, None),
        "classifier.weight": ({"classifier"}, None),
    },
    "modernbert": {
        "model.embeddings.tok_embeddings.weight": ({"embeddings"}, None),
        "model.embeddings.norm.weight": ({"embeddings", "layernorm"}, None),
        "model.layers.0.attn.Wqkv.weight": ({"attention"}, 0),
        "model.layers.1.attn_norm.weight": ({"attention", "layernorm"}, 1),
        "model.layers.0.mlp.Wi.weight": ({"ffn"}, 0),
        "model.layers.1.mlp_norm.weight": ({"ffn", "layernorm"}, 1),
        "model.final_norm.weight": ({"pooler", "layernorm"}, None),
        "head.dense.weight": ({"pooler"}, None),
        "head.norm.weight": ({"pooler", "layernorm"}, None),
        "classifier.bias": ({"classifier", "bias"}, None),
    },
}
SHARED = {"deberta-v2": {"deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight",
                         "deberta.encoder.LayerNorm.bias"}}


def test_every_table_has_a_case():
    assert set(EXPECT) == set(TABLE) == set(ARCHS)


@pytest.mark.parametrize("arch", sorted(EXPECT))
def test_roles_per_architecture(arch: str):
    model = tiny_model(arch)
    infos = param_roles(model)
    assert list(infos) == [n for n, _ in model.named_parameters()]
    assert sum(i.numel for i in infos.values()) == sum(p.numel() for p in model.parameters())
    for info in infos.values():
        assert info.roles and info.roles <= ROLES and "adapter" not in info.roles
        assert len(info.roles & {"embeddings", "attention", "ffn", "pooler", "classifier"}) == 1, info
        assert ("bias" in info.roles) == info.name.endswith(".bias")
        assert info.shared == (info.name in SHARED.get(arch, set()))
        assert (info.layer is not None) == (bool(info.roles & {"attention", "ffn"}) and not info.shared)
    for name, (roles, layer) in EXPECT[arch].items():
        assert infos[name] == ParamInfo(name, frozenset(roles), layer, infos[name].numel)
    assert num_layers(model) == 2


def test_frozen_prefix_layers():
    model = tiny_model("bert", num_hidden_layers=4)
    names = {n for n, _ in model.named_parameters()}
    assert frozen_prefix_layers(model, frozenset(names)) == -1
    assert frozen_prefix_layers(model, frozenset({"classifier.weight"})) == 4
    assert frozen_prefix_layers(model, frozenset({"bert.encoder.layer.2.output.dense.bias"})) == 2
    assert frozen_prefix_layers(model, frozenset({"bert.embeddings.LayerNorm.weight", "classifier.bias"})) == -1


def test_lora_target_regex():
    rx = lora_target_regex("distilbert", ["query", "ffn_out"])
    assert re.fullmatch(rx, "distilbert.transformer.layer.3.attention.q_lin")
    assert re.fullmatch(rx, "distilbert.transformer.layer.0.ffn.lin2")
    assert not re.fullmatch(rx, "distilbert.transformer.layer.0.attention.k_lin")
    rx = lora_target_regex("roberta", ["ffn_out"])
    assert not re.fullmatch(rx, "roberta.encoder.layer.0.attention.output.dense")
    with pytest.raises(ValueError, match="allowed"):
        lora_target_regex("bert", ["qkv"])
    with pytest.raises(UnmappedParameterError, match="'t5'.*model.roles"):
        lora_target_regex("t5", ["query"])
    rx = lora_target_regex("deberta-v2", ["query", "value"])
    assert re.fullmatch(rx, "deberta.encoder.layer.1.attention.self.value_proj")
    rx = lora_target_regex("modernbert", ["qkv", "ffn_in"])
    assert re.fullmatch(rx, "model.layers.0.attn.Wqkv") and re.fullmatch(rx, "model.layers.1.mlp.Wi")
    with pytest.raises(ValueError, match="allowed: qkv"):
        lora_target_regex("modernbert", ["query"])


def test_deberta_shared_parameters_end_the_frozen_prefix():
    model = tiny_model("deberta-v2")
    assert frozen_prefix_layers(model, frozenset({"classifier.weight"})) == 2
    assert frozen_prefix_layers(model, frozenset({"classifier.weight", "deberta.encoder.rel_embeddings.weight"})) == 0


# -- model.roles: a role map for an architecture without a table ------------------------------------------------
MPNET = dict(embeddings=r"^mpnet\.embeddings\.", attention=r"\.attention\.|relative_attention_bias",
             ffn=r"\.(intermediate|output)\.", classifier=r"^classifier\.", layers="mpnet.encoder.layer",
             lora_targets={"query": "attention.attn.q", "value": "attention.attn.v"})


def _mpnet(**roles):
    model = tiny_model("mpnet")
    setattr(model.config, ROLES_ATTR, RoleMap(**roles).as_dict())   # as harness.train.model.build_model does
    return model


def test_role_map_for_an_architecture_without_a_table():
    with pytest.raises(UnmappedParameterError, match="'mpnet' has no role table.*model.roles"):
        param_roles(tiny_model("mpnet"))
    model = _mpnet(**MPNET)
    infos = param_roles(model)
    assert list(infos) == [n for n, _ in model.named_parameters()]
    assert infos["mpnet.encoder.layer.1.attention.attn.q.weight"].roles == {"attention"}
    assert infos["mpnet.encoder.layer.1.attention.attn.q.weight"].layer == 1
    assert infos["mpnet.encoder.layer.0.output.LayerNorm.bias"].roles == {"ffn", "layernorm", "bias"}
    assert infos["mpnet.encoder.relative_attention_bias.weight"].shared
    assert num_layers(model) == 2
    assert re.fullmatch(lora_target_regex(model.config, ["value"]), "mpnet.encoder.layer.0.attention.attn.v")


def test_role_map_names_the_unmapped_and_the_twice_mapped():
    no_ffn = {k: v for k, v in MPNET.items() if k != "ffn"}
    with pytest.raises(UnmappedParameterError, match=r"^model\.roles: no role .* mpnet\.encoder\.layer\.0\."
                                                     r"intermediate\.dense\.weight"):
        param_roles(_mpnet(**no_ffn))
    twice = dict(MPNET, ffn=r"\.(intermediate|output|attention)\.")
    with pytest.raises(UnmappedParameterError, match=r"^model\.roles: parameter mpnet\.encoder\.layer\.0\."
                                                     r"attention\.attn\.q\.weight is matched by more than one "
                                                     r"role \(attention, ffn\)"):
        param_roles(_mpnet(**twice))
    with pytest.raises(UnmappedParameterError, match="model.roles.layers"):
        num_layers(_mpnet(**{k: v for k, v in MPNET.items() if k != "layers"}))


def test_role_map_drives_layer_strategies_and_lora():
    import strategies as S

    model = _mpnet(**MPNET)
    top = S.trainable_names(model, "top_k", {"k": 1})
    assert {i.layer for n, i in param_roles(model).items() if n in top} == {1, None}
    assert "mpnet.encoder.relative_attention_bias.weight" not in top          # shared: frozen below full depth
    lora = S.prepare_model(_mpnet(**MPNET), "lora", {"targets": ["query", "value"]})
    names = S.trainable_names(lora, "lora", {"targets": ["query", "value"]})
    adapters = {n.split(".lora_")[0] for n in names if "lora_" in n}
    assert adapters == {f"mpnet.encoder.layer.{i}.attention.attn.{m}" for i in range(2) for m in "qv"}
    with pytest.raises(S.StrategyError, match=r"strategy\.params\.targets.*allowed for mpnet: query, value"):
        S.check_compatible("lora", {"targets": ["key"]}, _mpnet(**MPNET).config)
