"""Roofline and time-breakdown charts of a :class:`~sim.roofline.analyzer.RooflineReport`.

matplotlib (Agg backend) is imported here only, so the analyzer stays plot-free.
Both charts write a PNG atomically and return its path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from sim.io import atomic_path  # noqa: E402
from sim.roofline.analyzer import MATRIX_CLASSES  # noqa: E402

DPI = 130
PANEL_W = 5.9  # inches per device panel: two panels fill ~1600 px at DPI; narrower when more

# One fixed colour per op class, the same in every chart and on every device.
CLASS_COLORS = {
    "gemm": "#1f77b4",
    "attention": "#d62728",
    "elementwise": "#2ca02c",
    "norm": "#ff7f0e",
    "softmax": "#9467bd",
    "reduction": "#8c564b",
    "embedding": "#e377c2",
    "moe_routing": "#7b4173",
    "moe_gather": "#17becf",
    "kv_cache": "#f2c500",
    "copy": "#7f7f7f",
    "allreduce": "#393b79",
    "other": "#b0b0b0",
}
PHASE_MARKERS = {"prefill": "o", "decode": "^"}
EXTRA_MARKERS = ["s", "D", "P", "X", "v", "<", ">"]
ROOF_STYLES = ["-", "--", "-.", ":"]
SIZE_MAX = 1800.0  # marker area (pt^2) of an op taking all of a device's time
SIZE_MIN = 16.0


def class_color(op_class: str) -> str:
    """The fixed colour of an op class (unknown classes get a stable tab20 colour)."""
    if op_class in CLASS_COLORS:
        return CLASS_COLORS[op_class]
    cmap = plt.get_cmap("tab20")
    return matplotlib.colors.to_hex(cmap(sum(map(ord, op_class)) % 20))


def phase_marker(phase: str, phases: list[str]) -> str:
    """Marker shape of a phase: circle for prefill, triangle for decode."""
    if phase in PHASE_MARKERS:
        return PHASE_MARKERS[phase]
    others = [p for p in phases if p not in PHASE_MARKERS]
    return EXTRA_MARKERS[others.index(phase) % len(EXTRA_MARKERS)] if phase in others else "o"


def _ordered_classes(classes: Any) -> list[str]:
    order = list(CLASS_COLORS)
    return sorted(set(classes), key=lambda c: (order.index(c) if c in order else len(order), c))


def _ordered_phases(phases: Any) -> list[str]:
    order = ["prefill", "decode"]
    return sorted(set(phases), key=lambda p: (order.index(p) if p in order else len(order), p))


def _si(v: float, unit: str = "") -> str:
    """1.2e12 -> '1.2 T' + unit."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g} {unit}".strip()
    exp = min(max(int(math.floor(math.log10(abs(v)) / 3)), -4), 5)
    prefix = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T", 5: "P"}[exp]
    x = v / 1000 ** exp
    num = f"{x:.0f}" if x >= 100 else f"{x:.3g}"
    return f"{num} {prefix}{unit}".strip()


def _fmt_tflops(v: float) -> str:
    return f"{v / 1e12:,.0f} TFLOP/s" if v >= 1e13 else f"{v / 1e12:.3g} TFLOP/s"


def _fmt_gbps(v: float) -> str:
    return f"{v / 1e9:,.0f} GB/s"


def _title(meta: dict[str, Any]) -> str:
    """'llama2-7b · decode · batch 16 · seq_len 1024' from the trace metadata."""
    parts = [str(meta.get("model") or "trace")]
    if meta.get("phase"):
        parts.append(str(meta["phase"]))
    for key, label in (("batch", "batch"), ("seq_len", "seq_len"), ("new_tokens", "new_tokens"),
                       ("layers", "layers"), ("tp", "TP")):
        val = meta.get(key)
        if val is not None and not (key == "tp" and val == 1):
            parts.append(f"{label} {val}")
    return " · ".join(parts)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    target = Path(path)
    try:
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return target


# --------------------------------------------------------------------------- roofline


