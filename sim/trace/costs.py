"""FLOPs, bytes and op class of one ATen call, from its arguments' shapes and roles.

Conventions (docs/accounting.md holds the full list):
* views and pure reshapes, allocations (``empty``) and scalar reads cost nothing;
* a matrix multiply costs 2*M*K*N FLOPs (+ M*N for a fused bias add);
* pointwise ops cost one FLOP per output element; softmax five; LayerNorm seven, a fused RMSNorm four; reductions one
  per input element;
* every input tensor is read once and every output written once, at the bit width of its role;
  a tensor read through a broadcast (stride 0) counts its distinct elements only;
* gathers (embedding, index) read only the gathered rows; scatter-adds read and write only the
  touched rows.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, replace
from typing import Any, Iterable

import torch

DTYPE_NAMES = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}
for _name in ("float8_e4m3fn", "float8_e5m2"):
    if hasattr(torch, _name):
        DTYPE_NAMES[getattr(torch, _name)] = "fp8"

GEMM_OPS = {"mm", "addmm", "bmm", "baddbmm", "mv", "dot", "addmv", "linear", "matmul", "_grouped_mm", "grouped_mm"}
GATHER_OPS = {"embedding", "index", "index_select", "gather", "take", "embedding_bag"}
SCATTER_OPS = {"index_add", "index_add_", "scatter_add", "scatter_add_", "index_put", "index_put_",
               "index_copy", "index_copy_", "scatter", "scatter_", "masked_scatter", "masked_scatter_"}
SOFTMAX_OPS = {"_softmax", "_log_softmax", "softmax", "log_softmax", "_safe_softmax"}
NORM_OPS = {"layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "batch_norm", "native_batch_norm",
            "_fused_rms_norm", "rms_norm"}
REDUCTION_OPS = {"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "topk", "sort", "cumsum",
                 "prod", "var", "std", "var_mean", "std_mean", "linalg_vector_norm", "norm", "logsumexp",
                 "any", "all", "count_nonzero"}
COPY_OPS = {"_to_copy", "copy_", "clone", "cat", "stack", "fill_", "zero_", "zeros", "zeros_like", "ones",
            "ones_like", "full", "full_like", "new_zeros", "new_ones", "new_full", "arange", "contiguous",
            "_copy_from", "_copy_from_and_resize", "repeat", "roll", "flip", "tril", "triu", "constant_pad_nd",
            "one_hot", "nonzero", "repeat_interleave", "lift_fresh_copy", "to", "type_as", "reshape", "flatten",
            "dropout", "native_dropout", "alpha_dropout", "feature_dropout"}
# ops whose tensor inputs only give a shape / dtype: they write their output and read nothing
TEMPLATE_OPS = {"zeros_like", "ones_like", "full_like", "empty_like", "new_zeros", "new_ones", "new_full",
                "new_empty", "rand_like", "randn_like"}
FREE_OPS = {"_unsafe_view", "alias", "detach", "lift_fresh", "empty", "empty_like", "empty_strided",
            "new_empty", "new_empty_strided", "_local_scalar_dense", "resize_", "set_", "_reshape_alias",
            "sym_size", "sym_stride", "sym_numel", "is_nonzero", "item", "_assert_async", "record_stream",
            "_has_compatible_shallow_copy_type", "equal", "is_same_size", "_nested_tensor_from_mask",
            "result_type"}


def packet_name(func: Any) -> str:
    """``aten.mm.default`` -> ``mm``."""
    return func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)


def full_name(func: Any) -> str:
    return f"aten.{packet_name(func)}.{getattr(func, '_overloadname', 'default')}"


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def unique_numel(t: torch.Tensor) -> int:
    """Distinct elements a tensor addresses: broadcast (stride-0) dimensions count once."""
    if t.numel() == 0:
        return 0
    n = 1
    for size, stride in zip(t.shape, t.stride()):
        if stride != 0:
            n *= size
    return n


def flatten_tensors(obj: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            out.extend(flatten_tensors(x))
    elif isinstance(obj, dict):
        for x in obj.values():
            out.extend(flatten_tensors(x))
    return out


@dataclass(frozen=True)
class Precision:
    """Bit widths by role; ``None`` keeps the tensor's own dtype width.

    ``weight_bits`` applies to weight matrices (2-D and up); 1-D weights (norm gains, biases) keep
    their dtype. Group quantization adds ``group_meta_bits`` per ``group_size`` weights.
    """

    weight_bits: float | None = None
    act_bits: float | None = None
    kv_bits: float | None = None
    group_size: int | None = None
    group_meta_bits: float = 0.0
    # Per-module weight widths, first match wins: (glob on the module path, bits), e.g.
    # ("*.mlp.down_proj", 8) keeps down projections at 8 bits (ANT-style per-layer precision).
    # The group metadata of the run applies to these bits too.
    weight_bits_rules: tuple[tuple[str, float], ...] = ()

    def for_module(self, module: str) -> "Precision":
        """The precision that applies inside ``module`` (its weight-bits rule, if one matches)."""
        for pattern, bits in self.weight_bits_rules:
            if fnmatch.fnmatchcase(module, pattern):
                return replace(self, weight_bits=bits, weight_bits_rules=())
        return self

    @property
    def weight_bits_effective(self) -> float | None:
        if self.weight_bits is None:
            return None
        meta = self.group_meta_bits / self.group_size if self.group_size else 0.0
        return self.weight_bits + meta

    def bits(self, t: torch.Tensor, role: str) -> float:
        native = t.element_size() * 8
        if not (t.is_floating_point()):
            return native
        if role == "weight":
            if self.weight_bits is not None and t.dim() >= 2:
                return self.weight_bits_effective  # type: ignore[return-value]
            return native
        if role in ("kv_read", "kv_write", "kv"):
            return self.kv_bits if self.kv_bits is not None else native
        return self.act_bits if self.act_bits is not None else native

    def nbytes(self, t: torch.Tensor, role: str, numel: int | None = None) -> float:
        n = unique_numel(t) if numel is None else numel
        return n * self.bits(t, role) / 8

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight_bits": self.weight_bits,
            "act_bits": self.act_bits,
            "kv_bits": self.kv_bits,
            "group_size": self.group_size,
            "group_meta_bits": self.group_meta_bits,
            "weight_bits_effective": self.weight_bits_effective,
            "weight_bits_rules": [[p, b] for p, b in self.weight_bits_rules],
        }


def gemm_dims(name: str, args: tuple) -> tuple[int, int, int, int]:
    """(batch, M, K, N) of a matrix op."""
    if name == "linear":  # x[..., K] @ W[N, K]^T
        x, w = args[0], args[1]
        return 1, math.prod(x.shape[:-1]), x.shape[-1], w.shape[0]
    if name in ("_grouped_mm", "grouped_mm"):
        g = grouped_mm_groups(args)
        if g is not None:
            m_eff, _, _ = g
            return 1, m_eff, args[0].shape[-1], args[1].shape[-1]
        a, b = args[0], args[1]
        return a.shape[0], a.shape[-2], a.shape[-1], b.shape[-1]
    if name == "matmul":
        a, b = args[0], args[1]
        if b.dim() == 1:
            return 1, math.prod(a.shape[:-1]), a.shape[-1], 1
        if a.dim() == 1:
            return math.prod(b.shape[:-2]), 1, a.shape[0], b.shape[-1]
        if b.dim() == 2:
            return 1, math.prod(a.shape[:-1]), a.shape[-1], b.shape[-1]
        batch = math.prod(torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]))
        return batch, a.shape[-2], a.shape[-1], b.shape[-1]
    if name in ("mm",):
        a, b = args[0], args[1]
        return 1, a.shape[0], a.shape[1], b.shape[1]
    if name in ("addmm",):
        a, b = args[1], args[2]
        return 1, a.shape[0], a.shape[1], b.shape[1]
    if name == "bmm":
        a, b = args[0], args[1]
        return a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    if name == "baddbmm":
        a, b = args[1], args[2]
        return a.shape[0], a.shape[1], a.shape[2], b.shape[2]
    if name in ("mv", "addmv"):
        a = args[0] if name == "mv" else args[1]
        return 1, a.shape[0], a.shape[1], 1
    if name == "dot":
        return 1, 1, args[0].shape[0], 1
    raise KeyError(name)


def grouped_mm_groups(args: tuple) -> tuple[int, int, int] | None:
    """For a grouped GEMM x[S, K] @ W[E, K, N] with cumulative row offsets per expert: (rows
    actually multiplied, experts with at least one row, E). Rows past the last offset are padding
    the kernel skips. On ``meta`` the offsets have no values: every row and expert counts."""
    a, b = args[0], args[1]
    offs = args[2] if len(args) > 2 and isinstance(args[2], torch.Tensor) else None
    if a.dim() != 2 or b.dim() != 3:
        return None
    experts = b.shape[0]
    if offs is None or offs.device.type == "meta":
        return a.shape[0], experts, experts
    ends = offs.tolist()
    sizes = [e - s for s, e in zip([0, *ends[:-1]], ends)]
    return int(ends[-1]) if ends else 0, sum(1 for n in sizes if n > 0), experts


def classify(name: str, is_view: bool) -> str:
    if is_view or name in FREE_OPS:
        return "free"
    if name in GEMM_OPS:
        return "gemm"
    if name == "embedding" or name == "embedding_bag":
        return "embedding"
    if name in GATHER_OPS:
        return "gather"
    if name in SCATTER_OPS:
        return "scatter"
    if name in SOFTMAX_OPS:
        return "softmax"
    if name in NORM_OPS:
        return "norm"
    if name in REDUCTION_OPS:
        return "reduction"
    if name in COPY_OPS:
        return "copy"
    return "elementwise"


def pointwise_flops(kind: str, name: str, inputs: Iterable[torch.Tensor], outputs: list[torch.Tensor]) -> float:
    out_n = sum(t.numel() for t in outputs)
    in_n = max((t.numel() for t in inputs), default=0)
    if kind == "softmax":
        return 5.0 * out_n
    if kind == "norm":  # LayerNorm: mean, subtract, square, mean, scale, gamma, beta; RMSNorm: square, mean, scale, gamma
        per = 4.0 if "rms" in name else 7.0
        return per * (outputs[0].numel() if outputs else 0)
    if kind == "reduction":
        return float(in_n)
    if kind in ("copy", "free", "gather", "embedding"):
        return 0.0
    if kind == "scatter":
        return float(sum(t.numel() for t in list(inputs)[2:3]))
    return float(out_n)


def gemm_flops(name: str, args: tuple) -> tuple[float, dict[str, int]]:
    b, m, k, n = gemm_dims(name, args)
    flops = 2.0 * b * m * k * n
    if name in ("addmm", "baddbmm", "addmv") or (name == "linear" and len(args) > 2 and args[2] is not None):
        flops += b * m * n
    return flops, {"batch": b, "M": m, "K": k, "N": n}
