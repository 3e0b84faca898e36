"""CLI commands beyond trace: roofline from a model, demo, validate, listings; fast start-up."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from sim.cli import cli


def run_json(*args: str):
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_roofline_traces_a_model_inline_and_writes_report(tmp_path):
    out = tmp_path / "rep"
    s = run_json("roofline", "--model", "llama3-8b", "--phase", "prefill", "--batch", "1", "--seq-len", "32",
                 "--layers", "1", "--hw", "a100", "--hw", "h200", "--out", str(out), "--json")
    assert set(s["devices"]) == {"a100", "h200"}
    names = {p.split("/")[-1] for p in s["files"]}
    assert {"roofline.csv", "roofline.parquet", "summary.md", "roofline.png", "breakdown.png"} <= names
    datasheet = run_json("roofline", "--model", "llama3-8b", "--phase", "prefill", "--batch", "1", "--seq-len", "32",
                         "--layers", "1", "--hw", "h200", "--datasheet", "--json")
    assert datasheet["devices"]["h200"]["mode"] == "datasheet"
    assert datasheet["devices"]["h200"]["time_s"] < s["devices"]["h200"]["time_s"]


def test_demo_json(tmp_path):
    s = run_json("demo", "--set", f"out={tmp_path}", "--set", "batch=2", "--set", "seq_len=64", "--json")
    assert set(s["devices"]) == {"h100", "h200"}
    assert (tmp_path / "trace.json").exists() and (tmp_path / "roofline.png").exists()


def test_validate_and_listings_json():
    v = run_json("validate", "h200-linear", "--quick", "--json")
    assert len(v["rows"]) == 11
    models = run_json("models", "--json")
    assert {m["name"] for m in models} >= {"llama2-7b", "minilm"}
    hw = run_json("hw", "h200", "--json")
    assert hw["hbm_bw_gbps"] == 4800 and hw["measured"]["hbm_bw_gbps"] == 4245
    assert {h["name"] for h in run_json("hw", "--json")} >= {"a100", "h100", "h200", "neupims-npu", "hbm2-neupims",
                                                              "bitmod"}


def test_cli_starts_without_torch():
    code = "import sys, sim.cli; sim.cli.cli.main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "False"  # --help must not import torch
