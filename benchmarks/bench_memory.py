"""Memory-engine speed: commands per second of the controller engine, the command fuzzer and the
independent checker, on one core. Run: `python benchmarks/bench_memory.py`."""

from __future__ import annotations

import platform
import time

import numpy as np

from sim.config import load_hw
from sim.memory.checker import check
from sim.memory.engine import fuzz_commands, run
from sim.memory.workloads import requests


def timed(fn, repeat=3):
    fn()  # compile / warm caches
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    m = load_hw("hbm2-neupims")
    spec, mp = m.spec(), m.mapping()
    print(f"machine: {platform.machine()} python {platform.python_version()}; preset hbm2-neupims; best of 3")
    print(f"{'case':<44} {'commands':>10} {'seconds':>8} {'M cmd/s':>8}")
    for pattern, n in (("stream", 400_000), ("random", 200_000)):
        arrive, is_write, addrs = requests(mp, pattern, n, seed=0, burst_bytes=m.burst_bytes)
        xy = mp.decode_many(addrs)
        res, dt = timed(lambda: run(spec, arrive, is_write, xy, refresh="per_bank"))
        print(f"{'engine (FR-FCFS controller), ' + pattern:<44} {len(res.log):>10,} {dt:>8.3f} {len(res.log) / dt / 1e6:>8.2f}")
    log, dt = timed(lambda: fuzz_commands(spec, 1_000_000, seed=0))
    print(f"{'engine timing core (command fuzzer)':<44} {len(log):>10,} {dt:>8.3f} {len(log) / dt / 1e6:>8.2f}")
    bad, dt = timed(lambda: check(spec, log))
    print(f"{'independent checker':<44} {len(log):>10,} {dt:>8.3f} {len(log) / dt / 1e6:>8.2f}  ({len(bad)} violations)")
    lengths, channels, source = attention_batch(256)
    from sim.memory.pim import run_attention_batch

    for fast, label in ((False, "command level"), (True, "fast mode (runs)")):
        res, dt = timed(lambda: run_attention_batch(m, lengths, channels, 128, 8, fast=fast), repeat=1 if not fast else 3)
        print(f"{'PIM attention GPT-3 7B layer, 256 req, ' + label:<44} {res.commands:>10,} {dt:>8.3f} "
              f"{res.commands / dt / 1e6:>8.2f}  ({res.cycles:,} cycles, slowest of 32 channels)")
    print(f"PIM attention: 8 heads (GPT-3 7B, TP 4), head_dim 128, q.K^T then p.V; KV lengths: {source}")
    fast_mode()


def fast_mode() -> None:
    """Row-granularity fast mode (sim.memory.fast.run_fast) against the engine on the same requests
    (all-bank refresh, queue depth 32): seconds (warm-up, best of 5) of the engine (one core), of
    the fast mode on one thread and on its default thread count (the usable cores, or
    LLMSIM_THREADS), speed-ups and the cycles error. Target: >= 20x. Figures and their spread over
    runs: docs/memory.md."""
    from sim.threads import thread_count
    from sim.memory.fast import run_fast

    n_thr = thread_count()
    print(f"{'fast mode against engine':<32} {'engine s':>9} {'fast s 1 thr':>12} {'speed-up':>8} "
          f"{f'fast s {n_thr} thr':>12} {'speed-up':>8} {'cycles err':>10}")
    for preset, pattern, n, wf in (("hbm2-neupims", "stream", 400_000, 0.0), ("hbm2-neupims", "stream", 200_000, 0.3),
                                   ("hbm2-neupims", "strided", 200_000, 0.0), ("hbm2-neupims", "random", 200_000, 0.0),
                                   ("hbm3-6400", "stream", 200_000, 0.0)):
        hw = load_hw(preset)
        spec, mp = hw.spec(), hw.mapping()
        arrive, is_write, addrs = requests(mp, pattern, n, seed=0, write_fraction=wf, burst_bytes=hw.burst_bytes)
        xy = mp.decode_many(addrs)
        eng, te = timed(lambda: run(spec, arrive, is_write, xy), repeat=5)
        fast, t1 = timed(lambda: run_fast(spec, arrive, is_write, xy, threads=1), repeat=5)
        _, tn = timed(lambda: run_fast(spec, arrive, is_write, xy, threads=n_thr), repeat=5)
        label = f"{preset} {pattern} {n // 1000}k" + (f" {wf:.0%} wr" if wf else "")
        err = (fast.cycles - eng.cycles) / eng.cycles
        print(f"{label:<32} {te:>9.4f} {t1:>12.4f} {te / t1:>7.1f}x {tn:>12.4f} {te / tn:>7.1f}x {err:>+10.2%}")


def attention_batch(n: int):
    """KV lengths and channels of a decode batch: the NeuPIMs ShareGPT trace when ../shared/data has
    it, else a lognormal fitted to that trace (log-mean 5.287, log-std 0.984, clipped to 1..2048;
    fitted 2026-11-28 from share-gpt2-bs512-ms7B-tp4-clb-0.csv) with round-robin channels."""
    import csv
    from pathlib import Path

    trace = Path(__file__).resolve().parents[2] / "shared/data/neupims-traces/share-gpt2-bs512-ms7B-tp4-clb-0.csv"
    if trace.exists():
        rows = list(csv.DictReader(trace.open()))[:n]
        return [int(r["seq_len"]) for r in rows], [int(r["ch_idx"]) for r in rows], "NeuPIMs ShareGPT trace"
    rng = np.random.default_rng(0)
    lengths = np.clip(np.round(rng.lognormal(5.287, 0.984, n)), 1, 2048).astype(int)
    return lengths.tolist(), [i % 32 for i in range(n)], "lognormal fitted to the NeuPIMs trace"


if __name__ == "__main__":
    main()
