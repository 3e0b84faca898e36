"""2:4 semi-structured weight sparsity (NVIDIA Ampere / Hopper sparse tensor cores).

In every group of four consecutive weights along K two are zero: the kernel loads the kept half
plus ``meta_bits`` bits of position index per kept weight (2 on NVIDIA: which 2 of the 4), so a
weight matrix stored at ``b`` bits per element moves ``bytes x (1/2 + meta_bits / (2 b))``.
The op's FLOPs stay the useful (dense-equivalent) count; the op is marked ``extra["sparse24"]``
and the roofline runs it at :meth:`~sim.roofline.ceilings.Ceilings.sparse_matmul_peak` (the dense
peak x the device's ``sparse_24_speedup``; the dense peak on a device without a sparse path).

Which GEMMs: every op with a weight matrix (attention and MLP projections, experts) except the
MoE router (tiny, accuracy-critical) and, unless ``lm_head=true``, the lm_head. Embedding lookups
are gathers, not GEMMs, and stay dense. A bias (1-D weight) stays dense. ``weight_bits`` keeps
the width of the kept values; ``extra`` carries the dense weight bytes and the metadata bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.techniques.quant import _bias_bytes, _weight_inputs
from sim.trace.resize import copy_op, gemm_role
from sim.trace.schema import Op, Trace


@register
@dataclass(frozen=True)
class Sparse24(Technique):
    """``meta_bits``: index bits per kept weight (2 on NVIDIA sparse tensor cores); ``lm_head``:
    prune the lm_head too (default false)."""

    name = "sparse24"
    summary = "2:4 semi-structured weight sparsity: half the weights + index metadata, sparse tensor peak"

    meta_bits: float = 2.0
    lm_head: bool = False

    def check(self) -> None:
        if not (0 <= self.meta_bits <= 16):
            raise LlmsimError(f"--technique {self.name}: meta_bits: expected 0..16 bits per kept weight, "
                              f"found {self.meta_bits}")

    def selected(self, op: Op) -> bool:
        if op.op_class != "gemm" or op.weight_bits is None or not op.bytes_weight:
            return False
        role = gemm_role(op)
        return role != "router" and (role != "lm_head" or self.lm_head)

    def apply(self, trace: Trace) -> Trace:
        ops, n = [], 0
        for op in trace.ops:
            if not self.selected(op) or op.extra.get("sparse24"):
                ops.append(copy_op(op))
                continue
            bias = min(_bias_bytes(op, _weight_inputs(op)), op.bytes_weight)
            dense = op.bytes_weight - bias
            kept = dense / 2
            meta = dense * self.meta_bits / (2 * op.weight_bits)
            extra = dict(op.extra, sparse24=True, dense_bytes_weight=op.bytes_weight, sparse24_meta_bytes=meta)
            ops.append(copy_op(op, bytes_weight=bias + kept + meta, extra=extra))
            n += op.repeat
        if not n:
            raise LlmsimError(f"--technique {self.name}: {trace.meta.get('model', 'this trace')} has no "
                              "weight-matrix GEMMs to sparsify")
        return replace_ops(trace, ops, sparse24={"meta_bits": self.meta_bits, "lm_head": self.lm_head,
                                                 "gemms": n})