def _roofs(table: pd.DataFrame, c: Any) -> list[tuple[float, str]]:
    """(peak FLOP/s, label) of every compute roof the device's ops run under, highest first.

    The peaks are the ones the analyzer used (matrix peak for gemm / attention, vector peak
    otherwise, bit-serial scaling included); one line per distinct peak.
    """
    if not len(table):
        return [(c.matmul_peak("fp16"), "matrix fp16")]
    kind = np.where(table.op_class.isin(MATRIX_CLASSES), "matrix", "vector")
    peaks = table.peak_flops.to_numpy(dtype=float)
    found: dict[float, dict[str, set[str]]] = {}
    for k, peak, dtype in zip(kind, peaks, table.compute_dtype):
        found.setdefault(float(peak), {}).setdefault(str(k), set()).add(str(dtype))
    labels = {peak: " + ".join(f"{k} {'/'.join(sorted(found[peak][k]))}" for k in sorted(found[peak]))
              for peak in found}
    names = list(labels.values())
    for peak, lab in list(labels.items()):  # one name, two peaks (bit-serial weight widths): add classes
        if names.count(lab) > 1:
            classes = sorted(set(table.op_class[peaks == peak]))
            labels[peak] = f"{lab} ({'/'.join(classes[:3])}{'/…' if len(classes) > 3 else ''})"
    return sorted(labels.items(), key=lambda r: -r[0])


def _placeable(table: pd.DataFrame) -> pd.Series:
    return (table.flops > 0) & (table.bytes > 0) & (table.time_s > 0)


