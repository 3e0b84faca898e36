"""Composed systems: configs, request batches, channel assignment, the decode iteration by stages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.systems.config import available_systems, load_system
from sim.systems.requests import Batch, load_lengths, sample_batch
from tests.helpers import assert_one_line_error, run_cli


def test_bundled_systems_compose():
    assert {"gpu-only", "npu-only", "npu-pim-naive", "neupims"} <= set(available_systems())
    neu, naive = load_system("neupims"), load_system("npu-pim-naive")
    assert neu.npu == naive.npu and neu.pim.row_buffers == 2 and naive.pim.row_buffers == 1
    assert neu.sub_batch and not naive.sub_batch and neu.channel_assignment == "greedy"
    assert neu.memory().pim.dual_row_buffer and not naive.memory().pim.dual_row_buffer
    assert load_system("npu-only").pim is None and load_system("gpu-only").gpu == "h100"


def test_bad_system_config_is_one_line(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("kind: system\nname: x\nsource: t\naccelerator: gpu\nsub_batch: true\n")
    out = run_cli("simulate", "--system", str(bad), "--model", "gpt3-7b")
    assert_one_line_error(out, str(bad))


def test_lengths_csv_and_its_errors(tmp_path):
    good = tmp_path / "b.csv"
    good.write_text("seq_len,ch_idx\n10,3\n2048,0\n")
    b = load_lengths(good)
    assert b.lengths.tolist() == [10, 2048] and b.channels.tolist() == [3, 0]
    for text, field in (("len\n3\n", "seq_len"), ("seq_len\n0\n", "seq_len"), ("seq_len\nx\n", "seq_len"),
                        ("seq_len,ch_idx\n5,-1\n", "ch_idx")):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        out = run_cli("simulate", "--system", "neupims", "--model", "gpt3-7b", "--lengths", str(bad))
        assert_one_line_error(out, field)
    pinned = tmp_path / "p.csv"
    pinned.write_text("seq_len,ch_idx\n10,40\n")
    out = run_cli("simulate", "--system", "neupims", "--model", "gpt3-7b", "--layers", "1", "--lengths", str(pinned))
    assert_one_line_error(out, "ch_idx")


def test_steady_state_sampling_is_seeded_and_length_biased():
    a, b = sample_batch("sharegpt", 256, seed=3), sample_batch("sharegpt", 256, seed=3)
    assert np.array_equal(a.lengths, b.lengths)
    assert a.lengths.max() <= 2048 and a.lengths.min() >= 1
    # length-biased steady state: longer than a plain draw of prompt lengths (median prompt 17);
    # the NeuPIMs ShareGPT trace has mean 300, median 217
    for use_data in (True, False):   # the data file, and the shipped percentile table
        b = sample_batch("sharegpt", 512, seed=3, use_data=use_data)
        assert 230 < b.lengths.mean() < 360 and 170 < np.median(b.lengths) < 270, use_data
        assert "percentile table" in b.source or use_data


def test_channel_assignment_policies():
    from sim.config import load_hw
    from sim.systems.channels import assign_channels

    mem = load_hw("hbm2-neupims")
    lengths = np.array([2000, 100, 100, 100, 100, 1500, 50], np.int64)
    rr = assign_channels("round_robin", lengths, 4)
    assert rr.tolist() == [0, 1, 2, 3, 0, 1, 2]
    g = assign_channels("greedy", lengths, 4, mem, 128, 8)
    assert g[0] == 0 and 0 not in g[1:5].tolist()      # the long request's channel takes no short one next
    pinned = assign_channels("greedy", lengths, 4, mem, 128, 8, pinned=np.arange(7) % 2)
    assert pinned.tolist() == [0, 1, 0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def small_batch():
    return Batch(np.array([37, 300, 1025, 90, 600, 200, 128, 64], np.int64), None, "test")


def test_decode_iteration_on_each_npu_system(small_batch):
    from sim.systems.decode import decode_iteration

    res = {}
    for name in ("npu-only", "npu-pim-naive", "neupims"):
        r = decode_iteration(load_system(name), "gpt3-7b", small_batch, tp=4, layers=1, sub_batch=False)
        res[name] = r
        assert r.time_s > 0 and r.tokens_per_s == pytest.approx(8 / r.time_s)
        assert r.time_s == pytest.approx(sum(r.stages.values()))
    # the same NPU stages; attention differs (PIM GEMVs per channel against the arrays)
    assert res["neupims"].stages["qkv"] == res["npu-only"].stages["qkv"]
    assert res["neupims"].stages["mha"] != res["npu-only"].stages["mha"]


def test_sub_batching_pays_off_only_at_large_batch():
    """Each half re-streams the weights: at small batch (weight-bound GEMMs) sub-batching costs
    more than the overlap saves, at large batch it wins (NeuPIMs turns it on from batch 256)."""
    from sim.systems.decode import decode_iteration

    sysconf = load_system("neupims")
    times = {}
    for b in (32, 512):
        batch = sample_batch("sharegpt", b, seed=1)
        off = decode_iteration(sysconf, "gpt3-7b", batch, tp=4, layers=2, sub_batch=False)
        on = decode_iteration(sysconf, "gpt3-7b", batch, tp=4, layers=2, sub_batch=True)
        assert on.sub_batch and sum(on.meta["sub_batches"]) == b
        assert 0.5 < on.utilization["npu_bandwidth_share_beside_pim"] <= 1.0
        times[b] = (off.time_s, on.time_s)
    assert times[32][1] > times[32][0]
    assert times[512][1] < times[512][0]


def test_simulate_batch_cli_json(tmp_path):
    csv = tmp_path / "b.csv"
    csv.write_text("seq_len\n" + "\n".join(str(x) for x in (50, 400, 900, 120)) + "\n")
    out = run_cli("simulate", "--system", "neupims", "--model", "gpt3-7b", "--tp", "4", "--layers", "1",
                  "--lengths", str(csv), "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    for key in ("time_s", "cycles", "tokens_per_s", "stages"):
        assert key in d
    assert d["batch"] == 4 and d["tokens_per_s"] == pytest.approx(4 / d["time_s"])


def test_gpu_only_iteration_and_prefill_cli(tmp_path):
    csv = tmp_path / "b.csv"
    csv.write_text("seq_len\n" + "\n".join(str(x) for x in (50, 400, 900, 120)) + "\n")
    outs = {}
    for gpu in ("a100", "h200"):
        out = run_cli("simulate", "--system", "gpu-only", "--gpu", gpu, "--model", "gpt3-7b", "--tp", "4",
                      "--layers", "1", "--lengths", str(csv), "--json")
        assert out.returncode == 0, out.stderr
        outs[gpu] = json.loads(out.stdout)
        assert outs[gpu]["tokens_per_s"] == pytest.approx(4 / outs[gpu]["time_s"])
    assert outs["h200"]["time_s"] < outs["a100"]["time_s"]
    out = run_cli("simulate", "--system", "gpu-only", "--model", "llama2-7b", "--phase", "prefill", "--batch", "1",
                  "--seq-len", "64", "--layers", "1", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["device"] == "h100" and d["time_s"] > 0 and "gemm" in d["by_class"]


def test_sub_batch_timeline_shows_npu_and_pim_overlap(tmp_path):
    tl = tmp_path / "it.json"
    out = run_cli("simulate", "--system", "neupims", "--model", "gpt3-7b", "--tp", "4", "--layers", "2",
                  "--requests", "sharegpt", "--batch", "64", "--timeline", str(tl), "--json")
    assert out.returncode == 0, out.stderr
    events = json.loads(tl.read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    sl = [(names[e["tid"]], e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X"]
    npu = [s for s in sl if s[0] == "npu"]
    pim = [s for s in sl if s[0] == "pim"]
    assert npu and pim
    assert any(p[1] < n[2] and n[1] < p[2] for p in pim for n in npu)   # overlap in time
    end = max(s[2] for s in sl)
    assert end == pytest.approx(json.loads(out.stdout)["time_s"] * 1e6, rel=1e-3)


def test_system_overrides_reach_its_devices():
    from sim.systems.config import load_system, split_overrides

    own, dev = split_overrides(["sub_batch=false", "npu.systolic.count=16", "memory.pim.comp_coverage_macs=32",
                                "npu=neupims-npu-bitmod"])
    assert own == ["sub_batch=false", "npu=neupims-npu-bitmod"]
    assert dev == {"npu": ["systolic.count=16"], "memory": ["pim.comp_coverage_macs=32"]}
    s = load_system("neupims", ["npu.systolic.count=16", "memory.pim.comp_coverage_macs=32", "sub_batch=false"])
    assert s.npu_config().systolic.count == 16 and not s.sub_batch
    assert s.memory().pim.comp_coverage_macs == 32
    # the NPU simulator's own memory (DMA calibration) sees the override too
    assert s.npu_config().memory_config().pim.comp_coverage_macs == 32
    assert load_system("neupims").memory().pim.comp_coverage_macs == 16


@pytest.mark.parametrize("override,needle", [
    ("npu.systolic.cuont=16", "systolic.cuont"), ("npu.systolic.count=0", "systolic.count"),
    ("gpu.hbm_bw_gbps=1", "gpu"), ("memory.organization.channel=16", "capacity_gb")])
def test_bad_system_overrides_are_one_line(override, needle):
    r = run_cli("simulate", "--system", "neupims", "--model", "gpt3-7b", "--tp", "4", "--batch", "4", "--layers", "1",
                "--set", override)
    assert_one_line_error(r, needle)


def test_set_on_a_batch_run_changes_the_system():
    base = run_cli("simulate", "--system", "npu-pim-naive", "--model", "gpt3-7b", "--tp", "4", "--batch", "16",
                   "--layers", "1", "--json")
    fewer = run_cli("simulate", "--system", "npu-pim-naive", "--model", "gpt3-7b", "--tp", "4", "--batch", "16",
                    "--layers", "1", "--set", "npu.systolic.count=1", "--json")
    assert base.returncode == 0 and fewer.returncode == 0, fewer.stderr
    assert json.loads(fewer.stdout)["time_s"] > json.loads(base.stdout)["time_s"]
