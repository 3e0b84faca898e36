"""Inputs a demanding user tries: each is refused in one line, or handled as documented."""

from __future__ import annotations

import json

import pytest

from sim.config import load_hw, project_root
from sim.errors import LlmsimError
from sim.roofline import analyze_many, single_attention
from sim.trace import capture
from tests.helpers import assert_one_line_error, run_cli

MEM = load_hw("hbm2-neupims")


def test_tp_beyond_kv_heads_keeps_one_kv_head_per_device():
    tr = capture("llama2-70b", phase="decode", batch=1, seq_len=128, layers=1, tp=16)
    attn = next(o for o in tr.ops if o.op_class == "attention")
    assert attn.extra["heads"] == 4 and attn.extra["kv_heads"] == 1
    assert tr.bytes_by_role()["kv_read"] == 1 * 128 * 2 * 1 * 128 * 2


def test_set_on_a_measured_device_takes_effect():
    c = load_hw("h200", ["hbm_bw_gbps=9600", "compute.matmul_tflops.bf16=2000"]).ceilings()
    assert c.mem_bw == 9600e9 and c.matmul_peak("bf16") == 2000e12
    assert c.matmul_peak("fp16") == 754e12  # untouched measurement stays


def test_same_device_name_twice_is_told_apart(tmp_path, traced):
    (tmp_path / "base.yaml").write_text((project_root() / "hw_configs/gpu/h100.yaml").read_text())
    variant = tmp_path / "fast-h200.yaml"
    variant.write_text("extends: base.yaml\nhbm_bw_gbps: 6000\n")
    tr = traced("llama2-7b", phase="decode", batch=1, seq_len=16, layers=1)
    rep = analyze_many(tr, ["h100", str(variant)])
    assert rep.devices == ["h100", "h100@fast-h200"]
    totals = rep.totals().set_index("device").time_s
    assert totals["h100@fast-h200"] < totals["h100"]
    with pytest.raises(LlmsimError, match="given twice"):
        analyze_many(tr, ["h100", "h100"])


def test_memory_geometry_and_timing_keys_are_checked(tmp_path):
    text = (project_root() / "hw_configs/memory/hbm2-neupims.yaml").read_text()
    bad = tmp_path / "m.yaml"
    bad.write_text(text.replace("capacity_gb: 32", "capacity_gb: 64"))
    assert_one_line_error(run_cli("hw", str(bad)), "capacity_gb", "organisation", "= 32 GiB")
    bad.write_text(text.replace("  nRCDRD: 14", "  nRCDD: 14"))
    assert_one_line_error(run_cli("hw", str(bad)), "timing_cycles", "unknown timing 'nRCDD'")
    bad.write_text(text.replace("  nRAS: 34", "  nRAS: 10"))
    assert_one_line_error(run_cli("hw", str(bad)), "timing_cycles", "nRAS (10) must be >= nRCDRD (14)")
    bad.write_text(text.replace("address_mapping: rorabgbachco", "address_mapping: rorabgbachch"))
    assert_one_line_error(run_cli("hw", str(bad)), "address_mapping", "repeats the field 'ch'")
    bad.write_text(text.replace("  bank: 4\n", "  bank: 3\n").replace("capacity_gb: 32", "capacity_gb: 24"))
    assert_one_line_error(run_cli("hw", str(bad)), "address_mapping", "cannot address 3")
    assert MEM.peak_bw_bytes_per_s == pytest.approx(1024e9)


def test_infinite_bandwidth_is_refused():
    assert_one_line_error(run_cli("roofline", "--gemm", "1", "2", "3", "--hw", "h100", "--set", "hbm_bw_gbps=.inf"),
                          "hbm_bw_gbps")


@pytest.mark.parametrize("setting,needle", [
    ("config.bogus_key=1", "unknown key"),
    ("config.num_key_value_heads=5", "divisor"),
    ("config.hidden_size=-5", "positive"),
])
def test_bad_model_fields_are_one_line(setting, needle):
    proc = run_cli("trace", "--model", "llama2-7b", "--layers", "1", "--set", setting, "-o", "/tmp/x.json")
    assert_one_line_error(proc, "llama2-7b", needle)


