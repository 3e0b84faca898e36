"""Sweep throughput: a 200-point NPU+PIM design space on GPT-3 7B decode (TP 4, 128 ShareGPT
requests, all 32 layers) on the local process pool (target: all 200 in <= 10 min at 2 workers).

Axes (5 x 5 x 2 x 2 x 2 = 200 configurations of neupims; each changes the result):
systolic arrays per core, PIM MACs per COMP command, sub-batch interleaving, KV channel
assignment, NPU clock.

By default a seeded 40-point subset (random mode over the same axes) runs at 1 and 2 workers,
for the speed-up, and the full 200 at 2 workers; ``--full`` also runs all 200 at 1 worker.
Each case is a fresh ``llmsim sweep`` process into an empty folder, so its time includes
imports, tracing and the memory calibration of each worker, as a user's run would.

Run: `python benchmarks/bench_sweep.py [--full | --subset-only]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 600.0

SPEC = {
    "name": "bench-neupims-200",
    "base": "neupims",
    "seed": 0,
    "mode": "grid",
    "axes": {
        "npu.systolic.count": [2, 4, 8, 16, 32],
        "memory.pim.comp_coverage_macs": [4, 8, 16, 32, 64],
        "sub_batch": [True, False],
        "channel_assignment": ["round_robin", "greedy"],
        "npu.freq_mhz": [800, 1200],
    },
    "workloads": [{"model": "gpt3-7b", "tp": 4, "batch": 128, "requests": "sharegpt"}],
}
SUBSET = {**SPEC, "name": "bench-neupims-40", "mode": "random", "samples": 40}


def run_case(spec: dict, workers: int, tmp: Path) -> tuple[float, dict, Path]:
    tag = f"{spec['name']}-w{workers}"
    spec_file = tmp / f"{tag}.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp / tag
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sim", "sweep", str(spec_file), "--out", str(out), "--workers",
                           str(workers), "--quiet", "--json"], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{tag} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return wall, json.loads(proc.stdout), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also time all 200 points at 1 worker")
    ap.add_argument("--subset-only", action="store_true", help="only the 40-point subset at 1 and 2 workers")
    args = ap.parse_args()
    import pandas as pd

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {cores} cores, python "
          f"{platform.python_version()}; one fresh `llmsim sweep` process per case")
    cases = [(SUBSET, 1), (SUBSET, 2)]
    if not args.subset_only:
        cases += ([(SPEC, 1)] if args.full else []) + [(SPEC, 2)]
    walls: dict[tuple[str, int], float] = {}
    frames: dict[tuple[str, int], pd.DataFrame] = {}
    print(f"{'case':<22} {'points':>6} {'workers':>7} {'wall s':>8} {'s/point':>8} {'speed-up':>8} {'errors':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as d:
        for spec, workers in cases:
            wall, summary, out = run_case(spec, workers, Path(d))
            key = (spec["name"], workers)
            walls[key] = wall
            frames[key] = pd.read_parquet(out / "results.parquet")
            one = walls.get((spec["name"], 1))
            speed = f"{one / wall:8.2f}" if workers > 1 and one else f"{'-':>8}"
            print(f"{spec['name']:<22} {summary['points']:>6} {workers:>7} {wall:8.1f} "
                  f"{wall / summary['points']:8.2f} {speed} {summary['errors']:>6}", flush=True)
    metric_cols = [c for c in frames[(SUBSET["name"], 1)].columns if c.startswith("m.")]
    same = frames[(SUBSET["name"], 1)][metric_cols].equals(frames[(SUBSET["name"], 2)][metric_cols])
    print(f"subset metrics identical at 1 and 2 workers: {same}")
    if args.subset_only:
        return
    full = walls[(SPEC["name"], 2)]
    print(f"200 points at 2 workers: {full:.1f} s (target <= {TARGET_S:g} s: {'ok' if full <= TARGET_S else 'MISSED'})")
    df = frames[(SPEC["name"], 2)]
    for path in SPEC["axes"]:
        spread = df.groupby(f"cfg.{path}")["m.tokens_per_s"].mean()
        print(f"  mean tokens/s by {path}: " + ", ".join(f"{k}: {v:,.0f}" for k, v in spread.items()))


if __name__ == "__main__":
    main()
