"""Quantization as a trace transform: weight, activation and KV-cache widths by the tracer's rules.

``quant:w=4,a=16,kv=16,group=128,meta=8`` or a preset (``quant:preset=w4a16``; explicit values
override the preset's). A width of 0 keeps what the trace has. The bytes follow
:class:`sim.trace.costs.Precision` exactly as ``capture(weight_bits=..., act_bits=..., ...)``
charges them:

* weights: every weight *matrix* (2-D and up: linear layers, experts, lm_head, embedding rows) at
  ``w`` bits plus ``meta`` bits per ``group`` weights; 1-D weights (norm gains, biases) keep
  their width;
* activations: every floating-point activation tensor at ``a`` bits (integer tensors such as
  indices keep theirs);
* KV cache: the attention op's cache reads and the append's writes at ``kv`` bits.

``compute_dtype`` of matrix ops follows ``Recorder._compute_dtype``: a GEMM runs on the integer
path (int8, int4 when both are 4 bits or fewer) only when its activations and its other operand
(the weight matrix, the KV cache for attention, activations otherwise) are both 8 bits or fewer;
``fmt=fp`` (the fp8 preset) picks fp8 / fp4 instead. Per-module weight rules of the traced run
are replaced when ``w`` is given (every matrix then has ``w`` bits).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.resize import copy_op
from sim.trace.schema import Op, Trace

DTYPE_BITS = {"fp64": 64, "fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int64": 64, "int32": 32, "int16": 16,
              "int8": 8, "uint8": 8, "bool": 8}
FLOAT_DTYPES = {"fp64", "fp32", "fp16", "bf16", "fp8"}

# preset -> (w, a, kv, group, meta, fmt). A16 / KV16 keep the traced (16-bit) activations / cache.
PRESETS: dict[str, tuple[float, float, float, int, float, str]] = {
    # weight-only 4-bit, one fp16 scale per 128 weights (GPTQ / AWQ-style group quantization)
    "w4a16": (4, 0, 0, 128, 16, "int"),
    # SmoothQuant-style W8A8: per-channel int8 weights, per-token int8 activations; fp16 KV cache
    "w8a8": (8, 8, 0, 0, 0, "int"),
    # FP8 (e4m3) weights, activations and KV cache: GEMMs and attention on the fp8 tensor path
    "fp8": (8, 8, 8, 0, 0, "fp"),
    "kv8": (0, 0, 8, 0, 0, "int"),
    "kv4": (0, 0, 4, 0, 0, "int"),
    # BitMoD (HPCA 2025): 3 / 4-bit weights, 8 metadata bits (scale + data-type selector) per 128
    "bitmod3": (3, 0, 0, 128, 8, "int"),
    "bitmod4": (4, 0, 0, 128, 8, "int"),
}


def _numel(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


@register
@dataclass(frozen=True)
class Quant(Technique):
    """Weight / activation / KV widths in bits (0: as traced); ``group`` weights share ``meta``
    metadata bits (0: no groups); ``fmt`` int or fp (the low-precision compute path); ``preset``
    one of w4a16, w8a8, fp8, kv8, kv4, bitmod3, bitmod4."""

    name = "quant"
    summary = "quantized weights / activations / KV cache (W4A16, W8A8, FP8, KV8/KV4, BitMoD)"

    preset: str = ""
    w: float = 0.0
    a: float = 0.0
    kv: float = 0.0
    group: int = 0
    meta: float = 0.0
    fmt: str = ""

    def settings(self) -> tuple[float, float, float, int, float, str]:
        """(w, a, kv, group, meta, fmt) with the preset filled in under the explicit values."""
        p = PRESETS.get(self.preset, (0, 0, 0, 0, 0, "int")) if self.preset else (0, 0, 0, 0, 0, "int")
        return (self.w or p[0], self.a or p[1], self.kv or p[2], self.group or p[3], self.meta or p[4],
                self.fmt or p[5])

    def check(self) -> None:
        where = f"--technique {self.name}"
        if self.preset and self.preset not in PRESETS:
            raise LlmsimError(f"{where}: preset: expected one of {', '.join(PRESETS)}, found {self.preset!r}")
        for key in ("w", "a", "kv"):
            v = getattr(self, key)
            if not (0 <= v <= 32):
                raise LlmsimError(f"{where}: {key}: expected a bit width in (0, 32] (0: as traced), found {v}")
        if self.group < 0:
            raise LlmsimError(f"{where}: group: expected a group size >= 0 (0: no groups), found {self.group}")
        if self.meta < 0:
            raise LlmsimError(f"{where}: meta: expected metadata bits >= 0, found {self.meta}")
        if self.fmt not in ("", "int", "fp"):
            raise LlmsimError(f"{where}: fmt: expected int or fp, found {self.fmt!r}")
        w, a, kv, group, meta, _ = self.settings()
        if meta and not group:
            raise LlmsimError(f"{where}: meta: metadata bits need a group size (group=...)")
        if (group or meta) and not w:
            raise LlmsimError(f"{where}: group / meta: apply to quantized weights, give w=...")
        if not (w or a or kv):
            raise LlmsimError(f"{where}: nothing to do: give w, a, kv or a preset")

    def apply(self, trace: Trace) -> Trace:
        w, a, kv, group, meta, fmt = self.settings()
        old = dict(trace.meta.get("precision") or {})
        old_group = old.get("group_size") or 0
        old_over = (old.get("group_meta_bits") or 0.0) / old_group if old_group else 0.0
        w_eff = w + (meta / group if group else 0.0) if w else None
        act = a or old.get("act_bits")
        kvb = kv or old.get("kv_bits")
        ops = [_quant_op(op, w, w_eff, a, kv, act, kvb, old.get("act_bits"), old_over, fmt) for op in trace.ops]
        prec = dict(old)
        if w:
            prec.update(weight_bits=w, group_size=group or None, group_meta_bits=float(meta) if group else 0.0,
                        weight_bits_effective=w_eff, weight_bits_rules=[])
        if a:
            prec["act_bits"] = a
        if kv:
            prec["kv_bits"] = kv
        return replace_ops(trace, ops, precision=prec)


def _weight_inputs(op: Op) -> set[int]:
    """Indices of the op's inputs that are weights: the subset whose traced widths add up to
    ``bytes_weight`` (matrices at ``weight_bits``, 1-D weights at their dtype)."""
    if not op.bytes_weight:
        return set()
    if op.op_class == "embedding":
        return {0}
    cand = [i for i, d in enumerate(op.input_dtypes) if d in FLOAT_DTYPES]

    def nbytes(i: int) -> float:
        shape, d = op.input_shapes[i], op.input_dtypes[i]
        bits = op.weight_bits if (len(shape) >= 2 and op.weight_bits is not None) else DTYPE_BITS.get(d, 16)
        return _numel(shape) * bits / 8

    for r in range(1, min(3, len(cand)) + 1):
        for sub in itertools.combinations(cand, r):
            if abs(sum(nbytes(i) for i in sub) - op.bytes_weight) <= 1e-9 * op.bytes_weight + 1e-9:
                return set(sub)
    # not a plain sum (grouped GEMM with idle experts): the largest matrix input
    mats = [i for i in cand if len(op.input_shapes[i]) >= 2]
    return {max(mats, key=lambda i: _numel(op.input_shapes[i]))} if mats else set()


def _bias_bytes(op: Op, weights: set[int]) -> float:
    """Bytes of the 1-D weights (biases, gains) among the op's weights: they keep their width."""
    return sum(_numel(op.input_shapes[i]) * DTYPE_BITS.get(op.input_dtypes[i], 16) / 8
               for i in weights if len(op.input_shapes[i]) < 2)


