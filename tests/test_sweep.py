"""Design-space sweeps (sim.explore, ``llmsim sweep``): spec checks, expansion, runners, the store."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sim.errors import LlmsimError
from sim.explore import expand_points, load_results, load_spec, run_sweep
from tests.helpers import REPO, assert_one_line_error, run_cli

# 3 x 2 configurations x 2 workloads: 12 points of one layer, a few tenths of a second each
SPEC = {
    "name": "t-neupims",
    "base": "neupims",
    "seed": 3,
    "axes": {"npu.systolic.count": [4, 8, 16], "sub_batch": [True, False]},
    "workloads": [{"model": "gpt3-7b", "tp": 4, "batch": 8, "layers": 1},
                  {"model": "gpt3-7b", "tp": 4, "batch": 4, "requests": "uniform", "seq_len": 64, "layers": 1}],
}
METRIC_COLS = ["m.time_s", "m.tokens_per_s", "m.energy_j", "m.energy_per_token_j", "m.area_mm2", "m.pim_busy",
               "m.cycles"]


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def no_temporary_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 12-point sweep run uninterrupted, in-process."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    df = run_sweep(SPEC, out, workers=1, quiet=True)
    return out, df


# ------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize("change, needles", [
    ({"axes": {}}, ["axes:", "at least one axis"]),
    ({"axes": {"npu.systolic.nope": [4]}}, ["axes.npu.systolic.nope", "systolic.nope: unknown key"]),
    ({"axes": {"npu.systolic.count": [4, 8], "sub_batch": [True, "maybe"]}}, ["axes.sub_batch", "'maybe'"]),
    ({"axes": {"npu.systolic.count": 4}}, ["axes.npu.systolic.count", "expected a list of values"]),
    ({"axes": {"npu.systolic.count": [[4]]}}, ["axes.npu.systolic.count", "scalar values"]),
    ({"axes": {"npu.freq_mhz": {"uniform": [800, 1200]}}}, ["axes.npu.freq_mhz", "only with mode: random"]),
    ({"axes": {"npu.freq_mhz": {"grid": [800, 1200]}}}, ["axes.npu.freq_mhz.grid", "[start, stop, num]"]),
    ({"axes": {"npu.freq_mhz": {"grid": [800, 1200, 3], "scale": "log3"}}}, ["axes.npu.freq_mhz.scale"]),
    ({"mode": "random"}, ["samples: required"]),
    ({"samples": 4}, ["samples: only for mode: random"]),
    ({"base": "no-such-system"}, ["base:", "no-such-system"]),
    ({"workloads": [{"model": "gpt3-7b", "phase": "prefill"}]}, ["workloads.0.phase", "expected decode"]),
    ({"workloads": [{"model": "nope"}]}, ["workloads.0.model", "nope"]),
    ({"workloads": [{"model": "gpt3-7b", "batch": 0}]}, ["workloads.0.batch"]),
    ({"workloads": [{"model": "gpt3-7b", "sequence": 8}]}, ["workloads.0.sequence", "unknown key"]),
    ({"workloads": [{"model": "gpt3-7b", "seq_len": 8, "requests": "alpaca"}]}, ["workloads.0.seq_len"]),
    ({"workloads": []}, ["workloads"]),
    ({"colour": "red"}, ["colour: unknown key"]),
    ({"axes": {"memory.organization.channel, memory.capacity_gb": [[16, 16], [32]]}},
     ["axes.memory.organization.channel, memory.capacity_gb", "lists of 2 values"]),
    ({"axes": {"memory.organization.channel, memory.capacity_gb": [[16, 32]]}},
     ["axes.memory.organization.channel, memory.capacity_gb", "capacity_gb"]),
])
def test_spec_errors_name_the_field(change, needles):
    with pytest.raises(LlmsimError) as e:
        load_spec({**SPEC, **change})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("<spec>: ")
    for n in needles:
        assert n in msg, (n, msg)


def test_spec_errors_on_the_command_line(tmp_path):
    bad = write_spec(tmp_path / "bad.yaml", {**SPEC, "axes": {"memory.pim.comp_coverage_macs": [8, 0]}})
    line = assert_one_line_error(run_cli("sweep", str(bad), "--out", str(tmp_path / "o"), "--quiet"),
                                 str(bad), "axes.memory.pim.comp_coverage_macs", "value 0")
    assert "greater than 0" in line
    (tmp_path / "syntax.yaml").write_text("name: [x\n")
    assert_one_line_error(run_cli("sweep", str(tmp_path / "syntax.yaml"), "--out", str(tmp_path / "o")),
                          "syntax.yaml", "YAML syntax error")
    assert_one_line_error(run_cli("sweep", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")),
                          "none.yaml", "not found")
    bitserial = write_spec(tmp_path / "bs.yaml", {"name": "b", "base": "bitmod", "axes": {"bitserial.freq_mhz": [1]},
                                                  "workloads": [{"model": "llama2-7b", "requests": "sharegpt"}]})
    assert_one_line_error(run_cli("sweep", str(bitserial), "--out", str(tmp_path / "o"), "--workers", "0"),
                          "workloads.0.requests")
    good = write_spec(tmp_path / "good.yaml", SPEC)
    assert_one_line_error(run_cli("sweep", str(good), "--out", str(tmp_path / "o"), "--workers", "0"), "--workers")
    assert_one_line_error(run_cli("sweep", str(good), "--out", str(tmp_path / "o"), "--scheduler", "tcp://x:1"),
                          "--scheduler", "--backend dask")
    assert not (tmp_path / "o").exists()   # nothing written for a bad spec


# ------------------------------------------------------------------------------------- expansion
def test_grid_expansion_order_and_point_ids():
    spec = load_spec(SPEC)
    pts = expand_points(spec)
    assert len(pts) == 12 and [p.index for p in pts] == list(range(12))
    # cartesian product, last axis fastest, workloads innermost
    assert [(p.overrides["npu.systolic.count"], p.overrides["sub_batch"]) for p in pts[::2]] == \
        [(4, True), (4, False), (8, True), (8, False), (16, True), (16, False)]
    assert [p.label for p in pts[:2]] == ["gpt3-7b/decode/b8/tp4/l1", "gpt3-7b/decode/b4/tp4/uniform/s64/l1"]
    p = pts[1]
    wl = {k: v for k, v in p.workload.items() if v is not None}
    canon = json.dumps({"overrides": p.overrides, "workload": wl}, sort_keys=True, separators=(",", ":"))
    assert p.point_id == hashlib.sha256(canon.encode()).hexdigest()[:16]
    assert len({q.point_id for q in pts}) == 12
    # stable: the same spec again, or with its defaults written out, gives the same ids
    again = {**SPEC, "mode": "grid", "workloads": [dict(SPEC["workloads"][0], phase="decode", requests="sharegpt"),
                                                   SPEC["workloads"][1]]}
    assert [q.point_id for q in expand_points(again)] == [q.point_id for q in pts]
    # the spec's identity (what a resumed run must match): key order aside, the same mapping;
    # the axes' order counts (it sets each point's index)
    assert load_spec(dict(reversed(list(SPEC.items())))).canonical() == spec.canonical()
    swapped = {**SPEC, "axes": dict(reversed(list(SPEC["axes"].items())))}
    assert load_spec(swapped).canonical() != spec.canonical()


def test_grid_and_list_axis_kinds():
    spec = {**SPEC, "axes": {"npu.scratchpad.operand_kib": {"grid": [256, 2048, 4], "scale": "log2"},
                             "npu.freq_mhz": {"grid": [800.0, 1000.0, 3]},
                             "memory.pim.comp_coverage_macs": {"choice": [8, 16]}},
            "workloads": SPEC["workloads"][:1]}
    pts = expand_points(spec)
    assert sorted({p.overrides["npu.scratchpad.operand_kib"] for p in pts}) == [256, 512, 1024, 2048]
    assert all(isinstance(p.overrides["npu.scratchpad.operand_kib"], int) for p in pts)
    assert sorted({p.overrides["npu.freq_mhz"] for p in pts}) == [800.0, 900.0, 1000.0]
    assert sorted({p.overrides["memory.pim.comp_coverage_macs"] for p in pts}) == [8, 16]
    assert len(pts) == 4 * 3 * 2


def test_random_mode_is_seeded():
    spec = {**SPEC, "mode": "random", "samples": 5,
            "axes": {"npu.freq_mhz": {"uniform": [800, 1200]}, "npu.systolic.count": [4, 8, 16],
                     "npu.interconnect.freq_mhz": {"loguniform": [1000, 4000]},
                     "memory.pim.comp_coverage_macs": {"choice": [8, 16, 32]}},
            "workloads": SPEC["workloads"][:1]}
    a, b = expand_points(spec), expand_points(spec)
    assert len(a) == 5 and [p.overrides for p in a] == [p.overrides for p in b]
    assert [p.point_id for p in a] == [p.point_id for p in b]
    assert all(800 <= p.overrides["npu.freq_mhz"] <= 1200 and 1000 <= p.overrides["npu.interconnect.freq_mhz"] <= 4000
               and p.overrides["memory.pim.comp_coverage_macs"] in (8, 16, 32) for p in a)
    # a range over an integer field fails up front (a value between the ends is checked too)
    with pytest.raises(LlmsimError, match="axes.memory.pim.comp_coverage_macs: value .*valid integer"):
        load_spec({**spec, "axes": {"memory.pim.comp_coverage_macs": {"loguniform": [4, 64]}}})
    other = expand_points({**spec, "seed": 4})
    assert [p.overrides for p in other] != [p.overrides for p in a]
    # fewer distinct points than samples: each drawn once
    small = expand_points({**spec, "samples": 10, "axes": {"sub_batch": [True, False]}})
    assert sorted(p.overrides["sub_batch"] for p in small) == [False, True]


# ------------------------------------------------------------------------------------------ runs
def test_reference_run_rows(reference):
    out, df = reference
    assert len(df) == 12 and list(df["index"]) == list(range(12))
    assert (df["status"] == "ok").all() and (df["error"] == "").all()
    for col in ("point_id", "sweep", "base", "cfg.npu.systolic.count", "cfg.sub_batch", "workload", "wl.model",
                "wl.batch", "wl.requests", "wl.seq_len", "wl.layers", *METRIC_COLS, "wall_s", "llmsim_version",
                "seed", "backend"):
        assert col in df.columns, col
    assert set(df["backend"]) == {"local"} and set(df["seed"]) == {3} and set(df["sweep"]) == {"t-neupims"}
    assert (df["m.time_s"] > 0).all() and (df["m.pim_busy"] > 0).all()
    assert df["m.tokens_per_s"].iloc[0] == pytest.approx(8 / df["m.time_s"].iloc[0])
    assert df["m.energy_per_token_j"].iloc[0] == pytest.approx(df["m.energy_j"].iloc[0] / 8)
    # PE area: 128 x 128 x count x 1 core x 1968.7 um^2
    assert df["m.area_mm2"].iloc[0] == pytest.approx(128 * 128 * 4 * 1968.7 / 1e6)
    # the axes reach the simulation: more arrays, less NPU time (sub-batching off)
    off = df[(~df["cfg.sub_batch"]) & (df["wl.batch"] == 8)].set_index("cfg.npu.systolic.count")["m.time_s"]
    assert off[4] > off[8]
    assert (out / "spec.yaml").exists() and len(list((out / "points").glob("*.parquet"))) == 12
    assert no_temporary_files(out)
    back = load_results(out)
    assert back.equals(df)


def test_local_pool_and_dask_give_the_same_metrics(reference, tmp_path):
    _, ref = reference
    pool = run_sweep(SPEC, tmp_path / "pool", workers=2, quiet=True)
    dask = run_sweep(SPEC, tmp_path / "dask", backend="dask", workers=2, quiet=True)
    assert set(dask["backend"]) == {"dask"}
    for df in (pool, dask):
        assert list(df["point_id"]) == list(ref["point_id"])
        assert df[METRIC_COLS].equals(ref[METRIC_COLS])
    assert no_temporary_files(tmp_path)


def test_kill_and_resume_equals_an_uninterrupted_run(reference, tmp_path):
    _, ref = reference
    spec_file = write_spec(tmp_path / "spec.yaml", SPEC)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "sim", "sweep", str(spec_file), "--out", str(out), "--workers",
                             "1", "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    try:
        while len(list((out / "points").glob("*.parquet"))) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "no points written in 60 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    written = len(list((out / "points").glob("*.parquet")))
    assert 3 <= written < 12 and not (out / "results.parquet").exists()
    partial = load_results(out)      # an unfinished run reads back from points/
    assert len(partial) == written and (partial["status"] == "ok").all()
    df = run_sweep(spec_file, out, workers=1, quiet=True)
    assert df.attrs["summary"]["skipped"] == written and df.attrs["summary"]["done"] == 12 - written
    cols = [c for c in ref.columns if c not in ("wall_s", "backend")]
    assert df[cols].equals(ref[cols])
    assert no_temporary_files(out)


def test_error_points_json_summary_and_resume(tmp_path):
    spec = {"name": "with-errors", "base": "npu-pim-naive", "seed": 0,
            "axes": {"npu": ["neupims-npu", "scalesim-128x128-os"]},   # the second has no memory for PIM
            "workloads": [{"model": "gpt3-7b", "tp": 4, "batch": 4, "layers": 1}]}
    spec_file = write_spec(tmp_path / "errors.yaml", spec)
    out = tmp_path / "out"
    proc = run_cli("sweep", str(spec_file), "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {k: summary[k] for k in ("points", "done", "skipped", "errors")} == \
        {"points": 2, "done": 2, "skipped": 0, "errors": 1}
    assert summary["wall_s"] > 0 and summary["out"] == str(out)
    df = load_results(out)
    ok, bad = df.iloc[0], df.iloc[1]
    assert ok["status"] == "ok" and ok["cfg.npu"] == "neupims-npu"
    assert bad["status"] == "error" and "has no memory" in bad["error"] and "\n" not in bad["error"]
    assert all(math.isnan(bad[c]) for c in METRIC_COLS)
    assert (out / "spec.yaml").read_text() == spec_file.read_text()
    again = json.loads(run_cli("sweep", str(spec_file), "--out", str(out), "--json").stdout)
    assert (again["done"], again["skipped"], again["errors"]) == (0, 2, 1)
    assert no_temporary_files(out)
    # another spec into the same folder: one line, nothing touched
    other = write_spec(tmp_path / "other.yaml", {**spec, "seed": 1})
    assert_one_line_error(run_cli("sweep", str(other), "--out", str(out)), str(out), "different sweep spec")
    assert (out / "spec.yaml").read_text() == spec_file.read_text()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    assert_one_line_error(run_cli("sweep", str(spec_file), "--out", str(tmp_path / "busy")), "notes.txt")


def test_linked_axis_moves_its_paths_together(tmp_path):
    spec = {"name": "t-linked", "base": "neupims", "seed": 0,
            "axes": {"memory.organization.channel, memory.capacity_gb": [[16, 16], [32, 32]], "sub_batch": [False]},
            "workloads": [{"model": "gpt3-7b", "tp": 4, "batch": 8, "requests": "uniform", "seq_len": 64,
                           "layers": 1}]}
    points = expand_points(spec)
    assert [p.overrides for p in points] == [
        {"memory.organization.channel": 16, "memory.capacity_gb": 16, "sub_batch": False},
        {"memory.organization.channel": 32, "memory.capacity_gb": 32, "sub_batch": False}]
    df = run_sweep(spec, tmp_path / "sw", workers=1, quiet=True)
    assert list(df["cfg.memory.organization.channel"]) == [16, 32]
    assert list(df["cfg.memory.capacity_gb"]) == [16, 32]
    assert (df["status"] == "ok").all()
    # the same 8 requests' KV caches over half the channels: attention on PIM takes longer
    assert df["m.time_s"].iloc[0] > df["m.time_s"].iloc[1]


def test_workload_technique_runs_through_the_sweep(tmp_path):
    spec = {"name": "t-tech", "base": "npu-pim-naive", "seed": 0, "axes": {"sub_batch": [False]},
            "workloads": [{"model": "llama2-7b", "batch": 4, "requests": "uniform", "seq_len": 256, "layers": 1},
                          {"model": "llama2-7b", "batch": 4, "requests": "uniform", "seq_len": 256, "layers": 1,
                           "technique": "prune:heads=0.5"}]}
    df = run_sweep(spec, tmp_path / "sw", workers=1, quiet=True)
    assert (df["status"] == "ok").all()
    assert df["wl.technique"].iloc[0] is None or df["wl.technique"].isna().iloc[0]
    assert df["wl.technique"].iloc[1] == "prune:heads=0.5,ffn=0.75"
    assert df["workload"].iloc[1].endswith("prune:heads=0.5,ffn=0.75")
    assert df["m.time_s"].iloc[1] < df["m.time_s"].iloc[0]
    with pytest.raises(LlmsimError, match=r"workloads\.0\.technique: --technique: unknown technique"):
        load_spec({**spec, "workloads": [{"model": "llama2-7b", "technique": "nope"}]})
