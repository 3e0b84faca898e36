"""NeuPIMs' C++ simulator's PIM instruction front end (``pim.issue``), against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from sim.systems.config import load_system
from sim.systems.decode import decode_iteration
from sim.systems.pim_frontend import kernel_instructions, serial_phase_seconds
from sim.systems.requests import Batch
from tests.helpers import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def memory():
    return load_system("npu-pim-naive").memory()


def test_kernel_instructions_by_hand(memory):
    # GPT-3 7B at TP 4: 8 heads of 128 = 1024 elements = 2 page chunks of 512 (4 heads each);
    # L = 100: ceil(100 / 32 banks) = 4 tiles per chunk
    # newton q.K^T: per chunk a GWRITE + 4 tiles x (P_HEADER + 4 heads x (128 / 16 COMPs + READRES))
    # newton p.V: one 512-token chunk, per head a GWRITE + 128 / 32 = 4 tiles x (P_HEADER +
    # ceil(100 / 16) = 7 COMPs + READRES)
    assert kernel_instructions(memory, 100, 8, 128, "newton") == (2 * (1 + 4 * (1 + 4 * 9)), 8 * (1 + 4 * 9))
    # fused (NeuPIMs): one COMPS_READRES per head and tile
    assert kernel_instructions(memory, 100, 8, 128, "fused") == (2 * (1 + 4 * (1 + 4)), 8 * (1 + 4 * 2))
    # L = 600: 19 tiles; p.V chunks of 512 and 88 tokens (32 and 6 COMPs)
    assert kernel_instructions(memory, 600, 8, 128, "newton") == (
        2 * (1 + 19 * 37), 8 * ((1 + 4 * (1 + 32 + 1)) + (1 + 4 * (1 + 6 + 1))))


def test_serial_phase_feeds_channels_in_order():
    # 1 instruction per second: channel 0 works 50 s from t = 0; channel 1 waits for channel 0's
    # 10 instructions, then is bound by its own 10
    assert serial_phase_seconds({0: 10, 1: 10}, {0: 50.0, 1: 5.0}, 1.0) == 50.0
    assert serial_phase_seconds({0: 10, 1: 10}, {0: 5.0, 1: 5.0}, 1.0) == 20.0
    assert serial_phase_seconds({1: 10, 0: 30}, {0: 0.0, 1: 12.0}, 2.0) == 15.0 + 12.0   # 30 / 2, then 12


def test_front_end_slows_only_the_attention_stage():
    batch = Batch(np.array([300, 40, 900, 1200] * 8), np.arange(32) % 32, "test")
    base = decode_iteration(load_system("npu-pim-naive"), "gpt3-7b", batch, tp=4, layers=1)
    ref = decode_iteration(load_system("npu-pim-naive", ["pim.issue.kernel=newton"]), "gpt3-7b", batch, tp=4,
                           layers=1)
    pb, pr = base.meta["per_layer"], ref.meta["per_layer"]
    assert pr["qkv"] == pb["qkv"] and pr["proj_ffn"] == pb["proj_ffn"]
    assert pr["mha"] > pb["mha"]
    # at least the instructions of every channel but the last, one per 1 GHz core cycle
    memory = load_system("npu-pim-naive").memory()
    per_ch = {}
    for L, c in zip(batch.lengths, batch.channels):
        per_ch[int(c)] = per_ch.get(int(c), 0) + sum(kernel_instructions(memory, int(L), 8, 128, "newton"))
    assert pr["mha"] >= sum(v for c, v in per_ch.items() if c != 31) / 1e9


def test_front_end_refused_where_not_modelled(tmp_path):
    cfg = tmp_path / "naive-ref.yaml"
    cfg.write_text("kind: system\nname: naive-ref\nsource: test\naccelerator: npu\nnpu: neupims-npu\n"
                   "pim: {row_buffers: 1, issue: {kernel: newton}}\n")
    out = run_cli("serve", "--system", str(cfg), "--model", "gpt3-7b", "--layers", "1", "--n", "4")
    assert_one_line_error(out, "pim.issue")
    out = run_cli("simulate", "--system", "npu-pim-naive", "--model", "gpt3-7b", "--layers", "1", "--batch", "4",
                  "--set", "pim.issue.kernel=fast")
    assert_one_line_error(out, "pim.issue.kernel")


def test_kernel_instructions_when_head_dim_does_not_divide_the_page(memory):
    # phi-2: 32 heads of 80; a 512-element page holds 6 heads: 5 chunks of 6 and one of 2
    # newton: 80 / 16 = 5 COMPs + a READRES per head and tile; L = 100: 4 tiles per chunk
    score, _ = kernel_instructions(memory, 100, 32, 80, "newton")
    assert score == 5 * (1 + 4 * (1 + 6 * 6)) + (1 + 4 * (1 + 2 * 6))


def test_sub_batching_needs_dual_row_buffers():
    out = run_cli("simulate", "--system", "npu-pim-naive", "--model", "gpt3-7b", "--layers", "1", "--tp", "4",
                  "--requests", "sharegpt", "--batch", "16", "--sub-batch", "on")
    assert_one_line_error(out, "row_buffers")
