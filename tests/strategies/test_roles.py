"""Role tables: every parameter of the four architectures maps to the documented roles and layer."""
from __future__ import annotations

import re

import pytest

from strategies.roles import (ROLES, ParamInfo, UnmappedParameterError, frozen_prefix_layers,
                              lora_target_regex, num_layers, param_roles)
from tests.support.tiny import tiny_model

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
}


@pytest.mark.parametrize("arch", sorted(EXPECT))
def test_roles_per_architecture(arch: str):
    model = tiny_model(arch)
    infos = param_roles(model)
    assert list(infos) == [n for n, _ in model.named_parameters()]
    assert sum(i.numel for i in infos.values()) == sum(p.numel() for p in model.parameters())
    for info in infos.values():
        assert info.roles and info.roles <= ROLES and "adapter" not in info.roles
        assert ("bias" in info.roles) == info.name.endswith(".bias")
        assert (info.layer is not None) == bool(info.roles & {"attention", "ffn"})
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
    with pytest.raises(UnmappedParameterError, match="'t5'"):
        lora_target_regex("t5", ["query"])
