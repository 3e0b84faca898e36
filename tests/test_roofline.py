"""Roofline analyzer: no op beats its roofline, totals conserve the trace, single-op answers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sim.cli import cli
from sim.config import load_hw
from sim.roofline import analyze_many, single_attention, single_gemm


@pytest.fixture(scope="module")
def report(traced):
    tr = traced("llama2-7b", phase="generate", batch=4, seq_len=64, new_tokens=2, layers=2)
    return tr, analyze_many(tr, ["a100", "h100", "h200", "neupims-npu", "bitmod"])


def test_no_op_beats_its_roofline(report):
    _, rep = report
    t = rep.table
    assert (t.time_s >= t.flops / t.peak_flops * (1 - 1e-12)).all()
    assert (t.time_s >= t.bytes / t.mem_bw * (1 - 1e-12)).all()
    assert (t.attainable_flops <= t.peak_flops * (1 + 1e-12)).all()
    finite = t[t.time_s > 0]
    assert (finite.flops / finite.time_s <= finite.peak_flops * (1 + 1e-9)).all()


def test_totals_conserve_trace(report):
    tr, rep = report
    tot = rep.totals()
    for dev in rep.devices:
        d = tot[tot.device == dev]
        assert d.flops.sum() == pytest.approx(tr.total_flops())
        assert d.bytes.sum() == pytest.approx(tr.total_bytes())
        assert d.ops.sum() == tr.num_ops
    shares = rep.by_class().groupby(["device", "phase"]).time_share.sum()
    assert shares.to_numpy() == pytest.approx(1.0)


def test_measured_ceilings_are_default_and_datasheet_switch():
    h200 = load_hw("h200")
    assert h200.ceilings().mode == "measured"
    assert h200.ceilings().mem_bw == 4245e9
    assert h200.ceilings(measured=False).mem_bw == 4800e9
    assert h200.ceilings().matmul_peak("bf16") == 742e12
    assert h200.ceilings(measured=False).matmul_peak("bf16") == 989.4e12
    # int4 on Hopper falls back to the int8 path; fp64 on the measured table keeps the datasheet
    assert h200.ceilings().matmul_peak("int4") == 1978.9e12


def test_single_gemm_bounds():
    small = single_gemm(1, 4096, 12288, "h200", "bf16")
    assert small["bound"] == "memory"
    assert small["time_s"] == pytest.approx((4096 * 12288 + 4096 + 12288) * 2 / 4245e9)
    big = single_gemm(8192, 8192, 8192, "h200", "bf16")
    assert big["bound"] == "compute"
    assert big["time_s"] == pytest.approx(2 * 8192**3 / 742e12)
    assert single_gemm(8192, 8192, 8192, "h200", "bf16", measured=False)["time_s"] == pytest.approx(
        2 * 8192**3 / 989.4e12)


def test_single_attention_decode_reads_the_cache():
    r = single_attention(16, 32, 1024, 128, "decode", "h200", "bf16")
    assert r["pairs"] == 1025 and r["bound"] == "memory"
    kv = 16 * 32 * 1024 * 2 * 128 * 2
    assert r["bytes"] > kv
    gqa = single_attention(16, 32, 1024, 128, "decode", "h200", "bf16", kv_heads=8)
    assert gqa["bytes"] < r["bytes"] / 3


def test_cli_single_op_json():
    res = CliRunner().invoke(cli, ["roofline", "--gemm", "64", "4096", "12288", "--hw", "h200", "--dtype", "bf16",
                                   "--json"])
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["bound"] in ("compute", "memory") and obj["time_s"] > 0
    res = CliRunner().invoke(cli, ["roofline", "--attention", "8", "32", "2048", "128", "--phase", "decode", "--hw",
                                   "h200", "--json"])
    obj = json.loads(res.stdout)
    assert obj["bound"] == "memory" and obj["time_s"] > 0


def test_bitserial_peak_scales_with_weight_bits():
    c = load_hw("bitmod").ceilings()
    assert c.matmul_peak("fp16", 4) == pytest.approx(c.matmul_peak("fp16", 3))
    assert c.matmul_peak("fp16", 4) == pytest.approx(2 * c.matmul_peak("fp16", 8))
    assert c.matmul_peak("fp16", 16) == pytest.approx(1024 * 4 * 2 * 1e9 / 8)
    assert c.mem_bw == pytest.approx(32e9)


def test_npu_ceilings_from_arrays_and_memory():
    c = load_hw("neupims-npu").ceilings()
    assert c.matmul_peak("fp16") == pytest.approx(2 * 8 * 128 * 128 * 1e9)
    assert c.mem_bw == pytest.approx(32 * 32e9)


def test_validate_h200_linear_quick_holds_documented_errors():
    """The numbers in docs/validation.md: drift here means the roofline changed."""
    from sim.validate.h200_linear import run

    res = run(quick=True)
    assert res["mean_abs_error_pct"] == pytest.approx(19.4, abs=0.05)
    assert res["mean_abs_error_pct_datasheet"] == pytest.approx(35.4, abs=0.05)
    big = [r for r in res["rows"] if r["M"] == 4096]
    assert all(abs(r["error_pct"]) < 6 for r in big)