def _limits(report: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shared x (FLOP/byte) and y (FLOP/s) limits covering points, roofs and ridges.

    Leaves 1.3 decades of roof right of the highest ridge.
    """
    t = report.table
    pts = t[_placeable(t)] if len(t) else t
    xs = list(pts.intensity)
    ys = list(pts.flops / pts.time_s)
    ridges, peaks = [], []
    for c in report.ceilings:
        for peak, _ in _roofs(t[t.device == c.device] if len(t) else t, c):
            ridges.append(peak / c.mem_bw)
            peaks.append(peak)
    x_lo = 10 ** math.floor(math.log10(min(xs + ridges)) - 0.3)
    x_hi = 10 ** math.ceil(max(math.log10(max(xs + ridges)) + 0.3, math.log10(max(ridges)) + 1.3))
    y_hi = 10 ** (math.log10(max(peaks)) + 0.45)
    y_lo = 10 ** math.floor(math.log10(min(ys + [x_lo * min(c.mem_bw for c in report.ceilings)])) - 0.2)
    return (x_lo, x_hi), (y_lo, y_hi)


def _slope_angle(ax: Any, x0: float, x1: float, bw: float) -> float:
    """On-screen angle in degrees of the line y = bw * x between x0 and x1."""
    p0, p1 = ax.transData.transform([(x0, x0 * bw), (x1, x1 * bw)])
    return math.degrees(math.atan2(p1[1] - p0[1], p1[0] - p0[0]))


def _slope_label_x(ax: Any, x0: float, x1: float, bw: float, pts: pd.DataFrame) -> float:
    """Where along the bandwidth slope its label is farthest from the plotted points."""
    span = math.log10(x1 / x0)
    cand = np.logspace(math.log10(x0) + 0.12 * span, math.log10(x1) - 0.25 * span, 27)
    if not len(pts):
        return float(cand[len(cand) // 2])
    xy_c = ax.transData.transform(np.column_stack([cand, cand * bw]))
    xy_p = ax.transData.transform(np.column_stack([pts.intensity, pts._y]))
    radius = np.sqrt(pts._s.to_numpy()) / 2 * DPI / 72
    dist = np.hypot(xy_c[:, None, 0] - xy_p[None, :, 0], xy_c[:, None, 1] - xy_p[None, :, 1])
    clearance = np.minimum((dist - radius[None, :]).min(axis=1), 80.0) - 5 * np.abs(np.linspace(-1, 1, 27))
    return float(cand[int(np.argmax(clearance))])


def _draw_ceilings(ax: Any, table: pd.DataFrame, c: Any, pts: pd.DataFrame) -> list[Any]:
    """Bandwidth slope, one flat roof per used peak, ridge points and drop lines.

    Returns the line handles, labelled with values and ridge points, for the ceilings legend.
    """
    (x_lo, x_hi), (y_lo, _) = ax.get_xlim(), ax.get_ylim()
    roofs = _roofs(table, c)
    top = roofs[0][0]
    bw = c.mem_bw
    handles = ax.plot([x_lo, top / bw], [x_lo * bw, top], color="#222222", lw=1.8, zorder=2,
                      label=f"memory bandwidth · {_fmt_gbps(bw)}")
    x_txt = _slope_label_x(ax, max(x_lo, y_lo / bw), top / bw, bw, pts)
    ax.annotate(f"{_fmt_gbps(bw)}", (x_txt, x_txt * bw), xytext=(-4, 6), textcoords="offset points",
                rotation=_slope_angle(ax, x_lo, top / bw, bw), rotation_mode="anchor", ha="center",
                va="bottom", fontsize=9.5, color="#222222", zorder=6)
    for i, (peak, label) in enumerate(roofs):
        ridge = peak / bw
        handles += ax.plot([ridge, x_hi], [peak, peak], color="#222222", lw=1.8 if i == 0 else 1.3,
                           ls=ROOF_STYLES[min(i, len(ROOF_STYLES) - 1)], zorder=2,
                           label=f"{label} peak · {_fmt_tflops(peak)} · ridge {ridge:,.3g} FLOP/B")
        ax.plot([ridge, ridge], [y_lo, peak], color="#999999", lw=0.9, ls=":", zorder=1)
        ax.plot([ridge], [peak], marker="o", ms=4.5, color="white", mec="#222222", mew=1.2, zorder=5)
    return handles


def _clusters(pts: pd.DataFrame, radius: float = 0.3) -> list[tuple[str, float, float, float, float]]:
    """Group ops of one class and phase lying within ``radius`` decades of the group's biggest op.

    Returns (op_class, time share, x, y, marker area of the biggest op), biggest share first.
    """
    out = []
    for (op_class, _), grp in pts.groupby(["op_class", "phase"], sort=False):
        groups: list[list[float]] = []  # [log x, log y, share, x, y, area]
        for x, y, share, area in zip(grp.intensity, grp._y, grp._share, grp._s):  # biggest first
            lx, ly = math.log10(x), math.log10(y)
            for g in groups:
                if abs(g[0] - lx) <= radius and abs(g[1] - ly) <= radius:
                    g[2] += share
                    break
            else:
                groups.append([lx, ly, share, x, y, area])
        out += [(op_class, g[2], g[3], g[4], g[5]) for g in groups]
    return sorted(out, key=lambda r: -r[1])


def _label_top(ax: Any, pts: pd.DataFrame, n: int = 4, min_share: float = 0.05) -> None:
    """Name the biggest point groups (same class, phase, nearby) with their time share.

    A label goes below right of its group, or below it where it would leave the axes, and is
    dropped where it would cover an earlier label.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for op_class, share, x, y, area in [c for c in _clusters(pts) if c[1] >= min_share][:n]:
        r = math.sqrt(area) / 2  # marker radius, points
        tries = [("left", (0.7 * r + 5, -0.7 * r - 5)), ("center", (0, -r - 4)), ("right", (r, -r - 4))]
        for ha, offset in tries:
            ann = ax.annotate(f"{op_class} {share:.0%}", (x, y), xytext=offset, textcoords="offset points",
                              ha=ha, va="top", fontsize=8.5, color=class_color(op_class), fontweight="bold",
                              zorder=7, bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
            box = ann.get_window_extent(renderer)
            if box.x1 <= frame.x1 - 2 or ha == "right":
                break
            ann.remove()
        if any(box.overlaps(p) for p in placed) or box.x0 < frame.x0:
            ann.remove()
        else:
            placed.append(box)


def _points(table: pd.DataFrame) -> pd.DataFrame:
    """The placeable ops of one device with y (FLOP/s), time share and marker area, biggest first."""
    total = float((table.time_s * table.repeat).sum()) or 1.0
    return table[_placeable(table)].assign(
        _y=lambda d: d.flops / d.time_s,
        _share=lambda d: d.time_s * d.repeat / total,
        _s=lambda d: np.clip(SIZE_MAX * d._share, SIZE_MIN, None),
    ).sort_values("_s", ascending=False)


def _draw_points(ax: Any, pts: pd.DataFrame, phases: list[str]) -> None:
    """Scatter the ops, one marker shape per phase, and name the biggest groups."""
    for phase in phases:
        sel = pts[pts.phase == phase]
        if len(sel):
            ax.scatter(sel.intensity, sel._y, s=sel._s, c=[class_color(k) for k in sel.op_class],
                       marker=phase_marker(phase, phases), alpha=0.72, edgecolors="#1a1a1a",
                       linewidths=0.6, zorder=4)
    if len(pts):
        _label_top(ax, pts)


def _format_axes(ax: Any) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=20))
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=20))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v < 1000 else _si(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _si(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", color="#dddddd", lw=0.7)
    ax.grid(True, which="minor", color="#f1f1f1", lw=0.5)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _roofline_legend(fig: Any, classes: list[str], phases: list[str], ncols: int) -> None:
    """Class colours, phase markers and a size key, in one row block under the panels."""
    handles = [Patch(facecolor=class_color(k), edgecolor="#1a1a1a", lw=0.6, label=k) for k in classes]
    handles += [Line2D([], [], ls="", marker=phase_marker(p, phases), ms=8, mfc="#d9d9d9", mec="#1a1a1a",
                       label=p) for p in phases]
    handles += [Line2D([], [], ls="", marker="o", ms=math.sqrt(SIZE_MAX * s), mfc="none", mec="#555555",
                       label=f"{s:.0%} of time") for s in (0.05, 0.25)]
    fig.legend(handles=handles, loc="lower center", ncol=ncols, frameon=False,
               fontsize=9, handletextpad=0.8, columnspacing=1.8, bbox_to_anchor=(0.5, 0.005))


def _panel(ax: Any, dev: pd.DataFrame, c: Any, phases: list[str]) -> list[Any]:
    """One device's panel; returns the ceilings legend handles."""
    pts = _points(dev) if len(dev) else dev
    _draw_points(ax, pts, phases)
    handles = _draw_ceilings(ax, dev, c, pts)
    ax.set_title(f"{c.device}  ({c.mode} ceilings)", fontsize=11.5, fontweight="bold")
    ax.set_xlabel("Arithmetic intensity (FLOP/byte)", fontsize=10)
    left_out = len(dev) - len(pts)
    if left_out:
        ax.text(0.985, 0.02, f"{left_out} of {len(dev)} op records not shown (zero FLOPs or bytes)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#555555",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="#cccccc", lw=0.6))
    return handles


def roofline_chart(report: Any, path: str | os.PathLike) -> Path:
    """Log-log roofline, one panel per device, ops sized by time share; writes a PNG at ``path``."""
    table = report.table
    n = max(1, len(report.ceilings))
    classes = _ordered_classes(table.op_class) if len(table) else []
    phases = _ordered_phases(table.phase) if len(table) else []
    width = max(min(PANEL_W, 16.0 / n) * n + 0.6, 9.0)
    n_legend = len(classes) + len(phases) + 2
    legend_rows = math.ceil(n_legend / max(1, int(width / 1.2)))
    ceil_rows = 1 + max([len(_roofs(table[table.device == c.device] if len(table) else table, c))
                         for c in report.ceilings] or [1])
    below = 0.62 + 0.19 * ceil_rows + 0.2 + 0.34 * legend_rows + 0.1  # inches under the axes
    height = 5.2 + below
    fig, axes = plt.subplots(1, n, figsize=(width, height), sharey=True, squeeze=False)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.3 / width, top=1 - 0.95 / height,
                        bottom=below / height, wspace=0.08)
    xlim, ylim = _limits(report)
    for ax, c in zip(axes[0], report.ceilings):
        _format_axes(ax)
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        handles = _panel(ax, table[table.device == c.device] if len(table) else table, c, phases)
        box = ax.get_position()
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(box.x0 + box.width / 2,
                   (below - 0.6) / height), fontsize=8.5, handlelength=2.6, frameon=False, labelspacing=0.3)
    axes[0][0].set_ylabel("Achieved performance (FLOP/s)", fontsize=10)
    fig.suptitle(f"Roofline — {_title(report.meta)}", fontsize=13, fontweight="bold", y=1 - 0.18 / height)
    fig.text(0.5, 1 - 0.5 / height, "point = one op record at (FLOPs/bytes, FLOPs/time); "
             "area ∝ share of the device's total time (repeats counted)", ha="center", fontsize=9,
             color="#555555")
    _roofline_legend(fig, classes, phases, math.ceil(n_legend / legend_rows))
    return _save(fig, path)


