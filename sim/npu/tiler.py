"""GEMM tiling for one NPU core: tiles that fit the (double-buffered) scratchpad and accumulator,
chosen for the least estimated time, with the DRAM traffic the choice implies.

Loop nest (weight-stationary friendly, outputs finished in the accumulator):

    for n-block (Nt columns of W and C):
        for m-block (Mt rows of A and C):
            for k-block (Kt):   load A[m, k] and W[k, n] (unless resident), compute, accumulate
            store C[m, n]

Traffic: W is read once per m-block (once in all when Mt = M); A once per n-block unless the whole
of A stays in the scratchpad beside the W tiles (then once). C is written once. Bytes beyond the
compulsory ones (every operand read once, the output written once) are *re-fetch* traffic and are
reported as such. Fitting: operand tiles (Mt*Kt + Kt*Nt elements, twice when double-buffered, plus
all of A when it is kept resident) within the scratchpad; Mt*Nt partial sums within the
accumulator (single-buffered: a finished block drains before the next starts accumulating).

The choice: candidate tile sizes (multiples of the array edge, powers of two and the full
dimension) scored by the pipeline's steady state per tile, max(load, compute, (load + memory
latency + compute) / buffers), times the tiles, plus one tile's load and the arrays' fill; ties go
to fewer tiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from sim.npu.systolic import gemm_cycles, map_gemm


@dataclass(frozen=True)
class CoreBuffers:
    """What the tiler needs of a core (from NpuConfig)."""

    rows: int
    cols: int
    arrays: int
    dataflow: str
    fold_pipelining: bool
    operand_bytes: int
    accumulator_bytes: int
    acc_element_bytes: int
    double_buffered: bool
    bytes_per_cycle: float     # sustained memory bytes per core cycle (all channels)
    latency_cycles: float = 0  # a load's data arrives this many core cycles after its last byte
    dot_size: int = 1          # stationary elements per PE (bit-serial arrays: reduction lanes)
    cycles_per_weight: int = 1  # cycles a streamed row spends per stationary element (bit-serial)


def array_dims(core: CoreBuffers, m: int, k: int, n: int) -> tuple[int, int, int]:
    """The GEMM an array of one-MAC PEs would see: on a bit-serial weight-stationary array each PE
    holds ``dot_size`` consecutive weights of the reduction dimension (the array's rows cover
    ``rows x dot_size`` of K) and every streamed row stays ``cycles_per_weight`` cycles, so
    (M, K, N) runs as (M x cycles_per_weight, ceil(K / dot_size), N) does on a plain array."""
    if core.dot_size == 1 and core.cycles_per_weight == 1:
        return m, k, n
    return m * core.cycles_per_weight, math.ceil(k / core.dot_size), n


@dataclass(frozen=True)
class GemmTiling:
    m: int
    k: int
    n: int
    mt: int
    kt: int
    nt: int
    a_resident: bool
    read_a_bytes: float        # A over the whole GEMM (one batch element)
    read_w_bytes: float
    write_c_bytes: float
    compulsory_bytes: float
    compute_cycles: int        # the sum over tiles (systolic model)
    estimate_cycles: float

    @property
    def blocks(self) -> tuple[int, int, int]:
        return math.ceil(self.m / self.mt), math.ceil(self.k / self.kt), math.ceil(self.n / self.nt)

    @property
    def tiles(self) -> int:
        bm, bk, bn = self.blocks
        return bm * bk * bn

    @property
    def refetch_bytes(self) -> float:
        return self.read_a_bytes + self.read_w_bytes + self.write_c_bytes - self.compulsory_bytes


def _candidates(dim: int, unit: int) -> list[int]:
    out = {dim}
    t = unit
    while t < dim:
        out.add(t)
        t *= 2
    p = 1
    while p < min(dim, unit):
        out.add(p)
        p *= 2
    return sorted(x for x in out if x >= 1)


def tile_compute_cycles(core: CoreBuffers, m: int, k: int, n: int) -> int:
    """Array cycles of one tile. Serial folds (SCALE-Sim): the tile's own preload, fill and drain
    per fold. Pipelined folds (NeuPIMs): the arrays stream fold after fold and tile after tile, so
    a tile costs its steady-state share, ``ceil(folds / arrays) x max(T, 4, preload)``, and the
    fill and drain are charged once per op (:func:`pipeline_fill_cycles`). NeuPIMs issues a fold
    with new weights ``R`` cycles after the previous one (its preload); we also keep it from
    entering before the previous fold's T rows have (NeuPIMs allows that when T > R)."""
    m, k, n = array_dims(core, m, k, n)
    if not core.fold_pipelining:
        return gemm_cycles(m, k, n, core.rows, core.cols, core.dataflow, core.arrays, False).cycles
    sr, sc, t = map_gemm(m, k, n, core.dataflow)
    folds = math.ceil(sr / core.rows) * math.ceil(sc / core.cols)
    preload = core.rows if core.dataflow in ("ws", "is") else 0
    return math.ceil(folds / core.arrays) * max(t, 4, preload)


