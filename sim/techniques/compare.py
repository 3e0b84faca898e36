"""``llmsim techniques``: every technique on every system and batch, against the plain model.

For each (technique, system, batch) the model's decode step (``seq_len`` tokens in the KV cache)
is traced at the system's precision, the technique applied, and the step simulated on the system;
the figure of merit is the time per generated token, ``step time / tokens_per_step`` (speculative
decoding yields more than one token per step), and the speed-up is the plain model's over the
technique's. Energy per token where the system models it.

Systems and how a step runs on them:

* ``gpu-only``: the GPU model (``sim/gpu``), op by op (``--gpu``, default h100);
* ``npu-only``: the NPU simulator op by op (``sim/npu``), energy = PE-cycles + DRAM traffic as in
  ``sim/systems/decode.py``;
* bit-serial systems (``bitmod``, ``ant``, ``olive``, ``fp16-accel``): ``sim/systems/bitserial_run.py``
  (traced at the design's decode precision; the analytic model, within 5% of the DES per layer);
* ``neupims`` and other PIM systems: a decode iteration of a uniform batch (``sim/systems/decode.py``,
  the technique applied to its traced step, per-request attention on PIM with the technique's
  lengths; energy by part; SWIFT as its draft passes plus its verification step).

The commentary names, per technique, how it changes the step's FLOPs and bytes and where the
plain step sits on each system's roofline (the share of its ops' roofline time that is
memory-bound), which is what decides whether fewer bytes or fewer FLOPs pay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sim.errors import LlmsimError

DEFAULT_TECHNIQUES = (
    "medusa:heads=4,tree=64,accept=0.6",
    "swift:skip=0.5,draft=4,accept=0.7",
    "hydragen:prefix=1024",
    "moe",
    "act-sparsity:frac=0.5",
    "prune:heads=0.75,ffn=0.75",
    "sparse24",
    "quant:preset=w4a16",
    "quant:preset=w8a8",
    "quant:preset=kv4",
    "infllm:budget=1024",
)
DEFAULT_SYSTEMS = ("gpu-only", "npu-only", "neupims", "bitmod")


@dataclass
class Cell:
    technique: str
    system: str
    batch: int
    status: str                      # ok | n/a (does not apply) | pending (system not supported yet) | error
    note: str = ""
    base_s_per_token: float = math.nan
    s_per_token: float = math.nan
    speedup: float = math.nan
    base_j_per_token: float = math.nan
    j_per_token: float = math.nan
    energy_ratio: float = math.nan   # plain / technique (above 1: the technique saves energy)
    flops_ratio: float = math.nan    # technique step / plain step
    bytes_ratio: float = math.nan
    memory_bound_share: float = math.nan   # of the plain step's roofline time, on this system


@dataclass
class Comparison:
    model: str
    seq_len: int
    cells: list[Cell] = field(default_factory=list)

    def table(self):
        import pandas as pd

        return pd.DataFrame([vars(c) for c in self.cells])


def _trace(model: str, batch: int, seq_len: int, precision: dict[str, Any], layers: int | None):
    from sim.trace.tracer import capture

    return capture(model, phase="decode", batch=batch, seq_len=seq_len, layers=layers, device="meta", **precision)


def _run(system: str, sysconf, trace, gpu: str | None) -> tuple[float, float]:
    """(seconds, joules or NaN) of one traced step on ``system``."""
    if sysconf.accelerator == "gpu":
        from sim.gpu.model import simulate_trace_gpu

        return simulate_trace_gpu(sysconf.gpu_config(gpu), trace, system=system).time_s, math.nan
    if sysconf.accelerator == "bitserial":
        from sim.systems.bitserial_run import run_trace

        # the artifact's analytic model: the DES agrees within 5% per layer (llmsim validate bitmod) and
        # is slow on large decode batches (a tile per KV head and sequence)
        r = run_trace(sysconf.bitserial_config(), trace, "decode", engine="analytic", system=system)
        return r.time_s, r.energy_pj["total"] * 1e-12
    from sim.npu.simulate import simulate_trace
    from sim.systems.decode import npu_energy_pj

    npu = sysconf.npu_config()
    res = simulate_trace(npu, trace, record_members=False)
    dram = sum(o.read_bytes + o.write_bytes for o in res.ops)
    return res.time_s, sum(npu_energy_pj(npu, trace.ops, dram).values()) * 1e-12


def _run_iteration(sysconf, model: str, batch: int, seq_len: int, layers: int | None, tech) -> tuple[float, float, float]:
    """(seconds, joules, tokens per step) of one decode iteration of a uniform batch on a PIM system."""
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import uniform_batch

    r = decode_iteration(sysconf, model, uniform_batch(batch, seq_len + 1), layers=layers,
                         techniques=(tech,) if tech is not None else ())
    return r.time_s, r.energy_pj.get("total", math.nan) * 1e-12, r.tokens_per_step


def _memory_bound_share(sysconf, trace, gpu: str | None) -> float:
    """Share of the step's roofline time spent in memory-bound ops on this system's device."""
    from sim.roofline.analyzer import op_row, stationary_bits

    if sysconf.accelerator == "gpu":
        ceil = sysconf.gpu_config(gpu).ceilings()
    elif sysconf.accelerator == "bitserial":
        ceil = sysconf.bitserial_config().ceilings()
    else:
        ceil = sysconf.npu_config().ceilings()
    mem = tot = 0.0
    for op in trace.ops:
        r = op_row(op, ceil, stationary_bits(trace, op))
        t = r["time_s"] * op.repeat
        tot += t
        if r.get("bound") == "memory":
            mem += t
    return mem / tot if tot else math.nan


def compare(model: str, systems: list[str], batches: list[int], techniques: list[str] | None = None,
            seq_len: int = 2048, layers: int | None = None, gpu: str | None = None, progress=None) -> Comparison:
    """The comparison (module doc). ``layers``: simulate only the first N decoder layers (tests)."""
    from sim.techniques import apply_techniques, parse_technique
    from sim.systems.config import load_system

    techs = list(techniques or DEFAULT_TECHNIQUES)
    parsed: dict[str, Any] = {}
    for t in techs:
        try:
            parsed[t] = parse_technique(t)
        except LlmsimError as exc:
            if "unknown technique" in str(exc):
                parsed[t] = exc          # reported per row (a technique not built yet)
            else:
                raise
    confs = {s: load_system(s) for s in systems}
    out = Comparison(model, seq_len)
    traces: dict[tuple, Any] = {}
    for s, sysconf in confs.items():
        pim = sysconf.pim is not None
        precision = sysconf.trace_precision("decode", model) if sysconf.accelerator == "bitserial" else {}
        for b in batches:
            key = (b, tuple(sorted(precision.items())))
            if key not in traces:
                traces[key] = _trace(model, b, seq_len, precision, layers)
            base = traces[key]
            if pim:
                base_t, base_e, _ = _run_iteration(sysconf, model, b, seq_len, layers, None)
            else:
                base_t, base_e = _run(s, sysconf, base, gpu)
            share = _memory_bound_share(sysconf, base, gpu)
            for t in techs:
                if progress:
                    progress(t, s, b)
                tech = parsed[t]
                if isinstance(tech, LlmsimError):
                    out.cells.append(Cell(t, s, b, "n/a", str(tech)))
                    continue
                try:
                    tr = apply_techniques(base, [tech])
                except LlmsimError as exc:
                    out.cells.append(Cell(t, s, b, "n/a", str(exc)))
                    continue
                steps = float(tr.meta.get("tokens_per_step", 1.0))
                if pim:
                    try:
                        tt, te, steps = _run_iteration(sysconf, model, b, seq_len, layers, tech)
                    except LlmsimError as exc:   # not modelled on PIM yet (pending), or a real error
                        status = "pending" if "PIM attention runs on an fp16 KV cache" in str(exc) else "error"
                        out.cells.append(Cell(t, s, b, status, str(exc)))
                        continue
                else:
                    tt, te = _run(s, sysconf, tr, gpu)
                c = Cell(t, s, b, "ok", base_s_per_token=base_t / b, s_per_token=tt / (b * steps),
                         base_j_per_token=base_e / b, j_per_token=te / (b * steps),
                         flops_ratio=tr.total_flops() / base.total_flops(),
                         bytes_ratio=tr.total_bytes() / base.total_bytes(), memory_bound_share=share)
                c.speedup = c.base_s_per_token / c.s_per_token
                c.energy_ratio = c.base_j_per_token / c.j_per_token if c.j_per_token == c.j_per_token else math.nan
                out.cells.append(c)
    return out


def commentary(cmp: Comparison) -> list[str]:
    """One line per technique: where it helps and why (which roofline bound it moves)."""
    lines = []
    df = cmp.table()
    for t, g in df.groupby("technique", sort=False):
        ok = g[g.status == "ok"]
        if ok.empty:
            why = g.iloc[0].note or g.iloc[0].status
            lines.append(f"- `{t}`: does not apply here ({why}).")
            continue
        fr, br = ok.flops_ratio.median(), ok.bytes_ratio.median()
        best = ok.loc[ok.speedup.idxmax()]
        worst = ok.loc[ok.speedup.idxmin()]
        change = (f"{_span(ok.flops_ratio)} FLOPs and {_span(ok.bytes_ratio)} bytes per step "
                  f"(batch {ok.batch.min()} to {ok.batch.max()})")
        mem_sys = ok[ok.memory_bound_share > 0.5]
        where = ("memory-bound (weights or KV streaming), where " if len(mem_sys) == len(ok) else
                 "compute-bound on some systems, where ") if len(ok) else ""
        tip = ("cutting bytes is what pays" if br < 0.97 and fr >= 0.97 else
               "cutting FLOPs is what pays" if fr < 0.97 and br >= 0.97 else
               "it trades FLOPs for tokens per step" if fr > 1.03 else "both move")
        lines.append(f"- `{t}`: {change}; best x{best.speedup:.2f} on {best.system} at batch {best.batch}, "
                     f"worst x{worst.speedup:.2f} on {worst.system} at batch {worst.batch}. The plain steps are "
                     f"{where}{tip}.")
    return lines


def _pct(r: float) -> str:
    return f"{(r - 1) * 100:+.0f}%"


def _span(ratios) -> str:
    lo, hi = _pct(float(ratios.min())), _pct(float(ratios.max()))
    return lo if lo == hi else f"{lo} to {hi}"


def write_outputs(cmp: Comparison, out_dir) -> dict[str, str]:
    """table.csv, table.md, heatmap.png and commentary.md in ``out_dir`` (each written atomically)."""
    import io
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from sim.io import write_bytes_atomic, write_text_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = cmp.table()
    write_text_atomic(out / "table.csv", df.to_csv(index=False))
    cols = sorted({(c.system, c.batch) for c in cmp.cells}, key=lambda x: (list(dict.fromkeys(
        c.system for c in cmp.cells)).index(x[0]), x[1]))
    techs = list(dict.fromkeys(c.technique for c in cmp.cells))
    grid = np.full((len(techs), len(cols)), np.nan)
    text = [["" for _ in cols] for _ in techs]
    for c in cmp.cells:
        i, j = techs.index(c.technique), cols.index((c.system, c.batch))
        if c.status == "ok":
            grid[i, j] = c.speedup
            text[i][j] = f"{c.speedup:.2f}"
        else:
            text[i][j] = c.status
    md = ["| technique | " + " | ".join(f"{s} b{b}" for s, b in cols) + " |",
          "|---|" + "---:|" * len(cols)]
    md += [f"| `{t}` | " + " | ".join(text[i]) + " |" for i, t in enumerate(techs)]
    lines = commentary(cmp)
    write_text_atomic(out / "table.md", "\n".join(md) + "\n")
    write_text_atomic(out / "commentary.md", "\n".join(lines) + "\n")
    egrid = np.full((len(techs), len(cols)), np.nan)
    for c in cmp.cells:
        if c.status == "ok" and c.energy_ratio == c.energy_ratio:
            egrid[techs.index(c.technique), cols.index((c.system, c.batch))] = c.energy_ratio
    panels = [("speed-up per generated token", grid)]
    if np.isfinite(egrid).any():
        panels.append(("energy saved per generated token (plain / technique)", egrid))
    fig, axes = plt.subplots(len(panels), 1, figsize=(1.1 * len(cols) + 3.5, (0.45 * len(techs) + 1.8) * len(panels)),
                             squeeze=False)
    for ax, (title, values) in zip(axes[:, 0], panels):
        lg = np.log2(values)
        lim = max(1.0, float(np.nanmax(np.abs(lg)))) if np.isfinite(lg).any() else 1.0
        im = ax.imshow(lg, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(techs)):
            for j in range(len(cols)):
                v = values[i, j]
                label = f"{v:.2f}" if v == v else (text[i][j] if text[i][j] in ("n/a", "pending", "error") else "-")
                ax.text(j, i, label, ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(cols)), [f"{s}\nb{b}" for s, b in cols], fontsize=7)
        ax.set_yticks(range(len(techs)), techs, fontsize=7)
        cb = fig.colorbar(im, ax=ax)
        cb.set_label("log2 ratio")
        ax.set_title(f"{cmp.model}, decode at context {cmp.seq_len}: {title}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120)
    plt.close(fig)
    write_bytes_atomic(out / "heatmap.png", buf.getvalue())
    return {k: str(out / f) for k, f in (("table_csv", "table.csv"), ("table_md", "table.md"),
                                          ("heatmap", "heatmap.png"), ("commentary", "commentary.md"))}
