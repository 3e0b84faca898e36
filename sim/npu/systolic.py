"""Systolic-array cycle model of one GEMM on one NPU core: closed forms, no per-fold loops.

A GEMM ``C[M, N] = A[M, K] @ W[K, N]`` is treated as a 1x1 convolution (SCALE-Sim's GEMM input
mode: ``M`` output pixels, window ``K``, ``N`` filters). Each dataflow keeps one operand in the
array and streams the other through it; it maps the GEMM onto the array as ``Sr`` (the dimension
laid along the array's rows), ``Sc`` (along its columns) and ``T`` (the streamed dimension):

==========  ======  ======  =====  ==================  =============
dataflow    Sr      Sc      T      stationary operand  preload ``P``
==========  ======  ======  =====  ==================  =============
``ws``      K       N       M      weights             R
``os``      M       N       K      outputs             0
``is``      K       M       N      inputs              R
==========  ======  ======  =====  ==================  =============

The GEMM is cut into ``folds = ceil(Sr / R) * ceil(Sc / C)`` pieces of at most ``R x C``
(R, C: the array's rows and columns).

**Serial folds (SCALE-Sim's model, ``fold_pipelining=False``).** Folds run one after another and
every fold pays its own preload, fill and drain, on the *full* array even when it is an edge fold
with fewer rows or columns (SCALE-Sim pads edge folds with null requests)::

    fold_cycles = P + R + C - 2 + T      # ws, is: 2R + C + T - 2;  os: R + C + T - 2
    cycles      = folds * fold_cycles

Source: SCALE-Sim 3.0.0 (PyPI ``scalesim``), ``scalesim/compute/systolic_compute_{ws,os,is}.py``:
the demand matrices of one fold have, for ws, R rows of weight load, T rows of streamed inputs and
C - 1 rows of drain, skewed over R - 1 more (2R + C + T - 2); for os, T + C - 1 rows skewed over
R - 1 (R + C + T - 2); is mirrors ws. ``double_buffered_scratchpad_mem.service_memory_requests``
walks those rows one per cycle. Its report's "Total Cycles" is the 0-indexed cycle of the last
row, so with no stalls it is ``cycles - 1``. Checked cycle-exact against the real tool on
128x128, 8x8 and non-square arrays for all three dataflows (``tools/scalesim_golden.py``,
``tests/data/scalesim_golden.csv``, ``tests/test_npu_systolic.py``).

**Pipelined folds (NeuPIMs' model, ``fold_pipelining=True``).** A fold's latency is
``R + C - 2 + max(T, 4)``; the next fold enters the array ``max(T, 4, P)`` cycles after the
previous one: its rows follow the previous fold's (the skewed fill and drain of consecutive folds
overlap), but a fold with new stationary data cannot enter before that data's preload (``P``
cycles) is done. Only the first fold's preload is exposed before it. For ``n`` folds on one array::

    cycles = P + R + C - 2 + max(T, 4) + (n - 1) * max(T, 4, P)

Source: NeuPIMs' public simulator (casys-kaist/NeuPIMs, ``src/NeuPIMSystolicWS.cc``; summary in
``../shared/reference/neupims.md``): GEMM latency per tile height + width - 2 + max(rows streamed,
4); the first weight preload 2 x height - 1 cycles before the GEMM starts; a GEMM on the same
weights issued max(previous size, 4) cycles after the previous one, a GEMM with new weights
(GEMM_PRELOAD) height cycles after it. We take the larger of the two for a new-weight fold (NeuPIMs
lets it enter after height cycles even when the previous fold streams more rows than that, which
an array cannot do) and P = R, not 2R - 1, for the first preload. For one fold with T >= 4 both
models give 2R + C + T - 2.

**Several arrays per core (``arrays``).** Folds are dealt round-robin over the arrays; each array
runs its share as above (serially or pipelined) and the GEMM ends when the busiest array, with
``ceil(folds / arrays)`` folds, ends. Several cores: the caller splits the GEMM; this model is per
core.

Reported alongside the cycles: ``utilization = macs / (cycles * R * C * arrays)`` (``macs = M K N``;
SCALE-Sim's "Overall Util" divides by its 0-indexed cycle count instead, a hair higher), and
``mapping_efficiency = Sr * Sc / (folds * R * C)``: the mean over folds of the fraction of the
array's PEs that hold an element, SCALE-Sim's "Mapping Efficiency" (its per-fold average equals
this closed form because the folds tile ``Sr x Sc`` exactly once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from sim.config.hardware import NpuConfig

DATAFLOWS = ("ws", "os", "is")

#: NeuPIMs' minimum issue interval between consecutive folds on one array (cycles).
MIN_FOLD_INTERVAL = 4


@dataclass(frozen=True)
class GemmTiming:
    """Cycles of one GEMM on one core's systolic arrays, with the mapping behind them."""

    cycles: int                # the whole GEMM, 1-indexed (SCALE-Sim reports cycles - 1)
    folds: int                 # ceil(Sr / R) * ceil(Sc / C), over all arrays
    fold_cycles: int           # one fold run alone (serial case): P + R + C - 2 + T
    macs: int                  # M * K * N
    utilization: float         # macs / (cycles * R * C * arrays)
    mapping_efficiency: float  # Sr * Sc / (folds * R * C)
    row_folds: int             # ceil(Sr / R)
    col_folds: int             # ceil(Sc / C)
    sr: int                    # the GEMM dimension along the array's rows
    sc: int                    # ... along its columns
    t: int                     # the streamed dimension
    arrays_used: int           # min(arrays, folds)
    folds_per_array: int       # ceil(folds / arrays): the busiest array's share

    @property
    def scalesim_total_cycles(self) -> int:
        """The "Total Cycles" SCALE-Sim would report (0-indexed; memory never stalling)."""
        return max(self.cycles - 1, 0)


