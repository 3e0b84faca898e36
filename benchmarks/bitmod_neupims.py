"""BitMoD on NeuPIMs: decode throughput and energy of `neupims-bitmod` (bit-serial PEs, 3.0625-bit
BitMoD weights) against fp16 `neupims`, GPT-3 7B, tensor parallel 4, one device, all layers.

Run: `python benchmarks/bitmod_neupims.py [--out docs/figures] [--quick]`. Batches are sampled from
ShareGPT in steady state (seed 0); both systems turn sub-batching on from batch 256, as NeuPIMs'
simulator does (reference/neupims.md). Energy per iteration by part: NPU PE-cycles, NPU DRAM traffic,
PIM commands (sim/systems/decode.py, `pe_energy_pj` and `stage_times`).
Writes bitmod_neupims.csv and bitmod_neupims.png.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

from sim.io import write_bytes_atomic

SYSTEMS = ("neupims", "neupims-bitmod")
PARTS = ("npu_pe", "npu_dram", "pim")


def sweep(model: str, tp: int, batches: list[int], layers: int | None) -> list[dict]:
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import sample_batch

    rows = []
    print(f"{'system':<15} {'batch':>5} {'iteration ms':>12} {'tokens/s':>10} {'mJ/token':>9} "
          + " ".join(f"{p:>9}" for p in PARTS) + f" {'wall s':>6}")
    for b in batches:
        batch = sample_batch("sharegpt", b, seed=0)
        for name in SYSTEMS:
            t = time.perf_counter()
            r = decode_iteration(load_system(name), model, batch, tp=tp, layers=layers, sub_batch=b >= 256)
            wall = time.perf_counter() - t
            e = r.energy_pj
            row = {"system": name, "batch": b, "iteration_ms": r.time_s * 1e3, "tokens_per_s": r.tokens_per_s,
                   "mj_per_token": e["total"] * 1e-9 / b, **{f"{p}_mj": e.get(p, 0.0) * 1e-9 for p in PARTS},
                   "sub_batch": r.sub_batch, "wall_s": wall}
            rows.append(row)
            print(f"{name:<15} {b:>5} {row['iteration_ms']:12.3f} {row['tokens_per_s']:10,.0f} "
                  f"{row['mj_per_token']:9.3f} " + " ".join(f"{row[p + '_mj']:9.1f}" for p in PARTS)
                  + f" {wall:6.1f}")
    return rows


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

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    layers = 2 if args.quick else None
    batches = [32, 256] if args.quick else [32, 64, 128, 256, 512]
    t0 = time.perf_counter()
    rows = sweep(args.model, args.tp, batches, layers)
    print(f"sweep wall time: {time.perf_counter() - t0:.1f} s")
    for b in batches:
        base, bm = (next(r for r in rows if r["system"] == s and r["batch"] == b) for s in SYSTEMS)
        print(f"batch {b:>3}: throughput x{bm['tokens_per_s'] / base['tokens_per_s']:.2f}, "
              f"energy per token x{base['mj_per_token'] / bm['mj_per_token']:.2f} lower")

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(out / "bitmod_neupims.csv", buf.getvalue().encode())

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, marker in zip(SYSTEMS, ("o", "s")):
        pts = [r for r in rows if r["system"] == name]
        ax1.plot([r["batch"] for r in pts], [r["tokens_per_s"] for r in pts], marker=marker, label=name)
    ax1.set_xscale("log", base=2)
    ax1.set_yscale("log")
    ax1.set_xticks(batches, [str(b) for b in batches])
    ax1.set_xlabel("batch (requests, ShareGPT steady state)")
    ax1.set_ylabel("decode tokens / s (one device)")
    ax1.grid(alpha=0.3, which="both")
    ax1.legend(fontsize=8)
    width = 0.38
    colors = {"npu_pe": "tab:blue", "npu_dram": "tab:orange", "pim": "tab:green"}
    for i, name in enumerate(SYSTEMS):
        pts = [r for r in rows if r["system"] == name]
        x = [j + (i - 0.5) * width for j in range(len(pts))]
        bottom = [0.0] * len(pts)
        for p in PARTS:
            v = [r[p + "_mj"] / r["batch"] for r in pts]
            ax2.bar(x, v, width, bottom=bottom, color=colors[p], edgecolor="white", hatch="" if i == 0 else "//",
                    label=f"{p} ({name})")
            bottom = [a + c for a, c in zip(bottom, v)]
    ax2.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax2.set_xlabel("batch (left bars: neupims, hatched: neupims-bitmod)")
    ax2.set_ylabel("energy per generated token (mJ)")
    ax2.legend(fontsize=6, ncol=2)
    fig.suptitle(f"BitMoD on NeuPIMs: {args.model}, tensor parallel {args.tp}, "
                 f"{'2 layers' if layers else 'all layers'}")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=120)
    write_bytes_atomic(out / "bitmod_neupims.png", png.getvalue())
    plt.close(fig)
    print(f"wrote {out}/bitmod_neupims.csv, bitmod_neupims.png")


if __name__ == "__main__":
    main()
