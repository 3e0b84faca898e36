"""write_report: every file written, tables consistent with the report, charts are real PNGs."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest

DEVICES = ["h100", "h200"]
FILES = ["roofline.csv", "roofline.parquet", "totals.csv", "by_class.csv", "summary.md", "summary.json",
         "roofline.png", "breakdown.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trace():
    from sim.trace import capture

    return capture("llama2-7b", phase="generate", batch=2, seq_len=64, new_tokens=1, layers=2)


@pytest.fixture(scope="module")
def report(trace):
    from sim.roofline import analyze_many

    return analyze_many(trace, DEVICES)


@pytest.fixture(scope="module")
def written(report, tmp_path_factory):
    from sim.roofline import write_report

    out = tmp_path_factory.mktemp("report") / "nested" / "out"  # created by write_report
    return out, write_report(report, out)


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_file_written_and_non_empty(written):
    out, paths = written
    assert [p.name for p in paths] == FILES
    for p in paths:
        assert p.parent == out
        assert p.is_file() and p.stat().st_size > 0, p.name


def test_no_temporary_files_left(written):
    out, _ = written
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)


def test_per_op_tables_have_one_row_per_op_per_device(written, trace, report):
    out, _ = written
    csv = pd.read_csv(out / "roofline.csv")
    assert len(csv) == len(trace.ops) * len(DEVICES)
    assert sorted(csv.device.unique()) == sorted(DEVICES)
    assert (csv.groupby("device").size() == len(trace.ops)).all()
    pq = pd.read_parquet(out / "roofline.parquet")
    assert list(pq.columns) == list(report.table.columns)
    assert len(pq) == len(csv)
    assert pq.time_s.sum() == pytest.approx(report.table.time_s.sum())


def test_totals_and_by_class_csv_agree(written, report):
    out, _ = written
    totals = pd.read_csv(out / "totals.csv")
    by_class = pd.read_csv(out / "by_class.csv")
    assert set(zip(totals.device, totals.phase)) == {(d, p) for d in DEVICES for p in ("prefill", "decode")}
    summed = by_class.groupby(["device", "phase"]).time_s.sum()
    for r in totals.itertuples():
        assert summed[(r.device, r.phase)] == pytest.approx(r.time_s, rel=1e-9)


def test_breakdown_sums_match_totals(report):
    from sim.roofline.plots import breakdown_table

    wide = breakdown_table(report)
    ms = wide.sum(axis=1)
    totals = report.totals().set_index(["device", "phase"]).time_s
    assert len(ms) == len(totals)
    for key, t in totals.items():
        assert ms[key] / 1e3 == pytest.approx(t, rel=1e-9)


def test_summary_markdown_mentions_devices_and_sections(written, report):
    out, _ = written
    md = (out / "summary.md").read_text(encoding="utf-8")
    assert md.startswith("# Roofline report: llama2-7b")
    for dev in DEVICES:
        assert f"## {dev} (" in md
    assert "## Trace" in md
    for section in ("### Per phase", "### Time by op class", "### Top 10 ops by total time", "### Notes"):
        assert md.count(section) == len(DEVICES), section
    assert "| seq_len | 64 |" in md
    for c in report.ceilings:
        for note in c.notes:
            assert note in md


def test_summary_json_matches_report(written, report):
    out, _ = written
    data = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert data["model"] == "llama2-7b"
    assert sorted(data["devices"]) == sorted(DEVICES)
    totals = report.totals()
    for dev in DEVICES:
        assert data["devices"][dev]["time_s"] == pytest.approx(totals[totals.device == dev].time_s.sum())


@pytest.mark.parametrize("name", ["roofline.png", "breakdown.png"])
def test_pngs_are_valid_and_sensibly_sized(written, name):
    out, _ = written
    width, height = _png_size(out / name)
    assert 1200 <= width <= 2600, width
    assert 300 <= height <= 1600, height
    assert (out / name).stat().st_size > 20_000  # a real chart, not a blank canvas


def test_roofline_chart_with_one_device(report, tmp_path):
    from sim.roofline.analyzer import RooflineReport
    from sim.roofline.plots import roofline_chart

    one = RooflineReport(table=report.table[report.table.device == "h100"], ceilings=report.ceilings[:1],
                         meta=report.meta)
    path = roofline_chart(one, tmp_path / "one.png")
    width, height = _png_size(path)
    assert width >= 700 and height >= 500
