"""The numbers a roofline needs from a device: compute peaks per dtype, memory bandwidth, overhead.

Every hardware kind (GPU, NPU, bit-serial accelerator) turns its config into one
:class:`Ceilings`; the analyzer never looks at the YAML itself.
Units: FLOP/s, bytes/s, seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# When a device lists no peak for a dtype, the op runs at the peak of the next wider type
# that it does list (an int4 GEMM on Hopper runs on the int8 path, fp8 on pre-Hopper on fp16).
DTYPE_FALLBACK = {
    "int4": "int8",
    "fp4": "fp8",
    "int8": "fp16",
    "fp8": "fp16",
    "fp16": "bf16",
    "bf16": "fp16",
    "tf32": "fp32",
    "fp32": None,
    "fp64": "fp32",
    "int32": "fp32",
    "int64": "fp32",
    "bool": "fp32",
}


@dataclass(frozen=True)
class MemoryLevel:
    """An on-chip level (L2, shared memory, scratchpad) with capacity and, if known, bandwidth."""

    name: str
    capacity_bytes: float
    bw_bytes_per_s: float | None = None


@dataclass(frozen=True)
class Ceilings:
    device: str
    mode: str  # "datasheet" or "measured"
    matmul_flops: dict[str, float]
    vector_flops: dict[str, float]
    mem_bw: float
    kernel_overhead_s: float = 0.0
    link_bw: float | None = None
    levels: tuple[MemoryLevel, ...] = ()
    # Bit-serial devices: matmul peak divided by cycles-per-weight for a given weight width.
    bitserial_bits_per_cycle: int | None = None
    # 2:4 semi-structured sparsity: matrix throughput of the sparse tensor path over the dense peak
    # (NVIDIA A100 / H100 / H200: 2x), for the dtypes it supports; None: no sparse path, a 2:4 op
    # runs at the dense peak.
    sparse_24_speedup: float | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @staticmethod
    def _lookup(table: dict[str, float], dtype: str) -> float:
        seen = set()
        d: str | None = dtype
        while d is not None and d not in seen:
            if d in table:
                return table[d]
            seen.add(d)
            d = DTYPE_FALLBACK.get(d)
        if table:
            return min(table.values())
        raise KeyError(dtype)

    def matmul_peak(self, dtype: str, weight_bits: float | None = None) -> float:
        """Peak FLOP/s of a matrix op in ``dtype`` (bit-serial: scaled by the weight width)."""
        peak = self._lookup(self.matmul_flops, dtype)
        if self.bitserial_bits_per_cycle and weight_bits:
            cycles_per_weight = max(1, math.ceil(math.floor(weight_bits) / self.bitserial_bits_per_cycle))
            peak = peak / cycles_per_weight
        return peak

    def sparse_matmul_peak(self, dtype: str, weight_bits: float | None = None) -> float:
        """Peak FLOP/s of a 2:4-sparse matrix op in useful (dense-equivalent) FLOPs: the dense peak
        times ``sparse_24_speedup`` on the tensor-core dtypes (not fp64 / fp32, which run on CUDA
        cores); the dense peak on a device without a sparse path."""
        peak = self.matmul_peak(dtype, weight_bits)
        if self.sparse_24_speedup and dtype not in ("fp64", "fp32"):
            peak *= self.sparse_24_speedup
        return peak

    def vector_peak(self, dtype: str) -> float:
        """Peak FLOP/s of an elementwise / reduction op in ``dtype``."""
        if not self.vector_flops:
            return self._lookup(self.matmul_flops, dtype)
        return self._lookup(self.vector_flops, dtype)
