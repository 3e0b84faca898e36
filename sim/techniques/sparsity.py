"""Activation sparsity and structured pruning as trace transforms.

* ``act-sparsity:frac=F`` (Sparsing Law; the ReLU-style sparsity of FFN activations): a fraction
  ``F`` of the FFN's intermediate activations are zero, so the down projection skips the matching
  rows of its weight: its K (reduction) dimension, weight bytes, input bytes and FLOPs scale by
  ``1 - F``. **Assumption**: the zero pattern is known before the down projection (a predictor or
  the activation itself), so only the kept rows are read; the up / gate projections are dense (they
  produce the activations). MoE expert GEMMs are left dense (their down projection is fused with
  the up projection in the traced grouped GEMMs).
* ``prune:heads=H,ffn=W`` (FLAP, ZipLM style structured pruning): each decoder layer keeps a
  fraction ``H`` of its attention heads and ``W`` of its FFN width. Query heads and KV heads both
  shrink (rounded to whole heads, at least one; GQA keeps its group size where it divides); Q/K/V
  projections lose output columns, the output projection input rows; FFN up / gate projections
  lose output columns and the down projection input rows. Norms, embeddings and the lm_head are
  unchanged (their width, the hidden size, is not pruned).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.resize import copy_op, gemm_role, resized_attention, scale_gemm
from sim.trace.schema import Trace


@register
@dataclass(frozen=True)
class ActivationSparsity(Technique):
    """Zero FFN activations skip the matching rows of the down projection."""

    name = "act-sparsity"
    summary = "a fraction of zero FFN activations skips rows of the down projection"

    frac: float = 0.5   # fraction of FFN intermediate activations that are zero, in [0, 1)

    def check(self) -> None:
        if not 0.0 <= self.frac < 1.0:
            raise LlmsimError(f"--technique {self.name}: frac: expected a fraction in [0, 1), found {self.frac}")

    def apply(self, trace: Trace) -> Trace:
        keep = 1.0 - self.frac
        ops, touched = [], 0
        for op in trace.ops:
            if gemm_role(op) == "ffn_out":
                ops.append(scale_gemm(op, k=keep))
                touched += op.repeat
            else:
                ops.append(op)
        if not touched:
            raise LlmsimError(f"--technique {self.name}: {trace.meta.get('model')}: the trace has no FFN down "
                              "projection to sparsify")
        return replace_ops(trace, ops)


@register
@dataclass(frozen=True)
class StructuredPruning(Technique):
    """Per-layer head and FFN-width pruning."""

    name = "prune"
    summary = "each layer keeps a fraction of its attention heads and FFN width"

    heads: float = 0.75   # fraction of attention heads kept per layer, in (0, 1]
    ffn: float = 0.75     # fraction of the FFN intermediate width kept per layer, in (0, 1]

    def check(self) -> None:
        for key in ("heads", "ffn"):
            v = getattr(self, key)
            if not 0.0 < v <= 1.0:
                raise LlmsimError(f"--technique {self.name}: {key}: expected a fraction in (0, 1], found {v}")

    def kept_heads(self, heads: int, kv_heads: int) -> tuple[int, int]:
        """(query heads, KV heads) kept: the KV heads rounded (at least one), the group size kept."""
        group = heads // kv_heads
        kv = max(1, round(kv_heads * self.heads))
        return kv * group, kv

    def apply(self, trace: Trace) -> Trace:
        att = next((op for op in trace.ops if op.op_class == "attention"), None)
        head_frac = kv_frac = 1.0
        if att is not None:
            h, hkv = int(att.extra["heads"]), int(att.extra["kv_heads"])
            kh, kkv = self.kept_heads(h, hkv)
            head_frac, kv_frac = kh / h, kkv / hkv
        if self.ffn < 1 and any(gemm_role(op) == "experts" for op in trace.ops):
            raise LlmsimError(f"--technique {self.name}: ffn: pruning the FFN width of MoE experts is not modelled "
                              f"({trace.meta.get('model')}; expected ffn=1 on an MoE model)")
        ops = []
        for op in trace.ops:
            role = gemm_role(op)
            if op.layer is None and role not in (None, "lm_head"):
                ops.append(op)
            elif role == "qkv":
                ops.append(scale_gemm(op, n=head_frac))
            elif role == "attn_out":
                ops.append(scale_gemm(op, k=head_frac))
            elif role == "ffn_in":
                ops.append(scale_gemm(op, n=self.ffn))
            elif role == "ffn_out":
                ops.append(scale_gemm(op, k=self.ffn))
            elif op.op_class == "attention":
                h, hkv = int(op.extra["heads"]), int(op.extra["kv_heads"])
                kh, kkv = self.kept_heads(h, hkv)
                ops.append(resized_attention(op, heads=kh, kv_heads=kkv))
            elif op.op_class == "kv_cache" and "kv_heads" in op.extra:
                f = kv_frac
                ops.append(copy_op(op, bytes_activation=op.bytes_activation * f, bytes_kv_write=op.bytes_kv_write * f,
                                   extra=dict(op.extra, kv_heads=round(int(op.extra["kv_heads"]) * f))))
            elif op.layer is not None and op.op_class == "elementwise" and _in_ffn(op.module):
                # the FFN's activation function and gating product run over the kept width
                ops.append(copy_op(op, flops=op.flops * self.ffn, bytes_activation=op.bytes_activation * self.ffn))
            else:
                ops.append(op)
        return replace_ops(trace, ops)


def _in_ffn(module: str) -> bool:
    parts = module.split(".")
    return any(p in ("mlp", "ffn", "feed_forward", "act_fn") for p in parts) and not any(
        p in ("self_attn", "attn", "attention") for p in parts)
