#!/usr/bin/env python3
"""Golden compute cycles from the real SCALE-Sim, for tests/test_npu_systolic.py.

Runs SCALE-Sim 3.0.0 (PyPI ``scalesim``) in GEMM input mode on a list of small GEMMs, for the
ws, os and is dataflows, on a 128x128 array, an 8x8 array and two non-square arrays (4x16, 16x4),
and writes ``tests/data/scalesim_golden.csv``.

SCALE-Sim and its pins (``numpy<2``) live in their own virtual environment,
``.cache/scalesim-venv`` (git-ignored; built on first use with the interpreter running this
script), so the project's environment is untouched and the tests only read the CSV.

Setup of each run (``scale.cfg`` keys as the 3.0.0 parser reads them):

* ``InterfaceBandwidth = CALC``: SCALE-Sim estimates the DRAM bandwidth a stall-free run needs, so
  stall cycles are 0 and "Total Cycles" is pure compute; the script checks that every stall count
  is 0;
* 64 MiB ifmap, filter and ofmap SRAMs (every operand fits);
* no custom layouts, no sparsity; traces not saved.

Topology (GEMM mode): one row per layer, ``name, M, N, K,`` where SCALE-Sim's parser takes the
second column as the output rows (M), the third as the output columns (filters, our N) and the
fourth as the reduction (our K): it builds an M x K ifmap and N filters of K.

CSV columns: dataflow, rows, cols, M, K, N (our GEMM: (M x K) @ (K x N)), total_cycles_reported
("Total Cycles" of COMPUTE_REPORT.csv: 0-indexed, stalls included), stall_cycles,
compute_cycles (= total_cycles_reported + 1 - stall_cycles: the number of compute cycles),
overall_util_pct, mapping_efficiency_pct, compute_util_pct (SCALE-Sim's report, as printed).

Usage::

    python tools/scalesim_golden.py            # build the venv if needed, run, write the CSV
    python tools/scalesim_golden.py --jobs 4   # parallel SCALE-Sim processes (default: CPUs, at most 8)

About 1-2 minutes with 8 processes (SCALE-Sim simulates its memory one cycle at a time, in
Python: keep the shapes small; a 1 x 4096 x 4096 GEMM alone takes minutes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import tempfile
import time
import venv
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "scalesim-venv"
OUT_CSV = ROOT / "tests" / "data" / "scalesim_golden.csv"
SCALESIM_PIN = "scalesim==3.0.0"
NUMPY_PIN = "numpy<2"

DATAFLOWS = ("ws", "os", "is")

# (rows, cols) -> GEMM shapes (M, K, N). Every dimension mixes 1, odd sizes, the array edge and
# one past it, so full, edge and single-element folds all appear on both axes of each dataflow.
_BIG = [(512, 512, 512), (1, 4096, 256), (300, 1000, 200), (1024, 256, 384), (64, 384, 1536)]
SHAPES: dict[tuple[int, int], list[tuple[int, int, int]]] = {
    (128, 128): list(product((1, 7, 100, 128, 129, 257), repeat=3)) + _BIG,
    (8, 8): list(product((1, 3, 8, 9, 17), repeat=3)),
    (4, 16): list(product((1, 5, 17, 33), repeat=3)),
    (16, 4): list(product((1, 5, 17, 33), repeat=3)),
}

CONFIG = """\
[general]
run_name = golden

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 65536
FilterSramSzkB = 65536
OfmapSramSzkB = 65536
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

FIELDS = ["dataflow", "rows", "cols", "M", "K", "N", "total_cycles_reported", "stall_cycles",
          "compute_cycles", "overall_util_pct", "mapping_efficiency_pct", "compute_util_pct"]


# ------------------------------------------------------------------------------------------------
# Outer side: project interpreter, stdlib only


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    """Build ``.cache/scalesim-venv`` with scalesim 3.0.0 unless it is already there."""
    py = venv_python()
    check = "import importlib.metadata as m; print(m.version('scalesim'))"
    if py.exists():
        r = subprocess.run([str(py), "-c", check], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip() == SCALESIM_PIN.split("==")[1]:
            return py
    print(f"building {VENV.relative_to(ROOT)} ({SCALESIM_PIN}, {NUMPY_PIN}) ...", flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", SCALESIM_PIN, NUMPY_PIN], check=True)
    return py


def run_group(py: Path, dataflow: str, rows: int, cols: int, shapes: list[tuple[int, int, int]]) -> list[dict]:
    """One SCALE-Sim process: all ``shapes`` as the layers of one topology."""
    with tempfile.TemporaryDirectory(prefix=f"scalesim-{dataflow}-{rows}x{cols}-") as tmp:
        d = Path(tmp)
        (d / "scale.cfg").write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow))
        with open(d / "topology.csv", "w") as f:
            f.write("Layer, M, N, K,\n")
            for i, (m, k, n) in enumerate(shapes):
                f.write(f"gemm{i}, {m}, {n}, {k},\n")
        (d / "layout.csv").write_text("Layer name,\n")     # read but unused without custom layouts
        r = subprocess.run([str(py), str(Path(__file__).resolve()), "--inner", str(d)],
                           capture_output=True, text=True, cwd=d)
        if r.returncode != 0:
            raise RuntimeError(f"SCALE-Sim failed ({dataflow} {rows}x{cols}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        report = (d / "out" / "golden" / "COMPUTE_REPORT.csv").read_text().splitlines()
    out = []
    lines = [ln for ln in report[1:] if ln.strip()]
    if len(lines) != len(shapes):
        raise RuntimeError(f"{dataflow} {rows}x{cols}: {len(lines)} report rows for {len(shapes)} layers")
    for (m, k, n), line in zip(shapes, lines):
        c = [x.strip() for x in line.split(",")]
        # LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, Overall Util %,
        # Mapping Efficiency %, Compute Util %
        total, stall = int(c[2]), int(c[3])
        out.append({"dataflow": dataflow, "rows": rows, "cols": cols, "M": m, "K": k, "N": n,
                    "total_cycles_reported": total, "stall_cycles": stall,
                    "compute_cycles": total + 1 - stall, "overall_util_pct": c[4],
                    "mapping_efficiency_pct": c[5], "compute_util_pct": c[6]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=OUT_CSV)
    ap.add_argument("--inner", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(Path(args.inner))
        return
    t0 = time.time()
    py = ensure_venv()
    # split each (dataflow, array) list in chunks so the processes stay evenly loaded
    groups = []
    for (rows, cols), shapes in SHAPES.items():
        for df in DATAFLOWS:
            for i in range(0, len(shapes), 40):
                groups.append((df, rows, cols, shapes[i:i + 40]))
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda g: run_group(py, *g), groups))
    rows_out = [r for res in results for r in res]
    stalled = [r for r in rows_out if r["stall_cycles"] != 0]
    if stalled:
        raise SystemExit(f"{len(stalled)} runs stalled (memory not ideal), e.g. {stalled[0]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows_out)
    print(f"{len(rows_out)} SCALE-Sim runs -> {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
          f" in {time.time() - t0:.0f} s")


# ------------------------------------------------------------------------------------------------
# Inner side: runs under .cache/scalesim-venv


def inner(d: Path) -> None:
    from scalesim.scale_sim import scalesim  # only in the SCALE-Sim venv

    os.chdir(d)
    s = scalesim(save_disk_space=True, verbose=False, config=str(d / "scale.cfg"),
                 topology=str(d / "topology.csv"), layout=str(d / "layout.csv"), input_type_gemm=True)
    s.run_scale(top_path=str(d / "out"))
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
