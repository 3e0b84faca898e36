"""Decode throughput vs batch size for the four systems (GPT-3 7B, tensor parallel 4, one device,
all layers), and the timeline of one NeuPIMs iteration with its sub-batches.

Run: `python benchmarks/systems_sweep.py [--out docs/figures] [--quick]`. Batches are sampled from
ShareGPT in steady state (sim/systems/requests.py, seed 0). NeuPIMs turns sub-batching on from
batch 256, as its simulator does (reference/neupims.md); the other systems have none.
Writes systems_sweep.csv, systems_throughput.png and neupims_iteration.png.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

from sim.io import write_bytes_atomic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--quick", action="store_true", help="2 layers, batches 32 and 256 only")
    ap.add_argument("--model", default="gpt3-7b")
    ap.add_argument("--tp", type=int, default=4)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.gpu.iteration import gpu_decode_iteration
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import sample_batch

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = 2 if args.quick else None
    batches = [32, 256] if args.quick else [32, 64, 128, 256, 512]
    systems = ["neupims", "npu-pim-naive", "npu-only", "gpu-only:a100", "gpu-only:h100", "gpu-only:h200"]
    rows = []
    t_all = time.perf_counter()
    print(f"{'system':<16} {'batch':>5} {'iteration ms':>12} {'tokens/s':>10} {'sub-batch':>9} {'wall s':>6}")
    iteration_512 = None
    for b in batches:
        batch = sample_batch("sharegpt", b, seed=0)
        for name in systems:
            t = time.perf_counter()
            if name.startswith("gpu-only"):
                gpu = name.split(":")[1]
                r = gpu_decode_iteration(load_system("gpu-only"), gpu, args.model, batch, tp=args.tp, layers=layers)
            else:
                sub = b >= 256 if name == "neupims" else False
                r = decode_iteration(load_system(name), args.model, batch, tp=args.tp, layers=layers, sub_batch=sub)
                if name == "neupims" and b == batches[-1]:
                    iteration_512 = r
            wall = time.perf_counter() - t
            rows.append({"system": name, "batch": b, "mean_len": round(float(batch.lengths.mean()), 1),
                         "iteration_ms": r.time_s * 1e3, "tokens_per_s": r.tokens_per_s, "sub_batch": r.sub_batch,
                         "wall_s": wall})
            print(f"{name:<16} {b:>5} {r.time_s * 1e3:12.3f} {r.tokens_per_s:10,.0f} {str(r.sub_batch):>9} "
                  f"{wall:6.1f}")
    print(f"sweep wall time: {time.perf_counter() - t_all:.1f} s")

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(out / "systems_sweep.csv", buf.getvalue().encode())

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name in systems:
        pts = [(r["batch"], r["tokens_per_s"]) for r in rows if r["system"] == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch (requests, ShareGPT steady state)")
    ax.set_ylabel("decode tokens / s (one device)")
    ax.set_title(f"{args.model}, tensor parallel {args.tp}, {'2 layers' if layers else 'all layers'}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120)
    write_bytes_atomic(out / "systems_throughput.png", png.getvalue())
    plt.close(fig)

    if iteration_512 is not None:
        r = iteration_512
        fig, ax = plt.subplots(figsize=(9, 2.6))
        tracks = {"npu": 1, "pim": 0}
        first_layers = [s for s in r.schedule if s[3].split()[0] in ("L0", "L1", "L2") or s[3] in ("head",)]
        for track, t0, t1, label in first_layers:
            color = "tab:blue" if "sb1" in label else "tab:orange" if "sb2" in label else "tab:gray"
            ax.barh(tracks[track], (t1 - t0) * 1e6, left=t0 * 1e6, color=color, edgecolor="white")
            if (t1 - t0) * 1e6 > 25:
                ax.text((t0 + t1) / 2 * 1e6, tracks[track], label.replace(" sb", "\nsb"), ha="center",
                        va="center", fontsize=6, color="white")
        ax.set_yticks([0, 1], ["PIM", "NPU"])
        ax.set_xlabel("µs (first three layers)")
        ax.set_title(f"NeuPIMs decode iteration, batch {r.batch}: sub-batch 1 (blue) and 2 (orange)")
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, dpi=120)
        write_bytes_atomic(out / "neupims_iteration.png", png.getvalue())
        plt.close(fig)
    print(f"wrote {out}/systems_sweep.csv, systems_throughput.png, neupims_iteration.png")


if __name__ == "__main__":
    main()
