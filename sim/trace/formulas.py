"""Closed-form costs shared by the tracer and the single-op roofline (no torch import).

Attention convention: a kernel computes the (query, key) pairs a causal mask leaves visible
(L(L+1)/2 for a causal prefill of L tokens; L+1 for one decode token over L cached keys),
2*D FLOPs per pair for QK^T and 2*Dv for SV. It reads Q once, each distinct K/V token once
per KV head (GQA groups share it), and writes O once. K/V tokens already in the cache are
``kv_read``; K/V made in the same pass are ``activation``.
"""

from __future__ import annotations

from dataclasses import dataclass


def attention_pairs(lq: int, lk: int, causal: bool, window: int | None = None) -> int:
    """Visible (query, key) pairs: query i of ``lq`` (after ``lk - lq`` cached keys) sees keys
    0 .. lk-lq+i, at most ``window`` of them."""
    if not causal:
        return lq * lk
    past = lk - lq
    if not window:
        return lq * past + lq * (lq + 1) // 2
    # visible(i) = min(past + i + 1, window): a ramp then a plateau, summed in closed form
    ramp_end = max(0, min(lq, window - past))  # queries with past + i + 1 <= window
    ramp = ramp_end * past + ramp_end * (ramp_end + 1) // 2
    return ramp + (lq - ramp_end) * window


@dataclass(frozen=True)
class AttentionCost:
    pairs: int
    flops_qk: float
    flops_sv: float
    softmax_flops: float
    bytes_activation: float
    bytes_kv_read: float
    cached_tokens_read: int

    @property
    def flops(self) -> float:
        return self.flops_qk + self.flops_sv


def attention_cost(b: int, h: int, hkv: int, lq: int, lk: int, d: int, dv: int, causal: bool,
                   window: int | None, past: int, act_bits: float, kv_bits: float,
                   q_bits: float | None = None) -> AttentionCost:
    q_bits = act_bits if q_bits is None else q_bits
    pairs = attention_pairs(lq, lk, causal, window)
    first_visible = max(0, lk - lq + 1 - window) if (window and causal) else 0
    keys_read = lk - first_visible
    cached = max(0, min(past, lk) - first_visible)
    new = keys_read - cached
    per_token = b * hkv * (d + dv)
    return AttentionCost(
        pairs=pairs,
        flops_qk=2.0 * b * h * pairs * d,
        flops_sv=2.0 * b * h * pairs * dv,
        softmax_flops=5.0 * b * h * pairs,
        bytes_activation=(b * h * lq * d + b * h * lq * dv) * q_bits / 8 + new * per_token * act_bits / 8,
        bytes_kv_read=cached * per_token * kv_bits / 8,
        cached_tokens_read=cached,
    )
