"""CPU fast paths that keep the model's semantics: dropout masks, attention with dropout, the allocator.

On CPU, PyTorch draws every dropout mask with ``bernoulli_``: one Mersenne-Twister call and one double per
element, on one thread (measured here: ~35M elements/s). A MiniLM step at batch 16 x 256 draws ~75M
attention-probability and ~20M hidden-state mask elements, and attention dropout also forces
``scaled_dot_product_attention`` off its fused CPU kernel onto the unfused "math" path (fp32 upcasts, a
safe-softmax pass, the (B, heads, L, L) probabilities materialised several times). Profiled on
``freeze_attention``, batch 16 x 256: half the step.

This module keeps the semantics (inverted dropout: every element kept independently with probability 1 - p
and scaled by 1 / (1 - p); seeded by torch's generator) and makes it cheap:

* :func:`draw_uniforms` takes 64 random bits per generator step (numpy's SFC64, seeded from torch's default
  generator) as four 16-bit uniforms, so p is realised as ``round(p * 65536) / 65536`` (0.1 -> 0.100006; the
  scale uses the same value, so the expectation is exact);
* :class:`FastDropout` replaces ``nn.Dropout`` modules (no parameters: names and checkpoints unchanged);
* :func:`attention` is registered with Hugging Face as ``"freezebench_sdpa"``: without dropout (eval, p = 0,
  no grad) it *is* ``sdpa`` (when training with bf16 operands and p = 0, ``sdpa`` on fp32 copies: see
  :data:`FP32_SDPA_TRAINING`); with dropout it runs scores -> softmax -> dropout -> values (GEMMs in bf16 under bf16
  autocast, softmax in fp32), in L2-sized chunks of (batch x heads), with a hand-written backward that keeps the softmax and the int16 uniforms.

Only CPU tensors take these paths; anything else goes to the stock implementation. The masks are drawn
from a different stream than ``bernoulli_``'s, so a run is reproducible but not bit-identical to one made
without these paths.

:func:`tune_malloc` keeps glibc from handing every large activation back to the kernel after each step
(by default blocks over 128 KiB are mmap-ed and unmapped, so each step page-faults ~100k fresh pages).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from harness.train.shims import attn_implementation

__all__ = ["ATTN_IMPLEMENTATION", "PINNED_ATTN", "register_attention", "effective_p", "keep_mask", "dropout", "FastDropout", "attention",
           "attention_reference", "dropout_attention", "drop_mask", "draw_uniforms", "install", "tune_malloc"]

ATTN_IMPLEMENTATION = "freezebench_sdpa"
# HF config attribute set where model.attn_implementation chose the implementation: install() then keeps it
PINNED_ATTN = "freezebench_attn_implementation"
_LEVELS = 1 << 16
_CHUNK_ELEMENTS = 1 << 18          # (L, L) fp32 elements per chunk: 1 MiB, the working set stays in L2


def effective_p(p: float) -> float:
    """The dropout probability that :func:`keep_mask` realises (p rounded to a multiple of 2**-16)."""
    return round(p * _LEVELS) / _LEVELS


def draw_uniforms(shape) -> torch.Tensor:
    """int16 uniforms over [-32768, 32767]: four per 64-bit word of numpy's SFC64 generator (~3x torch's
    serial Mersenne Twister here), seeded per call from torch's default generator, so ``torch.manual_seed`` and
    the checkpointed torch RNG state fix every mask."""
    n = math.prod(shape)
    seed = int(torch.randint(0, 2 ** 62, (1,), dtype=torch.int64))
    words = np.random.SFC64(seed).random_raw((n + 3) // 4)
    return torch.from_numpy(words.view(np.int16)[:n]).view(shape)


def _threshold(p: float) -> int:
    return round(p * _LEVELS) - _LEVELS // 2      # keep where uniform >= threshold


def keep_mask(shape, p: float) -> torch.Tensor:
    """Boolean mask, True with probability ``1 - effective_p(p)``, from 16-bit uniforms (4 per 64-bit draw)."""
    return draw_uniforms(shape) >= _threshold(p)


class _Dropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.empty(x.shape, dtype=x.dtype)          # 0/1 in x's dtype: a plain multiply, no casts
        torch.ge(draw_uniforms(x.shape), _threshold(p), out=keep)
        ctx.save_for_backward(keep)
        ctx.scale = 1.0 / (1.0 - effective_p(p))
        return (x * keep).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return (grad * keep).mul_(ctx.scale), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout`` with the fast mask on CPU (the stock op elsewhere, or where the mask would keep all)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or effective_p(p) == 0.0 or p >= 1.0:
        return nn.functional.dropout(x, p, training)
    return _Dropout.apply(x, p)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU mask comes from :func:`keep_mask` (same p, same semantics)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


# ----------------------------------------------------------------------------------------------- attention
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _set_one_thread() -> None:
    torch.set_num_threads(1)


def _run_chunks(n: int, step: int, work) -> None:
    """Call ``work(i, j)`` for the chunks [i, j) of range(n), ``step`` at a time, split into contiguous parts over
    as many Python threads as torch has intra-op threads, each running its ops single-threaded.

    Why not torch's own intra-op threads: every small op is an OpenMP parallel region that waits for all its
    threads, so a few hundred chunk-sized ops per layer stall whenever another process takes a core (measured
    on a busy 2-core machine: 1.3 s instead of 30 ms for one layer's scores). Here the threads only meet once.
    """
    threads = torch.get_num_threads()
    chunks = [(i, min(n, i + step)) for i in range(0, n, step)]
    if threads <= 1 or len(chunks) == 1:
        for i, j in chunks:
            work(i, j)
        return
    parts = [chunks[t::threads] for t in range(threads)]
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, "freezebench-attn", initializer=_set_one_thread)

    def run(part):
        with torch.no_grad():
            for i, j in part:
                work(i, j)

    try:
        for future in [pool.submit(run, part) for part in parts if part]:
            future.result()
    finally:
        torch.set_num_threads(threads)   # torch's setter is also process-wide state: keep the caller's


class _Attention(torch.autograd.Function):
    """softmax(q k^T * scale + bias) -> dropout -> @ v over (batch x heads) chunks of ~L2 size: GEMMs in the
    operands' precision (bf16 under bf16 autocast, else fp32), softmax and gradient arithmetic in fp32.

    ``bias`` is additive and broadcasts to (B, heads, Lq, Lk) (key padding: (B, 1, 1, Lk), -inf = masked).
    ``uniforms`` (int16, (B, heads, Lq, Lk)) decide the mask: kept where ``>= _threshold(p)``; None: no dropout.
    Saved for backward: q, k, v, the uniforms, the fp32 softmax and the output. Scales are folded into the
    small (L, D) operands; on the (L, L) matrices run only GEMMs, softmax, the 0/1 mask and a few multiplies.
    """

    @staticmethod
    def forward(ctx, q, k, v, bias, p, scale, uniforms):
        with torch.autocast("cpu", enabled=False):
            b, h, lq, d = q.shape
            lk, n = k.shape[2], b * h
            thr = _threshold(p)
            keep_scale = 1.0 / (1.0 - effective_p(p))
            # bf16 operands (what autocast hands over): the four GEMMs run in bf16 (~3x the fp32 GEMM here), the
            # softmax, its saved probabilities and the gradient arithmetic stay fp32
            gemm = torch.bfloat16 if q.dtype == torch.bfloat16 else torch.float32
            qf = (q.float() * scale).to(gemm).reshape(n, lq, d)
            kt = k.to(gemm).reshape(n, lk, d).transpose(1, 2)
            vf = (v.float() * keep_scale).to(gemm).reshape(n, lk, d)
            if bias is not None:
                bias = bias.expand(b, h, bias.shape[2], lk).reshape(n, bias.shape[2], lk)
            u = None if uniforms is None else uniforms.view(n, lq, lk)
            probs = torch.empty((n, lq, lk), dtype=torch.float32)
            out = torch.empty((n, lq, d), dtype=gemm)
            step = max(1, _CHUNK_ELEMENTS // (lq * lk))

            def work(i, j):
                s = torch.bmm(qf[i:j], kt[i:j])
                if bias is not None:
                    s.add_(bias[i:j])
                pr = torch.softmax(s, -1, dtype=torch.float32, out=probs[i:j])
                keep = None if u is None else torch.ge(u[i:j], thr, out=torch.empty(pr.shape, dtype=gemm))
                torch.bmm(pr.to(gemm) if keep is None else torch.mul(pr, keep, out=torch.empty(pr.shape, dtype=gemm)),
                          vf[i:j], out=out[i:j])

            _run_chunks(n, step, work)
        ctx.save_for_backward(q, k, v, uniforms, probs, out)
        ctx.scale, ctx.keep_scale, ctx.step, ctx.thr, ctx.gemm = scale, keep_scale, step, thr, gemm
        return out.view(b, h, lq, d).to(q.dtype)

    @staticmethod
    def backward(ctx, d_out):
        q, k, v, uniforms, probs, out = ctx.saved_tensors
        gemm = ctx.gemm
        with torch.autocast("cpu", enabled=False):
            b, h, lq, d = q.shape
            lk, n = k.shape[2], b * h
            go = d_out.reshape(n, lq, d)
            delta = (go.float() * out.float()).sum(-1, keepdim=True)     # rowsum(dP * P) = rowsum(dO * O)
            go = go.to(gemm)
            qs = (q.float() * ctx.scale).to(gemm).reshape(n, lq, d)
            ks = (k.float() * ctx.scale).to(gemm).reshape(n, lk, d)
            vt = (v.float() * ctx.keep_scale).to(gemm).reshape(n, lk, d).transpose(1, 2)
            gs = (go.float() * ctx.keep_scale).to(gemm)
            u = None if uniforms is None else uniforms.view(n, lq, lk)
            dq = torch.empty((n, lq, d), dtype=gemm)
            dk = torch.empty((n, lk, d), dtype=gemm)
            dv = torch.empty((n, lk, d), dtype=gemm)

            def work(i, j):
                pr = probs[i:j]
                kc = None if u is None else torch.ge(u[i:j], ctx.thr, out=torch.empty_like(pr))
                kept = pr if kc is None else pr * kc
                torch.bmm(kept.to(gemm).transpose(1, 2), gs[i:j], out=dv[i:j])
                dp = torch.bmm(go[i:j], vt[i:j]).float()
                if kc is not None:
                    dp.mul_(kc)
                dp = dp.sub_(delta[i:j]).mul_(pr).to(gemm)
                torch.bmm(dp, ks[i:j], out=dq[i:j])
                torch.bmm(dp.transpose(1, 2), qs[i:j], out=dk[i:j])

            _run_chunks(n, ctx.step, work)
        return (dq.view(b, h, lq, d).to(q.dtype), dk.view(b, h, lk, d).to(k.dtype), dv.view(b, h, lk, d).to(v.dtype),
                None, None, None, None)


def attention_reference(q, k, v, mask, p: float, scale: float, drop: torch.Tensor) -> torch.Tensor:
    """The same computation in plain autograd ops (for tests), fp32, with a given drop mask."""
    s = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scale
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else s + mask.float()
    pr = torch.softmax(s, -1).masked_fill(drop, 0.0) / (1.0 - effective_p(p))
    return torch.matmul(pr, v.float()).to(q.dtype)


_MASK_CACHE: list = [None, None, None, None]   # mask, its _version, bias, fully-masked: every layer gets one mask


def _mask_info(mask: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(additive fp32 bias, any query row fully masked?) for a bool (True = attend) or additive mask; a
    key-padding mask (rows all alike) shrinks to Lq = 1. Cached for the mask object the layers share."""
    if _MASK_CACHE[0] is mask and _MASK_CACHE[1] == mask._version:
        return _MASK_CACHE[2], _MASK_CACHE[3]
    small = mask
    if mask.dim() == 4 and mask.shape[2] > 1 and (mask.stride(2) == 0 or bool((mask == mask[:, :, :1, :]).all())):
        small = mask[:, :, :1, :]
    if small.dtype == torch.bool:
        bias = torch.zeros(small.shape, dtype=torch.float32).masked_fill_(~small, float("-inf"))
        empty = not bool(small.any(-1).all())
    else:
        bias, empty = small.float(), False
    _MASK_CACHE[:] = [mask, mask._version, bias, empty]
    return bias, empty


def _bias(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else _mask_info(mask)[0]


def _fully_masked_rows(mask: torch.Tensor | None) -> bool:
    """A query that may attend to nothing: sdpa's safe softmax gives it zeros, a plain softmax NaN."""
    return mask is not None and _mask_info(mask)[1]


def dropout_attention(q, k, v, mask, p: float, scale: float, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """(B, heads, L, D) attention with dropout p on the probabilities; ``mask`` bool (True = attend) or additive,
    broadcastable to (B, heads, Lq, Lk). ``uniforms`` (see :func:`drop_mask`) are drawn here unless given."""
    if uniforms is None and p > 0:
        uniforms = draw_uniforms((q.shape[0], q.shape[1], q.shape[2], k.shape[2]))
    return _Attention.apply(q, k, v, _bias(mask), p, scale, uniforms)


def drop_mask(uniforms: torch.Tensor, p: float) -> torch.Tensor:
    """The boolean drop mask (True = dropped) that ``uniforms`` give at dropout probability p."""
    return uniforms < _threshold(p)


def _sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward


def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
              is_causal: bool | None = None, **kwargs):
    """Hugging Face attention interface: ``sdpa`` unless training with dropout on CPU (then chunked, fast mask)."""
    special = (kwargs.get("position_bias") is not None or kwargs.get("cache") is not None
               or kwargs.get("softcap") is not None or kwargs.get("output_attentions", False)
               or getattr(module, "num_key_value_groups", 1) > 1 or bool(is_causal)
               or getattr(module, "is_causal", False))
    if (dropout == 0.0 or query.device.type != "cpu" or special or effective_p(dropout) == 0.0
            or not torch.is_grad_enabled() or _fully_masked_rows(attention_mask)):
        if (FP32_SDPA_TRAINING and query.device.type == "cpu" and query.dtype == torch.bfloat16 and not special
                and effective_p(dropout) == 0.0 and torch.is_grad_enabled()):
            return _sdpa_fp32(module, query, key, value, attention_mask, scaling, is_causal, **kwargs)
        return _sdpa()(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                       is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = dropout_attention(query, key, value, attention_mask, dropout, scale)
    return out.transpose(1, 2).contiguous(), None


# Training without dropout on CPU with bf16 operands: the fused CPU flash-attention kernel's bf16 backward is
# slower than its fp32 one (measured on an AVX512_BF16 EPYC, batch 16 x 12 heads x 256 x 32, forward + backward:
# bf16 98-123 ms, fp32 82-92 ms at one thread; 55-113 vs 48-68 ms at two), while its bf16 forward is faster, so
# only grad-enabled calls go up to fp32 (more exact than the bf16 kernel, never less). Evaluation keeps bf16.
FP32_SDPA_TRAINING = True


def _sdpa_fp32(module, query, key, value, attention_mask, scaling, is_causal, **kwargs):
    """``sdpa`` on fp32 copies of bf16 (B, heads, L, D) operands, autocast off; the output back in bf16."""
    mask = attention_mask
    if mask is not None and mask.is_floating_point():
        mask = mask.float()
    with torch.autocast("cpu", enabled=False):
        out, weights = _sdpa()(module, query.float(), key.float(), value.float(), mask, dropout=0.0,
                               scaling=scaling, is_causal=is_causal, **kwargs)
    return out.to(query.dtype), weights


def register_attention() -> None:
    """Register :func:`attention` with transformers as ``freezebench_sdpa`` (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)


def install(model: nn.Module) -> dict:
    """Swap ``nn.Dropout`` modules for :class:`FastDropout` and ``sdpa`` for ``freezebench_sdpa`` (in place).

    Returns what changed: ``{"dropouts": n, "attention": "sdpa -> freezebench_sdpa" | None}``. Models on
    another attention implementation (eager, flash), or whose config pinned one (``model.attn_implementation``,
    see :data:`PINNED_ATTN`), keep it; only their dropout modules change.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
                swapped += 1
    attn = None
    config = getattr(model, "config", None)
    pinned = getattr(config, PINNED_ATTN, None) if config is not None else None
    if (config is not None and not pinned and attn_implementation(config) == "sdpa"
            and hasattr(model, "set_attn_implementation")):
        register_attention()
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
        attn = f"sdpa -> {ATTN_IMPLEMENTATION}"
    return {"dropouts": swapped, "attention": attn}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """glibc ``mallopt``: serve blocks up to ``mmap_threshold`` (32 MiB, glibc's maximum) from the heap and
    keep up to ``trim_threshold`` of freed heap, so a training step reuses last step's pages. Process-wide;
    returns False where there is no glibc (then nothing changes)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))
