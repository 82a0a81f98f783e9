"""Frozen-prefix caching (``train.cache_frozen_prefix: true``, opt-in).

When a strategy freezes the embeddings and the bottom n encoder layers, their output for a review never
changes during training. This module runs that frozen prefix once per example, in eval mode (so *without
dropout*: the only semantic change, see docs/performance.md), keeps the result in RAM, and trains only the
rest of the model on it. Entries are made lazily by example index, for the training and the evaluation
split alike, so the first epoch pays for the prefix once and every later epoch and evaluation is free.

What is cached depends on how much is frozen (:func:`plan`):

* ``hidden`` (n < depth, e.g. ``top_k``): the hidden states after layer n-1, one (length, hidden) tensor per
  review, unpadded; the top layers, pooler and classifier then run on them with the attention mask.
* ``cls`` (all layers frozen but the head before the classifier trains, e.g. ``bottom_k`` with k = depth,
  RoBERTa/ELECTRA ``head_only``): the last layer's first-token vector, all that the head reads.
* ``pooled`` (all layers and the pooler frozen, e.g. BERT/DistilBERT/DeBERTa/ModernBERT ``head_only``): the
  classifier's input.
* ``hidden`` with n = depth where the head reads every token (ModernBERT with ``classifier_pooling: mean``):
  the last layer's output, and the head runs on an empty layer stack.

Where the pieces are comes from the architecture table (:mod:`strategies.archs`): the embeddings modules to
pass through, the layer list, the modules after the stack (BERT's pooler, ModernBERT's ``final_norm``: the
fill stops before them, the cached run applies them), the encoder modules only the first layer uses
(DeBERTa's ``conv``: dropped from the cached top). DeBERTa's relative-position embeddings stay in the encoder:
both the fill and the cached top layers read them from there (they are frozen whenever a cache is allowed,
see :func:`plan`); ModernBERT's rotary embeddings and masks are rebuilt by the model from the cached length.
A ``model.roles`` architecture has no such layout and is refused.

Entries are stored in the training precision (bf16 under bf16 autocast, fp32 otherwise) and fed back in
fp32. The model is never rebuilt: for each call the frozen modules are swapped out of the forward path
(embeddings -> pass-through, encoder layers -> the trainable top ones) and swapped back in afterwards, so
parameter names, checkpoints and the optimizer are those of the uncached model.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from harness.config import ConfigError
from strategies import SUPPORTED_TYPES, UnmappedParameterError, arch_for, frozen_prefix_layers, num_layers, param_roles

__all__ = ["KEY", "SHARED_KEY", "CachePlan", "check_config", "plan", "PrefixCache", "for_trial", "SharedPrefix",
           "MappedSplit", "prefix_key", "shared_root", "share_for_trial", "shares_train",
           "COMPUTED_LOG"]

KEY = "train.cache_frozen_prefix"


@dataclass(frozen=True)
class CachePlan:
    layers: int        # frozen bottom encoder layers
    depth: int         # encoder layers in all
    level: str         # "hidden" | "cls" | "pooled"


def check_config(train: Any, resources: Any = None) -> None:
    """Refuse, from the config alone, the settings under which a cache would be wrong or unsupported."""
    if not getattr(train, "cache_frozen_prefix", False):
        return
    if train.backend == "deepspeed":
        raise ConfigError(KEY, "is not supported with train.backend: deepspeed (use backend: torch)")
    if train.word_dropout > 0:
        raise ConfigError(KEY, f"cannot be used with train.word_dropout {train.word_dropout:g}: the augmentation "
                               "changes a review's tokens every epoch, so its frozen-prefix output changes too")
    if resources is not None and getattr(resources, "workers_per_trial", 1) > 1:
        raise ConfigError(KEY, "is not supported with resources.workers_per_trial > 1")


def plan(model: nn.Module, trainable: frozenset[str]) -> CachePlan:
    """What to cache for this model and trainable set; ConfigError if nothing frozen is worth caching."""
    arch = arch_for(model.config)
    if arch is None or not arch.embeddings:
        raise ConfigError(KEY, f"needs a built-in architecture table ({', '.join(SUPPORTED_TYPES)}) to find the "
                               f"frozen prefix; model_type {model.config.model_type!r} has "
                               f"{'only a model.roles map' if arch else 'none'}")
    try:
        infos = param_roles(model)
        n = frozen_prefix_layers(model, trainable)
    except UnmappedParameterError as exc:
        raise ConfigError(KEY, f"cannot find the frozen prefix: {exc}") from None
    if n < 0:
        raise ConfigError(KEY, "the strategy trains embedding parameters, so there is no frozen prefix to cache")
    shared = [name for name in infos if name in trainable and infos[name].shared]
    if shared:
        raise ConfigError(KEY, f"the strategy trains {shared[0]}, which every encoder layer reads, so no encoder "
                               "layer is wholly frozen and there is no frozen prefix to cache")
    if n == 0:
        raise ConfigError(KEY, "the strategy trains parameters of encoder layer 0, so no encoder layer is wholly "
                               "frozen and there is no frozen prefix worth caching")
    depth = num_layers(model)
    if n < depth:
        return CachePlan(n, depth, "hidden")
    pooler = [name for name, info in infos.items() if "pooler" in info.roles]
    if arch.head is not None and pooler and not any(name in trainable for name in pooler):
        return CachePlan(n, depth, "pooled")
    if arch.first_token(model.config):
        return CachePlan(n, depth, "cls")
    return CachePlan(n, depth, "hidden")   # the head reads every token: keep them all, run no layer


class _PassThrough(nn.Module):
    """Stands in for the embeddings: hands the cached hidden states (``inputs_embeds``, or the one tensor
    among the positional arguments: DistilBERT, ELECTRA's projection) straight through."""

    def forward(self, *args, **kwargs):
        if kwargs.get("inputs_embeds") is not None:
            return kwargs["inputs_embeds"]
        return next(a for a in args if isinstance(a, torch.Tensor))


class _NoLayer(nn.Module):
    """The one layer of an otherwise empty stack, for encoders that need at least one (DeBERTa)."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states, None


def _slot(model: nn.Module, path: str) -> tuple[nn.Module, str] | None:
    """(parent module, attribute) of the module at dotted ``path``; None where the model has none there."""
    parent_path, _, attr = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_path) if parent_path else model
    except AttributeError:
        return None
    return (parent, attr) if getattr(parent, attr, None) is not None else None


def _slots(model: nn.Module, paths: tuple[str, ...]) -> list[tuple[nn.Module, str]]:
    return [slot for path in paths if (slot := _slot(model, path)) is not None]


@contextlib.contextmanager
def _swapped(swaps: list[tuple[tuple[nn.Module, str], Any]]) -> Iterator[None]:
    """Put each value in its (module, attribute) slot for the duration; the originals go back afterwards."""
    old = [(slot, getattr(*slot)) for slot, _ in swaps]
    try:
        for (module, name), value in swaps:
            setattr(module, name, value)
        yield
    finally:
        for (module, name), value in old:
            setattr(module, name, value)


class PrefixCache:
    """Lazily filled cache of the frozen prefix's output per (split, example index); computes logits."""

    def __init__(self, model: nn.Module, trainable: frozenset[str], dtype: torch.dtype = torch.float32):
        self.plan = plan(model, trainable)
        self.trainable = trainable
        self.dtype = dtype
        arch = arch_for(model.config)
        self.base = getattr(model, model.base_model_prefix)
        self.layer_slot = _slot(model, arch.roles.layers)
        layers = list(getattr(*self.layer_slot))
        self.bottom = nn.ModuleList(layers[: self.plan.layers])
        self.top = nn.ModuleList(layers[self.plan.layers:] or ([_NoLayer()] if arch.tuple_layers else []))
        self.embeddings, self.after_stack = _slots(model, arch.embeddings), _slots(model, arch.after_stack)
        self.bottom_only = _slots(model, arch.bottom_only)
        self.head = arch.head
        self._stores: dict[str, dict[int, torch.Tensor]] = {}    # split name -> example index -> entry
        # per mode of the model at the time ("train": fills paid inside training steps, "eval": in evaluations)
        self.stats = {mode: {"computed": 0, "tokens": 0, "sq_tokens": 0, "hits": 0} for mode in ("train", "eval")}
        self.bytes = 0

    # ------------------------------------------------------------------------------------------ public
    def logits(self, model: nn.Module, batch: dict, examples: tuple[str, np.ndarray]) -> torch.Tensor:
        """Logits for ``batch``, whose rows are ``examples`` = (split name, example indices); fills the cache
        where it misses."""
        split, example_ids = examples
        store = self._stores.setdefault(split, {})
        ids = [int(i) for i in np.asarray(example_ids)]
        missing = [row for row, ex in enumerate(ids) if ex not in store]
        stats = self.stats["train" if model.training else "eval"]
        if missing:
            inputs = {k: v[missing] for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            lengths = self._fill(model, store, [ids[r] for r in missing], inputs)
            stats["computed"] += len(missing)
            stats["tokens"] += sum(lengths)
            stats["sq_tokens"] += sum(n * n for n in lengths)
        stats["hits"] += len(ids) - len(missing)
        device = batch["input_ids"].device
        entries = [store[ex] for ex in ids]
        if self.plan.level == "pooled":
            h = torch.stack(entries).to(device=device, dtype=torch.float32)
            dropout, classifier = (getattr(model, name) for name in self.head)
            return classifier(dropout(h))
        if self.plan.level == "cls":
            h = torch.stack(entries).to(device=device, dtype=torch.float32)[:, None, :]
            mask = torch.ones(h.shape[:2], dtype=torch.int64, device=device)
            return self._suffix(model, h, mask, self.top)     # all layers are frozen: top is the empty stack
        lengths = [len(e) for e in entries]
        h = nn.utils.rnn.pad_sequence(entries, batch_first=True).to(device=device, dtype=torch.float32)
        mask = (torch.arange(h.shape[1])[None, :] < torch.tensor(lengths)[:, None]).to(device=device,
                                                                                       dtype=torch.int64)
        return self._suffix(model, h, mask, self.top)

    def entries(self, split: str) -> int:
        return len(self._stores.get(split, {}))

    def share(self, store: "SharedPrefix", model: nn.Module, splits: dict, batches, batch_size: int,
              autocast) -> list[str]:
        """Serve ``splits`` ({name: TokenizedSplit}) from the sweep's shared store, computing here the ones
        nobody has yet (``batches(split, idx)``: the model inputs of those examples on the model's device;
        ``autocast()``: the trial's precision context). Returns the names this call computed."""
        computed, served = [], set()
        # first pass: skip a split another trial is computing and take the next one (two trials starting together
        # fill val and test side by side instead of one waiting idle); second pass: wait for what is left
        for wait in (False, True):
            for name, split in splits.items():
                if name in served:
                    continue
                mapped, did = store.split(name, self.dtype, lambda folder, split=split: self._compute_split(
                    model, split, folder, batches, batch_size, autocast), wait=wait)
                if mapped is not None:
                    self._stores[name] = mapped
                    served.add(name)
                if did:
                    computed.append(name)
        return computed

    def _compute_split(self, model, split, folder: Path, batches, batch_size: int, autocast) -> int:
        """The whole split's entries, length-sorted batches, written straight into a memory-mapped .npy."""
        n, per_token = len(split), self.plan.level == "hidden"
        lengths = split.lengths
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        order = np.argsort(lengths, kind="stable")[::-1]        # longest first: the width is known at once
        rows = None
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            inputs = batches(split, idx)
            chunk: dict[int, torch.Tensor] = {}
            with autocast():
                self._fill(model, chunk, [int(i) for i in idx], inputs)
            for ex, entry in chunk.items():
                if rows is None:
                    shape = (int(offsets[-1]) if per_token else n, entry.shape[-1])
                    rows = np.lib.format.open_memmap(folder / "rows.npy", mode="w+", shape=shape,
                                                     dtype=np.int16 if self.dtype == torch.bfloat16 else np.float32)
                value = (entry.view(torch.int16) if self.dtype == torch.bfloat16 else entry).numpy()
                if per_token:
                    rows[offsets[ex]:offsets[ex + 1]] = value
                else:
                    rows[ex] = value
        if rows is None:
            np.save(folder / "rows.npy", np.zeros((0, 0), dtype=np.float32))
        else:
            rows.flush()
            del rows
        if per_token:
            np.save(folder / "offsets.npy", offsets)
        return n

    # ----------------------------------------------------------------------------------------- private
    def _suffix(self, model: nn.Module, h: torch.Tensor, mask: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        swaps = [(slot, _PassThrough()) for slot in self.embeddings] + [(slot, None) for slot in self.bottom_only]
        with _swapped(swaps + [(self.layer_slot, layers)]):
            return model(inputs_embeds=h, attention_mask=mask).logits

    @torch.no_grad()
    def _fill(self, model: nn.Module, store: dict, ids: list[int], inputs: dict[str, torch.Tensor]) -> list[int]:
        """Run the prefix on ``inputs`` (input_ids, attention_mask, and token_type_ids for pairs)."""
        lengths = inputs["attention_mask"].sum(1).tolist()
        width = max(lengths)
        inputs = {k: v[:, :width] for k, v in inputs.items()}
        was_training = model.training
        model.eval()                                     # the prefix runs without dropout
        try:
            rows = self._prefix(model, inputs)
        finally:
            model.train(was_training)
        for ex, row, length in zip(ids, rows, lengths):
            entry = (row[:length] if self.plan.level == "hidden" else row).to("cpu", self.dtype).clone()
            store[ex] = entry
            self.bytes += entry.numel() * entry.element_size()
        return lengths

    def _prefix(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.plan.level == "pooled":
            captured: list[torch.Tensor] = []
            classifier = getattr(model, self.head[1])
            hook = classifier.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
            try:
                model(**inputs)
            finally:
                hook.remove()
            return captured[0]
        # the stack's output only: what runs after it (pooler, final norm) runs on the cached entries
        with _swapped([(slot, nn.Identity()) for slot in self.after_stack] + [(self.layer_slot, self.bottom)]):
            hidden = self.base(**inputs).last_hidden_state
        return hidden if self.plan.level == "hidden" else hidden[:, 0]


def for_trial(cfg: Any, model: nn.Module, trainable: frozenset[str]) -> PrefixCache | None:
    """The trial's cache (None unless ``train.cache_frozen_prefix``); ConfigError where caching is refused."""
    if not cfg.train.cache_frozen_prefix:
        return None
    check_config(cfg.train, cfg.resources)
    return PrefixCache(model, trainable, torch.bfloat16 if cfg.train.precision == "bf16" else torch.float32)


# ------------------------------------------------------------------------------ shared across trials
SHARED_KEY = "train.shared_prefix"
SHARED_DIR = "prefix_cache"          # under the sweep's results folder
COMPUTED_LOG = "computed.log"        # one line per split computed (who, when): what the tests count


def prefix_key(model: nn.Module, trainable: frozenset[str], level: CachePlan, data_key: str, dtype: torch.dtype) -> str:
    """What the frozen-prefix features depend on: the frozen parameters themselves (hashed, so a random init,
    a seed-dependent pooler or another checkpoint gives another key), the cache plan, the tokenized data (its
    key covers data, tokenizer and max length) and the stored precision. Not lr, seed, schedule or the head."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps({"plan": [level.layers, level.depth, level.level], "data": data_key,
                              "dtype": str(dtype), "attn": str(getattr(model.config, "_attn_implementation", ""))},
                             sort_keys=True).encode())
    for name, p in model.named_parameters():
        if name in trainable:
            continue
        digest.update(name.encode())
        digest.update(str((tuple(p.shape), str(p.dtype))).encode())
        digest.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class MappedSplit:
    """One split's prefix features, memory-mapped from disk (read-only pages shared by every trial process):
    ``store[example]`` is the entry :class:`PrefixCache` would have computed for that example."""

    def __init__(self, folder: Path, dtype: torch.dtype):
        self.rows = np.load(folder / "rows.npy", mmap_mode="c")         # copy-on-write: torch wants writable
        self.offsets = np.load(folder / "offsets.npy") if (folder / "offsets.npy").exists() else None
        self.dtype = dtype
        self.n = len(self.offsets) - 1 if self.offsets is not None else len(self.rows)

    def __contains__(self, example: int) -> bool:
        return 0 <= example < self.n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, example: int) -> torch.Tensor:
        rows = self.rows[example] if self.offsets is None else self.rows[self.offsets[example]:self.offsets[example + 1]]
        t = torch.from_numpy(rows)
        return t.view(torch.bfloat16) if self.dtype == torch.bfloat16 else t


def _publish(tmp: Path, folder: Path) -> None:
    for f in tmp.iterdir():
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, folder)              # atomic: a reader sees the whole folder or none


class SharedPrefix:
    """The sweep's on-disk store of frozen-prefix features: ``<sweep>/prefix_cache/<key>/<split>/``.

    Safe under concurrent trials: whoever takes a split's file lock first computes that split (whole, in
    length-sorted batches) and moves it into place atomically; the others compute another split meanwhile, or
    wait on the lock and then map what it wrote. A finished split survives the sweep's ``--resume``; a half-written one is a hidden temporary folder
    that nobody reads."""

    def __init__(self, root: str | Path, key: str):
        self.root, self.key = Path(root), key
        self.folder = self.root / key

    def split(self, name: str, dtype: torch.dtype, compute, wait: bool = True) -> tuple[MappedSplit | None, bool]:
        """(the mapped split, whether this call computed it); ``compute(folder)`` writes ``rows.npy`` (and
        ``offsets.npy`` for per-token entries) into a fresh folder and returns the number of entries. With
        ``wait=False``, (None, False) when another process holds the split's lock (it is computing it)."""
        import fcntl

        target = self.folder / name
        if (target / "rows.npy").exists():
            return MappedSplit(target, dtype), False
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f".{name}.lock", "a+") as lock:
            try:   # released when the file closes, or the process dies
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return None, False
            try:
                if (target / "rows.npy").exists():        # another trial computed it while this one waited
                    return MappedSplit(target, dtype), False
                tmp = self.folder / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
                tmp.mkdir()
                try:
                    entries = compute(tmp)
                    _publish(tmp, target)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                with open(self.root / COMPUTED_LOG, "a") as log:
                    log.write(json.dumps({"key": self.key, "split": name, "pid": os.getpid(),
                                          "entries": entries}) + "\n")
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        return MappedSplit(target, dtype), True


def shared_root(cfg: Any) -> Path:
    """``<output.dir>/<sweep>/prefix_cache``."""
    return Path(cfg.output.dir) / cfg.sweep / SHARED_DIR


def shares_train(n_train: int, visits: int) -> bool:
    """Whether to share the training split (compute all of it once) rather than fill it lazily per trial: when
    the trial itself visits at least half as many reviews as there are (``visits`` = steps × batch × accum),
    computing the whole split costs it at most 2× its own fills and every other trial gets them free. A short
    run over a big training set (the quickstart: 1,920 visits of 15,000 reviews) keeps the lazy per-trial fill
    for training; its evaluation splits are shared either way (every trial evaluates the same reviews)."""
    return n_train <= 2 * visits


def share_for_trial(cfg: Any, cache: PrefixCache, model: nn.Module, data: Any, batches, autocast,
                    batch_size: int) -> dict:
    """With ``train.shared_prefix`` (default), serve the trial's cache from the sweep's store: the evaluation
    splits, and the training split where :func:`shares_train`, computed once per sweep and memory-mapped by
    every trial with the same prefix (computed ``batch_size`` examples at a time). Returns what happened (the
    key, the splits this trial computed)."""
    if not getattr(cfg.train, "shared_prefix", False):
        return {"shared": False}
    key = prefix_key(model, cache.trainable, cache.plan, data.key, cache.dtype)
    visits = cfg.train.max_steps * cfg.train.batch_size * cfg.train.grad_accum
    names = [n for n in ("train", "val", "test") if len(data.split(n))
             and (n != "train" or shares_train(len(data.train), visits))]
    computed = cache.share(SharedPrefix(shared_root(cfg), key), model, {n: data.split(n) for n in names}, batches,
                           batch_size, autocast)
    return {"shared": True, "key": key, "splits": names, "computed": computed}
