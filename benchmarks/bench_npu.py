"""NPU simulation speed: one full decode iteration (every layer) of GPT-3 7B on npu-only.

Prints a table: tracing time (not part of the target), simulation time (planning + the DES run,
the issue's target: <= 5 s on one core), DES events and events per second. Run:
`python benchmarks/bench_npu.py` (or `make bench`).
"""

from __future__ import annotations

import platform
import time


CASES = [
    # (model, phase, batch, seq_len, target seconds for the simulation)
    ("gpt3-7b", "decode", 256, 1024, 5.0),
    ("gpt3-7b", "decode", 16, 1024, None),
    ("llama2-7b", "prefill", 1, 2048, None),
]


def main() -> None:
    from sim.config import load_hw
    from sim.npu.simulate import simulate_trace
    from sim.npu.memory_service import calibrate
    from sim.trace.tracer import capture

    npu = load_hw("neupims-npu")
    t = time.perf_counter()
    calibrate(npu.memory_config(), npu.dma.request_bytes)   # once per process (engine run + numba load)
    t_cal = time.perf_counter() - t
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}; "
          f"npu-only on neupims-npu; memory calibration {t_cal:.2f} s (once per process)")
    print(f"{'case':<34} {'trace s':>8} {'sim s':>7} {'target':>7} {'events':>9} {'events/s':>9} "
          f"{'sim time ms':>11}")
    for model, phase, batch, seq_len, target in CASES:
        t = time.perf_counter()
        tr = capture(model, phase=phase, batch=batch, seq_len=seq_len)
        t_trace = time.perf_counter() - t
        t = time.perf_counter()
        res = simulate_trace(npu, tr, record_members=False)
        t_sim = time.perf_counter() - t
        label = f"{model} {phase} B={batch} L={seq_len}"
        tgt = f"<= {target:.0f}" if target else ""
        print(f"{label:<34} {t_trace:8.2f} {t_sim:7.2f} {tgt:>7} {res.events:9,} {res.events / t_sim:9,.0f} "
              f"{res.time_s * 1e3:11.3f}")


if __name__ == "__main__":
    main()
