"""Issue 17's step-speed paths compute what the stock paths compute: torch's fused AdamW on CPU against the
per-tensor loop, and the dropout-attention kernel with bf16 GEMM operands against the stock fp32 math."""
from __future__ import annotations

import copy

import pytest
import torch

import strategies
from harness.config import TrainConfig
from harness.train import cpu_fast
from harness.train.optim import build_optimizer, fused_ok
from tests.support.tiny import tiny_model


@pytest.mark.parametrize("strategy", ["full", "freeze_attention"])
def test_fused_adamw_on_cpu_matches_the_stock_loop(strategy):
    torch.manual_seed(0)
    base = tiny_model("bert")
    strategies.apply_trainable(base, strategies.trainable_names(base, strategy, {}))
    train = TrainConfig(lr=1e-3, weight_decay=0.01)
    models = {fused: copy.deepcopy(base).eval() for fused in (True, False)}   # eval: no dropout draws
    opts = {fused: build_optimizer(m, train, fused=fused) for fused, m in models.items()}
    assert opts[True].defaults["fused"] and not opts[False].defaults["fused"]
    assert fused_ok([p for p in models[True].parameters() if p.requires_grad])
    assert build_optimizer(models[True], train).defaults["fused"]          # the default on CPU is fused
    gen = torch.Generator().manual_seed(1)
    for _ in range(8):
        ids = torch.randint(5, 100, (4, 12), generator=gen)
        labels = torch.randint(0, 2, (4,), generator=gen)
        for fused, m in models.items():
            loss = torch.nn.functional.cross_entropy(m(input_ids=ids).logits, labels)
            loss.backward()
            opts[fused].step()
            opts[fused].zero_grad(set_to_none=True)
    moved = 0
    for (name, a), b, orig in zip(models[True].named_parameters(), models[False].parameters(), base.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
        moved += a.requires_grad and not torch.equal(a, orig)
    assert moved > 0


def test_fused_is_refused_where_torch_has_no_kernel():
    assert not fused_ok([torch.zeros(2, dtype=torch.int64)])
    assert not fused_ok([torch.zeros(2, device="meta")])


def _qkv(dtype, b=2, h=3, length=40, d=16):
    torch.manual_seed(0)
    q, k, v = [torch.randn(b, h, length, d).to(dtype).requires_grad_() for _ in range(3)]
    keep = torch.ones(b, length, dtype=torch.bool)
    keep[1, 25:] = False
    return q, k, v, keep[:, None, None, :].expand(b, 1, length, length)


def test_bf16_attention_kernel_within_bf16_rounding_of_the_fp32_math():
    """bf16 operands (as bf16 autocast hands them over) -> bf16 GEMMs; the reference runs the same inputs,
    same mask, in fp32 plain autograd. Output and gradients agree within bf16 rounding of their scale."""
    q, k, v, mask = _qkv(torch.bfloat16)
    d = q.shape[-1]
    uniforms = cpu_fast.draw_uniforms(q.shape[:3] + (k.shape[2],))
    out = cpu_fast.dropout_attention(q, k, v, mask, 0.1, d ** -0.5, uniforms)
    assert out.dtype == torch.bfloat16
    leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
    ref = cpu_fast.attention_reference(*leaves, mask, 0.1, d ** -0.5, cpu_fast.drop_mask(uniforms, 0.1))
    g = torch.randn(out.shape)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    mine = torch.autograd.grad(out, (q, k, v), g.bfloat16())
    for a, r in zip(mine, torch.autograd.grad(ref, leaves, g)):
        assert a.dtype == torch.bfloat16
        assert float((a.float() - r).abs().max()) <= 2e-2 * float(r.abs().max())


def test_fp32_attention_kernel_stays_fp32_exact():
    q, k, v, mask = _qkv(torch.float32)
    d = q.shape[-1]
    uniforms = cpu_fast.draw_uniforms(q.shape[:3] + (k.shape[2],))
    out = cpu_fast.dropout_attention(q, k, v, mask, 0.1, d ** -0.5, uniforms)
    ref = cpu_fast.attention_reference(q, k, v, mask, 0.1, d ** -0.5, cpu_fast.drop_mask(uniforms, 0.1))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
