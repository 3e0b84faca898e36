"""Systolic-array cycle model (sim.npu.systolic): the real SCALE-Sim's cycles, NeuPIMs' pipelining.

The golden rows come from SCALE-Sim 3.0.0 itself (tools/scalesim_golden.py writes
tests/data/scalesim_golden.csv); these tests only read the CSV.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from sim.config import load_hw
from sim.npu.systolic import GemmTiming, gemm_cycles, gemm_timing, map_gemm

GOLDEN = Path(__file__).resolve().parent / "data" / "scalesim_golden.csv"


def _golden_rows() -> list[dict]:
    with open(GOLDEN, newline="") as f:
        return list(csv.DictReader(f))


GOLDEN_ROWS = _golden_rows()


def test_golden_covers_every_dataflow_odd_sizes_and_arrays():
    assert len(GOLDEN_ROWS) > 1000
    assert {r["dataflow"] for r in GOLDEN_ROWS} == {"ws", "os", "is"}
    arrays = {(int(r["rows"]), int(r["cols"])) for r in GOLDEN_ROWS}
    assert {(128, 128), (8, 8), (4, 16), (16, 4)} <= arrays
    big = [r for r in GOLDEN_ROWS if r["rows"] == "128"]
    for dim in ("M", "K", "N"):
        assert {"1", "7", "100", "129", "257"} <= {r[dim] for r in big}
    assert all(int(r["stall_cycles"]) == 0 for r in GOLDEN_ROWS)


def test_cycles_equal_scalesim_compute_cycles_exactly():
    """Every golden row, cycle-exact (the brief allowed 1 cycle per fold; none is needed)."""
    bad = []
    for r in GOLDEN_ROWS:
        m, k, n, rows, cols = (int(r[x]) for x in ("M", "K", "N", "rows", "cols"))
        t = gemm_cycles(m, k, n, rows, cols, r["dataflow"])
        assert int(r["stall_cycles"]) == 0
        # SCALE-Sim's "Total Cycles" is the 0-indexed cycle of the last step
        assert int(r["compute_cycles"]) == int(r["total_cycles_reported"]) + 1
        if t.cycles != int(r["compute_cycles"]) or t.scalesim_total_cycles != int(r["total_cycles_reported"]):
            bad.append((r["dataflow"], rows, cols, m, k, n, int(r["compute_cycles"]), t.cycles, t.folds))
    assert not bad, f"{len(bad)} mismatches, e.g. {bad[:5]}"


def test_mapping_efficiency_and_util_match_scalesim_report():
    for r in GOLDEN_ROWS:
        m, k, n, rows, cols = (int(r[x]) for x in ("M", "K", "N", "rows", "cols"))
        t = gemm_cycles(m, k, n, rows, cols, r["dataflow"])
        assert t.mapping_efficiency * 100 == pytest.approx(float(r["mapping_efficiency_pct"]), rel=1e-9)
        # SCALE-Sim's overall util divides by its 0-indexed cycle count
        assert t.macs * 100 / (t.scalesim_total_cycles * rows * cols) == \
            pytest.approx(float(r["overall_util_pct"]), rel=1e-9)
        assert t.utilization == pytest.approx(t.macs / (t.cycles * rows * cols))


def test_serial_formulas_by_hand():
    # ws on 128x128: Sr = K = 300 (3 row folds), Sc = N = 200 (2 col folds), T = M = 50
    t = gemm_cycles(50, 300, 200, 128, 128, "ws")
    assert (t.sr, t.sc, t.t, t.row_folds, t.col_folds, t.folds) == (300, 200, 50, 3, 2, 6)
    assert t.fold_cycles == 2 * 128 + 128 + 50 - 2
    assert t.cycles == 6 * (2 * 128 + 128 + 50 - 2)
    assert t.mapping_efficiency == pytest.approx(300 * 200 / (6 * 128 * 128))
    # os: Sr = M, Sc = N, T = K; no preload
    t = gemm_cycles(50, 300, 200, 128, 128, "os")
    assert (t.sr, t.sc, t.t, t.folds) == (50, 200, 300, 2)
    assert t.cycles == 2 * (300 + 128 + 128 - 2)
    # is: Sr = K, Sc = M, T = N
    t = gemm_cycles(50, 300, 200, 128, 128, "is")
    assert (t.sr, t.sc, t.t, t.folds) == (300, 50, 200, 3)
    assert t.cycles == 3 * (2 * 128 + 128 + 200 - 2)
    # non-square array: R and C enter separately
    assert gemm_cycles(3, 5, 7, 4, 16, "ws").cycles == 2 * (2 * 4 + 16 + 3 - 2)
    assert gemm_cycles(3, 5, 7, 16, 4, "os").cycles == 2 * (5 + 16 + 4 - 2)


def test_mapping_table():
    assert map_gemm(2, 3, 5, "ws") == (3, 5, 2)
    assert map_gemm(2, 3, 5, "os") == (2, 5, 3)
    assert map_gemm(2, 3, 5, "is") == (3, 2, 5)
    with pytest.raises(ValueError):
        map_gemm(2, 3, 5, "rs")


def test_dimension_one_and_zero():
    # a 1x1x1 GEMM still pays the full array's fill and drain
    assert gemm_cycles(1, 1, 1, 128, 128, "ws").cycles == 2 * 128 + 128 + 1 - 2
    assert gemm_cycles(1, 1, 1, 128, 128, "os").cycles == 1 + 128 + 128 - 2
    assert gemm_cycles(1, 1, 1, 1, 1, "ws").cycles == 2 + 1 + 1 - 2
    assert gemm_cycles(1, 1, 1, 1, 1, "os").cycles == 1
    # decode GEMV (M = 1) on ws: one streamed row per fold, K/128 x N/128 folds
    t = gemm_cycles(1, 4096, 4096, 128, 128, "ws")
    assert t.folds == 32 * 32 and t.cycles == 1024 * (2 * 128 + 128 + 1 - 2)
    assert t.utilization == pytest.approx(4096 * 4096 / (t.cycles * 128 * 128))
    # an empty GEMM takes no time (a core given no rows)
    for dims in ((0, 5, 5), (5, 0, 5), (5, 5, 0)):
        z = gemm_cycles(*dims, 8, 8, "ws", arrays=4, fold_pipelining=True)
        assert z.cycles == 0 and z.folds == 0 and z.utilization == 0.0 and z.macs == 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        gemm_cycles(-1, 2, 2, 8, 8, "ws")
    with pytest.raises(ValueError):
        gemm_cycles(2, 2, 2, 0, 8, "ws")
    with pytest.raises(ValueError):
        gemm_cycles(2, 2, 2, 8, 8, "ws", arrays=0)
    with pytest.raises(ValueError):
        gemm_cycles(2, 2, 2, 8, 8, "xs")


# -- NeuPIMs' pipelined folds ---------------------------------------------------------------------


def test_pipelined_single_fold_equals_serial_when_t_at_least_4():
    for m in (4, 5, 100):
        a = gemm_cycles(m, 100, 100, 128, 128, "ws", fold_pipelining=True)
        b = gemm_cycles(m, 100, 100, 128, 128, "ws")
        assert a.folds == 1 and a.cycles == b.cycles == 2 * 128 + 128 + m - 2


def test_pipelined_by_hand():
    # ws 8x8, K = 20 (3 row folds), N = 10 (2 col folds): 6 folds, T = M = 12 >= P = 8.
    # Preload 8 once; fold i enters at 8 + 12i; the last (i = 5) ends 8 + 8 - 2 + 12 later.
    t = gemm_cycles(12, 20, 10, 8, 8, "ws", fold_pipelining=True)
    assert t.folds == 6
    assert t.cycles == 8 + 5 * 12 + (8 + 8 - 2 + 12) == 8 + 8 + 8 - 2 + 6 * 12 == 94
    assert t.fold_cycles == 2 * 8 + 8 + 12 - 2          # the serial fold, for reference
    assert gemm_cycles(12, 20, 10, 8, 8, "ws").cycles == 6 * 34
    # T = 5 < P = 8: a fold with new weights enters only after its preload, 8 cycles after the last
    t = gemm_cycles(5, 20, 10, 8, 8, "ws", fold_pipelining=True)
    assert t.cycles == 8 + (8 + 8 - 2 + 5) + 5 * 8 == 67
    # T < 4: a fold still occupies the array 4 cycles (NeuPIMs' max(T, 4)), the preload 8
    t = gemm_cycles(1, 20, 10, 8, 8, "ws", fold_pipelining=True)
    assert t.cycles == 8 + (8 + 8 - 2 + 4) + 5 * 8 == 66
    assert gemm_cycles(1, 8, 8, 8, 8, "ws", fold_pipelining=True).cycles == 8 + 8 + 8 - 2 + 4
    # os has no stationary preload: R + C - 2 + n max(T, 4)
    t = gemm_cycles(20, 6, 10, 8, 8, "os", fold_pipelining=True)   # Sr 20 (3), Sc 10 (2), T 6
    assert t.cycles == 8 + 8 - 2 + 6 * 6


def test_pipelined_never_slower_than_serial_when_t_at_least_4():
    for dims in ((4, 300, 700), (64, 4096, 4096), (1000, 129, 257)):
        for df in ("ws", "os", "is"):
            p = gemm_cycles(*dims, 128, 128, df, fold_pipelining=True)
            s = gemm_cycles(*dims, 128, 128, df)
            assert p.cycles <= s.cycles and p.folds == s.folds


# -- several arrays -------------------------------------------------------------------------------


def test_arrays_share_folds_round_robin():
    # 6 folds on 4 arrays: two arrays run 2 folds, the GEMM ends with them
    t = gemm_cycles(5, 20, 10, 8, 8, "ws", arrays=4)
    assert (t.folds, t.folds_per_array, t.arrays_used) == (6, 2, 4)
    assert t.cycles == 2 * 27
    assert t.utilization == pytest.approx(5 * 20 * 10 / (54 * 8 * 8 * 4))
    t = gemm_cycles(5, 20, 10, 8, 8, "ws", arrays=4, fold_pipelining=True)
    assert t.cycles == 8 + (8 + 8 - 2 + 5) + 1 * 8      # the second fold waits for its preload
    # more arrays than folds: one fold each, the rest idle (and counted in utilization)
    t = gemm_cycles(5, 8, 8, 8, 8, "ws", arrays=8)
    assert (t.folds, t.arrays_used, t.cycles) == (1, 1, 27)
    assert t.utilization == pytest.approx(5 * 8 * 8 / (27 * 8 * 8 * 8))
    # an exact split divides the serial time
    one = gemm_cycles(7, 1024, 1024, 128, 128, "ws")
    eight = gemm_cycles(7, 1024, 1024, 128, 128, "ws", arrays=8)
    assert one.folds == 64 and eight.cycles * 8 == one.cycles


def test_gemm_timing_reads_the_npu_config():
    npu = load_hw("neupims-npu")            # 8 x 128x128 ws arrays, fold pipelining on
    t = gemm_timing(npu, 64, 4096, 4096)
    assert isinstance(t, GemmTiming)
    assert t.folds == 1024 and t.folds_per_array == 128
    # T = 64 < R: each new-weight fold enters 128 cycles (its preload) after the previous one
    assert t.cycles == 128 + (128 + 128 - 2 + 64) + 127 * 128
    ss = load_hw("scalesim-128x128-ws")      # one array, serial folds
    assert gemm_timing(ss, 64, 4096, 4096).cycles == 1024 * (2 * 128 + 128 + 64 - 2)


def test_large_gemm_is_o1():
    t = gemm_cycles(1 << 20, 1 << 20, 1 << 20, 128, 128, "ws", arrays=8, fold_pipelining=True)
    assert t.folds == (1 << 13) ** 2
    assert t.cycles == 128 + 128 + 128 - 2 + math.ceil(t.folds / 8) * (1 << 20)
