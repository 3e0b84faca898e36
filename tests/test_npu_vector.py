"""Vector-unit formulas (sim.npu.vector), each against a hand computation."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import load_hw
from sim.npu.vector import POINTWISE_STEPS, row_cycles, tree, vector_cycles


@pytest.fixture(scope="module")
def npu():
    return load_hw("neupims-npu")


def test_tree_iterations_follow_neupims_recursion():
    assert tree(1, 128) == 1 and tree(128, 128) == 1
    assert tree(129, 128) == 2 + 1          # 2 partial sums, then one more level
    assert tree(4096, 128) == 32 + 1
    assert tree(128 ** 2 + 1, 128) == 129 + 2 + 1


def test_row_formulas_by_hand(npu):
    # n = 4096 on 128 lanes, every latency 1: iters 32, tree 33
    assert row_cycles(npu, "layer_norm", 4096) == 2 * 33 + 2 + 1 + 32 * 5
    assert row_cycles(npu, "rms_norm", 4096) == 33 + 1 + 1 + 32 * 3
    assert row_cycles(npu, "softmax", 4096) == 2 * 33 + 32 * 3
    assert row_cycles(npu, "reduction", 4096, "sum") == 33
    assert row_cycles(npu, "reduction", 4096, "mean") == 33 + 32
    assert row_cycles(npu, "pointwise", 4096, "add") == 32
    assert row_cycles(npu, "pointwise", 4096, "silu") == 32 * 4
    assert row_cycles(npu, "pointwise", 4096, "unknown_cast") == 32   # a pass through the unit


def test_latencies_scale_their_steps(npu):
    slow = npu.model_copy(update={"vector": npu.vector.model_copy(update={
        "op_latency_cycles": npu.vector.op_latency_cycles.model_copy(update={"exp": 4, "add_tree": 3})})})
    assert row_cycles(slow, "softmax", 256) == 2 * 3 * 3 + 2 * (1 + 4 + 1)
    assert row_cycles(slow, "pointwise", 256, "exp") == 2 * 4


def test_rows_spread_over_units_pointwise_split_evenly(npu):
    c = vector_cycles(npu, "softmax", 64, 1024)       # 8 rows per unit
    assert c.cycles == 8 * row_cycles(npu, "softmax", 1024) and c.units_used == 8
    c = vector_cycles(npu, "softmax", 3, 1024)        # fewer rows than units: 5 units idle
    assert c.cycles == row_cycles(npu, "softmax", 1024) and c.units_used == 3
    c = vector_cycles(npu, "pointwise", 1, 1 << 20, "mul")  # one long row still uses all 8 units
    assert c.cycles == (1 << 20) // 8 // 128
    assert vector_cycles(npu, "softmax", 0, 10).cycles == 0


FLOPS_PER_ELEMENT = {"softmax": 5, "layer_norm": 7, "rms_norm": 4, "reduction": 1, "pointwise": 1}


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(FLOPS_PER_ELEMENT)), rows=st.integers(1, 5000), n=st.integers(1, 20000),
       name=st.sampled_from(sorted(POINTWISE_STEPS) + ["sum", "mean"]))
def test_no_vector_op_beats_one_flop_per_lane_per_cycle(kind, rows, n, name):
    """The trace's FLOP conventions (docs/accounting.md) against the unit's lane-cycles."""
    npu = load_hw("neupims-npu")
    c = vector_cycles(npu, kind, rows, n, name)
    lane_cycles = c.cycles * npu.vector.units * npu.vector.lanes
    assert lane_cycles >= FLOPS_PER_ELEMENT[kind] * rows * n
    assert c.cycles >= math.ceil(rows * n / (npu.vector.units * npu.vector.lanes))
