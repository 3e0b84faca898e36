"""Placement of trace ops on an NPU core: every op class becomes a sequence of tiles, each a DMA
load, compute phases on the arrays or the vector units, and a DMA store.

| op class | placement |
|---|---|
| gemm | systolic arrays, tiled by :mod:`sim.npu.tiler` (batched GEMMs: one tiling per batch element) |
| attention | per (batch, KV head, query block, key chunk): Q.K^T on the arrays, softmax on the vector units, P.V on the arrays; K/V chunks streamed (flash-attention style, online softmax), scores stay on chip; decode units that would leave arrays idle share tiles; a ragged batch (``kv_len_counts``) is one op |
| norm, softmax, elementwise, reduction, moe_routing, other | vector units (:mod:`sim.npu.vector`) |
| copy, kv_cache, embedding, moe_gather, allreduce | DMA only (data moves, nothing computes; a one-device run has no link, so an all-reduce is its memory traffic) |

Every op reads its inputs from DRAM and writes its outputs back (no fusion across ops): what the
trace counts, so the bytes a simulation moves are at least the trace's (re-fetches add to them).
Tensors are laid out tile-major (each tile contiguous), as an NPU compiler stores weights ahead of
time, so a tile's transfer is one contiguous run of addresses.
"""

from __future__ import annotations

import dataclasses

import math
from dataclasses import dataclass, field

from sim.config.hardware import NpuConfig
from sim.errors import LlmsimError
from sim.npu.systolic import map_gemm
from sim.npu.tiler import (CoreBuffers, array_dims, block_sizes, choose_tiling, pipeline_fill_cycles,
                           tile_compute_cycles)
from sim.npu.vector import REDUCTIONS, vector_cycles
from sim.trace.schema import Op

DTYPE_BYTES = {"fp64": 8, "fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int64": 8, "int32": 4, "int16": 2,
               "int8": 1, "uint8": 1, "bool": 1}
DMA_ONLY = {"copy", "kv_cache", "embedding", "moe_gather", "allreduce"}
VECTOR = {"norm", "softmax", "elementwise", "reduction", "moe_routing", "other"}
SOFTMAX_NAMES = {"_softmax", "softmax", "_safe_softmax", "_log_softmax", "log_softmax"}


@dataclass(frozen=True)
class Tile:
    """One step of an op: load, compute phases in order, store. Cycles are core cycles."""

    load_bytes: float
    phases: tuple[tuple[str, int, int], ...]   # (unit kind "array" | "vector", cycles, units it keeps busy)
    store_bytes: float


@dataclass
class OpPlan:
    """An op's tiles: the pattern ``runs`` ((count, tile) in execution order) played ``repeat``
    times (batched GEMMs, attention per KV head), plus the arrays' pipeline fill charged once to
    the first array phase and ``first_load_bytes`` loaded with the first tile."""

    op: Op
    unit: str                              # "array", "vector", "dma"
    runs: list[tuple[int, Tile]]
    detail: dict = field(default_factory=dict)
    repeat: int = 1
    fill_cycles: int = 0
    first_load_bytes: float = 0.0          # loaded once with the first tile (a GEMM's bias)

    @property
    def tiles(self) -> int:
        return self.repeat * sum(c for c, _ in self.runs)

    @property
    def read_bytes(self) -> float:
        return self.first_load_bytes + self.repeat * sum(c * t.load_bytes for c, t in self.runs)

    @property
    def write_bytes(self) -> float:
        return self.repeat * sum(c * t.store_bytes for c, t in self.runs)



def core_buffers(npu: NpuConfig, bytes_per_cycle: float, latency_cycles: float = 0.0) -> CoreBuffers:
    s = npu.systolic
    sp = npu.scratchpad
    big = 1 << 60  # no scratchpad in the config: unbounded (a pure array model)
    return CoreBuffers(s.rows, s.cols, s.count, s.dataflow, s.fold_pipelining,
                       sp.operand_kib * 1024 if sp else big, sp.accumulator_kib * 1024 if sp else big,
                       sp.accumulator_element_bytes if sp else 4, sp.double_buffered if sp else True,
                       bytes_per_cycle, latency_cycles)


