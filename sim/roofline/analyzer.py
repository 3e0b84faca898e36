"""Score a trace on a device: per-op intensity, attainable FLOP/s, bound and roofline time.

time = max(FLOPs / peak(dtype), bytes / bandwidth[, bytes / on-chip bandwidth][, comm bytes / link])
       + kernel overhead
where peak is the matrix peak for gemm and attention and the vector peak for everything else.
A repeated record (identical layers) counts ``repeat`` times in every total.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from sim.errors import LlmsimError
from sim.roofline.ceilings import Ceilings
from sim.trace.schema import Op, Trace

MATRIX_CLASSES = {"gemm", "attention"}


def resolve_ceilings(hw: Any, measured: bool = True, overrides: list[str] | None = None) -> Ceilings:
    if isinstance(hw, Ceilings):
        return hw
    if hasattr(hw, "ceilings"):
        return hw.ceilings(measured=measured)
    from sim.config.hardware import hw_ceilings

    return hw_ceilings(str(hw), measured=measured, overrides=overrides)


def stationary_bits(trace: Trace, op: Op) -> float | None:
    """Width of the op's stationary operand, which sets a bit-serial device's peak: the op's own
    ``weight_bits`` (traces carry it per op), the KV width for attention, else the trace's."""
    if op.op_class == "attention":
        return op.kv_bits if op.kv_bits is not None else 16
    if op.op_class != "gemm":
        return None
    if op.bytes_weight == 0:
        return 16
    if op.weight_bits is not None:
        return op.weight_bits
    prec = trace.meta.get("precision") or {}
    return prec.get("weight_bits_effective") or {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8,
                                                  "int8": 8}.get(op.compute_dtype, 16)


def op_row(op: Op, c: Ceilings, weight_bits: float | None = None) -> dict[str, Any]:
    """The roofline numbers of one op (one instance; multiply by ``repeat`` for totals)."""
    matrix = op.op_class in MATRIX_CLASSES
    sparse = bool(matrix and op.extra and op.extra.get("sparse24"))
    if sparse:   # 2:4 semi-structured weights (technique sparse24): the sparse tensor path, if any
        peak = c.sparse_matmul_peak(op.compute_dtype, weight_bits)
    else:
        peak = c.matmul_peak(op.compute_dtype, weight_bits) if matrix else c.vector_peak(op.compute_dtype)
    nbytes = op.bytes
    compute_t = op.flops / peak if op.flops else 0.0
    memory_t = nbytes / c.mem_bw
    comm_bytes = float(op.extra.get("comm_bytes", 0.0)) if op.extra else 0.0
    comm_t = comm_bytes / c.link_bw if (comm_bytes and c.link_bw) else 0.0
    level_t = {f"time_{lvl.name}_s": nbytes / lvl.bw_bytes_per_s for lvl in c.levels if lvl.bw_bytes_per_s}
    bounds = {"compute": compute_t, "memory": memory_t, "communication": comm_t}
    bounds.update({k[5:-2]: v for k, v in level_t.items()})
    bound = max(bounds, key=lambda k: bounds[k])
    t = bounds[bound] + (c.kernel_overhead_s if (op.flops or nbytes) else 0.0)
    intensity = op.flops / nbytes if nbytes else float("inf")
    attainable = min(peak, intensity * c.mem_bw) if nbytes else peak
    row = {
        "device": c.device,
        "mode": c.mode,
        "name": op.name,
        "op_class": op.op_class,
        "module": op.module,
        "layer": op.layer,
        "repeat": op.repeat,
        "phase": op.phase,
        "step": op.step,
        "compute_dtype": op.compute_dtype,
        "flops": op.flops,
        "bytes": nbytes,
        "bytes_weight": op.bytes_weight,
        "bytes_activation": op.bytes_activation,
        "bytes_kv_read": op.bytes_kv_read,
        "bytes_kv_write": op.bytes_kv_write,
        "intensity": intensity,
        "peak_flops": peak,
        "mem_bw": c.mem_bw,
        "attainable_flops": attainable,
        "compute_time_s": compute_t,
        "memory_time_s": memory_t,
        "comm_time_s": comm_t,
        "overhead_s": c.kernel_overhead_s,
        "time_s": t,
        "bound": bound,
    }
    row.update(level_t)
    return row


