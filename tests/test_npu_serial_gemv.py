"""The ``serial_gemv`` NPU attention mapping: NeuPIMs' C++ simulator's FusedMHA schedule, checked
against its instruction timing worked by hand (R = C = 128, 8 arrays, 1-cycle vector latencies)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_hw
from sim.npu.mapping import core_buffers, plan_attention, serial_gemv_head_cycles
from sim.systems.config import load_system
from sim.systems.decode import attention_ops, ragged_attention_op, split_layer
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def npu():
    return load_system("npu-only", ["npu.mapping.attention=serial_gemv"]).npu_config()


@pytest.fixture(scope="module")
def template(traced):
    return split_layer(traced("gpt3-7b", phase="decode", batch=2, seq_len=63, layers=1, tp=4))[1]


def test_head_cycles_by_hand(npu):
    core = core_buffers(npu, 1024.0)
    # L = 128: q.K^T 254 + max(128 // 8, 4) = 270; softmax 2 x 1 (add tree) + 1 x 3 (add, exp, mul)
    # = 5; p.V: ceil(255 / 128) = 2 blocks, the first 2R - 1 = 255 after the softmax, then 2 x 128
    assert serial_gemv_head_cycles(npu, core, 1, 128) == 270 + 5 + 255 + 256
    # L = 1000: 254 + 125; softmax 2 x (8 + 1) + 8 x 3 = 42; ceil(1127 / 128) = 9 blocks
    assert serial_gemv_head_cycles(npu, core, 1, 1000) == 379 + 42 + 255 + 9 * 128
    # L = 3 (short): streamed size 3 // 8 = 0 -> 4; softmax 5; ceil(130 / 128) = 2 blocks
    assert serial_gemv_head_cycles(npu, core, 1, 3) == 258 + 5 + 255 + 256


def test_one_tile_per_request_and_bytes_conserved(npu, template):
    lengths = np.array([100, 100, 700, 2000, 5])
    op = ragged_attention_op(template, lengths)
    per_length = attention_ops(template, lengths)
    for f in ("flops", "bytes_activation", "bytes_kv_read", "bytes_kv_write"):
        assert getattr(op, f) == pytest.approx(sum(getattr(o, f) for o in per_length))
    assert sorted(map(tuple, op.extra["kv_len_counts"])) == [(5, 1), (100, 2), (700, 1), (2000, 1)]
    core = core_buffers(npu, 1024.0)
    plan = plan_attention(npu, core, op)
    assert plan.tiles == 5 and plan.fill_cycles == 0
    assert plan.read_bytes + plan.write_bytes == pytest.approx(op.bytes)
    heads = int(template.extra["heads"])
    array = sum(n * t.phases[0][1] for n, t in plan.runs)
    assert array == heads * sum(serial_gemv_head_cycles(npu, core, 1, int(L)) for L in lengths)
    # a longer request loads more: K and V of all its heads, 2 x heads x L x 128 x 2 bytes at TP 4
    loads = {t.phases[0][1]: t.load_bytes for _, t in plan.runs}
    assert max(loads.values()) > 15 * min(loads.values())


def test_tiled_mapping_runs_a_ragged_op_as_one_kernel(template):
    """The tiled mapping places a ragged op's lengths one after another in one op: the same tiles
    as the per-length ops (bytes and array cycles), one pipeline fill instead of one per length."""
    from sim.systems.decode import npu_run

    npu = load_hw("neupims-npu")
    core = core_buffers(npu, 1024.0)
    lengths = np.array([5, 100, 100, 700, 2000, 2000, 2000])
    ragged = plan_attention(npu, core, ragged_attention_op(template, lengths))
    parts = [plan_attention(npu, core, o) for o in attention_ops(template, lengths)]
    assert ragged.read_bytes == pytest.approx(sum(p.read_bytes for p in parts))
    assert ragged.write_bytes == pytest.approx(sum(p.write_bytes for p in parts))
    assert ragged.tiles == sum(p.tiles for p in parts)

    def array_cycles(plan):
        return plan.repeat * sum(c * sum(cy for u, cy, _ in t.phases if u == "array") for c, t in plan.runs)

    assert array_cycles(ragged) == sum(array_cycles(p) for p in parts)
    one, _ = npu_run(npu, [ragged_attention_op(template, lengths)])
    each, _ = npu_run(npu, attention_ops(template, lengths))
    assert one < each


def test_serial_attention_is_compute_bound_and_slower_than_tiled(template):
    """On the simulator: the heads' chains back to back (loads hidden behind the previous request)
    give at least the chains' cycles and at most those plus the first request's load; llmsim's
    tiled mapping of the same hardware is several times faster."""
    from sim.systems.decode import npu_run

    lengths = np.array([300] * 8 + [1200] * 4)
    serial = load_system("npu-only", ["npu.mapping.attention=serial_gemv"]).npu_config()
    tiled = load_hw("neupims-npu")
    core = core_buffers(serial, 1024.0)
    chains = int(template.extra["heads"]) * sum(serial_gemv_head_cycles(serial, core, 1, int(L)) for L in lengths)
    s, moved = npu_run(serial, [ragged_attention_op(template, lengths)])
    cycles = s * serial.freq_mhz * 1e6
    first_load = 2 * 2 * int(template.extra["kv_heads"]) * 300 * 128 / 1000   # bytes / ~1 KB per cycle
    assert chains <= cycles <= chains + first_load + 2000
    t, _ = npu_run(tiled, attention_ops(template, lengths))
    assert s > 2.5 * t


def test_mapping_from_the_cli_and_its_errors():
    base = ("simulate", "--system", "npu-only", "--model", "gpt3-7b", "--layers", "1", "--batch", "4")
    # op by op (--set reaches the NPU config) and a batch of requests (--set reaches the system)
    assert_one_line_error(run_cli(*base, "--set", "mapping.attention=systolic"), "mapping.attention")
    assert_one_line_error(run_cli(*base, "--requests", "sharegpt", "--set", "npu.mapping.attention=systolic"),
                          "mapping.attention")
    out = run_cli(*base, "--set", "mapping.attention=serial_gemv", "--json")
    assert out.returncode == 0, out.stderr


def test_ragged_op_sums_the_per_length_counts(template):
    lengths = np.array([7, 7, 300, 1500])
    op = ragged_attention_op(template, lengths)
    parts = attention_ops(template, lengths)
    for k in ("flops_qk", "flops_sv", "softmax_flops", "pairs", "cached_tokens_read"):
        assert op.extra[k] == pytest.approx(sum(p.extra[k] for p in parts)), k
    assert len(op.input_shapes) == len(op.input_dtypes) == 3


def test_serial_gemv_is_decode_only_and_packing_is_decode_only(traced):
    out = run_cli("simulate", "--system", "npu-only", "--model", "gpt3-7b", "--layers", "1", "--batch", "2",
                  "--phase", "prefill", "--seq-len", "64", "--set", "mapping.attention=serial_gemv")
    assert_one_line_error(out, "serial_gemv")
    npu = load_hw("neupims-npu")
    pre = next(o for o in traced("gpt3-7b", phase="prefill", batch=4, seq_len=16, layers=1, tp=4).ops
               if o.op_class == "attention")
    assert "units_per_tile" not in plan_attention(npu, core_buffers(npu, 1024.0), pre).detail