def _numel(shape: list[int]) -> int:
    return math.prod(shape) if shape else 1


def _out_bytes(op: Op) -> float:
    return float(sum(_numel(s) * DTYPE_BYTES.get(d, 2) for s, d in zip(op.output_shapes, op.output_dtypes)))


def _chunks(total_bytes: float, limit: float) -> int:
    return max(1, math.ceil(total_bytes / limit)) if total_bytes > 0 else 1


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``n`` split into ``parts`` near-equal pieces: (size, count) runs."""
    parts = max(1, min(parts, n)) if n > 0 else 1
    q, r = divmod(n, parts)
    return [(q + 1, r)] * (r > 0) + [(q, parts - r)] * (parts - r > 0)


def plan_gemm(npu: NpuConfig, core: CoreBuffers, op: Op) -> OpPlan:
    # bit-serial arrays: a GEMM without a weight matrix streams its second operand at 16 bits
    core = core_for_bits(npu, core, op.weight_bits if op.bytes_weight else None)
    e = op.extra
    batch, m, k, n = int(e.get("batch", 1)), int(e["M"]), int(e["K"]), int(e["N"])
    # element widths as traced (dtype, quantisation): the NPU moves the trace's bytes. A bias (a
    # 1-D weight of N elements) is loaded once, with the first tile, not spread over the tiles.
    bias = 0.0
    if op.bytes_weight:
        for shape, dtype in zip(op.input_shapes, op.input_dtypes):
            if len(shape) == 1 and shape[0] == n and batch == 1:
                bias = n * DTYPE_BYTES.get(dtype, 2)
                break
        bias = min(bias, op.bytes_weight)
        elem = op.bytes_activation / (batch * (m * k + m * n))
        w_elem = (op.bytes_weight - bias) / (batch * k * n)
    else:
        elem = w_elem = op.bytes / (batch * (m * k + k * n + m * n))
    t = choose_tiling(core, m, k, n, elem, w_elem)
    plan = OpPlan(op, "array", gemm_runs(core, t, elem, w_elem),
                  {"tiling": (t.mt, t.kt, t.nt), "a_resident": t.a_resident, "refetch_bytes": t.refetch_bytes * batch},
                  repeat=batch, fill_cycles=pipeline_fill_cycles(core), first_load_bytes=bias)
    _check_bytes(plan, op)
    return plan


def gemm_runs(core: CoreBuffers, t, elem: float, w_elem: float) -> list[tuple[int, Tile]]:
    """The tiles of one GEMM in loop order (n-blocks, m-blocks, k-tiles; the last k-tile of a block
    stores its output block)."""
    runs: list[tuple[int, Tile]] = []
    first_n = True
    for sn, cn in block_sizes(t.n, t.nt):
        for _ in range(cn):
            for sm, cm in block_sizes(t.m, t.mt):
                block: list[tuple[int, Tile]] = []
                k_edges = block_sizes(t.k, t.kt)
                for idx, (sk, ck) in enumerate(k_edges):
                    a = 0.0 if (t.a_resident and not first_n) else sm * sk * elem
                    mid = Tile(a + sk * sn * w_elem, (array_phase(core, sm, sk, sn),), 0.0)
                    if idx < len(k_edges) - 1:
                        block.append((ck, mid))
                    else:
                        block += [(ck - 1, mid), (1, Tile(mid.load_bytes, mid.phases, sm * sn * elem))]
                runs += block * cm
            first_n = False
    return _merge_runs(runs)


def array_phase(core: CoreBuffers, m: int, k: int, n: int) -> tuple[str, int, int]:
    """("array", cycles, arrays kept busy) of one tile's GEMM."""
    sr, sc, _ = map_gemm(*array_dims(core, m, k, n), core.dataflow)
    folds = math.ceil(sr / core.rows) * math.ceil(sc / core.cols)
    return "array", tile_compute_cycles(core, m, k, n), min(core.arrays, folds)