# --------------------------------------------------------------------------- breakdown


def _fmt_ms(ms: float) -> str:
    """Milliseconds with about four significant digits."""
    return f"{ms:,.1f} ms" if ms >= 100 else f"{ms:#.4g} ms"


def breakdown_table(report: Any) -> pd.DataFrame:
    """Milliseconds per (device, phase) row and op-class column, rows in report order."""
    bc = report.by_class()
    if not len(bc):
        return pd.DataFrame()
    bc = bc.assign(ms=bc.time_s * 1e3)
    wide = bc.pivot_table(index=["device", "phase"], columns="op_class", values="ms", aggfunc="sum",
                          fill_value=0.0, sort=False)
    order = [(d, p) for d in report.devices for p in _ordered_phases(bc.phase) if (d, p) in wide.index]
    return wide.reindex(order)[_ordered_classes(wide.columns)]


def _bar_positions(index: list[tuple[str, str]]) -> list[float]:
    """Y positions top to bottom, with a gap between devices."""
    ys, y, prev = [], 0.0, None
    for dev, _ in index:
        if prev is not None and dev != prev:
            y += 0.45
        ys.append(y)
        y += 1.0
        prev = dev
    return ys


def _text_color(background: str) -> str:
    """Dark text on light colours, white on dark ones."""
    r, g, b = matplotlib.colors.to_rgb(background)
    return "#1a1a1a" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"