def rescale_activations(op: Op, new_bits: float, old_act: float | None, weights: set[int]) -> float:
    """The op's activation bytes with every floating-point activation tensor at ``new_bits``.

    The traced bytes split into an integer part (indices, from the shapes) and a floating part
    at the tensors' current widths (``old_act`` when the trace was captured with activation bits,
    else their dtypes); the floating part scales by ``new_bits`` / (element-weighted current width).
    """
    if not op.bytes_activation:
        return 0.0
    tensors = [(s, d) for i, (s, d) in enumerate(zip(op.input_shapes, op.input_dtypes)) if i not in weights]
    tensors += list(zip(op.output_shapes, op.output_dtypes))
    int_bytes = sum(_numel(s) * DTYPE_BITS.get(d, 64) / 8 for s, d in tensors if d not in FLOAT_DTYPES)
    floats = [(_numel(s), old_act or DTYPE_BITS[d]) for s, d in tensors if d in FLOAT_DTYPES]
    n = sum(k for k, _ in floats)
    if not n:
        return op.bytes_activation
    width = sum(k * b for k, b in floats) / n
    int_part = min(int_bytes, op.bytes_activation)
    return int_part + (op.bytes_activation - int_part) * new_bits / width


def _compute_dtype(op: Op, has_weight: bool, w_raw: float | None, act: float | None, kvb: float | None,
                   fmt: str) -> str:
    """``Recorder._compute_dtype`` for a matrix op with these widths."""
    native = next((d for d in op.input_dtypes if d in FLOAT_DTYPES),
                  op.output_dtypes[0] if op.output_dtypes else "fp32")
    if op.op_class == "attention":
        other = kvb if op.bytes_kv_read else act
    else:
        other = w_raw if has_weight else act
    if act is not None and act <= 8 and other is not None and other <= 8:
        low = max(act, other) <= 4
        return ("fp4" if low else "fp8") if fmt == "fp" else ("int4" if low else "int8")
    return native


