"""Sweep analysis (Pareto fronts, sensitivity) and the HTML report (``llmsim report``).

The report test opens the page in headless Chromium (Debian's ``chromium`` through playwright):
a non-blank screenshot, no console errors, and as many plots and result rows as the sweep has.
Without Chromium or playwright it skips on a user's machine but fails under ``CI=true``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.errors import LlmsimError
from sim.explore.analysis import (
    objective_pairs,
    pareto_front,
    pareto_mask,
    sensitivity,
    sensitivity_metrics,
    sensitivity_scores,
)
from sim.explore.report import render_report, write_report
from tests.helpers import assert_one_line_error, run_cli

IN_CI = os.environ.get("CI") == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


# --------------------------------------------------------------------------- a fake sweep

ARRAYS = [64, 128]
STANDARDS = ["hbm2", "hbm3"]
FREQS = [700, 1000, 1400]
WORKLOADS = ["gpt3-7b/decode/b128/tp4", "gpt3-7b/prefill/b8/tp4"]


def fake_rows(errors: int = 2, area: bool = True, cost: bool = False) -> pd.DataFrame:
    """Rows with exactly the sweep store's columns: 3 axes (2 x 2 x 3), 2 workloads, ``errors``
    points that failed (the last ones)."""
    rows = []
    i = 0
    for wl in WORKLOADS:
        decode = "decode" in wl
        for arr in ARRAYS:
            for std in STANDARDS:
                for f in FREQS:
                    bw = 1.0 if std == "hbm2" else 1.6
                    compute = (arr / 64) ** 2 * f / 1000
                    tps = (800 * min(bw * 1.2, compute) if decode else 5000 * compute) * (1 + 0.01 * (i % 3))
                    t = 128 / tps
                    energy = t * (150 + 40 * (arr / 64) ** 2 * f / 1000 + (30 if std == "hbm3" else 20))
                    rows.append({
                        "point_id": f"p{i:04d}", "index": i, "sweep": "fake-npu", "base": "npu-hbm",
                        "cfg.npu.array": arr, "cfg.memory.standard": std, "cfg.npu.freq_mhz": f,
                        "workload": wl, "wl.model": "gpt3-7b", "wl.phase": "decode" if decode else "prefill",
                        "wl.batch": 128 if decode else 8, "wl.tp": 4,
                        "m.time_s": t, "m.tokens_per_s": tps, "m.energy_j": energy,
                        "m.energy_per_token_j": energy / 128,
                        "m.area_mm2": (200 + 0.02 * arr ** 2 + (12 if std == "hbm3" else 0)) if area else math.nan,
                        "m.pim_busy": math.nan, "m.cycles": t * f * 1e6,
                        "status": "ok", "error": "", "wall_s": 0.01, "llmsim_version": "0.1.0", "seed": 7,
                        "backend": "process",
                    })
                    if cost:
                        rows[-1]["m.cost"] = 50 + arr * 0.5 + (20 if std == "hbm3" else 0)
                    i += 1
    df = pd.DataFrame(rows)
    for k in range(errors):
        j = len(df) - 1 - 3 * k
        for c in [c for c in df.columns if c.startswith("m.")]:
            df.loc[j, c] = math.nan
        df.loc[j, "status"] = "error"
        df.loc[j, "error"] = "memory.standard: hbm3 cannot reach 1400 MHz <test>"
    return df


SPEC = {"name": "fake-npu", "base": "npu-hbm", "seed": 7, "mode": "grid",
        "axes": {"npu.array": ARRAYS, "memory.standard": STANDARDS, "npu.freq_mhz": FREQS},
        "workloads": [{"model": "gpt3-7b", "phase": "decode", "batch": 128, "tp": 4},
                      {"model": "gpt3-7b", "phase": "prefill", "batch": 8, "tp": 4}]}


def write_sweep(d: Path, df: pd.DataFrame, finished: bool = True, spec: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.yaml").write_text(yaml.safe_dump(spec or SPEC, sort_keys=False))
    if finished:
        df.to_parquet(d / "results.parquet", index=False)
    else:
        (d / "points").mkdir(exist_ok=True)
        for _, r in df.iterrows():
            pd.DataFrame([r]).to_parquet(d / "points" / f"{r['point_id']}.parquet", index=False)
    return d


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "sweep", fake_rows())


def expected_plots(df: pd.DataFrame) -> int:
    """Per workload: a Pareto plot per objective pair with values, a sensitivity plot per metric."""
    n = 0
    for wl in df["workload"].unique():
        rows = df[df["workload"] == wl]
        n += len(objective_pairs(rows)) + len(sensitivity_metrics(rows))
    return n


# --------------------------------------------------------------------------- pareto_front


def _pts(xy, workload="w") -> pd.DataFrame:
    return pd.DataFrame({"m.area_mm2": [p[0] for p in xy], "m.tokens_per_s": [p[1] for p in xy],
                         "workload": workload, "status": "ok", "index": range(len(xy))})


def test_pareto_front_removes_dominated_points():
    df = _pts([(1, 10), (2, 20), (3, 15), (4, 40), (2.5, 20), (5, 40), (0.5, 1)])
    front = pareto_front(df, "m.area_mm2", "m.tokens_per_s")
    # (3, 15) is beaten by (2, 20); (2.5, 20) by (2, 20) (same y, more area); (5, 40) by (4, 40)
    assert list(front["index"]) == [6, 0, 1, 3]
    assert list(front["m.area_mm2"]) == [0.5, 1, 2, 4]  # sorted by x, best first


def test_pareto_front_ties_and_duplicates():
    df = _pts([(1, 10), (1, 10), (1, 8), (2, 10), (3, 12)])
    front = pareto_front(df, "m.area_mm2", "m.tokens_per_s")
    # exact duplicates both stay; same x worse y and same y worse x are dominated
    assert sorted(front["index"]) == [0, 1, 4]


def test_pareto_front_per_workload_and_skips_errors_and_nan():
    a = _pts([(1, 10), (2, 5)], "a")
    b = _pts([(2, 5), (3, 1), (math.nan, 100), (0.1, 1000)], "b")
    b.loc[3, "status"] = "error"  # a failed point never counts, however good its numbers
    df = pd.concat([a, b], ignore_index=True)
    front = pareto_front(df, "m.area_mm2", "m.tokens_per_s")
    assert front[["workload", "m.area_mm2"]].values.tolist() == [["a", 1.0], ["b", 2.0]]
    assert pareto_mask(df, "m.area_mm2", "m.tokens_per_s").sum() == 2


def test_pareto_front_directions():
    df = _pts([(1, 10), (2, 20), (3, 5)])
    # maximize x and minimize y: (3, 5) beats both others
    front = pareto_front(df, "m.area_mm2", "m.tokens_per_s", maximize_y=False, minimize_x=False)
    assert list(front["index"]) == [2]
    assert pareto_front(df.iloc[:0], "m.area_mm2", "m.tokens_per_s").empty
    assert pareto_front(df, "m.cost", "m.tokens_per_s").empty  # no such column


def test_objective_pairs_skip_missing_and_all_nan():
    df = fake_rows(errors=0)
    assert objective_pairs(df) == [("m.area_mm2", "m.tokens_per_s"), ("m.energy_per_token_j", "m.tokens_per_s")]
    assert objective_pairs(fake_rows(area=False)) == [("m.energy_per_token_j", "m.tokens_per_s")]
    assert [x for x, _ in objective_pairs(fake_rows(cost=True))] == ["m.area_mm2", "m.energy_per_token_j", "m.cost"]


# --------------------------------------------------------------------------- sensitivity


def test_sensitivity_with_other_axes_held():
    df = pd.DataFrame({"cfg.a": [1, 1, 2, 2], "cfg.b": ["x", "y", "x", "y"], "cfg.c": [5, 5, 5, 5],
                       "workload": "w", "status": "ok", "m.tokens_per_s": [10.0, 20.0, 15.0, 30.0]})
    sens = sensitivity(df, "m.tokens_per_s")
    scores = sensitivity_scores(sens).set_index("axis")
    assert set(scores.index) == {"cfg.a", "cfg.b"}  # c takes one value: not an axis of this sweep
    # a held at b=x: 10 -> 15 (range 5 over mean 12.5 = 0.4); at b=y: 20 -> 30 (0.4)
    assert scores.loc["cfg.a", "score"] == pytest.approx(0.4)
    # b held at a=1: 10 -> 20 (10 / 15); at a=2: 15 -> 30 (15 / 22.5): both 2/3
    assert scores.loc["cfg.b", "score"] == pytest.approx(2 / 3)
    assert list(scores.index) == ["cfg.b", "cfg.a"]  # most sensitive first
    assert (scores["method"] == "held").all() and (scores["contexts"] == 2).all()
    a = sens[sens["axis"] == "cfg.a"].set_index("value")
    assert a.loc[1, "mean"] == 15.0 and a.loc[2, "mean"] == 22.5
    assert a.loc[1, "min"] == 10.0 and a.loc[2, "max"] == 30.0 and (a["n"] == 2).all()
    assert a["axis_range"].iloc[0] == 7.5


def test_sensitivity_marginal_when_no_context_repeats_and_flat_axis():
    # random sampling: no two points share the other axis, so the score falls back to the marginal means
    df = pd.DataFrame({"cfg.a": [1, 2, 3, 1], "cfg.b": [0.1, 0.2, 0.3, 0.4], "workload": "w", "status": "ok",
                       "m.tokens_per_s": [10.0, 10.0, 10.0, 10.0]})
    scores = sensitivity_scores(sensitivity(df, "m.tokens_per_s")).set_index("axis")
    assert (scores["score"] == 0).all()
    assert scores.loc["cfg.a", "method"] == "marginal"


def test_sensitivity_bins_a_continuous_axis():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"cfg.f": rng.uniform(500, 1500, 60), "cfg.arr": rng.choice([64, 128, 256], 60),
                       "workload": "w", "status": "ok"})
    df["m.tokens_per_s"] = df["cfg.f"] * 0.5 + df["cfg.arr"] * 0.01
    sens = sensitivity(df, "m.tokens_per_s", max_levels=12, bins=6)
    f = sens[sens["axis"] == "cfg.f"]
    assert len(f) == 6 and f["n"].sum() == 60 and f["value"].is_monotonic_increasing and f["binned"].all()
    assert not sens[sens["axis"] == "cfg.arr"]["binned"].any()
    scores = sensitivity_scores(sens).set_index("axis")
    assert list(scores.index) == ["cfg.f", "cfg.arr"] and scores.loc["cfg.f", "score"] > 10 * scores.loc["cfg.arr", "score"]


def test_sensitivity_per_workload_skips_errors_and_missing_metric():
    df = fake_rows()
    sens = sensitivity(df, "m.tokens_per_s")
    assert set(sens["workload"]) == set(WORKLOADS)
    # decode is memory-bound at large arrays: the memory standard matters, the values are sorted
    dec = sens[(sens["workload"] == WORKLOADS[0]) & (sens["axis"] == "cfg.npu.freq_mhz")]
    assert list(dec["value"]) == FREQS
    assert sens["n"].sum() == 3 * (len(df) - 2)  # each ok row once per axis (three), error rows left out
    assert sensitivity(df, "m.cost").empty
    assert sensitivity(df, "m.pim_busy").empty  # all NaN


# --------------------------------------------------------------------------- the page (no browser)


def test_report_counts_tables_and_is_self_contained(sweep_dir: Path, tmp_path: Path):
    df = fake_rows()
    out = tmp_path / "r" / "report.html"
    res = write_report(sweep_dir, out)
    assert res["out"] == str(out) and res["points"] == len(df) == 24 and res["errors"] == 2
    assert res["plots"] == expected_plots(df) == 8
    text = out.read_text()
    assert text.count('<tr class="point') == len(df)
    assert len(re.findall(r'<img class="plot', text)) == res["plots"]
    assert 'data-points="24"' in text and 'data-plots="8"' in text
    pareto = sum(len(pareto_front(df[df.workload == w], x, y)) for w in WORKLOADS
                 for x, y in objective_pairs(df[df.workload == w]))
    assert res["pareto_points"] == pareto == text.count('<tr class="pareto">')
    assert "fake-npu" in text and "npu-hbm" in text and "0.1.0" in text
    assert "&lt;test&gt;" in text and "<test>" not in text  # error text escaped
    # no external resources, no scripts
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert not re.search(r'(src|href)="(?!data:)', text)
    # deterministic
    again = tmp_path / "again.html"
    write_report(sweep_dir, again)
    assert again.read_bytes() == out.read_bytes()
    assert not list(out.parent.glob(".*tmp"))  # written atomically, nothing left over


def test_report_from_unfinished_sweep_and_default_path(tmp_path: Path):
    df = fake_rows(errors=0, area=False).iloc[:10]
    d = write_sweep(tmp_path / "partial", df.sample(frac=1, random_state=1), finished=False)
    res = write_report(d)
    assert res["out"] == str(d / "report.html") and res["points"] == 10
    text = (d / "report.html").read_text()
    # in point order, whatever the file order
    assert [int(m) for m in re.findall(r'<tr class="point[^"]*"><td>(\d+)</td>', text)] == list(range(10))
    # area all NaN: no throughput-vs-area plot; one workload: 1 pair + 2 sensitivity plots
    assert res["plots"] == 3 and "throughput vs area" not in text


def test_report_single_point_and_all_errors(tmp_path: Path):
    one = fake_rows(errors=0).iloc[:1]
    html, summary = render_report({}, one)
    assert summary["points"] == 1 and summary["plots"] == 2  # two Pareto plots, no axis varies
    bad = fake_rows(errors=0).iloc[:3].copy()
    bad["status"] = "error"
    html, summary = render_report({}, bad)
    assert summary == {"points": 3, "plots": 0, "pareto_points": 0, "errors": 3, "workloads": 1}
    assert html.count('<tr class="point error') == 3


def test_report_errors_are_one_line(tmp_path: Path):
    with pytest.raises(LlmsimError, match="no such sweep folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmsimError, match="no results"):
        write_report(tmp_path / "empty")
    assert_one_line_error(run_cli("report", str(tmp_path / "missing")), "missing", "no such sweep folder")
    assert_one_line_error(run_cli("report", str(tmp_path / "empty")), "no results")


def test_cli_report_json(sweep_dir: Path, tmp_path: Path):
    out = tmp_path / "cli.html"
    proc = run_cli("report", str(sweep_dir), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["out"] == str(out) and got["points"] == 24 and got["plots"] == 8 and got["pareto_points"] > 0
    assert set(got) == {"out", "points", "plots", "pareto_points"}
    assert out.is_file()


# --------------------------------------------------------------------------- the page in Chromium


def _chromium() -> str:
    exe = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    why = None
    if exe is None:
        why = "Chromium not found (install Debian's `chromium` package; .ci/run does)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "playwright not installed (pip install -e '.[dev]')"
    if why:
        if IN_CI:
            pytest.fail(f"{why}; the HTML report test may not skip under CI=true")
        pytest.skip(why)
    return exe


def open_in_chromium(path: Path) -> dict:
    """Render ``path`` headless: console errors, page errors, requests, counts, and a screenshot."""
    from playwright.sync_api import sync_playwright

    exe = _chromium()
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.resolve().as_uri(), wait_until="load")
            info = page.evaluate("""() => ({
                plots: document.querySelectorAll('.plot').length,
                broken: [...document.querySelectorAll('img.plot')].filter(i => !(i.complete && i.naturalWidth > 0)).length,
                points: document.querySelectorAll('tr.point').length,
                summary: document.querySelector('#summary').dataset,
            })""")
            shot = page.screenshot(full_page=False)
        finally:
            browser.close()
    return {**info, "errors": errors, "requests": requests, "screenshot": shot}


def _distinct_colours(png: bytes) -> tuple[int, float]:
    from PIL import Image

    im = Image.open(io.BytesIO(png)).convert("RGB")
    a = np.asarray(im).reshape(-1, 3)
    white = float((a == 255).all(axis=1).mean())
    return len(np.unique(a[:: max(1, len(a) // 50000)], axis=0)), white


def check_in_browser(html_path: Path, points: int, plots: int) -> None:
    got = open_in_chromium(html_path)
    assert got["errors"] == [], got["errors"]
    assert got["points"] == points and got["plots"] == plots and got["broken"] == 0
    assert int(got["summary"]["points"]) == points and int(got["summary"]["plots"]) == plots
    assert all(u.startswith(("file:", "data:")) for u in got["requests"]), got["requests"]
    colours, white = _distinct_colours(got["screenshot"])
    assert colours > 20 and white < 0.97, (colours, white)


def test_report_renders_in_chromium(sweep_dir: Path, tmp_path: Path):
    out = tmp_path / "report.html"
    res = write_report(sweep_dir, out)
    check_in_browser(out, points=24, plots=expected_plots(fake_rows()))
    assert res["plots"] == 8


def test_report_of_a_real_sweep_renders_in_chromium(tmp_path: Path):
    """A tiny real sweep (2 x 2 NPU configurations, one short workload) through the sweep engine,
    reported by the CLI and opened in Chromium."""
    try:
        from sim.explore import run_sweep
    except ImportError as exc:
        if IN_CI:
            raise
        pytest.skip(f"sim.explore.run_sweep not importable yet ({exc})")
    _chromium()
    spec = {"name": "tiny-npu", "base": "npu-only", "seed": 0, "mode": "grid",
            "axes": {"npu.systolic.count": [4, 8], "npu.freq_mhz": [800, 1000]},
            "workloads": [{"model": "gpt3-7b", "batch": 4, "tp": 4, "layers": 1, "requests": "uniform",
                           "seq_len": 128}]}
    out = tmp_path / "tiny"
    df = run_sweep(spec, out, workers=1, quiet=True)
    assert len(df) == 4 and (df["status"] == "ok").all()
    proc = run_cli("report", str(out), "--out", str(tmp_path / "tiny.html"), "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    plots = expected_plots(df)
    assert got["points"] == 4 and got["plots"] == plots >= 2  # at least throughput vs area, a sensitivity plot
    check_in_browser(tmp_path / "tiny.html", points=4, plots=plots)
