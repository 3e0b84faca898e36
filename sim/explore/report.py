"""A sweep's results as one self-contained HTML page (``llmsim report DIR --out report.html``).

The page needs nothing beside itself: CSS inline, plots as inline base64 PNG (matplotlib, Agg), no
JavaScript. It holds:

* a header: sweep name, base system, mode, seed, points, errors, workloads, llmsim version;
* the swept axes and their values;
* per workload, a Pareto plot per objective pair the results give (throughput against area,
  energy per token, cost; the front highlighted) and a sensitivity plot per metric (throughput,
  energy per token where modelled);
* tables: the sensitivity scores, the Pareto points and the full results (one row per point).

For tests and tools, every plot is an ``<img class="plot">`` and every results row a
``<tr class="point">``; ``<p id="summary">`` carries ``data-points``, ``data-plots``,
``data-errors`` and ``data-pareto-points``. The same results give the same bytes: no timestamps,
PNGs without a software stamp, rows in point order.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import LlmsimError
from sim.explore import analysis as an
from sim.io import write_text_atomic

DPI = 100
FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#9aa4b1"
LINE_COLOR = "#1f77b4"
MAX_FRONT_LABELS = 12  # label front points with their index when the front has at most this many
METRIC_TABLE = ["m.tokens_per_s", "m.time_s", "m.energy_j", "m.energy_per_token_j", "m.area_mm2", "m.cost",
                "m.pim_busy", "m.cycles"]


# --------------------------------------------------------------------------- loading


def load_sweep(out_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """(spec, results) of a sweep folder; the results in point order.

    Uses :func:`sim.explore.store.load_results` when the store offers it, else reads
    ``results.parquet`` or, for an unfinished run, ``points/*.parquet``.
    """
    d = Path(out_dir)
    if not d.exists():
        raise LlmsimError(f"{d}: no such sweep folder (expected the output folder of `llmsim sweep`)")
    if not d.is_dir():
        raise LlmsimError(f"{d}: expected a sweep folder, found a file")
    has_points = (d / "points").is_dir() and any(not f.name.startswith(".") for f in (d / "points").glob("*.parquet"))
    if not (d / "results.parquet").is_file() and not has_points:
        raise LlmsimError(f"{d}: no results (expected results.parquet or points/*.parquet from `llmsim sweep`)")
    spec = _read_spec(d)
    df = _read_results(d)
    if df is None or len(df) == 0:
        raise LlmsimError(f"{d}: no results (expected results.parquet or points/*.parquet from `llmsim sweep`)")
    if "index" in df.columns:
        idx = pd.to_numeric(df["index"], errors="coerce")
        df = df.assign(_order=idx).sort_values("_order", kind="mergesort").drop(columns="_order")
    return spec, df.reset_index(drop=True)


def _read_spec(d: Path) -> dict[str, Any]:
    p = d / "spec.yaml"
    if not p.is_file():
        return {}
    import yaml

    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LlmsimError(f"{p}: cannot read the sweep spec ({first})") from None
    return spec if isinstance(spec, dict) else {}


def _read_results(d: Path) -> pd.DataFrame | None:
    try:
        from sim.explore.store import load_results  # the sweep engine's reader, when present
    except ImportError:
        load_results = None
    if load_results is not None:
        try:
            res = load_results(d)
        except LlmsimError:
            raise
        except Exception:  # noqa: BLE001 -- fall back to reading the files ourselves
            res = None
        if isinstance(res, tuple):  # (spec, df) or (df, ...) forms
            res = next((r for r in res if isinstance(r, pd.DataFrame)), None)
        if isinstance(res, pd.DataFrame):
            return res
    try:
        if (d / "results.parquet").is_file():
            return pd.read_parquet(d / "results.parquet")
        files = sorted(f for f in (d / "points").glob("*.parquet") if not f.name.startswith(".")) \
            if (d / "points").is_dir() else []
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LlmsimError(f"{d}: cannot read the sweep results ({first})") from None


# --------------------------------------------------------------------------- formatting


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _axis_name(col: str) -> str:
    return col[4:] if col.startswith("cfg.") else col


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v)) if np.ndim(v) == 0 else False
    except (TypeError, ValueError):
        return False


def _fmt(v: Any, scale: float = 1.0) -> str:
    if _is_missing(v):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)) and scale == 1.0:
        return str(int(v))
    if isinstance(v, (float, np.floating, int, np.integer)):
        f = float(v) * scale
        if not math.isfinite(f):
            return str(f)
        if f == int(f) and abs(f) < 1e15:
            return str(int(f))
        if 1e-3 <= abs(f) < 1e9:  # four significant digits, no exponent
            text = f"{f:.{max(0, 3 - math.floor(math.log10(abs(f))))}f}"
            return text.rstrip("0").rstrip(".") if "." in text else text
        return f"{f:.4g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, np.ndarray):
        return json.dumps(v.tolist(), default=str)
    return str(v)


def _unique(df: pd.DataFrame, col: str) -> list[str]:
    if col not in df.columns:
        return []
    return [str(v) for v in dict.fromkeys(df[col].dropna().astype(str)) if str(v) != ""]


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    """The figure as a base64 PNG (no software stamp: the bytes depend on the data only)."""
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    finally:
        plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pareto_plot(rows: pd.DataFrame, x: str, y: str, workload: str) -> tuple[str, int]:
    """(base64 PNG, front size) of one workload's rows: every point, the front highlighted."""
    plt = _plt()
    xi, yi = an.metric_info(x), an.metric_info(y)
    ok = an.ok_rows(rows)
    xs = pd.to_numeric(ok[x], errors="coerce").to_numpy(dtype=float) * xi.scale
    ys = pd.to_numeric(ok[y], errors="coerce").to_numpy(dtype=float) * yi.scale
    finite = np.isfinite(xs) & np.isfinite(ys)
    front = an.pareto_mask(ok, x, y).to_numpy() & finite
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    dom = finite & ~front
    ax.scatter(xs[dom], ys[dom], s=22, color=DOMINATED_COLOR, alpha=0.8, label=f"dominated ({int(dom.sum())})",
               zorder=2)
    order = np.argsort(xs[front], kind="mergesort")
    fx, fy = xs[front][order], ys[front][order]
    ax.step(fx, fy, where="post", color=FRONT_COLOR, lw=1.2, alpha=0.7, zorder=3)
    ax.scatter(fx, fy, s=46, color=FRONT_COLOR, edgecolor="black", linewidth=0.6,
               label=f"Pareto front ({int(front.sum())})", zorder=4)
    if 0 < front.sum() <= MAX_FRONT_LABELS and "index" in ok.columns:
        labels = ok["index"].to_numpy()[front][order]
        for px, py, lab in zip(fx, fy, labels):
            ax.annotate(f"#{_fmt(lab)}", (px, py), textcoords="offset points", xytext=(5, 4), fontsize=7,
                        color="#333333")
    ax.set_xlabel(f"{xi.axis_label()}  (lower is better)")
    ax.set_ylabel(f"{yi.axis_label()}  (higher is better)")
    ax.set_title(f"{workload}\n{an.pair_label(x, y)}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.08)
    ax.legend(fontsize=8, loc="best")
    missing = int((~finite).sum()) + (len(rows) - len(ok))
    if missing:
        ax.text(0.99, 0.01, f"{missing} point(s) without a value", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7, color="#666666")
    fig.tight_layout()
    return _png(fig), int(front.sum())


def sensitivity_plot(sens: pd.DataFrame, metric: str, workload: str) -> str:
    """Base64 PNG: a bar per axis of the normalized score, then the metric's mean (min–max band)
    against each axis's values."""
    plt = _plt()
    mi = an.metric_info(metric)
    scores = an.sensitivity_scores(sens)
    axes = list(scores["axis"])
    n = len(axes) + 1
    cols = min(n, 4)
    nrows = math.ceil(n / cols)
    fig, axs = plt.subplots(nrows, cols, figsize=(3.4 * cols, 3.0 * nrows), squeeze=False)
    flat = axs.ravel()
    ax0 = flat[0]
    names = [_axis_name(a) for a in axes][::-1]
    vals = [float(s) if math.isfinite(float(s)) else 0.0 for s in scores["score"]][::-1]
    ax0.barh(range(len(names)), vals, color=LINE_COLOR)
    ax0.set_yticks(range(len(names)))
    ax0.set_yticklabels(names, fontsize=7)
    ax0.set_xlabel("sensitivity (relative spread)", fontsize=8)
    ax0.set_title("score per axis", fontsize=9)
    ax0.tick_params(axis="x", labelsize=7)
    ax0.set_xlim(0, (max(vals) * 1.1) if vals and max(vals) > 0 else 1.0)
    ax0.grid(True, axis="x", alpha=0.3)
    for k, a in enumerate(axes, start=1):
        ax = flat[k]
        g = sens[sens["axis"] == a]
        pos = np.arange(len(g))
        mean = g["mean"].to_numpy(dtype=float) * mi.scale
        lo = g["min"].to_numpy(dtype=float) * mi.scale
        hi = g["max"].to_numpy(dtype=float) * mi.scale
        ax.fill_between(pos, lo, hi, color=LINE_COLOR, alpha=0.18, lw=0)
        ax.plot(pos, mean, marker="o", color=LINE_COLOR, lw=1.4, ms=4)
        ax.set_xticks(pos)
        ax.set_xticklabels([_fmt(v) for v in g["value"]], fontsize=7, rotation=30 if len(g) > 5 else 0)
        ax.tick_params(axis="y", labelsize=7)
        score = float(g["score"].iloc[0])
        binned = bool(g["binned"].iloc[0]) if "binned" in g.columns else False
        ax.set_title(f"{_axis_name(a)}\n{'bin medians, ' if binned else ''}score {score:.3g}", fontsize=8.5)
        ax.set_ylabel(mi.axis_label(), fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(f"{workload}: sensitivity of {mi.label} (mean, min–max band)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- page

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #1d232b;
       background: #ffffff; margin: 0; padding: 0 28px 40px; }
header { background: #f3f5f8; border-bottom: 1px solid #d8dde4; margin: 0 -28px 20px; padding: 16px 28px; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #d8dde4; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
dl.meta { display: flex; flex-wrap: wrap; gap: 4px 26px; margin: 0; }
dl.meta div { display: flex; gap: 6px; } dl.meta dt { color: #5b6673; } dl.meta dd { margin: 0; font-weight: 500; }
#summary { font-weight: 600; margin: 10px 0 0; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; border: 1px solid #e1e5ea; padding: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12px; color: #5b6673; margin-top: 4px; }
.table-wrap { overflow: auto; max-height: 640px; border: 1px solid #e1e5ea; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eceff3; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; position: sticky; top: 0; text-align: center; }
td.text { text-align: left; }
tr.error td { background: #fdecea; }
tr.front td { background: #fff4e5; }
td.err { text-align: left; white-space: normal; max-width: 420px; color: #a61b1b; }
p.note { color: #5b6673; font-size: 12px; }
code { font-size: 12px; }
"""


def _table(head: list[str], rows: list[str], cls: str = "") -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    return (f'<div class="table-wrap"><table class="{_esc(cls)}"><thead><tr>{th}</tr></thead>'
            f'<tbody>\n{"".join(rows)}</tbody></table></div>')


def _td(v: Any, scale: float = 1.0, cls: str = "") -> str:
    text = _fmt(v, scale)
    if not cls and not isinstance(v, (int, float, np.integer, np.floating)) and not _is_missing(v):
        cls = "text"
    return f'<td class="{cls}">{_esc(text)}</td>' if cls else f"<td>{_esc(text)}</td>"


def _axes_section(spec: dict[str, Any], df: pd.DataFrame) -> str:
    axes_spec = spec.get("axes") if isinstance(spec.get("axes"), dict) else {}
    cols = an.axis_columns(df)
    # a linked axis ("a, b") is shown by its paths' own columns
    linked = {q.strip(): k for k in axes_spec if "," in k for q in k.split(",")}
    paths = [k for k in axes_spec if "," not in k] + [_axis_name(c) for c in cols if _axis_name(c) not in axes_spec]
    if not paths:
        return ""
    rows = []
    for p in paths:
        col = f"cfg.{p}"
        swept = _fmt(axes_spec[p]) if p in axes_spec else f"linked: {linked[p]}" if p in linked else "–"
        seen = an.sort_values(df[col].map(lambda v: _fmt(v)).tolist()) if col in df.columns else []
        rows.append(f'<tr class="axis"><td class="text"><code>{_esc(p)}</code></td><td class="text">{_esc(swept)}</td>'
                    f'<td class="text">{_esc(", ".join(seen))}</td></tr>\n')
    wl = spec.get("workloads")
    extra = ""
    if isinstance(wl, list) and wl:
        extra = f'<p class="note">Workloads in the spec: {_esc(_fmt(wl))}</p>'
    return ("<h2>Axes</h2>" + _table(["axis", "in the spec", "values in the results"], rows, "axes") + extra)


def _errors_section(df: pd.DataFrame) -> str:
    if "status" not in df.columns:
        return ""
    bad = df[df["status"].astype(str) != "ok"]
    if bad.empty:
        return ""
    msgs = bad["error"].map(lambda e: "" if _is_missing(e) else str(e)) if "error" in bad.columns else \
        pd.Series("", index=bad.index)
    ids = bad["index"] if "index" in bad.columns else pd.Series(bad.index, index=bad.index)
    rows = []
    for msg, g in msgs.groupby(msgs, sort=False):
        which = ", ".join(f"#{_fmt(v)}" for v in ids.loc[g.index][:20]) + (" …" if len(g) > 20 else "")
        rows.append(f'<tr class="errmsg">{_td(len(g))}<td class="err">{_esc(msg or "(no message)")}</td>'
                    f'<td class="text">{_esc(which)}</td></tr>\n')
    return f"<h2>Errors ({len(bad)} points)</h2>" + _table(["points", "error", "which"], rows, "errors")


def render_report(spec: dict[str, Any], df: pd.DataFrame, title_hint: str = "sweep") -> tuple[str, dict[str, Any]]:
    """(HTML, summary) of a sweep's results; the summary has points, plots, pareto_points,
    errors and workloads."""
    df = df.reset_index(drop=True)
    name = str(spec.get("name") or next(iter(_unique(df, "sweep")), "") or title_hint)
    base = str(spec.get("base") or ", ".join(_unique(df, "base")) or "–")
    versions = ", ".join(_unique(df, "llmsim_version")) or "–"
    backends = ", ".join(_unique(df, "backend")) or "–"
    seed = spec.get("seed", next(iter(_unique(df, "seed")), "–"))
    mode = spec.get("mode") or ("grid" if spec else "–")  # a spec without mode is a grid sweep
    ok = an.ok_rows(df)
    n_points = len(df)
    n_errors = n_points - len(ok)
    wls = an.workloads(df)

    sections: list[str] = []
    pareto_rows: list[str] = []
    sens_rows: list[str] = []
    n_plots = 0
    n_pareto = 0
    front_index: set[int] = set()
    axes_all = an.axis_columns(df)
    pareto_metrics = [m for m in [an.THROUGHPUT, *an.PAIR_X] if m in df.columns]
    for wl, rows in an.by_workload(df):
        figs: list[str] = []
        ok_w = an.ok_rows(rows)
        for x, y in an.objective_pairs(rows):
            b64, k = pareto_plot(rows, x, y, wl)
            label = an.pair_label(x, y)
            figs.append(f'<figure><img class="plot pareto" alt="{_esc(wl)}: {_esc(label)}" '
                        f'src="data:image/png;base64,{b64}"><figcaption>Pareto front: {_esc(label)} '
                        f'({k} of {len(ok_w)} points on the front)</figcaption></figure>')
            n_plots += 1
            front = an.pareto_front(rows, x, y)
            n_pareto += len(front)
            front_index.update(int(i) for i in front.index)
            for i, r in front.iterrows():
                cells = [_td(r.get("index", i)), f'<td class="text">{_esc(wl)}</td>',
                         f'<td class="text">{_esc(an.metric_info(x).label)}</td>']
                cells += [_td(r[a]) for a in axes_all]
                cells += [_td(r[m], an.metric_info(m).scale) for m in pareto_metrics]
                pareto_rows.append(f'<tr class="pareto">{"".join(cells)}</tr>\n')
        for metric in an.sensitivity_metrics(rows):
            sens = an.sensitivity(rows, metric)
            if sens.empty:
                continue
            figs.append(f'<figure><img class="plot sensitivity" alt="{_esc(wl)}: sensitivity of '
                        f'{_esc(an.metric_info(metric).label)}" src="data:image/png;base64,'
                        f'{sensitivity_plot(sens, metric, wl)}"><figcaption>Sensitivity of '
                        f'{_esc(an.metric_info(metric).label)} to each axis</figcaption></figure>')
            n_plots += 1
            mi = an.metric_info(metric)
            for _, s in an.sensitivity_scores(sens).iterrows():
                sens_rows.append(
                    f'<tr class="sens"><td class="text">{_esc(wl)}</td><td class="text">{_esc(mi.label)}</td>'
                    f'<td class="text"><code>{_esc(_axis_name(s["axis"]))}</code></td>{_td(s["n_values"])}'
                    f'{_td(s["score"])}{_td(s["axis_range"], mi.scale)}<td class="text">{_esc(s["method"])}</td>'
                    f'{_td(s["contexts"])}</tr>\n')
        bad = len(rows) - len(ok_w)
        note = f' <span class="note">({bad} error{"s" if bad != 1 else ""})</span>' if bad else ""
        body = (f'<div class="plots">{"".join(figs)}</div>' if figs else
                '<p class="note">No plots: no objective pair has values, and no axis varies.</p>')
        sections.append(f'<section class="workload"><h3>{_esc(wl)}: {len(rows)} points{note}</h3>{body}</section>')

    # full results table
    metric_cols = [c for c in METRIC_TABLE if c in df.columns] + \
        [c for c in an.metric_columns(df) if c not in METRIC_TABLE]
    unmodelled = [c for c in metric_cols if not an.has_values(df, c)]
    metric_cols = [c for c in metric_cols if c not in unmodelled]
    wl_col = ["workload"] if "workload" in df.columns else []
    head = ["#", "point"] + [_axis_name(a) for a in axes_all] + wl_col + \
        [an.metric_info(m).axis_label() for m in metric_cols] + ["status", "error"]
    result_rows = []
    for i, r in df.iterrows():
        status = str(r.get("status", "ok"))
        cls = "point" + (" error" if status != "ok" else "") + (" front" if i in front_index else "")
        cells = [_td(r.get("index", i)), f'<td class="text"><code>{_esc(_fmt(r.get("point_id", "")))}</code></td>']
        cells += [_td(r[a]) for a in axes_all]
        cells += [f'<td class="text">{_esc(r["workload"])}</td>'] if wl_col else []
        cells += [_td(r[m], an.metric_info(m).scale) for m in metric_cols]
        err = r.get("error", "")
        err = "" if _is_missing(err) else str(err)
        cells += [f'<td class="text">{_esc(status)}</td>', f'<td class="err">{_esc(err)}</td>']
        result_rows.append(f'<tr class="{cls}">{"".join(cells)}</tr>\n')

    summary = {"points": n_points, "plots": n_plots, "pareto_points": n_pareto, "errors": n_errors,
               "workloads": len(wls)}
    meta = [("base system", base), ("mode", mode), ("seed", seed), ("points", n_points), ("errors", n_errors),
            ("workloads", len(wls)), ("llmsim version", versions), ("backend", backends)]
    meta_html = "".join(f"<div><dt>{_esc(k)}</dt><dd>{_esc(_fmt(v))}</dd></div>" for k, v in meta)
    summary_html = (f'<p id="summary" data-points="{n_points}" data-plots="{n_plots}" data-errors="{n_errors}" '
                    f'data-pareto-points="{n_pareto}">{n_points} points ({n_errors} error'
                    f'{"s" if n_errors != 1 else ""}) over {len(wls)} workload{"s" if len(wls) != 1 else ""}; '
                    f'{n_plots} plot{"s" if n_plots != 1 else ""}; {n_pareto} Pareto point'
                    f'{"s" if n_pareto != 1 else ""}.</p>')
    pareto_head = ["#", "workload", "front of throughput vs"] + [_axis_name(a) for a in axes_all] + \
        [an.metric_info(m).axis_label() for m in pareto_metrics]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>llmsim sweep report: {_esc(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header><h1>Sweep report: {_esc(name)}</h1><dl class="meta">{meta_html}</dl>{summary_html}</header>',
        _errors_section(df),
        _axes_section(spec, df),
        "<h2>Plots per workload</h2>",
        '<p class="note">Pareto plots: throughput (maximized) against area, energy per token and cost '
        "(minimized) where the results give them; red points are on the front (labelled with the point's #), "
        "grey ones dominated. Sensitivity plots: the normalized score of each axis (the metric's range across "
        "the axis's values with the other axes held, over its mean), then the metric's mean and min–max band "
        "per axis value.</p>",
        "".join(sections),
        "<h2>Sensitivity scores</h2>",
        (_table(["workload", "metric", "axis", "values", "score", "range of means", "method", "contexts"],
                sens_rows, "sensitivity") if sens_rows else '<p class="note">No axis varies.</p>'),
        "<h2>Pareto points</h2>",
        ('<p class="note">The points on each front, per workload and objective pair (throughput maximized, '
         "the other objective minimized).</p>" + _table(pareto_head, pareto_rows, "pareto")) if pareto_rows else
        '<p class="note">No objective pair has values.</p>',
        f"<h2>Results ({n_points} points)</h2>",
        '<p class="note">One row per point, in point order. Shaded rows are on a Pareto front; red rows '
        "failed (their error in the last column). – marks a metric the model does not give"
        + (f"; left out as not modelled at any point: {_esc(', '.join(an.metric_info(c).label for c in unmodelled))}"
           if unmodelled else "") + ".</p>",
        _table(head, result_rows, "results"),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n", summary


def write_report(out_dir: str | Path, html_path: str | Path | None = None) -> dict[str, Any]:
    """Write the sweep in ``out_dir`` as one self-contained HTML page (default ``out_dir/report.html``),
    atomically. Returns {out, points, plots, pareto_points, errors, workloads}."""
    out_dir = Path(out_dir)
    spec, df = load_sweep(out_dir)
    target = Path(html_path) if html_path is not None else out_dir / "report.html"
    text, summary = render_report(spec, df, title_hint=out_dir.resolve().name)
    write_text_atomic(target, text)
    return {"out": str(target), **summary}
