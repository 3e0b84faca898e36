"""Re-costing single ops with new dimensions (technique transforms, per-length attention ops).

GEMMs scale their FLOPs and bytes with the dimensions that change (element widths as traced);
attention ops are re-costed with the tracer's own formulas (:func:`sim.trace.formulas.attention_cost`).
"""

from __future__ import annotations

import math

import dataclasses

from sim.trace.formulas import attention_cost, attention_pairs
from sim.trace.schema import Op


def copy_op(op: Op, **changes) -> Op:
    """``dataclasses.replace`` that also copies ``extra`` (so the original op is untouched)."""
    if "extra" not in changes:
        changes["extra"] = dict(op.extra)
    return dataclasses.replace(op, **changes)

# module-path endings by role, over the zoo's families (Llama / Mistral / Mixtral, GPT-2 style
# (gpt3-*), OPT, Phi, BERT); a path is matched at a component boundary
_ATTN_OUT = ("o_proj", "out_proj", "attn.c_proj", "self_attn.dense", "attention.output.dense")
_QKV = ("q_proj", "k_proj", "v_proj", "c_attn", "query", "key", "value", "qkv_proj", "Wqkv")
_FFN_OUT = ("down_proj", "fc2", "mlp.c_proj", "w2", "output.dense")
_FFN_IN = ("gate_proj", "up_proj", "fc1", "c_fc", "w1", "w3", "intermediate.dense", "gate_up_proj")


def _ends(module: str, suffixes: tuple[str, ...]) -> bool:
    return any(module == s or module.endswith("." + s) for s in suffixes)


def gemm_role(op: Op) -> str | None:
    """qkv, attn_out, ffn_in, ffn_out, experts, router, lm_head or None for a GEMM op."""
    if op.op_class != "gemm":
        return None
    m = op.module
    if m.endswith("lm_head") or m == "lm_head":
        return "lm_head"
    if ".experts" in m or m.endswith("experts"):
        return "experts"
    if _ends(m, ("gate", "router")) and "mlp" in m:
        return "router"
    if _ends(m, _ATTN_OUT):
        return "attn_out"
    if _ends(m, _QKV):
        return "qkv"
    if _ends(m, _FFN_OUT):
        return "ffn_out"
    if _ends(m, _FFN_IN):
        return "ffn_in"
    return None


def scale_gemm(op: Op, m: float = 1.0, k: float = 1.0, n: float = 1.0) -> Op:
    """The GEMM with M, K, N multiplied by these factors (rounded up to whole rows/columns; at
    least 1). FLOPs follow 2 B M K N; weight bytes follow K x N (a bias, N); activation bytes
    follow the input (M x K) and output (M x N) at their traced shares."""
    x = op.extra
    m0, k0, n0 = int(x["M"]), int(x["K"]), int(x["N"])
    m1, k1, n1 = (max(1, math.ceil(v0 * f - 1e-9)) for v0, f in ((m0, m), (k0, k), (n0, n)))
    mm, kk, nn = m1 / m0, k1 / k0, n1 / n0
    act_in, act_out = m0 * k0, m0 * n0
    # split the traced activation bytes between input and output by element counts
    a_in = op.bytes_activation * act_in / (act_in + act_out) if (act_in + act_out) else 0.0
    a_out = op.bytes_activation - a_in
    flops = op.flops * mm * kk * nn
    extra = dict(x, M=m1, K=k1, N=n1)
    shapes = [list(s) for s in op.input_shapes]
    return copy_op(op, flops=flops, bytes_weight=op.bytes_weight * kk * nn,
                   bytes_activation=a_in * mm * kk + a_out * mm * nn, extra=extra,
                   input_shapes=shapes)


def attention_widths(op: Op) -> tuple[float, float]:
    """(activation bits, KV-cache bits) of a traced attention op: activations from its output
    dtype, the KV cache from its ``kv_bits`` (or its KV bytes)."""
    act_bits = 8 * {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}.get(
        op.output_dtypes[0] if op.output_dtypes else "fp16", 2)
    if op.kv_bits is not None:
        return act_bits, float(op.kv_bits)
    e = op.extra
    cached = int(e.get("cached_tokens_read", 0))
    hkv, d, dv, b = int(e["kv_heads"]), int(e["head_dim"]), int(e["v_head_dim"]), int(e["batch"])
    kv_bits = 8 * op.bytes_kv_read / (b * hkv * cached * (d + dv)) if cached else act_bits
    return act_bits, kv_bits


def resized_attention(op: Op, *, batch: int | None = None, heads: int | None = None, kv_heads: int | None = None,
                      q_len: int | None = None, kv_len: int | None = None, past: int | None = None,
                      causal: bool | None = None, extra_pairs: int = 0) -> Op:
    """The attention op re-costed with new dimensions by the tracer's formulas. ``past``: keys
    already in the cache (read at the KV width); the rest are new (activations). ``extra_pairs``
    adds (query, key) pairs a non-standard mask visits (tree attention), per sequence and head."""
    e = op.extra
    b = int(e["batch"]) if batch is None else batch
    h = int(e["heads"]) if heads is None else heads
    hkv = int(e["kv_heads"]) if kv_heads is None else kv_heads
    lq = int(e["q_len"]) if q_len is None else q_len
    lk = int(e["kv_len"]) if kv_len is None else kv_len
    d, dv = int(e["head_dim"]), int(e["v_head_dim"])
    c = bool(e.get("causal", True)) if causal is None else causal
    p = (int(e.get("cached_tokens_read", lk - lq)) if past is None else past)
    act_bits, kv_bits = attention_widths(op)
    cost = attention_cost(b, h, hkv, lq, lk, d, dv, c, e.get("sliding_window"), p, act_bits, kv_bits)
    pairs = cost.pairs + extra_pairs
    scale = pairs / cost.pairs if cost.pairs else 1.0
    extra = dict(e, batch=b, heads=h, kv_heads=hkv, q_len=lq, kv_len=lk, causal=c, pairs=int(pairs),
                 flops_qk=cost.flops_qk * scale, flops_sv=cost.flops_sv * scale,
                 softmax_flops=cost.softmax_flops * scale, cached_tokens_read=int(cost.cached_tokens_read))
    return copy_op(op, flops=cost.flops * scale, bytes_activation=cost.bytes_activation,
                   bytes_kv_read=cost.bytes_kv_read, extra=extra,
                   input_shapes=[[b, h, lq, d], [b, hkv, lk, d], [b, hkv, lk, dv]], output_shapes=[[b, lq, h, dv]])


def mask_extra_pairs(op: Op) -> int:
    """Pairs the op's mask adds to the causal/full one (a speculative tree), per sequence and head."""
    e = op.extra
    std = attention_pairs(int(e["q_len"]), int(e["kv_len"]), bool(e.get("causal", True)), e.get("sliding_window"))
    return int(e.get("pairs", std)) - std