@dataclass
class RooflineReport:
    """Per-op roofline table of one trace on one or more devices, with totals."""

    table: pd.DataFrame
    ceilings: list[Ceilings]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def devices(self) -> list[str]:
        return [c.device for c in self.ceilings]

    def totals(self) -> pd.DataFrame:
        """Per device and phase: time, FLOPs, bytes, achieved FLOP/s and bandwidth."""
        t = self.table
        g = t.assign(_t=t.time_s * t.repeat, _f=t.flops * t.repeat, _b=t.bytes * t.repeat, _n=t.repeat)
        out = g.groupby(["device", "phase"], sort=False).agg(
            time_s=("_t", "sum"), flops=("_f", "sum"), bytes=("_b", "sum"), ops=("_n", "sum")
        ).reset_index()
        out["achieved_tflops"] = out.flops / out.time_s / 1e12
        out["achieved_bw_gbps"] = out.bytes / out.time_s / 1e9
        return out

    def by_class(self) -> pd.DataFrame:
        t = self.table
        g = t.assign(_t=t.time_s * t.repeat, _f=t.flops * t.repeat, _b=t.bytes * t.repeat, _n=t.repeat)
        out = g.groupby(["device", "phase", "op_class"], sort=False).agg(
            time_s=("_t", "sum"), flops=("_f", "sum"), bytes=("_b", "sum"), ops=("_n", "sum")
        ).reset_index()
        tot = out.groupby(["device", "phase"]).time_s.transform("sum")
        out["time_share"] = out.time_s / tot
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: per device, total time and per-phase / per-class breakdowns."""
        res: dict[str, Any] = {"model": self.meta.get("model"), "devices": {}}
        tot = self.totals()
        cls = self.by_class()
        for c in self.ceilings:
            d = tot[tot.device == c.device]
            res["devices"][c.device] = {
                "mode": c.mode,
                "time_s": float(d.time_s.sum()),
                "phases": {
                    r.phase: {"time_s": r.time_s, "flops": r.flops, "bytes": r.bytes,
                              "achieved_tflops": r.achieved_tflops, "achieved_bw_gbps": r.achieved_bw_gbps}
                    for r in d.itertuples()
                },
                "by_class": {
                    f"{r.phase}/{r.op_class}": {"time_s": r.time_s, "time_share": r.time_share}
                    for r in cls[cls.device == c.device].itertuples()
                },
            }
        return res


def analyze(trace: Trace, hw: Any, measured: bool = True, overrides: list[str] | None = None) -> RooflineReport:
    """Roofline of every op of ``trace`` on ``hw`` (a bundled name, a path, a config or Ceilings)."""
    return analyze_many(trace, [hw], measured=measured, overrides=overrides)


def resolve_all(hws: Iterable[Any], measured: bool = True, overrides: list[str] | None = None) -> list[Ceilings]:
    """Resolve every device; two configs with the same ``name`` are told apart by their file stem."""
    hws = list(hws)
    if not hws:
        raise LlmsimError("--hw: expected at least one device")
    seen_args: set[str] = set()
    out: list[Ceilings] = []
    for h in hws:
        if isinstance(h, str):
            if h in seen_args:
                raise LlmsimError(f"--hw: {h} given twice (expected each device once)")
            seen_args.add(h)
        c = resolve_ceilings(h, measured, overrides)
        if any(o.device == c.device for o in out):
            label = Path(h).stem if isinstance(h, str) else f"{len(out) + 1}"
            c = dataclasses.replace(c, device=f"{c.device}@{label}")
        out.append(c)
    return out


def analyze_many(trace: Trace, hws: Iterable[Any], measured: bool = True,
                 overrides: list[str] | None = None) -> RooflineReport:
    if not trace.ops:
        raise LlmsimError(f"trace of {trace.meta.get('model')!r} holds no ops (expected at least one)")
    ceilings = resolve_all(hws, measured, overrides)
    rows = []
    for c in ceilings:
        for i, op in enumerate(trace.ops):
            r = op_row(op, c, stationary_bits(trace, op))
            r["op_index"] = i
            rows.append(r)
    table = pd.DataFrame(rows)
    if len(table):
        t_total = (table.time_s * table.repeat).groupby(table.device).transform("sum")
        table["time_share"] = table.time_s * table.repeat / t_total
    return RooflineReport(table=table, ceilings=ceilings, meta=dict(trace.meta))
