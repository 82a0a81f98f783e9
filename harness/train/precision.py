"""``train.precision: auto``: bf16 where the hardware computes it natively, fp32 where it would only emulate it.

bf16 autocast is the fastest precision on a CPU with AMX or AVX512_BF16 (about 2.3× fp32 on an AMX Xeon), but on a
CPU without either (an AVX2-only AMD EPYC, most laptops before 2023) oneDNN falls back to a reference kernel: a
bf16 matmul measured 0.94 GFLOP/s against 128 GFLOP/s in fp32 on one such machine, and a MiniLM training step took
18 s instead of 1.3 s. ``auto`` (the default) picks bf16 only where it pays; an explicit ``bf16`` is honoured,
with a warning on such a CPU (:func:`slow_bf16_reason`).

Which CPUs count as native is read from the kernel's CPU flags (``/proc/cpuinfo``: ``amx_bf16``, ``avx512_bf16``
on x86; ``bf16`` on Arm); elsewhere (macOS) from oneDNN's own bf16 check. No library exposes "does this CPU have a
fast bf16 matmul" publicly (``torch.backends.cpu.get_cpu_capability()`` names the vector ISA only, and AVX-512
without BF16 emulates), hence this small module.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

__all__ = ["resolve", "cpu_native_bf16", "slow_bf16_reason"]

_X86_BF16 = ("amx_bf16", "avx512_bf16")


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):          # x86 | Arm
            return set(line.split(":", 1)[1].split())
    return None


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (AMX, AVX512_BF16, Arm BF16)."""
    flags = _cpu_flags()
    if flags is not None:
        return any(f in flags for f in _X86_BF16) or "bf16" in flags
    try:   # no /proc (macOS): oneDNN's own check (private API, hence guarded)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve(precision: str, device: torch.device | str) -> str:
    """The precision a trial runs at: ``auto`` -> ``bf16`` on a bf16-capable GPU or CPU, else ``fp32``."""
    if precision != "auto":
        return precision
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if kind == "cpu" and cpu_native_bf16() else "fp32"


def slow_bf16_reason(precision: str, device: torch.device | str) -> str | None:
    """Why an explicit ``bf16`` will be slow here (a CPU without bf16 instructions), else None."""
    if precision != "bf16" or torch.device(device).type != "cpu" or cpu_native_bf16():
        return None
    return ("this CPU has no bf16 instructions (no AMX, AVX512_BF16 or Arm BF16): bf16 matmuls are emulated and "
            "run 10-100x slower than fp32 here; use precision: auto (fp32 on this machine) or fp32")
