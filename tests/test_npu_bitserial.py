"""BitMoD's bit-serial PEs on the NPU's systolic arrays, and the energy account of decode iterations."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_hw
from sim.config.hardware import SystolicPe
from sim.errors import LlmsimError
from sim.npu.mapping import core_for_bits
from sim.npu.tiler import CoreBuffers, array_dims, tile_compute_cycles

BITMOD_NPU = load_hw("neupims-npu-bitmod")


@pytest.mark.parametrize("bits,cycles", [(3.0625, 2), (4.0625, 2), (6.0625, 3), (8, 4), (16, 8), (None, 8), (2, 1)])
def test_bitserial_cycles_per_weight_follow_the_unified_term_rule(bits, cycles):
    pe = SystolicPe(kind="bitserial", dot_size=4, weight_bits_per_cycle=2)
    assert pe.cycles_per_weight(bits) == cycles
    assert SystolicPe().cycles_per_weight(bits) == 1


def _core(**kw) -> CoreBuffers:
    base = dict(rows=4, cols=4, arrays=1, dataflow="ws", fold_pipelining=False, operand_bytes=1 << 30,
                accumulator_bytes=1 << 30, acc_element_bytes=4, double_buffered=True, bytes_per_cycle=64.0)
    base.update(kw)
    return CoreBuffers(**base)


def test_bitserial_array_sees_k_over_dot_and_m_times_cycles():
    core = _core(dot_size=4, cycles_per_weight=2)
    assert array_dims(core, 3, 16, 4) == (6, 4, 4)
    # one fold (K/4 = 4 rows, N = 4 cols): preload R + fill R + C - 2 + T (= 3 rows x 2 cycles) = 16
    assert tile_compute_cycles(core, 3, 16, 4) == 4 + 4 + 4 - 2 + 6
    # the plain array needs 4 row folds for K = 16: 4 x (4 + 4 + 4 - 2 + 3) = 52
    assert tile_compute_cycles(_core(), 3, 16, 4) == 52


def test_core_for_bits_only_changes_bitserial_npus():
    core = _core()
    assert core_for_bits(load_hw("neupims-npu"), core, 3.0625) is core
    c3 = core_for_bits(BITMOD_NPU, core, 3.0625)
    assert (c3.dot_size, c3.cycles_per_weight) == (4, 2)
    assert core_for_bits(BITMOD_NPU, core, None).cycles_per_weight == 8


def test_bitserial_pe_config_errors_are_one_line():
    with pytest.raises(LlmsimError, match="dataflow"):
        load_hw("neupims-npu-bitmod", ["systolic.dataflow=os"])
    with pytest.raises(LlmsimError, match="weight_bits_per_cycle"):
        load_hw("neupims-npu-bitmod", ["systolic.pe.weight_bits_per_cycle=null"])
    with pytest.raises(LlmsimError, match="dot_size"):
        load_hw("neupims-npu", ["systolic.pe.dot_size=4"])


def test_quantized_decode_layer_on_bitserial_npu_never_beats_its_roofline(traced):
    from sim.npu.simulate import simulate_trace

    tr = traced("gpt3-7b", phase="decode", batch=64, seq_len=256, layers=1, tp=4, weight_bits=3, group_size=128,
                group_meta_bits=8, device="meta")
    res = simulate_trace(BITMOD_NPU, tr)
    assert all(o.score >= 1 - 1e-9 for o in res.ops), [(o.module, o.score) for o in res.ops if o.score < 1]
    plain = simulate_trace(load_hw("neupims-npu"), tr)
    # the same bytes move: quantized weights shrink traffic on both NPUs alike
    assert sum(o.read_bytes for o in res.ops) == pytest.approx(sum(o.read_bytes for o in plain.ops), rel=1e-9)
    gemm = [o for o in res.ops if o.op_class == "gemm"]
    assert sum(o.read_bytes + o.write_bytes for o in gemm) >= sum(o.trace_bytes * o.repeat for o in gemm) - 1


def test_pim_command_counts_agree_between_fast_and_command_level_paths():
    from sim.memory.pim import run_attention_batch

    mem = load_hw("hbm2-neupims").with_pim(dual_row_buffer=True)
    fast = run_attention_batch(mem, [700, 300, 129], [0, 1, 0], 128, 2)
    slow = run_attention_batch(mem, [700, 300, 129], [0, 1, 0], 128, 2, fast=False)
    assert fast.command_counts == slow.command_counts
    assert fast.command_counts["COMP"] > 0 and fast.command_counts["G_ACT"] > 0


def test_counts_energy_is_the_per_command_table():
    from sim.memory.energy import counts_energy, per_command_pj, stream_pj_per_byte

    mem = load_hw("hbm2-neupims")
    e = per_command_pj(mem)
    got = counts_energy(mem, {"ACT": 2, "RD": 3, "REFab": 1, "COMP": 5, "G_ACT": 1})
    assert got.act_pre_pj == 2 * e["act_pre"] and got.read_pj == 3 * e["read"] and got.refresh_pj == e["refab"]
    assert got.pim_pj == 5 * e["comp"] + e["g_act"]
    # a streamed 1 KB page: 16 bursts of 64 B and one ACT/PRE pair
    assert stream_pj_per_byte(mem) == pytest.approx((16 * e["read"] + e["act_pre"]) / 1024)


def test_iteration_energy_sums_its_parts_and_bitmod_weights_cut_npu_energy():
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import uniform_batch

    batch = uniform_batch(32, 256)
    base = decode_iteration(load_system("neupims"), "gpt3-7b", batch, tp=4, layers=1, sub_batch=False)
    bm = decode_iteration(load_system("neupims-bitmod"), "gpt3-7b", batch, tp=4, layers=1, sub_batch=False)
    for r in (base, bm):
        parts = {k: v for k, v in r.energy_pj.items() if k != "total"}
        assert r.energy_pj["total"] == pytest.approx(sum(parts.values()))
        assert set(parts) == {"npu_pe", "npu_dram", "pim"} and all(v > 0 for v in parts.values())
    assert bm.energy_pj["pim"] == pytest.approx(base.energy_pj["pim"])       # same fp16 KV on PIM
    assert bm.energy_pj["npu_dram"] < 0.45 * base.energy_pj["npu_dram"]      # 3.06-bit weights vs 16
    # PE energy per MAC: 0.84 pJ x 2 cycles / 4 lanes against 1.155 pJ
    assert bm.energy_pj["npu_pe"] == pytest.approx(base.energy_pj["npu_pe"] * 0.42 / 1.155, rel=0.02)
    assert bm.time_s < base.time_s
    assert np.isfinite(bm.to_json()["energy_per_token_j"])