def core_for_bits(npu: NpuConfig, core: CoreBuffers, bits: float | None) -> CoreBuffers:
    """The core as an op with stationary operands of ``bits`` bits sees it: on bit-serial PEs the
    reduction lanes per PE and the cycles per weight (``None``: 16-bit); unchanged otherwise."""
    pe = npu.systolic.pe
    if pe.kind != "bitserial":
        return core
    return dataclasses.replace(core, dot_size=pe.dot_size, cycles_per_weight=pe.cycles_per_weight(bits))


def _merge_runs(runs: list[tuple[int, Tile]]) -> list[tuple[int, Tile]]:
    out: list[tuple[int, Tile]] = []
    for c, t in runs:
        if c <= 0:
            continue
        if out and out[-1][1] == t:
            out[-1] = (out[-1][0] + c, t)
        else:
            out.append((c, t))
    return out


def _check_bytes(plan: OpPlan, op: Op) -> None:
    moved = plan.read_bytes + plan.write_bytes
    if moved + 1e-6 * max(1.0, op.bytes) < op.bytes:
        raise AssertionError(f"{op.name} ({op.module}): plan moves {moved:.0f} B < trace {op.bytes:.0f} B")


def _operand_budget(core: CoreBuffers) -> float:
    """Bytes one in-flight tile may hold in the scratchpad."""
    return core.operand_bytes / (2 if core.double_buffered else 1)


