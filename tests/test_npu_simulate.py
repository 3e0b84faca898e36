"""NPU-only simulation: nothing beats its roofline, bytes are conserved, the CLI keeps its keys."""

from __future__ import annotations

import json

import pytest

from sim.config import load_hw
from sim.npu.simulate import gemm_trace, simulate_trace
from tests.helpers import assert_one_line_error, run_cli

# one model per distinct architecture in the zoo (family), small B and L, one layer
ARCHS = {"gpt2": "gpt3-7b", "llama": "llama3-8b", "mistral": "mistral-7b", "mixtral": "mixtral-8x7b",
         "opt": "opt-1.3b", "phi": "phi-2", "bert": "minilm"}


@pytest.fixture(scope="module")
def npu():
    return load_hw("neupims-npu")


def _phases(model: str) -> list[str]:
    return ["prefill"] if model == "minilm" else ["prefill", "decode"]


@pytest.mark.parametrize("model,phase", [(m, p) for m in ARCHS.values() for p in _phases(m)])
def test_no_op_beats_its_roofline_and_bytes_are_conserved(traced, npu, model, phase):
    tr = traced(model, phase=phase, batch=2, seq_len=24, layers=1)
    res = simulate_trace(npu, tr, max_chunks=16)
    assert len(res.ops) == len(tr.ops)
    for o in res.ops:
        if o.roofline_s == 0:
            continue
        assert o.score >= 1.0, (o.module, o.op_class, o.score)
        assert o.read_bytes + o.write_bytes >= o.trace_bytes * o.repeat * (1 - 1e-9), (o.module, o.op_class)
    assert res.time_s >= sum(o.roofline_s for o in res.ops)
    assert res.time_s == pytest.approx(sum(o.time_s for o in res.ops), rel=1e-9)


def test_big_gemm_is_close_to_its_roofline(npu):
    res = simulate_trace(npu, gemm_trace(4096, 4096, 4096))
    score = res.ops[0].score
    assert 1.0 <= score <= 1.25, score


def test_chunking_keeps_time_within_two_percent(npu):
    """Merged tiles (the fidelity knob) against every tile its own DES step."""
    for shape in ((512, 4096, 4096), (16, 4096, 11008), (1, 4096, 4096)):
        tr = gemm_trace(*shape)
        fine = simulate_trace(npu, tr, max_chunks=10 ** 6)
        coarse = simulate_trace(npu, tr)   # the default fidelity
        assert coarse.events < fine.events
        assert coarse.cycles == pytest.approx(fine.cycles, rel=0.02), shape


def test_chunk_sizes_ramp_and_sum():
    from sim.npu.executor import chunk_sizes

    for n in (1, 7, 48, 49, 100, 1000, 12345, 10 ** 6):
        for m in (1, 4, 16, 48):
            sizes = chunk_sizes(n, m)
            assert sum(sizes) == n and min(sizes) >= 1
            assert len(sizes) <= max(n if n <= m else m + 1, 1)
    assert chunk_sizes(1000, 16)[:4] == [1, 2, 4, 8] and chunk_sizes(1000, 16)[-1] == 1


def test_ideal_memory_gemm_takes_the_array_cycles_alone():
    """SCALE-Sim comparison configs: memory never stalls, the GEMM is its folds."""
    ws = load_hw("scalesim-128x128-ws")
    res = simulate_trace(ws, gemm_trace(100, 129, 257))
    folds = 2 * 3   # ceil(129/128) x ceil(257/128)
    assert res.cycles == folds * (2 * 128 + 128 + 100 - 2)


def test_simulate_cli_json_keys(tmp_path):
    out = run_cli("simulate", "--hw", "scalesim-128x128-os", "--gemm", "7", "100", "129", "--json")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["cycles"] == 2 * (100 + 128 + 128 - 2)     # os: Sr = M = 7, Sc = N = 129, T = K = 100: 2 folds
    for key in ("time_s", "cycles", "by_class", "utilization"):
        assert key in d
    tl = tmp_path / "t.json"
    out = run_cli("simulate", "--model", "gpt3-7b", "--phase", "decode", "--batch", "2", "--seq-len", "16",
                  "--layers", "1", "--json", "--timeline", str(tl))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert set(d["by_class"]) >= {"gemm", "attention"} and d["utilization"]["arrays"] > 0
    assert sum(d["by_class"].values()) == pytest.approx(d["time_s"], rel=1e-9)
    events = json.loads(tl.read_text())["traceEvents"]
    tracks = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    assert {"arrays", "array0", "vector0", "dma0.load", "dma0.store", "ch00"} <= set(tracks.values())
    slices = sorted((e["pid"], e["tid"], e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X")
    for a, b in zip(slices, slices[1:]):
        if a[:2] == b[:2]:
            assert b[2] >= a[3] - 1e-9


@pytest.mark.parametrize("args,field", [
    (["--gemm", "0", "4", "4"], "--gemm"),
    (["--hw", "h200", "--gemm", "4", "4", "4"], "--hw"),
    (["--gemm", "4", "4", "4", "--max-chunks", "0"], "--max-chunks"),
    ([], "--model"),
    (["--gemm", "4", "4", "4", "--model", "gpt3-7b"], "--trace"),
])
def test_simulate_bad_input_is_one_line(args, field):
    assert_one_line_error(run_cli("simulate", *args), field)


def test_decode_attention_units_share_the_arrays(traced, npu):
    """A decode GEMV with fewer folds than arrays leaves arrays idle; tiles of several (sequence,
    KV head) units fill them, so decode attention at a few hundred keys streams K/V at near the
    memory's rate (the trace's bytes at the sustained read rate, plus the op's fill and first load)."""
    from sim.npu.mapping import core_buffers, plan_attention

    tr = traced("gpt3-7b", phase="decode", batch=64, seq_len=299, layers=1, tp=4)
    att = next(o for o in tr.ops if o.op_class == "attention")
    plan = plan_attention(npu, core_buffers(npu, 1000.0), att)
    # 300 keys: 3 Q.K^T and 3 P.V folds per unit; 2 units fill 6 + 6 of 8 + 8 fold slots, 3 units
    # 9 + 9 of 16 + 16; 512 KiB of operand budget holds 3 units of 150 KB
    assert plan.detail["units_per_tile"] == 2 and plan.tiles == 64 * 8 // 2
    res = simulate_trace(npu, type(tr)(meta=tr.meta, ops=[att]), max_chunks=16)
    o = res.ops[0]
    assert 1.0 <= o.score <= 1.15, o.score
