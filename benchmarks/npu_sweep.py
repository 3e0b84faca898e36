"""GPT-3 7B and Llama-2-7B on the NeuPIMs NPU: one decoder layer, decode and prefill, batch 1 to 512.

For every (model, phase, batch) point this traces ONE decoder layer (``layers=1``: no embedding, no
lm_head) and simulates it on ``neupims-npu`` (npu-only system), then prints a table and writes a
CSV and a plot::

    python benchmarks/npu_sweep.py [--out docs/figures] [--quick]

Defaults: decode = one new token per sequence over 1024 cached tokens; prefill = 512 prompt tokens
per sequence (a whole sweep, prefill at batch 512 included, takes well under a minute per point;
``--prefill-len`` / ``--decode-len`` change them). Columns:

* ``time_ms``: simulated time of the layer; ``tok_per_s``: tokens the step produces (decode) or
  consumes (prefill) per second of this one layer (divide by the layer count for a whole model);
* ``arrays_busy``: fraction of the time the systolic-array group is busy (preloads included);
  ``mac_util``: FLOPs / (time x 262 TFLOP/s), the useful share of the arrays' peak;
* ``mem_bw_util``: DRAM bytes the simulation moved (re-fetches included) / (time x 1.024 TB/s
  peak); ``mem_busy``: mean channel busy fraction from the simulator;
* ``gemm`` / ``attn`` / ``other``: share of the time in each op class; ``gMAC`` / ``gBW``: MAC and
  memory-bandwidth utilization of the GEMMs alone (their FLOPs and bytes over their time);
* ``bound``: ``memory`` if the channels are busier than the arrays, else ``compute``;
* ``score``: time-weighted roofline score, time / sum of the ops' roofline times (>= 1);
* ``refetch``: bytes moved / bytes the trace counts (>1: tiles re-read operands).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"gpt3-7b": "GPT-3 7B", "llama2-7b": "Llama-2-7B"}
PHASES = ("decode", "prefill")
BATCHES = tuple(2 ** i for i in range(10))            # 1 .. 512
QUICK_BATCHES = (1, 8, 64, 512)

FIELDS = ["model", "phase", "batch", "seq_len", "tokens", "time_ms", "tok_per_s", "us_per_token",
          "arrays_busy", "mac_util", "mem_bw_util", "mem_busy", "vector_busy", "gemm_share", "attn_share",
          "other_share", "gemm_mac_util", "gemm_bw_util", "bound", "score", "roofline_ms", "refetch", "gemm_ms", "attn_ms", "other_ms",
          "gflops", "dram_mb", "trace_mb", "sim_wall_s"]


def run_point(npu, model: str, phase: str, batch: int, seq_len: int) -> dict:
    from sim.npu.simulate import simulate_trace
    from sim.trace.tracer import capture

    t0 = time.perf_counter()
    tr = capture(model, phase=phase, batch=batch, seq_len=seq_len, layers=1)
    res = simulate_trace(npu, tr)
    wall = time.perf_counter() - t0
    ceil = npu.ceilings()
    peak_flops = ceil.matmul_flops["fp16"]
    peak_bw = ceil.mem_bw
    t = res.time_s
    flops = sum(o.flops * o.repeat for o in res.ops)
    moved = sum(o.read_bytes + o.write_bytes for o in res.ops)
    trace_b = sum(o.trace_bytes * o.repeat for o in res.ops)
    roof = sum(o.roofline_s for o in res.ops)
    cls = res.by_class
    gemm, attn = cls.get("gemm", 0.0), cls.get("attention", 0.0)
    other = sum(cls.values()) - gemm - attn
    u = res.utilization
    g_ops = [o for o in res.ops if o.op_class == "gemm"]
    g_flops = sum(o.flops * o.repeat for o in g_ops)
    g_bytes = sum(o.read_bytes + o.write_bytes for o in g_ops)
    tokens = batch if phase == "decode" else batch * seq_len
    return {
        "model": model, "phase": phase, "batch": batch, "seq_len": seq_len, "tokens": tokens,
        "time_ms": t * 1e3, "tok_per_s": tokens / t, "us_per_token": t * 1e6 / tokens,
        "arrays_busy": u.get("arrays", 0.0), "mac_util": flops / (t * peak_flops),
        "mem_bw_util": moved / (t * peak_bw), "mem_busy": u.get("memory", 0.0),
        "vector_busy": u.get("vector_units", 0.0),
        "gemm_share": gemm / t, "attn_share": attn / t, "other_share": other / t,
        "gemm_mac_util": g_flops / (gemm * peak_flops) if gemm else 0.0,
        "gemm_bw_util": g_bytes / (gemm * peak_bw) if gemm else 0.0,
        "bound": "memory" if u.get("memory", 0.0) >= u.get("arrays", 0.0) else "compute",
        "score": t / roof if roof else float("nan"), "roofline_ms": roof * 1e3,
        "refetch": moved / trace_b if trace_b else float("nan"),
        "gemm_ms": gemm * 1e3, "attn_ms": attn * 1e3, "other_ms": other * 1e3,
        "gflops": flops / 1e9, "dram_mb": moved / 1e6, "trace_mb": trace_b / 1e6, "sim_wall_s": wall,
    }


HEADER = (f"{'model':<10} {'phase':<7} {'B':>4} {'time ms':>9} {'tok/s':>10} {'arrays':>6} {'MAC':>5} "
          f"{'memBW':>5} {'chBusy':>6} {'gemm':>5} {'attn':>5} {'other':>5} {'gMAC':>5} {'gBW':>5} {'bound':<7} {'score':>5} "
          f"{'refetch':>7} {'wall s':>6}")


def fmt_row(r: dict) -> str:
    return (f"{r['model']:<10} {r['phase']:<7} {r['batch']:>4} {r['time_ms']:9.3f} {r['tok_per_s']:10.0f} "
            f"{r['arrays_busy']:6.2f} {r['mac_util']:5.2f} {r['mem_bw_util']:5.2f} {r['mem_busy']:6.2f} "
            f"{r['gemm_share']:5.2f} {r['attn_share']:5.2f} {r['other_share']:5.2f} {r['gemm_mac_util']:5.2f} "
            f"{r['gemm_bw_util']:5.2f} {r['bound']:<7} "
            f"{r['score']:5.2f} {r['refetch']:7.2f} {r['sim_wall_s']:6.1f}")


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp makes 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write(path, buf.getvalue().encode())


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator

    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    phases = [p for p in PHASES if any(r["phase"] == p for r in rows)]
    fig, axes = plt.subplots(len(models), len(phases), figsize=(6.4 * len(phases), 4.6 * len(models)),
                             squeeze=False)
    for i, m in enumerate(models):
        for j, ph in enumerate(phases):
            ax = axes[i][j]
            pts = sorted((r for r in rows if r["model"] == m and r["phase"] == ph), key=lambda r: r["batch"])
            if not pts:
                ax.set_visible(False)
                continue
            b = [r["batch"] for r in pts]
            ax.loglog(b, [r["time_ms"] for r in pts], "o-", color="black", lw=2.2, ms=4, label="time / layer")
            ax.loglog(b, [r["roofline_ms"] for r in pts], ":", color="black", lw=1.4, label="roofline time")
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(b))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([str(x) for x in b])
            ax.set_xlabel("batch (sequences)")
            ax.set_ylabel("time per layer (ms, log)")
            ax.grid(True, which="major", alpha=0.3)
            seq = pts[0]["seq_len"]
            what = f"{seq} cached tokens, 1 new" if ph == "decode" else f"{seq}-token prompt"
            ax.set_title(f"{MODELS[m]} {ph} ({what})", fontsize=11)
            tw = ax.twinx()
            tw.plot(b, [r["arrays_busy"] for r in pts], "s--", color="tab:orange", ms=3.5, lw=1.3,
                    label="arrays busy")
            tw.plot(b, [r["mac_util"] for r in pts], "^-", color="tab:red", ms=3.5, lw=1.3,
                    label="MAC utilization (FLOP/s / peak)")
            tw.plot(b, [r["gemm_mac_util"] for r in pts], "v-.", color="tab:purple", ms=3.5, lw=1.2,
                    label="MAC utilization of the GEMMs alone")
            tw.plot(b, [r["mem_bw_util"] for r in pts], "d-", color="tab:blue", ms=3.5, lw=1.3,
                    label="memory BW utilization (bytes / peak)")
            tw.plot(b, [r["attn_share"] for r in pts], "x:", color="tab:green", ms=4, lw=1.2,
                    label="attention share of time")
            tw.set_ylim(0, 1.05)
            tw.set_ylabel("fraction")
            if i == 0 and j == 0:
                h1, l1 = ax.get_legend_handles_labels()
                h2, l2 = tw.get_legend_handles_labels()
                fig.legend(h1 + h2, l1 + l2, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/figures", help="folder for npu_sweep.csv and npu_sweep.png")
    ap.add_argument("--quick", action="store_true", help=f"batches {QUICK_BATCHES} only")
    ap.add_argument("--hw", default="neupims-npu")
    ap.add_argument("--decode-len", type=int, default=1024, help="tokens in the KV cache (decode)")
    ap.add_argument("--prefill-len", type=int, default=512, help="prompt tokens per sequence (prefill)")
    ap.add_argument("--max-batch", type=int, default=512)
    args = ap.parse_args(argv)

    from sim.config import load_hw

    npu = load_hw(args.hw)
    batches = [b for b in (QUICK_BATCHES if args.quick else BATCHES) if b <= args.max_batch]
    print(f"machine: {machine()}")
    print(f"hardware: {args.hw}; one decoder layer; decode L={args.decode_len} cached, "
          f"prefill L={args.prefill_len} prompt")
    print(HEADER)
    print("-" * len(HEADER))
    rows: list[dict] = []
    t0 = time.perf_counter()
    for model in MODELS:
        for phase in PHASES:
            seq = args.decode_len if phase == "decode" else args.prefill_len
            for b in batches:
                r = run_point(npu, model, phase, b, seq)
                rows.append(r)
                print(fmt_row(r), flush=True)
    wall = time.perf_counter() - t0
    print(f"sweep wall time: {wall:.1f} s ({len(rows)} points)")
    out = Path(args.out)
    write_csv(rows, out / "npu_sweep.csv")
    c = npu.ceilings()
    plot(rows, out / "npu_sweep.png",
         f"One decoder layer on {args.hw} ({c.matmul_flops['fp16'] / 1e12:.0f} TFLOP/s fp16, "
         f"{c.mem_bw / 1e12:.2f} TB/s)")
    print(f"wrote {out / 'npu_sweep.csv'} and {out / 'npu_sweep.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
