"""GEMM tiling, DMA channel split and op placement (sim.npu.tiler, memory_service, mapping)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import load_hw
from sim.npu.mapping import DMA_ONLY, VECTOR, core_buffers, plan_op
from sim.npu.memory_service import calibrate
from sim.npu.simulate import gemm_trace
from sim.npu.tiler import choose_tiling
from sim.trace.schema import OP_CLASSES


@pytest.fixture(scope="module")
def npu():
    return load_hw("neupims-npu")


@pytest.fixture(scope="module")
def svc(npu):
    return calibrate(npu.memory_config(), npu.dma.request_bytes)


@pytest.fixture(scope="module")
def core(npu, svc):
    return core_buffers(npu, svc.read_bytes_per_cycle * svc.channels, svc.latency_cycles)


def test_every_op_class_has_a_placement():
    placed = DMA_ONLY | VECTOR | {"gemm", "attention"}
    assert set(OP_CLASSES) <= placed


def test_calibration_is_below_the_bus_and_above_ninety_percent(svc):
    # the engine's streaming rate after refresh: at most the data bus (32 B/cycle), and the memory
    # issue's validation puts streaming at >= 95% of peak
    for rate in (svc.read_bytes_per_cycle, svc.write_bytes_per_cycle):
        assert 0.9 * svc.peak_bytes_per_cycle <= rate <= svc.peak_bytes_per_cycle
    assert svc.latency_cycles == 14 + 14 + 2  # tRCD + CL + BL/2 on hbm2-neupims


@settings(max_examples=60, deadline=None)
@given(base=st.integers(0, 1 << 20), rows=st.integers(1, 300), row_bytes=st.integers(1, 70_000),
       stride_req=st.integers(0, 3000))
def test_channel_split_matches_decoding_every_request(svc, base, rows, row_bytes, stride_req):
    """The shortcut (periods, residue classes) against decoding each request's address."""
    base -= base % svc.request_bytes
    stride = stride_req * svc.request_bytes
    if stride and stride < row_bytes:
        stride = math.ceil(row_bytes / svc.request_bytes) * svc.request_bytes
    got = svc.channel_bytes(base, rows, row_bytes, stride)
    per_row = math.ceil(row_bytes / svc.request_bytes)
    addrs = (base + np.arange(rows)[:, None] * stride + np.arange(per_row)[None, :] * svc.request_bytes).ravel()
    ch = (addrs >> svc.channel_shift) & ((1 << svc.channel_bits) - 1)
    want = np.bincount(ch, minlength=svc.channels) * float(svc.request_bytes)
    assert np.allclose(got, want)


def test_contiguous_period_spreads_evenly(svc):
    b = svc.channel_bytes(4096, 1, svc.period_bytes * 3, 0)
    assert np.all(b == 3 * svc.period_bytes / svc.channels)


@pytest.mark.parametrize("shape", [(1, 4096, 4096), (64, 4096, 12288), (4096, 4096, 4096), (7, 129, 1000),
                                   (2048, 11008, 4096)])
def test_tiles_fit_the_buffers_and_traffic_is_accounted(npu, core, shape):
    m, k, n = shape
    t = choose_tiling(core, m, k, n, 2, 2.0)
    buf = 2 if npu.scratchpad.double_buffered else 1
    assert buf * (t.mt * t.kt + t.kt * t.nt) * 2 <= npu.scratchpad.operand_kib * 1024
    assert t.mt * t.nt * npu.scratchpad.accumulator_element_bytes <= npu.scratchpad.accumulator_kib * 1024
    assert t.compulsory_bytes == (m * k + k * n + m * n) * 2
    bm, bk, bn = t.blocks
    assert t.read_w_bytes == k * n * 2 * bm
    assert t.read_a_bytes == m * k * 2 * (1 if (t.a_resident or bn == 1) else bn)
    assert t.refetch_bytes == t.read_a_bytes + t.read_w_bytes + t.write_c_bytes - t.compulsory_bytes >= 0
    plan = plan_op(npu, core, gemm_trace(m, k, n).ops[0])
    assert plan.tiles == t.tiles
    assert plan.read_bytes == pytest.approx(t.read_a_bytes + t.read_w_bytes)
    assert plan.write_bytes == pytest.approx(t.write_c_bytes)


def test_a_gemm_that_does_not_fit_refetches(npu, core):
    """A weight too big to sit beside a large A is read once per m-block; counted as re-fetch."""
    t = choose_tiling(core, 8192, 8192, 8192, 2, 2.0)
    assert t.refetch_bytes > 0 and t.blocks[0] > 1


def test_smaller_scratchpad_means_smaller_tiles_and_more_traffic(npu, svc, core):
    small = npu.model_copy(update={"scratchpad": npu.scratchpad.model_copy(update={"operand_kib": 64,
                                                                                    "accumulator_kib": 64})})
    tiny = core_buffers(small, core.bytes_per_cycle, core.latency_cycles)
    big_t = choose_tiling(core, 2048, 4096, 4096, 2, 2.0)
    small_t = choose_tiling(tiny, 2048, 4096, 4096, 2, 2.0)
    assert small_t.tiles > big_t.tiles
    assert small_t.refetch_bytes > big_t.refetch_bytes
    assert 2 * (small_t.mt * small_t.kt + small_t.kt * small_t.nt) * 2 <= 64 * 1024
