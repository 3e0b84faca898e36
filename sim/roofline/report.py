"""Write a :class:`~sim.roofline.analyzer.RooflineReport` to a folder.

``write_report(report, out_dir)`` writes the per-op table (CSV, Parquet), the per-phase and
per-class totals (CSV), a Markdown and a JSON summary, and the roofline and breakdown charts.
Every file is written atomically: a crash never leaves a half-written file under its name.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from sim.io import atomic_path, staged_dir, write_text_atomic

TOP_OPS = 10


# --------------------------------------------------------------------------- writers


def write_report(report: Any, out_dir: str | os.PathLike) -> list[Path]:
    """Write every report file into ``out_dir`` (created if missing); returns their paths."""
    from sim.roofline.plots import breakdown_chart, roofline_chart  # matplotlib only when plotting

    out = Path(out_dir)
    with staged_dir(out) as stage:  # every file is made before any lands in out_dir
        written = [
            write_csv(report.table, stage / "roofline.csv"),
            write_parquet(report.table, stage / "roofline.parquet"),
            write_csv(report.totals(), stage / "totals.csv"),
            write_csv(report.by_class(), stage / "by_class.csv"),
            _write_text(stage / "summary.md", summary_markdown(report)),
            _write_text(stage / "summary.json", json.dumps(_jsonable(report.summary()), indent=2) + "\n"),
            roofline_chart(report, stage / "roofline.png"),
            breakdown_chart(report, stage / "breakdown.png"),
        ]
    return [out / p.name for p in written]


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """A DataFrame as CSV, without the index, written atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """A DataFrame as Parquet (pyarrow), without the index, written atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=False)
    return Path(path)


def _write_text(path: Path, text: str) -> Path:
    write_text_atomic(path, text)
    return path


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN and infinities to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------- formatting


def _si(v: float, unit: str, digits: int = 4) -> str:
    """4.2e11, 'FLOP' -> '420 GFLOP'."""
    if v is None or not math.isfinite(v):
        return "–"
    if v == 0:
        return f"0 {unit}"
    exp = min(max(int(math.floor(math.log10(abs(v)) / 3)), -3), 5)
    prefix = {-3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T", 5: "P"}[exp]
    return f"{v / 1000 ** exp:.{digits}g} {prefix}{unit}"


def _ms(seconds: float) -> str:
    """Milliseconds to four significant digits (microseconds below 0.1 ms)."""
    ms = seconds * 1e3
    if ms < 0.1:
        return f"{ms * 1e3:#.4g} µs" if ms else "0 ms"
    return f"{ms:#,.4g} ms" if ms < 1000 else f"{ms:,.1f} ms"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%" if math.isfinite(x) else "–"


def _num(x: float, fmt: str = ",.4g") -> str:
    if not math.isfinite(x):
        return "∞" if x > 0 else "–"
    return format(x, fmt)


def _table(header: list[str], rows: list[list[Any]], align: str = "") -> str:
    """A Markdown table; ``align`` is one letter per column (l or r, default l then r)."""
    align = align or "l" + "r" * (len(header) - 1)
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _short_op(name: str) -> str:
    """'aten.linear.default' -> 'linear'."""
    name = name[5:] if name.startswith("aten.") else name
    return name[:-8] if name.endswith(".default") else name


# --------------------------------------------------------------------------- Markdown


def summary_markdown(report: Any) -> str:
    """The Markdown summary: trace parameters, a device overview, then one section per device."""
    meta = report.meta
    parts = [f"# Roofline report: {meta.get('model') or 'trace'}", "",
             "![roofline](roofline.png)", "", "![time by op class](breakdown.png)", "",
             "## Trace", "", _trace_table(report), "", "## Devices", "", _overview_table(report), ""]
    for c in report.ceilings:
        parts += [_device_section(report, c), ""]
    return "\n".join(parts).rstrip() + "\n"


def _trace_table(report: Any) -> str:
    """Model and trace parameters from the trace metadata."""
    meta = report.meta
    rows = [[k, meta[k]] for k in ("model", "family", "phase", "batch", "seq_len", "new_tokens", "layers",
                                   "num_layers_traced", "tp", "dtype") if meta.get(k) is not None]
    prec = {k: v for k, v in (meta.get("precision") or {}).items() if v}
    if prec:
        rows.append(["precision", ", ".join(f"{k}={v}" for k, v in prec.items())])
    if meta.get("parameters"):
        rows.append(["parameters", f"{meta['parameters'] / 1e9:.3f} B"])
    n_dev = max(1, len(report.ceilings))
    rows.append(["op records", f"{len(report.table) // n_dev} per device"])
    return _table(["parameter", "value"], rows, "ll")


def _overview_table(report: Any) -> str:
    """One row per device: mode, bandwidth, total time and time per phase."""
    tot = report.totals()
    phases = list(dict.fromkeys(tot.phase)) if len(tot) else []
    rows = []
    for c in report.ceilings:
        d = tot[tot.device == c.device].set_index("phase")
        rows.append([c.device, c.mode, f"{c.mem_bw / 1e9:,.0f} GB/s", _ms(float(d.time_s.sum()))]
                    + [_ms(float(d.time_s[p])) if p in d.index else "–" for p in phases])
    return _table(["device", "mode", "memory bandwidth", "total time"] + [f"{p} time" for p in phases],
                  rows, "llrr" + "r" * len(phases))


def _device_section(report: Any, c: Any) -> str:
    """Per-phase totals, time by op class, the top ops and the ceiling notes of one device."""
    tot = report.totals()
    d = tot[tot.device == c.device]
    parts = [f"## {c.device} ({c.mode})", "",
             f"Total time **{_ms(float(d.time_s.sum()))}**; memory bandwidth {c.mem_bw / 1e9:,.0f} GB/s; "
             f"matrix peaks {_peaks(c.matmul_flops)}; vector peaks {_peaks(c.vector_flops)}.", "",
             "### Per phase", "", _phase_table(d), "",
             "### Time by op class", "", _class_table(report, c.device), "",
             f"### Top {TOP_OPS} ops by total time", "",
             "One row per op record; a record stands for `repeat` identical instances (identical layers), "
             "so its total time is time each × repeat.", "", _top_ops_table(report, c.device), ""]
    parts += ["### Notes", ""] + ([f"- {n}" for n in c.notes] or ["- none"])
    return "\n".join(parts)


def _peaks(peaks: dict[str, float]) -> str:
    if not peaks:
        return "–"
    groups: dict[float, list[str]] = {}
    for dtype, v in peaks.items():
        groups.setdefault(v, []).append(dtype)
    return ", ".join(f"{'/'.join(ds)} {v / 1e12:,.4g} TFLOP/s" for v, ds in sorted(groups.items(), reverse=True))


def _phase_table(d: pd.DataFrame) -> str:
    rows = [[r.phase, _ms(r.time_s), _si(r.flops, "FLOP"), _si(r.bytes, "B"), f"{r.ops:,}",
             _num(r.achieved_tflops, ",.2f"), _num(r.achieved_bw_gbps, ",.0f")] for r in d.itertuples()]
    return _table(["phase", "time", "FLOPs", "bytes", "ops", "achieved TFLOP/s", "achieved GB/s"], rows)


def _class_table(report: Any, device: str) -> str:
    """Time by op class per phase, with the share of the phase and of the device total."""
    bc = report.by_class()
    bc = bc[bc.device == device]
    total = float(bc.time_s.sum()) or 1.0
    order = {p: i for i, p in enumerate(dict.fromkeys(bc.phase))}
    bc = bc.assign(_o=bc.phase.map(order)).sort_values(["_o", "time_s"], ascending=[True, False])
    rows = [[r.phase, r.op_class, _ms(r.time_s), _pct(r.time_share), _pct(r.time_s / total), f"{r.ops:,}",
             _si(r.flops, "FLOP"), _si(r.bytes, "B")] for r in bc.itertuples()]
    return _table(["phase", "op class", "time", "share of phase", "share of total", "ops", "FLOPs", "bytes"],
                  rows, "llrrrrrr")


def top_ops(report: Any, device: str, n: int = TOP_OPS) -> pd.DataFrame:
    """The ``n`` op records of ``device`` with the largest total time (time_s * repeat)."""
    t = report.table[report.table.device == device]
    return t.assign(total_s=t.time_s * t.repeat).nlargest(n, "total_s")


def _top_ops_table(report: Any, device: str) -> str:
    rows = [[i, _short_op(r.name), r.module or "–", r.op_class, r.phase, f"×{r.repeat}",
             _ms(r.time_s), _ms(r.total_s), _pct(r.time_share), _num(r.intensity, ",.3g"), r.bound]
            for i, r in enumerate(top_ops(report, device).itertuples(), 1)]
    return _table(["#", "op", "module", "class", "phase", "repeat", "time each", "total time", "share",
                   "FLOP/B", "bound"], rows, "rlllllrrrrl")