def test_learned_positions_and_layers_of_packaged_model():
    assert_one_line_error(run_cli("trace", "--model", "minilm", "--seq-len", "1000"), "512", "1000")
    assert_one_line_error(run_cli("trace", "--model", "minilm", "--layers", "0"), "--layers", "1..6")


def test_quantization_flag_combinations():
    with pytest.raises(LlmsimError, match="--group-size"):
        capture("llama2-7b", phase="decode", batch=1, seq_len=8, layers=1, group_size=128)
    with pytest.raises(LlmsimError, match="--group-meta-bits"):
        capture("llama2-7b", phase="decode", batch=1, seq_len=8, layers=1, weight_bits=4, group_size=128,
                group_meta_bits=-5)


def test_compute_dtype_needs_both_operands_quantized(traced):
    act_only = traced("llama2-7b", phase="decode", batch=1, seq_len=16, layers=1, act_bits=8)
    assert {o.compute_dtype for o in act_only.ops if o.op_class in ("gemm", "attention")} == {"fp16"}
    w8a8 = traced("llama2-7b", phase="decode", batch=1, seq_len=16, layers=1, act_bits=8, weight_bits=8,
                  kv_bits=8)
    assert {o.compute_dtype for o in w8a8.ops if o.op_class in ("gemm", "attention")} == {"int8"}


def test_trace_file_field_types(tmp_path, traced):
    from sim.trace import save_trace

    good = save_trace(traced("llama2-7b", phase="decode", batch=1, seq_len=16, layers=1), tmp_path / "t.json")
    doc = json.loads(good.read_text())
    cases = {"layer": "abc", "flops": True, "name": 5, "extra": [1], "op_class": "bogus", "phase": "train",
             "compute_dtype": "weird"}
    for key, value in cases.items():
        bad = json.loads(json.dumps(doc))
        bad["ops"][0][key] = value
        path = tmp_path / f"bad_{key}.json"
        path.write_text(json.dumps(bad))
        assert_one_line_error(run_cli("roofline", "--trace", str(path), "--hw", "h100", "--out", str(tmp_path / "r")),
                              f"ops[0].{key}")
    assert not (tmp_path / "r").exists()  # nothing half-written
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**doc, "ops": []}))
    assert_one_line_error(run_cli("roofline", "--trace", str(empty), "--hw", "h100"), "at least one op")


def test_output_places_are_checked_before_work(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(run_cli("trace", "--model", "llama2-7b", "-o", str(tmp_path / "t.txt")), ".json or .parquet")
    assert_one_line_error(run_cli("trace", "--model", "llama2-7b", "-o", f"{afile}/t.json"), str(afile))
    assert_one_line_error(run_cli("demo", "--set", f"out={afile}"), "expected a folder")
    proc = run_cli("demo", "--set", "hw=[h100,nosuch]", "--set", f"out={tmp_path / 'demo'}")
    assert_one_line_error(proc, "nosuch")
    assert not (tmp_path / "demo").exists()


def test_single_attention_kv_heads_checked():
    for bad in (0, 5, 64):
        with pytest.raises(LlmsimError, match="--kv-heads"):
            single_attention(1, 32, 128, 128, "decode", "h200", kv_heads=bad)


def test_default_phase_follows_the_model(tmp_path):
    proc = run_cli("trace", "--model", "minilm", "--batch", "1", "--seq-len", "8", "-o", str(tmp_path / "m.json"),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["phase"] == "prefill"


def test_expanded_keeps_execution_order(traced):
    tr = traced("llama2-7b", phase="generate", batch=1, seq_len=8, new_tokens=2, layers=2)
    seq = [(o.phase, o.step, o.layer) for o in tr.expanded() if o.layer is not None]
    firsts = []
    for key in seq:
        if not firsts or firsts[-1] != key:
            firsts.append(key)
    assert firsts == [("prefill", 0, 0), ("prefill", 0, 1), ("decode", 1, 0), ("decode", 1, 1),
                      ("decode", 2, 0), ("decode", 2, 1)]


@pytest.mark.parametrize("rule", ["down_proj", "=4", "*.down_proj=four", "*.down_proj=0"])
def test_bad_weight_bits_rule_is_one_line(rule):
    r = run_cli("trace", "-m", "llama2-7b", "--layers", "1", "--weight-bits-rule", rule, "--json")
    assert_one_line_error(r, "--weight-bits-rule")