def _quant_op(op: Op, w: float, w_eff: float | None, a: float, kv: float, act: float | None, kvb: float | None,
              old_act: float | None, old_over: float, fmt: str) -> Op:
    changes: dict[str, Any] = {}
    weights = _weight_inputs(op)
    if w and op.weight_bits is not None and op.bytes_weight:
        bias = min(_bias_bytes(op, weights), op.bytes_weight)
        meta = float(op.extra.get("sparse24_meta_bytes", 0.0))    # 2:4 indices: fixed bits per kept weight
        changes["bytes_weight"] = bias + meta + (op.bytes_weight - bias - meta) * w_eff / op.weight_bits
        changes["weight_bits"] = w_eff
        if op.extra.get("sparse24"):
            dense = float(op.extra.get("dense_bytes_weight", op.bytes_weight))
            changes["extra"] = dict(op.extra, dense_bytes_weight=bias + (dense - bias) * w_eff / op.weight_bits)
    if a:
        changes["bytes_activation"] = rescale_activations(op, a, old_act, weights)
    if kv and (op.bytes_kv_read or op.bytes_kv_write):
        old_kv = op.kv_bits
        if old_kv is None:
            from sim.trace.resize import attention_widths

            old_kv = attention_widths(op)[1] if op.op_class == "attention" else DTYPE_BITS.get(
                op.input_dtypes[0] if op.input_dtypes else "fp16", 16)
        changes["bytes_kv_read"] = op.bytes_kv_read * kv / old_kv
        changes["bytes_kv_write"] = op.bytes_kv_write * kv / old_kv
        changes["kv_bits"] = kv
    elif kv and op.kv_bits is not None:
        changes["kv_bits"] = kv
    if op.op_class in ("gemm", "attention"):
        has_weight = op.weight_bits is not None and op.op_class == "gemm"
        w_raw = w if w else ((op.weight_bits - old_over) if op.weight_bits is not None else None)
        changes["compute_dtype"] = _compute_dtype(op, has_weight, w_raw, act, kvb, fmt)
    return copy_op(op, **changes) if changes else copy_op(op)
