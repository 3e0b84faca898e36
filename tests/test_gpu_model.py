"""The GPU device model (sim/gpu): leave-one-out error on the measured H200 rows, its constants,
whole-model prefill / decode, and that no op beats its measured-ceiling roofline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sim.config import load_hw
from sim.gpu import gemm_op, op_time, roofline_time, simulate_trace_gpu
from sim.gpu.fit import (DTYPE, ROWS, _predict_fast, _table, baselines, fit, leave_one_out, median_abs,
                         measured_compute_efficiency)
from sim.gpu.model import TILES
from sim.roofline.analyzer import op_row

GPUS = ("a100", "h100", "h200")


@pytest.fixture(scope="module")
def h200():
    return load_hw("h200")


@pytest.fixture(scope="module")
def loo(h200):
    return leave_one_out(ROWS, h200)


def test_loo_median_error_within_goal_and_beats_the_rooflines(loo, h200):
    med = median_abs(r["error"] for r in loo)
    assert med <= 0.15
    assert max(abs(r["error"]) for r in loo) <= 0.25
    base = baselines(ROWS, h200)
    assert med < median_abs(base["datasheet roofline"])
    assert med < median_abs(base["measured ceilings + fixed overhead (LOO)"])
    assert len(loo) == len(ROWS) == 11


def test_all_gpus_load_with_nonnegative_constants():
    for name in GPUS:
        g = load_hw(name)
        p = g.model
        assert p is not None, name
        for v in (p.kernel_overhead_us, p.memory_latency_us, p.tile_fill_k):
            assert v >= 0
        assert 0 < p.bw_efficiency <= 1 and 0 < p.compute_efficiency <= 1
        assert "H200" in p.source


def test_yaml_holds_the_current_fit(h200):
    p = fit(ROWS, h200)
    assert p.model_copy(update={"source": h200.model.source}) == h200.model
    assert p.compute_efficiency == pytest.approx(measured_compute_efficiency(h200), abs=1e-4)
    # the effective bandwidth may not exceed the measured copy bandwidth
    assert p.bw_efficiency * h200.hbm_bw_gbps <= h200.measured.hbm_bw_gbps


def test_fast_fit_path_matches_op_time(h200):
    p = h200.model
    tab = _table(h200, ROWS, p.tile_fill_k, p.compute_efficiency)
    fast = _predict_fast(tab, p.kernel_overhead_us, p.memory_latency_us, p.bw_efficiency)
    slow = [op_time(gemm_op(m, k, n, DTYPE), h200).time_s for m, k, n, _ in ROWS]
    np.testing.assert_allclose(fast, slow, rtol=1e-9)


@pytest.mark.parametrize("name", GPUS)
def test_no_gemm_or_attention_beats_the_roofline(name):
    g = load_hw(name)
    c = g.ceilings(measured=True)
    for m in (1, 7, 64, 129, 256, 512, 1000, 4096, 8192):
        for k, n in ((4096, 12288), (11008, 4096), (4096, 32000), (128, 128), (8192, 8192)):
            op = gemm_op(m, k, n, "bf16")
            t = op_time(op, g)
            roof = op_row(op, c)["time_s"] - c.kernel_overhead_s
            assert t.time_s >= roof * (1 - 1e-12), (m, k, n)
            assert 0 < t.wave_efficiency <= 1
            assert t.tile.split("/")[0] in {f"{a}x{b}" for a, b, _ in TILES}
    # 8192^3 runs exactly at the matrix ceiling (the calibration point)
    op = gemm_op(8192, 8192, 8192, "bf16")
    ceiling = min(c.matmul_peak("bf16"), g.model.compute_efficiency * g.ceilings(measured=False).matmul_peak("bf16"))
    assert op_time(op, g).compute_s == pytest.approx(op.flops / ceiling, rel=1e-9)


def test_wave_quantization_shows(h200):
    # 12 x 11 tiles of 128x256 fill the 132 SMs exactly; one more tile row needs a second wave
    full = op_time(gemm_op(12 * 128, 8192, 11 * 256, "bf16"), h200)
    assert full.wave_efficiency == pytest.approx(1.0) and full.bound == "compute"
    over = op_time(gemm_op(13 * 128, 8192, 11 * 256, "bf16"), h200)
    assert over.wave_efficiency < 1.0
    per_flop = [t.compute_s / (2.0 * m * 8192 * 11 * 256) for t, m in ((full, 12 * 128), (over, 13 * 128))]
    assert per_flop[1] > per_flop[0]


@pytest.mark.parametrize("phase,seq_len", [("decode", 64), ("prefill", 128)])
def test_whole_model_phases(traced, phase, seq_len):
    tr = traced("llama2-7b", phase=phase, batch=4, seq_len=seq_len, layers=1)
    for name in GPUS:
        g = load_hw(name)
        res = simulate_trace_gpu(g, tr)
        assert res.time_s > 0 and math.isfinite(res.time_s)
        assert res.time_s == pytest.approx(sum(op_time(op, g).time_s * op.repeat for op in tr.ops))
        assert sum(res.by_class.values()) == pytest.approx(res.time_s)
        assert {"gemm", "attention"} <= set(res.by_class)
        for op, rep in zip(tr.ops, res.ops):
            assert rep.time_s >= roofline_time(op, g) * op.repeat * (1 - 1e-12), (name, op.module, op.op_class)
            assert rep.score >= 1 - 1e-9
        js = json.loads(json.dumps(res.to_json()))
        assert {"system", "device", "time_s", "cycles", "by_class", "utilization", "ops"} <= set(js)
        assert js["system"] == "gpu-only" and js["device"] == name
        assert all("score" in o for o in js["ops"])
        assert 0 < js["utilization"]["hbm"] <= 1
    # same model, faster memory: the H200 is not slower than the H100 in decode
    if phase == "decode":
        assert simulate_trace_gpu(load_hw("h200"), tr).time_s <= simulate_trace_gpu(load_hw("h100"), tr).time_s


def test_repeats_count(traced, h200):
    one = simulate_trace_gpu(h200, traced("llama2-7b", phase="decode", batch=4, seq_len=64, layers=1))
    two = simulate_trace_gpu(h200, traced("llama2-7b", phase="decode", batch=4, seq_len=64, layers=2))
    assert two.time_s == pytest.approx(2 * one.time_s, rel=1e-6)
