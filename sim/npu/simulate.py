"""Simulate a trace (or one GEMM) on an NPU core: plans every op, runs the DES, and scores each op
against its roofline on the same device (simulated time / roofline time, >= 1 by construction and
by test)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sim.config.hardware import NpuConfig
from sim.npu.executor import DEFAULT_MAX_CHUNKS, NpuCore, OpResult
from sim.npu.mapping import OpPlan, core_buffers, plan_op
from sim.npu.memory_service import MemoryService, calibrate
from sim.roofline.analyzer import op_row, stationary_bits
from sim.trace.schema import Op, Trace


@dataclass
class OpReport:
    index: int              # trace record index
    name: str
    op_class: str
    module: str
    layer: int | None
    repeat: int
    cycles: float           # core cycles of one instance (mean over repeats)
    time_s: float           # all repeats
    roofline_s: float       # all repeats
    read_bytes: float       # DRAM bytes, all repeats
    write_bytes: float
    trace_bytes: float
    flops: float
    tiles: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.time_s / self.roofline_s if self.roofline_s > 0 else 1.0


@dataclass
class SimResult:
    system: str
    device: str
    cycles: int
    time_s: float
    ops: list[OpReport]
    utilization: dict[str, float]
    events: int
    core: NpuCore
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def by_class(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.ops:
            out[o.op_class] = out.get(o.op_class, 0.0) + o.time_s
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "device": self.device,
            "time_s": self.time_s,
            "cycles": self.cycles,
            "by_class": self.by_class,
            "utilization": self.utilization,
            "events": self.events,
            "dram_read_bytes": sum(o.read_bytes for o in self.ops),
            "dram_write_bytes": sum(o.write_bytes for o in self.ops),
            "trace_bytes": sum(o.trace_bytes * o.repeat for o in self.ops),
            "meta": self.meta,
            "ops": [{"index": o.index, "name": o.name, "op_class": o.op_class, "module": o.module,
                     "layer": o.layer, "repeat": o.repeat, "cycles": o.cycles, "time_s": o.time_s,
                     "roofline_s": o.roofline_s, "score": o.score, "read_bytes": o.read_bytes,
                     "write_bytes": o.write_bytes, "trace_bytes": o.trace_bytes * o.repeat, "tiles": o.tiles,
                     **({"detail": o.detail} if o.detail else {})} for o in self.ops],
        }


def _service(npu: NpuConfig) -> MemoryService | None:
    mem = npu.memory_config()
    return calibrate(mem, npu.dma.request_bytes) if mem is not None else None


def _blocks(trace: Trace) -> list[tuple[list[int], int]]:
    """Execution order as (record indices, repeat) blocks, as Trace.expanded() replays them."""
    out: list[tuple[list[int], int]] = []
    ops = trace.ops
    i = 0
    while i < len(ops):
        op = ops[i]
        if op.repeat == 1 or op.layer is None:
            out.append(([i], 1))
            i += 1
            continue
        j = i
        while j < len(ops) and (ops[j].layer, ops[j].repeat, ops[j].phase, ops[j].step) == \
                (op.layer, op.repeat, op.phase, op.step):
            j += 1
        out.append((list(range(i, j)), op.repeat))
        i = j
    return out


def simulate_trace(npu: NpuConfig, trace: Trace, max_chunks: int = DEFAULT_MAX_CHUNKS,
                   record_members: bool = True, system: str = "npu-only",
                   bandwidth_share: float = 1.0) -> SimResult:
    """Every op of the trace, all repeats (layers) literally, one after another on one core.
    ``bandwidth_share`` scales the memory's sustained rates (the NPU's share while PIM runs)."""
    svc = _service(npu)
    if svc is not None and bandwidth_share != 1.0:
        if not 0 < bandwidth_share <= 1:
            raise ValueError(f"bandwidth_share: expected 0 < share <= 1, found {bandwidth_share}")
        svc = dataclasses.replace(svc, read_bytes_per_cycle=svc.read_bytes_per_cycle * bandwidth_share,
                                  write_bytes_per_cycle=svc.write_bytes_per_cycle * bandwidth_share)
    core_hz = npu.freq_mhz * 1e6
    bpc = svc.read_bytes_per_cycle * svc.channels * svc.freq_hz / core_hz if svc else float("inf")
    core = core_buffers(npu, bpc, svc.latency_cycles * core_hz / svc.freq_hz if svc else 0.0)
    plans: dict[int, OpPlan] = {i: plan_op(npu, core, op) for i, op in enumerate(trace.ops)}
    npu_core = NpuCore(npu, svc, record_members)
    sim = npu_core.sim
    results: dict[int, list[OpResult]] = {i: [] for i in plans}

    def main():
        for indices, repeat in _blocks(trace):
            for _ in range(repeat):
                for i in indices:
                    op = trace.ops[i]
                    label = f"{op.op_class}:{op.module or op.name}"
                    res = yield sim.process(npu_core.run_op(plans[i], i, label, max_chunks))
                    results[i].append(res)

    sim.process(main())
    sim.run()
    tb = sim.timebase
    ceil = npu.ceilings()
    reports = []
    for i, op in enumerate(trace.ops):
        rs = results[i]
        ticks = sum(r.end - r.start for r in rs)
        roof = op_row(op, ceil, stationary_bits(trace, op))["time_s"] * op.repeat
        p = plans[i]
        reports.append(OpReport(i, op.name, op.op_class, op.module, op.layer, op.repeat,
                                ticks / len(rs) / npu_core.core_period if rs else 0.0, tb.seconds(ticks), roof,
                                p.read_bytes * op.repeat, p.write_bytes * op.repeat, op.bytes, op.flops, p.tiles,
                                p.detail))
    end = sim.now
    util = {u.name: u.stats((0, end)).utilization for u in sim.units} if end else {}
    if svc is not None and end:   # per channel and mean busy fraction, from the channel queues
        for c, busy in enumerate(npu_core.channel_busy):
            util[f"ch{c:02d}"] = float(busy) / end
        util["memory"] = float(npu_core.channel_busy.mean()) / end
    return SimResult(system, npu.name, end // npu_core.core_period, tb.seconds(end), reports, util, sim.events,
                     npu_core, {"max_chunks": max_chunks, "memory": npu.memory,
                                "calibrated_read_bytes_per_cycle_per_channel": svc.read_bytes_per_cycle if svc else None,
                                "calibrated_write_bytes_per_cycle_per_channel": svc.write_bytes_per_cycle if svc else None})


def gemm_trace(m: int, k: int, n: int, dtype: str = "fp16", elem_bytes: int = 2) -> Trace:
    """A one-op trace: x[M,K] @ W[K,N] (W the weight), for ``simulate --gemm``."""
    op = Op(name="aten.mm.default", op_class="gemm", module="gemm", layer=None, phase="prefill",
            flops=2.0 * m * k * n, bytes_weight=float(k * n * elem_bytes),
            bytes_activation=float((m * k + m * n) * elem_bytes), input_shapes=[[m, k], [k, n]],
            input_dtypes=[dtype, dtype], output_shapes=[[m, n]], output_dtypes=[dtype], compute_dtype=dtype,
            extra={"batch": 1, "M": m, "K": k, "N": n})
    return Trace(meta={"model": f"gemm {m}x{k}x{n}", "phase": "prefill"}, ops=[op])
