"""System simulation speed: one full NeuPIMs decode iteration of GPT-3 7B at TP 4 and batch 512
(target <= 10 s on one core) and a 1000-request serving run (target <= 5 min).

Run: `python benchmarks/bench_systems.py` (or `make bench`). Each case runs in a fresh process, so
its time includes imports, tracing and the memory calibration, as a user's command would.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT.parent / "shared/data/neupims-traces/share-gpt2-bs512-ms7B-tp4-clb-0.csv"

CASES = [
    ("neupims decode iteration, gpt3-7b TP4 B=512, all layers", 10.0,
     ["simulate", "--system", "neupims", "--model", "gpt3-7b", "--tp", "4", "--json"]
     + (["--lengths", str(BATCH)] if BATCH.exists() else ["--requests", "sharegpt", "--batch", "512"])),
    ("serving, 1000 ShareGPT requests, neupims, max batch 256", 300.0,
     ["serve", "--system", "neupims", "--model", "gpt3-7b", "--tp", "4", "--n", "1000", "--max-batch", "256",
      "--json"]),
]


def main() -> None:
    print(f"machine: {platform.machine()} python {platform.python_version()}; one process per case")
    print(f"{'case':<58} {'wall s':>7} {'target':>8}")
    for label, target, args in CASES:
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t
        if out.returncode != 0:
            print(f"{label:<58} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        print(f"{label:<58} {wall:7.1f} {'<= ' + format(target, 'g'):>8}")


if __name__ == "__main__":
    main()
