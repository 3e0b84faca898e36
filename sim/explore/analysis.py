"""Analysis of a sweep's results: Pareto fronts and per-axis sensitivity.

Everything here works on the results table of a sweep (see docs/sweeps.md): one row per point,
``cfg.<axis path>`` columns for the swept axes, ``workload`` for the workload label, ``m.<metric>``
columns for the metrics (NaN where not modelled) and ``status`` ("ok" / "error"). Only rows whose
status is "ok" (all rows when there is no ``status`` column) take part.

* :func:`pareto_front` -- the non-dominated points of two objectives, per workload;
* :func:`objective_pairs` -- the (x, y) pairs a sweep can show: throughput against area, energy per
  token and cost, wherever the x column holds a number;
* :func:`sensitivity` -- per axis and axis value: the metric's mean, min and max, and a normalized
  sensitivity score (the metric's relative spread across the axis with the other axes held).

pandas only; nothing here plots (see :mod:`sim.explore.report`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

THROUGHPUT = "m.tokens_per_s"
AREA = "m.area_mm2"
ENERGY_PER_TOKEN = "m.energy_per_token_j"
COST = "m.cost"
WORKLOAD = "workload"
ALL_WORKLOADS = "(all)"


@dataclass(frozen=True)
class Metric:
    """How a metric column reads in plots and tables: ``value * scale`` in ``unit``."""

    label: str
    unit: str = ""
    scale: float = 1.0

    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, Metric] = {
    "m.tokens_per_s": Metric("throughput", "tokens/s"),
    "m.time_s": Metric("time", "ms", 1e3),
    "m.energy_j": Metric("energy", "J"),
    "m.energy_per_token_j": Metric("energy per token", "mJ/token", 1e3),
    "m.area_mm2": Metric("area", "mm²"),
    "m.cost": Metric("cost"),
    "m.pim_busy": Metric("PIM busy", "fraction"),
    "m.cycles": Metric("cycles"),
}

# The x objectives (minimized) plotted against throughput (maximized), in this order.
PAIR_X = [AREA, ENERGY_PER_TOKEN, COST]
# The metrics that get a sensitivity plot, where present.
SENSITIVITY_METRICS = [THROUGHPUT, ENERGY_PER_TOKEN]


def metric_info(column: str) -> Metric:
    """Label, unit and display scale of a metric column (a plain label for unknown ones)."""
    if column in METRICS:
        return METRICS[column]
    name = column[2:] if column.startswith("m.") else column
    return Metric(name.replace("_", " "))


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran (status "ok"); every row when there is no status column."""
    if "status" not in df.columns:
        return df
    return df[df["status"].astype(str) == "ok"]


def axis_columns(df: pd.DataFrame) -> list[str]:
    """The ``cfg.*`` columns, in table order."""
    return [c for c in df.columns if str(c).startswith("cfg.")]


def varying_axes(df: pd.DataFrame) -> list[str]:
    """The ``cfg.*`` columns that take more than one value among ``df``'s rows."""
    return [c for c in axis_columns(df) if _n_distinct(df[c]) > 1]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """The ``m.*`` columns: the known ones first, in :data:`METRICS` order, then the others."""
    cols = [c for c in df.columns if str(c).startswith("m.")]
    order = list(METRICS)
    return sorted(cols, key=lambda c: (order.index(c) if c in order else len(order), c))


