"""Bit-serial accelerator systems (bitmod, ant, olive, fp16-accel) running traced models."""

from __future__ import annotations

import json
import math

import pytest

from sim.systems.config import load_system
from tests.helpers import assert_one_line_error, run_cli

SYSTEMS = ("bitmod", "ant", "olive", "fp16-accel")


def _run(system, traced, model="llama2-7b", task="prefill", **kw):
    """(run, trace) of ``model`` on ``system`` for ``task`` (prefill / decode / generate)."""
    from sim.systems.bitserial_run import run_trace

    sysconf = load_system(system)
    tr = traced(model, phase=task, device="meta", **{**sysconf.trace_precision(task, model), **kw})
    return run_trace(sysconf.bitserial_config(), tr, task, system=system), tr


@pytest.mark.parametrize("system,task,bits,kv,array", [
    ("bitmod", "prefill", 4.0625, 8, "32x32"), ("bitmod", "generate", 3.0625, 8, "64x16"),
    ("ant", "prefill", 5.5, 16, "32x32"), ("olive", "decode", 4, 16, "72x16"), ("fp16-accel", "decode", 16, 16, "64x12")])
def test_systems_take_their_designs_precision_and_array(system, task, bits, kv, array):
    sysconf = load_system(system)
    p = sysconf.trace_precision(task, "llama2-7b")
    assert (p["weight_bits"], p["kv_bits"]) == (bits, kv)
    dev = sysconf.bitserial_config()
    a = dev.arrays["prefill" if task == "prefill" else "decode"]
    assert f"{a.rows}x{a.cols}" == array


def test_per_model_weight_bits_of_the_baselines():
    assert load_system("ant").trace_precision("decode", "yi-6b")["weight_bits"] == 5.25
    assert load_system("ant").trace_precision("decode", "llama2-13b")["weight_bits"] == 4
    assert load_system("ant").trace_precision("prefill", "llama2-13b")["weight_bits"] == 5.5


def test_trace_layers_build_the_artifacts_shapes(traced):
    from sim.systems.bitserial_run import trace_layers

    tr = traced("llama2-7b", phase="decode", batch=2, seq_len=64, layers=1, device="meta", weight_bits=3.0625,
                kv_bits=8)
    layers, owners, others = trace_layers(tr)
    lin = {g.name.rsplit(".", 1)[-1]: g for g in layers if g.kind == "linear"}
    assert set(lin) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (lin["gate_proj"].cout, lin["gate_proj"].cin, lin["gate_proj"].tokens) == (11008, 4096, 2)
    assert all(g.weight_bits == 3.0625 and g.shared_weight for g in lin.values())
    qk = next(g for g in layers if g.kind == "attn_qk")
    v = next(g for g in layers if g.kind == "attn_v")
    # the KV cache is the stationary operand: one instance per sequence and KV head
    assert (qk.cout, qk.cin, qk.tokens, qk.instances, qk.weight_bits) == (65, 128, 1, 2 * 32, 8)
    assert (v.cout, v.cin, v.tokens, v.instances) == (128, 65, 1, 64)
    assert not qk.shared_weight and not v.shared_weight
    assert len(layers) == len(owners) and not set(owners) & set(others)
    assert all(tr.ops[i].op_class not in ("gemm", "attention") for i in others)


@pytest.mark.parametrize("system", SYSTEMS)
def test_every_layer_respects_its_roofline_and_weights_are_conserved(system, traced):
    from sim.bitserial import des_run
    from sim.systems.bitserial_run import trace_layers

    sysconf = load_system(system)
    dev = sysconf.bitserial_config()
    tr = traced("llama2-7b", phase="decode", batch=1, seq_len=256, layers=1, device="meta",
                **sysconf.trace_precision("decode", "llama2-7b"))
    layers, owners, _ = trace_layers(tr)
    run = des_run(dev, layers, "decode")
    rows, cols = dev.arrays["decode"].rows, dev.arrays["decode"].cols
    bytes_per_cycle = dev.dram.bw_bits_per_cycle / 8
    for g, lr, i in zip(layers, run.layers, owners):
        macs = g.cout * g.cin * g.tokens * g.instances
        compute_bound = macs * lr.cycles_per_weight / (rows * cols * dev.pe.dot_size)
        assert lr.cycles >= max(compute_bound, lr.dram_bytes / bytes_per_cycle) * (1 - 1e-9), g.name
        op = tr.ops[i]
        if g.kind == "linear":   # the weight matrix crosses DRAM at least once, at the traced width
            assert lr.weight_bytes * lr.weight_fetches >= op.bytes_weight * (1 - 1e-6), g.name
            assert lr.weight_bytes == pytest.approx(op.bytes_weight, rel=1e-3, abs=g.cout)


def test_generate_is_prefill_on_the_decode_array_plus_decode_steps(traced):
    gen, tr = _run("bitmod", traced, task="generate", batch=1, seq_len=32, new_tokens=3, layers=2)
    assert set(gen.by_phase) == {"prefill", "decode"}
    assert gen.cycles == pytest.approx(sum(gen.by_phase.values()))
    assert gen.array == "32x32 prefill, 64x16 decode" and gen.tokens == 3
    assert gen.weight_bits == 3.0625          # one quantized model for the whole task
    out = gen.to_json()
    for key in ("time_s", "cycles", "tokens_per_s", "energy_j", "energy_pj", "by_kind", "weight_bits"):
        assert key in out
    assert out["energy_pj"]["total"] == pytest.approx(sum(v for k, v in out["energy_pj"].items() if k != "total"))
    assert gen.dram_bytes >= 0.9 * tr.total_bytes()


def test_bitmod_beats_its_baselines_on_a_decode_step(traced):
    t = {s: _run(s, traced, task="decode", batch=1, seq_len=256, layers=2)[0] for s in SYSTEMS}
    assert t["bitmod"].cycles < t["olive"].cycles < t["ant"].cycles < t["fp16-accel"].cycles
    assert t["bitmod"].energy_pj["total"] < t["fp16-accel"].energy_pj["total"]


def test_simulate_cli_bitmod_prefill_json():
    r = run_cli("simulate", "--system", "bitmod", "--model", "llama2-7b", "--phase", "prefill", "--seq-len", "32",
                "--layers", "1", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["system"] == "bitmod" and d["array"] == "32x32" and d["weight_bits"] == 4.0625
    assert d["tokens"] == 32 and math.isclose(d["tokens_per_s"], 32 / d["time_s"])
    a = run_cli("simulate", "--system", "bitmod", "--model", "llama2-7b", "--phase", "prefill", "--seq-len", "32",
                "--layers", "1", "--engine", "analytic", "--json")
    da = json.loads(a.stdout)
    assert da["engine"] == "analytic" and abs(da["cycles"] - d["cycles"]) <= 0.05 * da["cycles"]


def test_simulate_cli_bitserial_refuses_npu_only_inputs():
    r = run_cli("simulate", "--system", "bitmod", "--gemm", "4", "4", "4")
    assert_one_line_error(r, "--system", "bitmod")