def map_gemm(m: int, k: int, n: int, dataflow: str) -> tuple[int, int, int]:
    """``(Sr, Sc, T)`` of GEMM M x K x N under ``dataflow`` (table in the module docstring)."""
    if dataflow == "ws":
        return k, n, m
    if dataflow == "os":
        return m, n, k
    if dataflow == "is":
        return k, m, n
    raise ValueError(f"dataflow: expected one of {', '.join(DATAFLOWS)}, found {dataflow!r}")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def gemm_cycles(m: int, k: int, n: int, rows: int, cols: int, dataflow: str,
                arrays: int = 1, fold_pipelining: bool = False) -> GemmTiming:
    """Cycles of GEMM ``(m x k) @ (k x n)`` on ``arrays`` systolic arrays of ``rows x cols``.

    ``fold_pipelining=False``: SCALE-Sim's serial folds, ``folds_per_array * (P + R + C - 2 + T)``.
    ``fold_pipelining=True``: NeuPIMs' pipelined folds, ``P + R + C - 2 + max(T, 4) + (n - 1) *
    max(T, 4, P)`` for ``n`` folds per array.
    ``P`` is the preload (R for ws and is, 0 for os). A GEMM with a zero dimension takes 0 cycles.
    See the module docstring for the mapping and the sources.
    """
    for name, v in (("m", m), ("k", k), ("n", n)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name}: expected an integer >= 0, found {v!r}")
    for name, v in (("rows", rows), ("cols", cols), ("arrays", arrays)):
        if int(v) != v or v < 1:
            raise ValueError(f"{name}: expected an integer >= 1, found {v!r}")
    m, k, n, rows, cols, arrays = int(m), int(k), int(n), int(rows), int(cols), int(arrays)
    sr, sc, t = map_gemm(m, k, n, dataflow)
    preload = 0 if dataflow == "os" else rows
    fold_cycles = preload + rows + cols - 2 + t
    macs = m * k * n
    if macs == 0:
        return GemmTiming(cycles=0, folds=0, fold_cycles=fold_cycles, macs=0, utilization=0.0,
                          mapping_efficiency=0.0, row_folds=0, col_folds=0, sr=sr, sc=sc, t=t,
                          arrays_used=0, folds_per_array=0)
    row_folds = _ceil_div(sr, rows)
    col_folds = _ceil_div(sc, cols)
    folds = row_folds * col_folds
    per_array = _ceil_div(folds, arrays)
    if fold_pipelining:
        interval = max(t, MIN_FOLD_INTERVAL, preload)
        cycles = preload + rows + cols - 2 + max(t, MIN_FOLD_INTERVAL) + (per_array - 1) * interval
    else:
        cycles = per_array * fold_cycles
    return GemmTiming(
        cycles=cycles, folds=folds, fold_cycles=fold_cycles, macs=macs,
        utilization=macs / (cycles * rows * cols * arrays),
        mapping_efficiency=(sr * sc) / (folds * rows * cols),
        row_folds=row_folds, col_folds=col_folds, sr=sr, sc=sc, t=t,
        arrays_used=min(arrays, folds), folds_per_array=per_array)


def gemm_timing(npu_config: NpuConfig, m: int, k: int, n: int) -> GemmTiming:
    """:func:`gemm_cycles` on one core of ``npu_config`` (its ``systolic`` block)."""
    s = npu_config.systolic
    return gemm_cycles(m, k, n, s.rows, s.cols, s.dataflow, arrays=s.count,
                       fold_pipelining=s.fold_pipelining)
