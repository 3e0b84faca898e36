"""GPU device model: the roofline with measured ceilings, plus what real GPUs show.

Every kernel (one trace op) costs

    time = kernel_overhead + max(compute, memory_latency + bytes / effective bandwidth[, comm])

* effective bandwidth = min(measured HBM ceiling, bw_efficiency x datasheet bandwidth).
* GEMM compute: the output is cut into tiles (the candidates cuBLAS / CUTLASS kernels use on
  Ampere / Hopper: 128x256, 256x128, 128x128, 128x64, 64x128, 64x64, each optionally split along K
  in 2..8 slices). Tiles run in waves over the SMs (wave quantization: a wave with fewer tiles
  than SMs takes as long as a full one), every tile pays ``tile_fill_k`` K-steps of prologue /
  epilogue on top of its main loop, and the M / N edges are padded to whole tiles. Like cuBLAS'
  heuristics, the fastest candidate (compute and memory together) is chosen. Split-K writes and
  reads fp32 partial sums (extra HBM bytes).
* The per-SM main-loop rate is calibrated so that the model reproduces the device's matrix
  ceiling: compute_efficiency x datasheet peak (the H200's measured 8192^3 matmul) on an 8192^3
  GEMM. No GEMM runs faster than that ceiling, so no op beats its measured-ceiling roofline.
* Attention (FlashAttention-2 style): QK^T and SV on the tensor cores in query blocks of 128 rows
  (decode: the query rows of one KV head, padded to 16, KV split across CTAs as flash-decoding
  does), waves over the SMs, plus the softmax exponentials on the SFUs (16 per clock per SM,
  CUDA C programming guide, compute capability 8.x / 9.0), which FlashAttention-2 does not
  overlap with the matrix work. KV and activations stream at the effective bandwidth.
* Everything else (elementwise, norm, copy, embedding, ...): overhead + max(FLOPs / vector
  ceiling, memory latency + bytes / effective bandwidth); all-reduce adds comm bytes / link.

The fitted constants (``model:`` block of the GPU YAML, :class:`GpuModelParams`) come from
``python -m sim.gpu.fit``; a device whose YAML has no block uses :data:`DEFAULT_PARAMS`
(no overhead, full measured / datasheet ceilings: the plain roofline with wave quantization).
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sim.config.hardware import GpuConfig, GpuModelParams
from sim.roofline.analyzer import MATRIX_CLASSES, op_row
from sim.trace.schema import Op, Trace

# (tile rows along M, tile columns along N, relative main-loop throughput of one SM).
# Relative throughputs are fixed assumptions, not fitted: a Hopper / Ampere SM keeps its tensor
# cores busy with two consumer warp groups on a 128-row tile and >= 128 columns; narrower tiles
# issue smaller MMAs with the same per-instruction overhead and reuse each loaded operand fewer
# times (operand traffic per FLOP ~ (tm + tn) / (tm tn)).
TILES: tuple[tuple[int, int, float], ...] = (
    (128, 256, 1.00),
    (256, 128, 1.00),
    (128, 128, 0.90),
    (128, 64, 0.75),
    (64, 128, 0.75),
    (64, 64, 0.55),
)
SPLIT_K = (1, 2, 3, 4, 6, 8)
MIN_SPLIT_K_DEPTH = 256     # no split leaves a K slice shorter than this
SPLIT_K_MAX_WAVES = 4       # split-K only for outputs of fewer tiles than this many waves
SFU_EXP_PER_CLK_PER_SM = 16  # CUDA C programming guide, arithmetic instruction throughput (cc 8.x, 9.0)
CALIBRATION_GEMM = (8192, 8192, 8192)  # the shape the measured matmul ceiling was taken on
ATTN_Q_BLOCK = 128
DECODE_ROW_PAD = 16
DECODE_KV_SPLIT = 256

DEFAULT_PARAMS = GpuModelParams(kernel_overhead_us=0.0, memory_latency_us=0.0, bw_efficiency=1.0,
                                compute_efficiency=1.0, tile_fill_k=0.0,
                                source="default: no fitted constants (ceilings only)")


@dataclass
class GpuOpTime:
    """Time of one instance of an op and its parts (seconds)."""

    time_s: float
    compute_s: float
    memory_s: float           # memory latency + bytes / effective bandwidth
    overhead_s: float
    comm_s: float = 0.0
    wave_efficiency: float = 1.0   # useful tile-slots / tile-slots of the waves run
    tile: str | None = None        # "128x256" or "128x256/k3" (split-K 3), for GEMMs
    bound: str = "memory"
    extra_bytes: float = 0.0       # split-K partial sums
    latency_s: float = 0.0         # the memory latency inside memory_s

    @property
    def fixed_s(self) -> float:
        """Shape-independent time of this kernel: overhead, plus the memory latency when it is
        memory bound."""
        return self.overhead_s + (self.latency_s if self.bound == "memory" else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": self.time_s, "compute_s": self.compute_s, "memory_s": self.memory_s,
                "overhead_s": self.overhead_s, "comm_s": self.comm_s, "wave_efficiency": self.wave_efficiency,
                "tile": self.tile, "bound": self.bound, "extra_bytes": self.extra_bytes, "latency_s": self.latency_s}


# ------------------------------------------------------------------------------------- rates

def params_of(gpu: GpuConfig, params: GpuModelParams | None = None) -> GpuModelParams:
    return params or gpu.model or DEFAULT_PARAMS


@dataclass(frozen=True)
class _Rates:
    matrix: float        # FLOP/s: best GEMM rate (the 8192^3 ceiling)
    mainloop_per_sm: float  # FLOP/s of one SM in a tile's main loop
    vector: float
    bw: float            # effective bytes/s
    link: float | None
    sms: int
    clock_hz: float
    l2_bytes: float


def _rates(gpu: GpuConfig, p: GpuModelParams, dtype: str) -> _Rates:
    roof = gpu.ceilings(measured=True)
    ds = gpu.ceilings(measured=False)
    matrix = min(roof.matmul_peak(dtype), p.compute_efficiency * ds.matmul_peak(dtype))
    eff0 = _calibration_efficiency(gpu.sm_count, p.tile_fill_k)
    return _Rates(matrix=matrix, mainloop_per_sm=matrix / eff0 / gpu.sm_count, vector=roof.vector_peak(dtype),
                  bw=min(roof.mem_bw, p.bw_efficiency * ds.mem_bw), link=roof.link_bw, sms=gpu.sm_count,
                  clock_hz=gpu.boost_freq_mhz * 1e6, l2_bytes=l2_bytes(gpu))


def l2_bytes(gpu: GpuConfig) -> float:
    return next((lvl.capacity_kb * 1024 for lvl in gpu.on_chip if lvl.name == "l2"), 0.0)


@lru_cache(maxsize=256)
def _calibration_efficiency(sms: int, fill_k: float) -> float:
    """Compute efficiency (useful FLOPs / main-loop capacity) of the best tiling of the 8192^3 GEMM."""
    m, k, n = CALIBRATION_GEMM
    best = 0.0
    for _, _, _, units, _, _ in gemm_tilings(1, m, k, n, sms, fill_k, math.inf):
        best = max(best, 2.0 * m * k * n / (units * sms))
    return best


def _tile_time_units(b: int, m: int, k: int, n: int, tm: int, tn: int, rel: float, s: int, sms: int,
                     fill_k: float) -> tuple[float, float]:
    """(compute time x per-SM main-loop rate, i.e. main-loop FLOPs one SM runs; wave efficiency)."""
    tiles = b * math.ceil(m / tm) * math.ceil(n / tn) * s
    waves = math.ceil(tiles / sms)
    per_tile = 2.0 * tm * tn * (math.ceil(k / s) + fill_k) / rel
    return waves * per_tile, tiles / (waves * sms)


# ------------------------------------------------------------------------------------- ops

def _gemm_dims(op: Op) -> tuple[int, int, int, int] | None:
    e = op.extra or {}
    try:
        m, k, n = int(e["M"]), int(e["K"]), int(e["N"])
    except (KeyError, TypeError, ValueError):
        return None
    if min(m, k, n) < 1:
        return None
    return int(e.get("batch", 1) or 1), m, k, n


def _gemm(op: Op, r: _Rates, p: GpuModelParams, lat: float) -> GpuOpTime:
    dims = _gemm_dims(op)
    nbytes = op.bytes
    if dims is None:  # no shape: a perfectly tiled matrix op at the ceiling
        c = op.flops / r.matrix
        mem = lat + nbytes / r.bw
        return GpuOpTime(0.0, c, mem, 0.0, bound="compute" if c > mem else "memory")
    b, m, k, n = dims
    # grouped / expert GEMMs: the trace's FLOPs may count only active experts; scale to them
    scale = op.flops / (2.0 * b * m * k * n) if op.flops else 1.0
    floor_c = op.flops / r.matrix
    best: GpuOpTime | None = None
    best_t = math.inf
    for tm, tn, s, units, wave, extra in gemm_tilings(b, m, k, n, r.sms, p.tile_fill_k, r.l2_bytes):
        c = max(floor_c, units * scale / r.mainloop_per_sm)
        mem = lat + (nbytes + extra) / r.bw
        t = max(c, mem)
        if t < best_t * (1 - 1e-12):
            best_t = t
            best = GpuOpTime(0.0, c, mem, 0.0, wave_efficiency=wave, tile=f"{tm}x{tn}" + (f"/k{s}" if s > 1 else ""),
                             bound="compute" if c >= mem else "memory", extra_bytes=extra)
    assert best is not None
    return best


def gemm_tilings(b: int, m: int, k: int, n: int, sms: int, fill_k: float, l2_bytes: float):
    """Every candidate tiling: (tm, tn, split, main-loop FLOPs of the busiest SM, wave efficiency,
    extra HBM bytes). Split-K (and stream-K, which it stands for) is a candidate only when the
    unsplit tiles make fewer than SPLIT_K_MAX_WAVES waves, where wave quantization costs the most;
    its fp32 partial sums (written, read back) stay in L2 when they fit in half of it, else they
    cost HBM traffic."""
    out = []
    for tm, tn, rel in TILES:
        base = b * math.ceil(m / tm) * math.ceil(n / tn)
        for s in SPLIT_K:
            if s > 1 and (base >= SPLIT_K_MAX_WAVES * sms or math.ceil(k / s) < MIN_SPLIT_K_DEPTH):
                break
            units, wave = _tile_time_units(b, m, k, n, tm, tn, rel, s, sms, fill_k)
            work = 2.0 * (s - 1) * b * m * n * 4
            out.append((tm, tn, s, units, wave, work if work > l2_bytes / 2 else 0.0))
    return out


def _attention(op: Op, r: _Rates, lat: float) -> GpuOpTime:
    e = op.extra or {}
    nbytes = op.bytes
    mem = lat + nbytes / r.bw
    try:
        b, h, hkv = int(e["batch"]), int(e["heads"]), int(e.get("kv_heads") or e["heads"])
        lq, lk, _ = int(e["q_len"]), int(e["kv_len"]), int(e["head_dim"])
    except (KeyError, TypeError, ValueError):
        c = op.flops / r.matrix
        return GpuOpTime(0.0, c, mem, 0.0, bound="compute" if c > mem else "memory")
    group = max(1, h // max(hkv, 1))
    pairs = float(e.get("pairs") or lq * lk)
    if lq * group <= 64:  # decode-like: one CTA per (batch, KV head, KV split), query rows padded
        rows = lq * group
        pad = math.ceil(rows / DECODE_ROW_PAD) * DECODE_ROW_PAD / rows
        splits = max(1, min(math.ceil(lk / DECODE_KV_SPLIT), math.ceil(2 * r.sms / max(b * hkv, 1))))
        ctas = b * hkv * splits
    else:
        rows_blocks = math.ceil(lq / ATTN_Q_BLOCK)
        pad = rows_blocks * ATTN_Q_BLOCK / lq
        ctas = b * h * rows_blocks
    waves = math.ceil(ctas / r.sms)
    wave = ctas / (waves * r.sms)
    mm = op.flops * pad / (r.matrix * wave)
    exps = b * h * pairs * pad
    sfu = exps / (SFU_EXP_PER_CLK_PER_SM * r.sms * r.clock_hz * wave)
    c = max(op.flops / r.matrix, mm + sfu)
    return GpuOpTime(0.0, c, mem, 0.0, wave_efficiency=wave, bound="compute" if c > mem else "memory")


def op_time(op: Op, gpu: GpuConfig, params: GpuModelParams | None = None) -> GpuOpTime:
    """Time of one instance of ``op`` on ``gpu`` (multiply by ``op.repeat`` for the record's total)."""
    p = params_of(gpu, params)
    if not op.flops and not op.bytes:
        return GpuOpTime(0.0, 0.0, 0.0, 0.0, bound="none")
    r = _rates(gpu, p, op.compute_dtype)
    if (op.extra or {}).get("sparse24") and gpu.sparse_24_speedup and op.compute_dtype not in ("fp64", "fp32"):
        # 2:4 sparse tensor cores: the datasheet's sparse rate, in useful (dense-equivalent) FLOPs
        sp = gpu.sparse_24_speedup
        r = dataclasses.replace(r, matrix=r.matrix * sp, mainloop_per_sm=r.mainloop_per_sm * sp)
    lat = p.memory_latency_us * 1e-6 if op.bytes else 0.0
    if op.op_class == "gemm":
        res = _gemm(op, r, p, lat)
    elif op.op_class == "attention":
        res = _attention(op, r, lat)
    else:
        peak = r.matrix if op.op_class in MATRIX_CLASSES else r.vector
        c = op.flops / peak if op.flops else 0.0
        mem = lat + op.bytes / r.bw if op.bytes else 0.0
        res = GpuOpTime(0.0, c, mem, 0.0, bound="compute" if c > mem else "memory")
    comm_bytes = float((op.extra or {}).get("comm_bytes", 0.0) or 0.0)
    if comm_bytes and r.link:
        res.comm_s = comm_bytes / r.link
        if res.comm_s > max(res.compute_s, res.memory_s):
            res.bound = "communication"
    res.overhead_s = p.kernel_overhead_us * 1e-6
    res.latency_s = lat
    res.time_s = res.overhead_s + max(res.compute_s, res.memory_s, res.comm_s)
    return res


def roofline_time(op: Op, gpu: GpuConfig) -> float:
    """The measured-ceiling roofline time of one instance (no kernel overhead)."""
    c = gpu.ceilings(measured=True)
    row = op_row(op, c)
    return row["time_s"] - row["overhead_s"] if (op.flops or op.bytes) else 0.0


def gemm_op(m: int, k: int, n: int, dtype: str = "bf16", elem_bytes: int = 2, batch: int = 1) -> Op:
    """x[M,K] @ W^T (W of shape N x K, the weight): x and W read once, y written once."""
    return Op(name="aten.mm.default", op_class="gemm", module="gemm", layer=None, phase="prefill",
              flops=2.0 * batch * m * k * n, bytes_weight=float(k * n * elem_bytes),
              bytes_activation=float(batch * (m * k + m * n) * elem_bytes), input_shapes=[[m, k], [n, k]],
              input_dtypes=[dtype, dtype], output_shapes=[[m, n]], output_dtypes=[dtype], compute_dtype=dtype,
              extra={"batch": batch, "M": m, "K": k, "N": n})


# ------------------------------------------------------------------------------------- traces

@dataclass
class GpuOpReport:
    index: int
    name: str
    op_class: str
    module: str
    layer: int | None
    repeat: int
    time_s: float          # all repeats
    roofline_s: float      # all repeats, measured ceilings, no overhead
    flops: float           # one instance
    bytes: float           # one instance
    parts: GpuOpTime       # one instance

    @property
    def score(self) -> float:
        return self.time_s / self.roofline_s if self.roofline_s > 0 else 1.0


@dataclass
class GpuSimResult:
    system: str
    device: str
    time_s: float
    cycles: int | None
    ops: list[GpuOpReport]
    utilization: dict[str, float]
    params: GpuModelParams
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def by_class(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.ops:
            out[o.op_class] = out.get(o.op_class, 0.0) + o.time_s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def summary_lines(self, top: int | None = 20) -> list[str]:
        """Text report: total, time per class, utilization, the longest op records."""
        m = self.meta
        out = [f"{self.system} on {self.device}: {m.get('model')} {m.get('phase') or ''}: {self.time_s * 1e3:.3f} ms "
               f"({self.cycles:,} cycles at boost)", "time per op class:"]
        out += [f"  {c:<12} {t * 1e3:10.3f} ms  {t / self.time_s:6.1%}" for c, t in self.by_class.items()]
        out.append("utilization: " + ", ".join(f"{k} {v:.1%}" for k, v in self.utilization.items()))
        roof = sum(o.roofline_s for o in self.ops)
        if roof > 0:
            out.append(f"roofline score (model / measured-ceiling roofline time): {self.time_s / roof:.3f}")
        out.append(f"{'op':<44} {'class':<10} {'x':>4} {'time ms':>10} {'score':>7}  tile")
        for o in sorted(self.ops, key=lambda o: -o.time_s)[:top if top is not None else len(self.ops)]:
            out.append(f"{(o.module or o.name)[:44]:<44} {o.op_class:<10} {o.repeat:>4} {o.time_s * 1e3:10.3f} "
                       f"{o.score:7.3f}  {o.parts.tile or ''}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "device": self.device,
            "time_s": self.time_s,
            "cycles": self.cycles,
            "by_class": self.by_class,
            "utilization": self.utilization,
            "roofline_s": sum(o.roofline_s for o in self.ops),
            "model": self.params.model_dump(),
            "meta": self.meta,
            "ops": [{"index": o.index, "name": o.name, "op_class": o.op_class, "module": o.module,
                     "layer": o.layer, "repeat": o.repeat, "time_s": o.time_s, "roofline_s": o.roofline_s,
                     "score": o.score, "flops": o.flops * o.repeat, "bytes": o.bytes * o.repeat,
                     "detail": o.parts.to_dict()} for o in self.ops],
        }


def simulate_trace_gpu(gpu: GpuConfig, trace: Trace, params: GpuModelParams | None = None,
                       system: str = "gpu-only") -> GpuSimResult:
    """Every op of the trace, kernels one after another (repeats counted), on one GPU."""
    p = params_of(gpu, params)
    reports: list[GpuOpReport] = []
    flops = nbytes = mflops = 0.0
    for i, op in enumerate(trace.ops):
        t = op_time(op, gpu, p)
        reports.append(GpuOpReport(i, op.name, op.op_class, op.module, op.layer, op.repeat, t.time_s * op.repeat,
                                   roofline_time(op, gpu) * op.repeat, op.flops, op.bytes, t))
        flops += op.flops * op.repeat
        nbytes += op.bytes * op.repeat
        if op.op_class in MATRIX_CLASSES:
            mflops += op.flops * op.repeat
    total = sum(o.time_s for o in reports)
    roof = gpu.ceilings(measured=True)
    dtype = next((op.compute_dtype for op in trace.ops if op.op_class == "gemm"), "bf16")
    util = {}
    if total > 0:
        util = {
            "matrix": mflops / total / roof.matmul_peak(dtype),
            "hbm": nbytes / total / roof.mem_bw,
            "fixed_costs": sum(o.parts.fixed_s * o.repeat for o in reports) / total,
        }
    cycles = int(round(total * gpu.boost_freq_mhz * 1e6))
    meta = {"model": trace.meta.get("model"), "phase": trace.meta.get("phase"), "params_source": p.source,
            "clock": f"cycles at the {gpu.boost_freq_mhz:g} MHz boost clock", "flops": flops, "bytes": nbytes}
    return GpuSimResult(system, gpu.name, total, cycles, reports, util, p, meta)