def has_values(df: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` exists and holds at least one finite number among the ok rows."""
    if column not in df.columns:
        return False
    vals = pd.to_numeric(ok_rows(df)[column], errors="coerce").to_numpy(dtype=float)
    return bool(np.isfinite(vals).any())


def workloads(df: pd.DataFrame) -> list[str]:
    """The workload labels in order of first appearance (one pseudo-workload without the column)."""
    if WORKLOAD not in df.columns:
        return [ALL_WORKLOADS]
    return list(dict.fromkeys(df[WORKLOAD].astype(str)))


def by_workload(df: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    """(label, rows) per workload, in order of first appearance."""
    if WORKLOAD not in df.columns:
        yield ALL_WORKLOADS, df
        return
    labels = df[WORKLOAD].astype(str)
    for w in workloads(df):
        yield w, df[labels == w]


# --------------------------------------------------------------------------- Pareto


def _front_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-dominated points for minimizing x and maximizing y (finite values only).

    A point is dominated when another has x <= its x and y >= its y, one of them strictly.
    Exact duplicates of a front point are all on the front (neither dominates the other).
    """
    n = len(x)
    mask = np.zeros(n, dtype=bool)
    order = np.lexsort((-y, x))  # x ascending, then y descending
    best_y = -math.inf
    last: tuple[float, float] | None = None
    for i in order:
        xi, yi = float(x[i]), float(y[i])
        if yi > best_y:
            mask[i] = True
            best_y = yi
            last = (xi, yi)
        elif last is not None and (xi, yi) == last:
            mask[i] = True
    return mask


def pareto_mask(df: pd.DataFrame, x: str, y: str, maximize_y: bool = True, minimize_x: bool = True) -> pd.Series:
    """True for the rows of ``df`` on the Pareto front of (x, y), computed per workload.

    Rows that did not run (status other than "ok") or whose x or y is not a finite number are
    never on the front.
    """
    mask = pd.Series(False, index=df.index)
    if x not in df.columns or y not in df.columns or df.empty:
        return mask
    ok = ok_rows(df)
    for _, rows in by_workload(ok):
        xs = pd.to_numeric(rows[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(rows[y], errors="coerce").to_numpy(dtype=float)
        finite = np.isfinite(xs) & np.isfinite(ys)
        if not finite.any():
            continue
        xs = xs if minimize_x else -xs
        ys = ys if maximize_y else -ys
        front = np.zeros(len(rows), dtype=bool)
        front[finite] = _front_mask(xs[finite], ys[finite])
        mask.loc[rows.index[front]] = True
    return mask


def pareto_front(df: pd.DataFrame, x: str, y: str, maximize_y: bool = True, minimize_x: bool = True) -> pd.DataFrame:
    """The non-dominated rows of ``df`` for objectives ``x`` and ``y``, per workload.

    By default x is minimized (area, energy, cost) and y maximized (throughput). Ties: points with
    equal (x, y) are all kept; a point with the same x and a worse y (or the same y and a worse x)
    is dominated. Only ok rows with finite x and y count. The result keeps ``df``'s columns and
    index, sorted by workload (first appearance) and then by x, best first.
    """
    front = df[pareto_mask(df, x, y, maximize_y=maximize_y, minimize_x=minimize_x)]
    if front.empty:
        return front
    keys = pd.DataFrame(index=front.index)
    if WORKLOAD in front.columns:
        order = {w: i for i, w in enumerate(workloads(df))}
        keys["w"] = front[WORKLOAD].astype(str).map(order)
    else:
        keys["w"] = 0
    xs = pd.to_numeric(front[x], errors="coerce")
    keys["x"] = xs if minimize_x else -xs
    ys = pd.to_numeric(front[y], errors="coerce")
    keys["y"] = -ys if maximize_y else ys
    keys["i"] = np.arange(len(front))
    return front.loc[keys.sort_values(["w", "x", "y", "i"], kind="mergesort").index]


def objective_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """The (x, y) objective pairs ``df`` can show: throughput (y, maximized) against area, energy
    per token and cost (x, minimized), each only where its x column holds a number among the ok
    rows (a pair whose x is all NaN, or whose column is missing, is left out)."""
    if not has_values(df, THROUGHPUT):
        return []
    return [(x, THROUGHPUT) for x in PAIR_X if has_values(df, x)]


def pair_label(x: str, y: str) -> str:
    """'throughput vs area'."""
    return f"{metric_info(y).label} vs {metric_info(x).label}"


# --------------------------------------------------------------------------- sensitivity


def _n_distinct(s: pd.Series) -> int:
    return int(s.astype(str).nunique(dropna=False)) if len(s) else 0


def sort_values(values: Iterable[Any]) -> list[Any]:
    """Axis values in a stable order: numerically when all are numbers, else as strings."""
    vals = list(dict.fromkeys(values))
    def num(v: Any) -> float | None:
        if isinstance(v, bool):
            return None
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if math.isfinite(f) else None
    if vals and all(num(v) is not None for v in vals):
        return sorted(vals, key=lambda v: (num(v), str(v)))
    return sorted(vals, key=str)


def _key(v: Any) -> str:
    """A hashable, NaN-safe grouping key for an axis value (lists, dicts, floats)."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return repr(v) if not isinstance(v, str) else v


def _relative_range(means: np.ndarray) -> float:
    lo, hi = float(np.min(means)), float(np.max(means))
    centre = abs(float(np.mean(means)))
    if hi == lo:
        return 0.0
    return (hi - lo) / centre if centre > 0 else math.inf


SENSITIVITY_COLUMNS = ["workload", "metric", "axis", "value", "n", "mean", "min", "max",
                       "axis_range", "score", "method", "contexts", "binned"]


MAX_LEVELS = 12  # a numeric axis with more distinct values than this (random sampling) is binned
BINS = 6


def _binned(values: pd.Series, bins: int) -> pd.Series:
    """A continuous axis as ``bins`` quantile bins, each value replaced by its bin's median."""
    x = pd.to_numeric(values, errors="coerce").astype(float)
    codes = pd.qcut(x.rank(method="first"), q=min(bins, len(x)), labels=False, duplicates="drop")
    med = x.groupby(codes).transform("median")
    return med.map(lambda v: float(f"{v:.4g}"))


def _numeric_axis(values: pd.Series) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
               for v in values)


def sensitivity(df: pd.DataFrame, metric: str, max_levels: int = MAX_LEVELS, bins: int = BINS) -> pd.DataFrame:
    """How much ``metric`` moves along each swept axis, per workload.

    One row per (workload, axis, axis value) with ``n``, ``mean``, ``min`` and ``max`` of the
    metric over the ok rows at that value, and per axis (repeated on each of its rows):

    * ``axis_range``: max minus min of the per-value means;
    * ``score``: the normalized sensitivity -- within each context (a combination of the other
      axes' values, i.e. the other axes held), the metric's range across this axis's values
      divided by its mean there, averaged over the contexts that hold two or more of this axis's
      values (``method`` "held"). When no context does (random sampling rarely repeats one), the
      score is the relative range of the per-value means (``method`` "marginal"). 0 means the
      metric does not move with the axis; 0.5 means it moves by half its mean.
    * ``contexts``: how many contexts the score averages over (0 for "marginal");
    * ``binned``: whether the axis's values were binned (below).

    A numeric axis with more than ``max_levels`` distinct values (random sampling) is cut into
    ``bins`` quantile bins, ``value`` being each bin's median (and, as another axis's context, held
    to its bin). Axes that take one value only (per
    workload) are left out. Rows are sorted by workload, then by score (highest first), then by
    axis value. An empty frame when the metric is missing.
    """
    rows: list[dict[str, Any]] = []
    if metric not in df.columns:
        return pd.DataFrame(columns=SENSITIVITY_COLUMNS)
    ok = ok_rows(df)
    for wl, w in by_workload(ok):
        vals = pd.to_numeric(w[metric], errors="coerce")
        w = w[np.isfinite(vals.to_numpy(dtype=float))]
        if w.empty:
            continue
        m = pd.to_numeric(w[metric], errors="coerce").astype(float)
        axes = varying_axes(w)
        w = w.copy()
        binned = set()
        for a in axes:
            if _n_distinct(w[a]) > max_levels and _numeric_axis(w[a]):
                w[a] = _binned(w[a], bins)
                binned.add(a)
        keys = {a: w[a].map(_key) for a in axes}
        per_axis: list[tuple[float, list[dict[str, Any]]]] = []
        for a in axes:
            others = [o for o in axes if o != a]
            rel: list[float] = []
            if others:
                ctx = pd.Series(["\x1f".join(t) for t in zip(*(keys[o] for o in others))], index=w.index)
            else:
                ctx = pd.Series("", index=w.index)
            frame = pd.DataFrame({"ctx": ctx, "v": keys[a], "m": m})
            for _, g in frame.groupby("ctx", sort=True):
                means = g.groupby("v", sort=True)["m"].mean().to_numpy(dtype=float)
                if len(means) >= 2:
                    rel.append(_relative_range(means))
            value_of = dict(zip(keys[a], w[a]))
            stats = pd.DataFrame({"v": keys[a], "m": m}).groupby("v", sort=False)["m"].agg(
                ["count", "mean", "min", "max"])
            ordered = sort_values(value_of[k] for k in stats.index)
            means_all = stats["mean"].to_numpy(dtype=float)
            if rel:
                score, method, n_ctx = float(np.mean(rel)), "held", len(rel)
            else:
                score, method, n_ctx = _relative_range(means_all), "marginal", 0
            axis_range = float(np.max(means_all) - np.min(means_all))
            recs = []
            for v in ordered:
                s = stats.loc[_key(v)]
                recs.append({"workload": wl, "metric": metric, "axis": a, "value": v, "n": int(s["count"]),
                             "mean": float(s["mean"]), "min": float(s["min"]), "max": float(s["max"]),
                             "axis_range": axis_range, "score": score, "method": method, "contexts": n_ctx,
                             "binned": a in binned})
            per_axis.append((score, recs))
        # highest score first; ties keep the axis order of the table
        for _, recs in sorted(per_axis, key=lambda t: -t[0] if math.isfinite(t[0]) else -math.inf):
            rows.extend(recs)
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def sensitivity_scores(sens: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, axis) of a :func:`sensitivity` frame: workload, metric, axis,
    n_values, axis_range, score, method, contexts."""
    if sens.empty:
        return pd.DataFrame(columns=["workload", "metric", "axis", "n_values", "axis_range", "score", "method",
                                     "contexts"])
    g = sens.groupby(["workload", "axis"], sort=False)
    out = g[["metric", "axis_range", "score", "method", "contexts"]].first().reset_index()
    out.insert(3, "n_values", g.size().to_numpy())
    return out[["workload", "metric", "axis", "n_values", "axis_range", "score", "method", "contexts"]]


def sensitivity_metrics(df: pd.DataFrame) -> list[str]:
    """The metrics that get a sensitivity plot: throughput, and energy per token where present."""
    return [m for m in SENSITIVITY_METRICS if has_values(df, m)]
