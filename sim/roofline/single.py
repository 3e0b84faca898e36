"""One-op roofline questions: a GEMM or an attention, without tracing a model."""

from __future__ import annotations

from typing import Any

from sim.errors import LlmsimError
from sim.roofline.analyzer import op_row, resolve_ceilings
from sim.trace.formulas import attention_cost
from sim.trace.schema import Op

DTYPE_BITS = {"fp32": 32, "tf32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int4": 4, "fp4": 4}


def _bits(dtype: str) -> int:
    if dtype not in DTYPE_BITS:
        raise LlmsimError(f"--dtype: expected one of {', '.join(DTYPE_BITS)}, found {dtype!r}")
    return DTYPE_BITS[dtype]


def single_gemm(m: int, k: int, n: int, hw: Any, dtype: str = "bf16", measured: bool = True,
                overrides: list[str] | None = None) -> dict[str, Any]:
    """x[M,K] @ W[K,N]: reads x and W once, writes y once (W is the ``weight``)."""
    for flag, v in (("M", m), ("K", k), ("N", n)):
        if v < 1:
            raise LlmsimError(f"--gemm: {flag} expected a positive integer, found {v}")
    bits = _bits(dtype)
    op = Op(name="aten.mm.default", op_class="gemm", module="", layer=None, phase="single",
            flops=2.0 * m * k * n, bytes_weight=k * n * bits / 8, bytes_activation=(m * k + m * n) * bits / 8,
            compute_dtype=dtype, extra={"M": m, "K": k, "N": n})
    c = resolve_ceilings(hw, measured, overrides)
    row = op_row(op, c, bits)
    return _public(row, {"op": "gemm", "M": m, "K": k, "N": n, "dtype": dtype})


def single_attention(b: int, h: int, seq_len: int, d: int, phase: str, hw: Any, dtype: str = "bf16",
                     kv_heads: int | None = None, measured: bool = True,
                     overrides: list[str] | None = None) -> dict[str, Any]:
    """Attention of B x H heads, head dim D. prefill: causal over ``seq_len`` new tokens;
    decode: one query over ``seq_len`` cached keys plus its own (``seq_len`` + 1 keys)."""
    if phase not in ("prefill", "decode"):
        raise LlmsimError(f"--phase: expected prefill or decode, found {phase!r}")
    for flag, v in (("B", b), ("H", h), ("L", seq_len), ("D", d)):
        if v < 1:
            raise LlmsimError(f"--attention: {flag} expected a positive integer, found {v}")
    hkv = h if kv_heads is None else kv_heads
    if hkv < 1 or hkv > h or h % hkv:
        raise LlmsimError(f"--kv-heads: expected a divisor of H = {h} (1..{h}), found {kv_heads}")
    bits = _bits(dtype)
    lq, lk, past = (seq_len, seq_len, 0) if phase == "prefill" else (1, seq_len + 1, seq_len)
    cost = attention_cost(b, h, hkv, lq, lk, d, d, True, None, past, bits, bits)
    op = Op(name="aten.scaled_dot_product_attention", op_class="attention", module="", layer=None,
            phase=phase, flops=cost.flops, bytes_activation=cost.bytes_activation,
            bytes_kv_read=cost.bytes_kv_read, compute_dtype=dtype)
    c = resolve_ceilings(hw, measured, overrides)
    row = op_row(op, c)
    return _public(row, {"op": "attention", "B": b, "H": h, "kv_heads": hkv, "L": seq_len, "D": d,
                         "phase": phase, "dtype": dtype, "pairs": cost.pairs})


def _public(row: dict[str, Any], head: dict[str, Any]) -> dict[str, Any]:
    out = dict(head)
    out.update({
        "device": row["device"],
        "mode": row["mode"],
        "flops": row["flops"],
        "bytes": row["bytes"],
        "intensity": row["intensity"],
        "peak_flops": row["peak_flops"],
        "mem_bw": row["mem_bw"],
        "attainable_flops": row["attainable_flops"],
        "compute_time_s": row["compute_time_s"],
        "memory_time_s": row["memory_time_s"],
        "time_s": row["time_s"],
        "bound": row["bound"],
    })
    return out