def pipeline_fill_cycles(core: CoreBuffers) -> int:
    """Pipelined folds: the first fold's preload plus the array's fill and drain (R + C - 2),
    exposed once per op."""
    if not core.fold_pipelining:
        return 0
    return (core.rows if core.dataflow in ("ws", "is") else 0) + core.rows + core.cols - 2


def block_sizes(dim: int, t: int) -> list[tuple[int, int]]:
    """(size, count) of the blocks of ``dim`` cut into ``t``: the full ones, then the remainder."""
    full, rest = divmod(dim, t)
    return [(t, full)] * (full > 0) + [(rest, 1)] * (rest > 0)


def gemm_compute_cycles(core: CoreBuffers, m: int, k: int, n: int, mt: int, kt: int, nt: int) -> int:
    total = 0
    for sm, cm in block_sizes(m, mt):
        for sk, ck in block_sizes(k, kt):
            for sn, cn in block_sizes(n, nt):
                total += cm * ck * cn * tile_compute_cycles(core, sm, sk, sn)
    return total


@lru_cache(maxsize=4096)
def choose_tiling(core: CoreBuffers, m: int, k: int, n: int, elem_bytes: int, weight_bytes: float) -> GemmTiling:
    """The best tiling of an (m x k) @ (k x n) GEMM; ``weight_bytes`` per element of the second
    operand (quantised weights, or the KV cache's width)."""
    a_full = m * k * elem_bytes
    compulsory = a_full + k * n * weight_bytes + m * n * elem_bytes
    best: GemmTiling | None = None
    buf = 2 if core.double_buffered else 1
    edge = max(core.rows, core.cols)
    for mt in _candidates(m, edge):
        for nt in _candidates(n, core.cols * core.arrays):
            if mt * nt * core.acc_element_bytes > core.accumulator_bytes:
                continue
            for kt in _candidates(k, core.rows * core.dot_size):
                tile_bytes = mt * kt * elem_bytes + kt * nt * weight_bytes
                bm, bk, bn = math.ceil(m / mt), math.ceil(k / kt), math.ceil(n / nt)
                if buf * tile_bytes > core.operand_bytes:
                    continue
                resident = bn > 1 and a_full + buf * kt * nt * weight_bytes <= core.operand_bytes
                read_a = a_full * (1 if resident or bn == 1 else bn)
                read_w = k * n * weight_bytes * bm
                write_c = m * n * elem_bytes
                compute = gemm_compute_cycles(core, m, k, n, mt, kt, nt)
                traffic = read_a + read_w + write_c
                tiles = bm * bk * bn
                load_t, comp_t = traffic / core.bytes_per_cycle / tiles, compute / tiles
                # steady state per tile: the slower of load and compute, or, when the buffers
                # cannot cover the data's latency, load + latency + compute over the buffers
                per_tile = max(load_t, comp_t, (load_t + core.latency_cycles + comp_t) / buf)
                est = tiles * per_tile + tile_bytes / core.bytes_per_cycle + pipeline_fill_cycles(core)
                cand = GemmTiling(m, k, n, mt, kt, nt, resident, read_a, read_w, write_c, compulsory, compute, est)
                if best is None or (est, cand.tiles) < (best.estimate_cycles, best.tiles):
                    best = cand
    if best is None:
        raise ValueError(f"GEMM {m}x{k}x{n}: no tile fits the scratchpad ({core.operand_bytes} B) and "
                         f"accumulator ({core.accumulator_bytes} B)")
    return best
