"""`llmsim validate npu`: the systolic model against the real SCALE-Sim, and the NPU simulator
against its roofline.

References: SCALE-Sim 3.0.0's compute cycles, as ``tools/scalesim_golden.py`` recorded them in
``tests/data/scalesim_golden.csv`` (its reported 0-indexed total + 1, stall cycles 0); the
roofline time of a GEMM on the same device (``sim.roofline``, from the config's peaks).
"""

from __future__ import annotations

import csv
from typing import Any

from sim.config.paths import project_root
from sim.validate.cases import Case

GOLDEN = "tests/data/scalesim_golden.csv"
# shapes the quick form checks (array 128x128); the full form checks every golden row
QUICK = {(1, 4096, 256), (7, 100, 129), (129, 257, 7), (257, 257, 257), (512, 512, 512), (300, 1000, 200)}


def scalesim_cases(quick: bool) -> list[Case]:
    from sim.npu.systolic import gemm_cycles

    path = project_root() / GOLDEN
    if not path.exists():
        return [Case("SCALE-Sim golden cycles", None, 0.0, "cycles", None, None, GOLDEN,
                     note=f"{GOLDEN} not found (run tools/scalesim_golden.py)")]
    rows = list(csv.DictReader(path.open()))
    out: list[Case] = []
    worst = 0.0
    checked = matched = 0
    for r in rows:
        R, C, M, K, N = (int(r[k]) for k in ("rows", "cols", "M", "K", "N"))
        if quick and ((R, C) != (128, 128) or (M, K, N) not in QUICK):
            continue
        ref = int(r["compute_cycles"])
        t = gemm_cycles(M, K, N, R, C, r["dataflow"])
        checked += 1
        ok = abs(t.cycles - ref) <= t.folds
        matched += ok
        worst = max(worst, abs(t.cycles - ref) / t.folds)
        if quick or not ok:
            out.append(Case(f"SCALE-Sim {r['dataflow']} {R}x{C} GEMM {M}x{K}x{N}", float(ref), float(t.cycles),
                            "cycles", "within 1 cycle per fold", ok,
                            "SCALE-Sim 3.0.0 compute cycles (tests/data/scalesim_golden.csv)"))
    if not quick:
        out.append(Case("SCALE-Sim golden GEMMs (ws, os, is; 4 array shapes) within 1 cycle per fold",
                        float(checked), float(matched), "GEMMs", "all of them", matched == checked,
                        "SCALE-Sim 3.0.0 compute cycles (tests/data/scalesim_golden.csv)",
                        note=f"worst difference {worst:.2f} cycles per fold"))
    return out


def gemm_roofline_case(quick: bool) -> Case:
    from sim.config import load_hw
    from sim.npu.simulate import gemm_trace, simulate_trace

    npu = load_hw("neupims-npu")
    n = 2048 if quick else 4096
    res = simulate_trace(npu, gemm_trace(n, n, n), record_members=False)
    o = res.ops[0]
    return Case(f"{n}^3 GEMM on neupims-npu: simulated / roofline time", 1.0, o.score, "ratio",
                "1 <= ratio <= 1.25", 1.0 <= o.score <= 1.25,
                "roofline time from the config's peaks (262 TFLOP/s, 1.024 TB/s)",
                note="above 1: refresh, re-fetched tiles, pipeline fill and drain")


def run(quick: bool = False) -> dict[str, Any]:
    cases = [*scalesim_cases(quick), gemm_roofline_case(quick)]
    for c in cases:
        c.suite = "npu"
    return {"suite": "npu", "what": "systolic cycles vs SCALE-Sim 3.0.0; NPU vs its roofline", "cases": cases}
