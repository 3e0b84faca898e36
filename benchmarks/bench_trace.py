"""Tracing and roofline speed: prints a table (targets from issue 2 in the last column).

Each case runs in a fresh subprocess so that peak RSS is that case's alone (it includes the
torch / transformers import). Run: `make bench` or `python benchmarks/bench_trace.py`.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

CASES = [
    # (label, capture kwargs, target seconds, target peak RSS GB)
    ("llama2-70b decode B=64 L=4096", dict(model="llama2-70b", phase="decode", batch=64, seq_len=4096), 30, 2.0),
    ("llama2-70b prefill B=1 L=4096", dict(model="llama2-70b", phase="prefill", batch=1, seq_len=4096), None, None),
    ("mixtral-8x7b decode B=64 L=4096", dict(model="mixtral-8x7b", phase="decode", batch=64, seq_len=4096), None, None),
    ("gpt3-175b generate B=8 L=512 +8", dict(model="gpt3-175b", phase="generate", batch=8, seq_len=512, new_tokens=8),
     None, None),
]

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    t0 = time.perf_counter()
    from sim.trace import capture
    from sim.roofline import analyze
    t_import = time.perf_counter() - t0
    kw = json.loads(sys.argv[1])
    t1 = time.perf_counter()
    tr = capture(**kw)
    t_trace = time.perf_counter() - t1
    t2 = time.perf_counter()
    rep = analyze(tr, "h200")
    rep.summary()
    t_roof = time.perf_counter() - t2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"import_s": t_import, "trace_s": t_trace, "roofline_s": t_roof, "rss_gb": rss / 1e9,
                      "ops": tr.num_ops, "records": len(tr.ops)}))
""")


def main() -> None:
    print(f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()}, "
          f"{_cpus()} CPUs")
    head = f"{'case':<34} {'import s':>8} {'trace s':>8} {'roofline s':>10} {'peak RSS GB':>11} {'ops':>7} {'records':>7}  target"
    print(head)
    print("-" * len(head))
    for label, kw, t_target, rss_target in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kw)], capture_output=True, text=True)
        if out.returncode:
            print(f"{label:<34} FAILED: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        target = ""
        if t_target:
            ok = r["trace_s"] <= t_target and r["rss_gb"] <= rss_target and r["roofline_s"] <= 2
            target = f"<= {t_target} s, <= {rss_target} GB, roofline <= 2 s: {'met' if ok else 'MISSED'}"
        print(f"{label:<34} {r['import_s']:8.2f} {r['trace_s']:8.2f} {r['roofline_s']:10.3f} {r['rss_gb']:11.2f} "
              f"{r['ops']:7d} {r['records']:7d}  {target}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    main()