def _stack(ax: Any, wide: pd.DataFrame, ys: list[float], share: bool) -> None:
    """Stacked horizontal bars (x limits already set); wide enough segments get a percentage."""
    totals = wide.sum(axis=1).to_numpy()
    left = np.zeros(len(wide))
    x0, x1 = ax.get_xlim()
    px_per_unit = ax.get_window_extent(ax.figure.canvas.get_renderer()).width / (x1 - x0)
    for k in wide.columns:
        vals = wide[k].to_numpy()
        widths = np.where(totals > 0, vals / np.where(totals > 0, totals, 1), 0) * 100 if share else vals
        ax.barh(ys, widths, left=left, height=0.72, color=class_color(k), edgecolor="white", lw=0.8)
        for y, lft, w, v, tot in zip(ys, left, widths, vals, totals):
            if tot > 0 and v / tot >= 0.06 and w * px_per_unit >= 34:
                ax.text(lft + w / 2, y, f"{v / tot:.0%}", ha="center", va="center", fontsize=8,
                        color=_text_color(class_color(k)))
        left += widths


def breakdown_chart(report: Any, path: str | os.PathLike) -> Path:
    """Stacked bars of time by op class, one bar per (device, phase); writes a PNG at ``path``."""
    wide = breakdown_table(report)
    index = list(wide.index)
    ys = _bar_positions(index)
    classes = list(wide.columns)
    legend_rows = max(1, math.ceil(len(classes) / 9))
    height = 2.05 + 0.25 * legend_rows + 0.5 * max(len(index), 1)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12.3, height), sharey=True,
                                  gridspec_kw={"width_ratios": [3, 2]})
    fig.subplots_adjust(left=0.13, right=0.985, top=1 - 0.85 / height, bottom=(0.75 + 0.25 * legend_rows) / height,
                        wspace=0.05)
    ax2.set_xlim(0, 100)
    if len(wide):
        totals = wide.sum(axis=1).to_numpy()
        ax.set_xlim(0, max(totals.max(), 1e-9) * 1.2)
        _stack(ax, wide, ys, share=False)
        _stack(ax2, wide, ys, share=True)
        for y, tot in zip(ys, totals):
            ax.text(tot, y, f"  {_fmt_ms(tot)}", ha="left", va="center", fontsize=9, fontweight="bold")
    ax.set_yticks(ys, [f"{d} · {p}" for d, p in index], fontsize=10)
    ax.invert_yaxis()
    ax.set_xlabel("Time (ms)", fontsize=10)
    ax2.set_xlabel("Share of phase time (%)", fontsize=10)
    for a in (ax, ax2):
        a.grid(True, axis="x", color="#e3e3e3", lw=0.7)
        a.set_axisbelow(True)
        a.spines[["top", "right"]].set_visible(False)
        a.tick_params(labelsize=9)
    fig.suptitle(f"Time by op class — {_title(report.meta)}", fontsize=13, fontweight="bold",
                 y=1 - 0.2 / height)
    fig.legend(handles=[Patch(facecolor=class_color(k), label=k) for k in classes], loc="lower center",
               ncol=max(1, math.ceil(len(classes) / legend_rows)), frameon=False, fontsize=9,
               bbox_to_anchor=(0.5, 0.01))
    return _save(fig, path)