def plan_attention(npu: NpuConfig, core: CoreBuffers, op: Op) -> OpPlan:
    """Attention tiles (module doc). A ragged op (``kv_len_counts``: [[L, sequences], ...], the
    batch of a decode iteration, :func:`sim.systems.decode.ragged_attention_op`) runs each length's
    tiles one after another in one op, as one variable-length kernel would: the pipeline fills and
    the first tile loads once, not once per length."""
    if npu.mapping.attention == "serial_gemv":
        return plan_attention_serial_gemv(npu, core, op)
    core = core_for_bits(npu, core, op.kv_bits)   # K and V are the arrays' stationary operands
    e = op.extra
    h, hkv = int(e["heads"]), int(e["kv_heads"])
    lq, d, dv = int(e["q_len"]), int(e["head_dim"]), int(e["v_head_dim"])
    groups = [(int(L), int(n)) for L, n in (e.get("kv_len_counts") or [[e["kv_len"], e["batch"]]])]
    b = sum(n for _, n in groups)
    out_bytes = _out_bytes(op)
    elem = out_bytes / (b * h * lq * dv)        # activation width as traced
    q_bytes = b * h * lq * d * elem
    kv_total = max(0.0, op.bytes - out_bytes - q_bytes)
    keys = hkv * sum(L * n for L, n in groups)
    kv_per_key = kv_total / keys if keys else 0.0   # K and V bytes of one key of one KV head
    runs: list[tuple[int, Tile]] = []
    detail: dict = {}
    repeat = 1
    for lk, n in groups:
        unit, detail, rows, seen = _unit_tiles(npu, core, e, lq, lk, h // hkv, d, dv, kv_per_key, elem)
        units = n * hkv
        if len(unit) == 1 and unit[0][0] == 1 and units > 1 and op.phase == "decode" and core.dataflow != "is":
            # one tile per (sequence, KV head): a decode GEMV whose folds may leave arrays idle;
            # tiles of several units fill them (the units are independent; with an input-stationary
            # array the units' own queries would be the stationary operand: not packed)
            grouped, per = _grouped_units(npu, core, unit[0][1], units, rows, seen, d, dv)
            runs += grouped
            detail["units_per_tile"] = per
        elif len(groups) == 1:
            runs, repeat = unit, units          # the unit's pattern, played once per unit
        else:
            runs += unit * units
    if len(groups) > 1:
        detail = {"lengths": len(groups), "sequences": b}
    plan = OpPlan(op, "array", _merge_runs(runs), detail, repeat=repeat, fill_cycles=pipeline_fill_cycles(core))
    _check_bytes(plan, op)
    return plan


def _unit_tiles(npu: NpuConfig, core: CoreBuffers, e: dict, lq: int, lk: int, g: int, d: int, dv: int,
                kv_per_key: float, elem: float) -> tuple[list[tuple[int, Tile]], dict, int, int]:
    """The tiles of one (sequence, KV head) unit with ``lk`` keys: (runs, detail, query rows and
    keys of the last query block)."""
    causal, window = bool(e.get("causal")), e.get("sliding_window")
    budget = _operand_budget(core)
    acc_elem = core.acc_element_bytes
    # query block and key chunk: the largest query block whose key chunks still give every array
    # a fold (Q.K^T has ceil(keys / C) folds); scores (rows x keys partial sums) in half the
    # accumulator, K/V chunks in the tile budget (Q, reused over the chunks, is counted in the
    # loads but held beside the scores)
    def chunk_for(qb: int) -> int:
        by_acc = int(core.accumulator_bytes / 2 // (qb * g * acc_elem))
        by_spad = int(budget // max(kv_per_key, 1e-9))
        return max(1, min(lk, by_acc, by_spad))

    qb = lq
    while qb > 16 and chunk_for(qb) < min(lk, core.cols * core.arrays):
        qb = math.ceil(qb / 2)
    lc = chunk_for(qb)
    lc = math.ceil(lk / math.ceil(lk / lc))     # balanced chunks
    past = lk - lq
    runs: list[tuple[int, Tile]] = []
    rows = seen = 0
    for q0 in range(0, lq, qb):
        q1 = min(lq, q0 + qb)
        rows = (q1 - q0) * g
        hi = min(lk, past + q1) if causal else lk
        lo = max(0, past + q0 + 1 - window) if (causal and window) else 0
        seen = hi - (lo // lc) * lc      # the keys the tiles below cover
        tiles = []
        for c0 in range((lo // lc) * lc, hi, lc):
            keys = min(lc, hi - c0)
            sm = vector_cycles(npu, "softmax", rows, keys)
            load = keys * kv_per_key + (rows * d * elem if not tiles else 0.0)
            tiles.append(Tile(load, (array_phase(core, rows, d, keys), ("vector", sm.cycles, sm.units_used),
                                     array_phase(core, rows, keys, dv)), 0.0))
        if not tiles:   # no visible key (cannot happen with a causal mask over its own token)
            continue
        last = tiles[-1]
        tiles[-1] = Tile(last.load_bytes, last.phases, rows * dv * elem)
        runs += _merge_runs([(1, t) for t in tiles])
    return runs, {"query_block": qb, "key_chunk": lc}, rows, seen


def _grouped_units(npu: NpuConfig, core: CoreBuffers, one: Tile, units: int, rows: int, keys: int, d: int,
                   dv: int) -> tuple[list[tuple[int, Tile]], int]:
    """Tiles of ``per`` independent attention units (one sequence and KV head each, all of one
    shape: ``rows`` query rows against ``keys`` keys, in the single tile ``one``) with their folds
    spread over the arrays together: a unit whose Q.K^T has fewer folds than there are arrays
    leaves the rest idle, and a tile holds the array group. ``per``: the number of units, within
    the operand budget and half the accumulator (the scores), whose Q.K^T and P.V folds fill the
    arrays' rounds best (the larger on a tie). Returns the runs and ``per``."""
    fq = -(-keys // core.cols) * -(-d // core.rows)      # folds of one unit's Q.K^T (keys stationary)
    fv = -(-keys // core.rows) * -(-dv // core.cols)     # and of its P.V
    by_spad = int(_operand_budget(core) // max(one.load_bytes, 1e-9))
    by_acc = int(core.accumulator_bytes / 2 // max(1, rows * keys * core.acc_element_bytes))
    limit = max(1, min(units, by_spad, by_acc, 4 * core.arrays))
    a = core.arrays

    def packing(n: int) -> float:   # folds run / fold slots taken
        return n * (fq + fv) / ((-(-n * fq // a) + -(-n * fv // a)) * a)

    per = max(range(1, limit + 1), key=lambda n: (round(packing(n), 9), n))
    if per == 1:
        return [(units, one)], 1

    def tile(n: int) -> Tile:
        # n units side by side: each keeps its own folds (keys and dv padded to whole folds)
        kp, dp = -(-keys // core.cols) * core.cols, -(-dv // core.cols) * core.cols
        sm = vector_cycles(npu, "softmax", n * rows, keys)
        return Tile(n * one.load_bytes, (array_phase(core, rows, d, n * kp), ("vector", sm.cycles, sm.units_used),
                                          array_phase(core, rows, keys, n * dp)), n * one.store_bytes)

    full, rest = divmod(units, per)
    return [(full, tile(per))] + ([(1, tile(rest))] if rest else []), per


def serial_gemv_head_cycles(npu: NpuConfig, core: CoreBuffers, q_len: int, kv_len: int) -> int:
    """Core cycles one head adds to NeuPIMs' FusedMHA chain (casys-kaist/NeuPIMs, commit 57617ee:
    src/operations/FusedMHA.cc builds the instructions, src/NeuPIMSystolicWS.cc times them).

    One in-order compute pipeline (R x C arrays; the ``count`` arrays only divide streamed rows):
    an instruction takes R + C - 2 + max(size, 4) cycles from its start; a GEMM_PRELOAD starts
    2R - 1 after issue on an empty pipeline, R after the previous instruction's start otherwise;
    an instruction issues when its operands are in the buffers. Per head:

    * q.K^T, a GEMM_PRELOAD of streamed size q_len x L / count (integer division), starts R after
      the previous head's last p.V block and finishes R + C - 2 + max(size, 4) later;
    * the softmax over L on a vector unit (their formula, :func:`sim.npu.vector.vector_cycles`)
      waits for it;
    * p.V: ceil((L + 127) / 128) GEMM_PRELOADs (their loop ``for (ii = 0; ii < L + 127; ii += 128)``,
      with 128 = R here), the first 2R - 1 after the softmax (the pipeline has drained), the others
      R apart; the next head's q.K^T starts R after the last.

    So a head adds R + C - 2 + max(q_len L // count, 4) + softmax(L) + 2R - 1 + R x blocks."""
    r, c = core.rows, core.cols
    qk = r + c - 2 + max(q_len * kv_len // core.arrays, 4)
    soft = vector_cycles(npu, "softmax", q_len, kv_len).cycles
    blocks = math.ceil((kv_len + r - 1) / r)
    return qk + soft + 2 * r - 1 + r * blocks


def plan_attention_serial_gemv(npu: NpuConfig, core: CoreBuffers, op: Op) -> OpPlan:
    """NeuPIMs' C++ simulator's NPU attention (``mapping.attention: serial_gemv``), for comparisons
    with that simulator: one tile per request holding all its heads (their scratchpad size comes
    from a 134 MB key, so every request fits), loaded while the previous request computes; the
    tile's heads run :func:`serial_gemv_head_cycles` one after another on the arrays, which the
    in-order issue keeps from starting other work while a softmax runs. Not a schedule a real NPU
    compiler would choose: the heads and requests are independent. A ragged op (``kv_len_counts``:
    [[L, requests], ...], :func:`sim.systems.decode.ragged_attention_op`) runs its requests as one
    op, as their FusedMHA does; the first preload and the last drain (about 400 cycles per op) are
    left out, as they are once per iteration there."""
    e = op.extra
    h, hkv, lq = int(e["heads"]), int(e["kv_heads"]), int(e["q_len"])
    d, dv = int(e["head_dim"]), int(e["v_head_dim"])
    if lq != 1:
        raise LlmsimError(f"mapping.attention: serial_gemv models NeuPIMs' simulator's decode schedule (one query "
                          f"per sequence); {op.module or op.name} has {lq} (use tiled)")
    if npu.systolic.pe.kind != "parallel":
        raise LlmsimError("mapping.attention: serial_gemv models NeuPIMs' simulator's fp16 arrays; "
                          f"{npu.name} has {npu.systolic.pe.kind} PEs (use tiled)")
    groups = [(int(L), int(n)) for L, n in (e.get("kv_len_counts") or [[e["kv_len"], e["batch"]]])]
    requests = sum(n for _, n in groups)
    out_bytes = _out_bytes(op)
    elem = out_bytes / (requests * h * lq * dv)
    q_bytes = h * lq * d * elem                          # per request
    keys = hkv * sum(L * n for L, n in groups)
    kv_per_key = max(0.0, op.bytes - out_bytes - requests * q_bytes) / keys if keys else 0.0
    runs = []
    for L, n in groups:
        cycles = h * serial_gemv_head_cycles(npu, core, lq, L)
        runs.append((n, Tile(q_bytes + hkv * L * kv_per_key, (("array", cycles, core.arrays),), out_bytes / requests)))
    plan = OpPlan(op, "array", _merge_runs(runs), {"mapping": "serial_gemv", "requests": requests})
    _check_bytes(plan, op)
    return plan


def _vector_kind(op: Op) -> tuple[str, str]:
    base = op.name.split(".")[1] if op.name.startswith("aten.") else op.name
    if base in SOFTMAX_NAMES:
        return "softmax", base
    if "layer_norm" in base or "group_norm" in base or "batch_norm" in base:
        return "layer_norm", base
    if "rms_norm" in base:
        return "rms_norm", base
    if base in REDUCTIONS:
        return "reduction", base
    return "pointwise", base


def plan_streaming(npu: NpuConfig, core: CoreBuffers, op: Op, vector: bool) -> OpPlan:
    """A vector or DMA-only op: its bytes in tiles that fit the scratchpad, rows split evenly."""
    out_b = min(_out_bytes(op), op.bytes)
    in_b = op.bytes - out_b
    if vector:
        kind, base = _vector_kind(op)
        shape = (op.input_shapes[0] if kind == "reduction" and op.input_shapes else
                 op.output_shapes[0] if op.output_shapes else [1])
        n = int(shape[-1]) if shape else 1
        rows = max(1, _numel(shape) // max(n, 1))
    else:
        kind, base, n, rows = "", "", 1, 1
    parts = _chunks(op.bytes, _operand_budget(core))
    if vector and kind != "pointwise":
        parts = min(parts, rows)    # a row is not split across tiles
    runs: list[tuple[int, Tile]] = []
    for size, count in _split(rows if vector and kind != "pointwise" else parts, parts):
        frac = size / (rows if vector and kind != "pointwise" else parts)
        phases: tuple[tuple[str, int, int], ...] = ()
        if vector:
            if kind == "pointwise":
                vc = vector_cycles(npu, kind, 1, max(1, math.ceil(rows * n * frac)), base)
            else:
                vc = vector_cycles(npu, kind, size, n, base)
            phases = (("vector", vc.cycles, vc.units_used),)
        runs.append((count, Tile(in_b * frac, phases, out_b * frac)))
    plan = OpPlan(op, "vector" if vector else "dma", _merge_runs(runs), {"kind": kind} if vector else {})
    _check_bytes(plan, op)
    return plan


def plan_op(npu: NpuConfig, core: CoreBuffers, op: Op) -> OpPlan:
    """The tiles of one trace op on one core (see the module doc for the placement)."""
    if op.op_class == "gemm":
        return plan_gemm(npu, core, op)
    if op.op_class == "attention":
        return plan_attention(npu, core, op)
    if op.op_class in DMA_ONLY:
        return plan_streaming(npu, core, op, vector=False)
    return plan_streaming(npu, core, op, vector=True)
