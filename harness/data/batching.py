"""Seeded, resumable batch order and dynamic-padding collation.

Length grouping (as in Hugging Face's ``LengthGroupedSampler``): a seeded permutation is cut into
mega-batches of ``batch_size * mega_batch_mult`` reviews, each sorted by length, cut into batches, and the
batch order is shuffled. Batches then hold reviews of similar length, so dynamic padding wastes little,
while the order stays random. Everything is a pure function of ``(seed, epoch)``, so a checkpoint only needs
``{"epoch", "index"}`` to resume at exactly the same next batch.
"""
from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import numpy as np
import torch

__all__ = ["batch_order", "BatchStream", "collate"]


def batch_order(lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int, epoch: int,
                group_by_length: bool = True, mega_batch_mult: int = 50) -> list[np.ndarray]:
    """Index batches of one epoch: every index once, the last partial batch kept, deterministic."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if batch_size < 1 or mega_batch_mult < 1:
        raise ValueError(f"batch_size and mega_batch_mult must be >= 1, got {batch_size}, {mega_batch_mult}")
    rng = np.random.default_rng((seed, epoch))
    perm = rng.permutation(len(lengths))
    if not group_by_length:
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    mega = batch_size * mega_batch_mult
    batches = []
    for start in range(0, len(perm), mega):
        chunk = perm[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class BatchStream(Iterator[np.ndarray]):
    """Endless iterator of index batches across epochs; ``state_dict`` names the next batch."""

    def __init__(self, lengths: Sequence[int] | np.ndarray, batch_size: int, seed: int,
                 group_by_length: bool = True, mega_batch_mult: int = 50):
        self.lengths = np.asarray(lengths)
        if len(self.lengths) == 0:
            raise ValueError("BatchStream needs at least one example")
        self.batch_size, self.seed = batch_size, seed
        self.group_by_length, self.mega_batch_mult = group_by_length, mega_batch_mult
        self.epoch = self.index = 0
        self._order: list[np.ndarray] | None = None

    def _batches(self) -> list[np.ndarray]:
        if self._order is None:
            self._order = batch_order(self.lengths, self.batch_size, self.seed, self.epoch,
                                      self.group_by_length, self.mega_batch_mult)
        return self._order

    def __next__(self) -> np.ndarray:
        if self.index >= len(self._batches()):
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        batch = self._batches()[self.index]
        self.index += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "index"}``: the next batch is ``batch_order(..., epoch)[index]``."""
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume so that the next batch is the one that followed when ``state`` was taken."""
        self.epoch, self.index, self._order = int(state["epoch"]), int(state["index"]), None


def _kept(ids: torch.Tensor, rand: torch.Tensor, p: float, keep: torch.Tensor) -> torch.Tensor:
    special = torch.isin(ids, keep)
    kept = special | (rand >= p)
    content = ~special
    if content.any() and not (kept & content).any():
        kept[int(rand.masked_fill(special, -1.0).argmax())] = True   # never drop every word
    return kept


def collate(seqs: list[np.ndarray], labels: Sequence[int] | np.ndarray, pad_id: int, *,
            word_dropout: float = 0.0, generator: torch.Generator | None = None,
            keep_ids: Collection[int] = frozenset(), type_ids: list[np.ndarray] | None = None,
            pad_to_multiple_of: int | None = None) -> dict:
    """Pad ``seqs`` to the longest in the batch (rounded up to ``pad_to_multiple_of``: tensor-core-friendly
    widths, and fewer distinct shapes for CUDA graphs / compile; the mask keeps the answer unchanged): ``input_ids``, ``attention_mask``, ``labels`` (int64 class ids,
    or float32 values for float labels), ``n_tokens``, and ``token_type_ids`` when ``type_ids`` are given
    (sentence pairs; padded with 0).

    With ``word_dropout`` p > 0 each token not in ``keep_ids`` (CLS, SEP, ...) is removed with probability
    p, drawn from ``generator``; at least one such token of every sequence survives.
    """
    tensors = [torch.as_tensor(np.asarray(s), dtype=torch.int64) for s in seqs]
    types = None if type_ids is None else [torch.as_tensor(np.asarray(t), dtype=torch.int64) for t in type_ids]
    if word_dropout > 0:
        keep = torch.tensor(sorted(keep_ids), dtype=torch.int64)
        rand = torch.rand(sum(len(t) for t in tensors), generator=generator).split([len(t) for t in tensors])
        masks = [_kept(t, r, word_dropout, keep) for t, r in zip(tensors, rand)]
        tensors = [t[m] for t, m in zip(tensors, masks)]
        types = None if types is None else [t[m] for t, m in zip(types, masks)]
    width = max((len(t) for t in tensors), default=0)
    if pad_to_multiple_of and width % pad_to_multiple_of:
        width += pad_to_multiple_of - width % pad_to_multiple_of
    input_ids = torch.full((len(tensors), width), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(tensors), width), dtype=torch.int64)
    for row, t in enumerate(tensors):
        input_ids[row, :len(t)] = t
        attention_mask[row, :len(t)] = 1
    labels = np.asarray(labels)
    out = {"input_ids": input_ids, "attention_mask": attention_mask,
           "labels": torch.as_tensor(labels, dtype=torch.float32 if labels.dtype.kind == "f" else torch.int64),
           "n_tokens": int(attention_mask.sum())}
    if types is not None:
        token_type_ids = torch.zeros((len(types), width), dtype=torch.int64)
        for row, t in enumerate(types):
            token_type_ids[row, :len(t)] = t
        out["token_type_ids"] = token_type_ids
    return out
