"""Every bad input gets one line on stderr naming file, key, expected and found; exit 2; no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.config import load_hw
from sim.errors import LlmsimError
from tests.helpers import assert_one_line_error, run_cli

REPO = Path(__file__).resolve().parent.parent
GOOD_GPU = (REPO / "hw_configs/gpu/h100.yaml").read_text()


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_missing_file(tmp_path):
    proc = run_cli("hw", str(tmp_path / "nope.yaml"))
    assert_one_line_error(proc, "nope.yaml", "not found")


def test_unknown_bundled_name():
    proc = run_cli("roofline", "--gemm", "1", "2", "3", "--hw", "h900")
    assert_one_line_error(proc, "h900", "expected one of", "h200")


def test_yaml_syntax_error(tmp_path):
    p = write(tmp_path, "bad.yaml", "kind: gpu\nname: [unclosed\n")
    assert_one_line_error(run_cli("hw", str(p)), str(p), "YAML syntax error", "line")


def test_unknown_key(tmp_path):
    p = write(tmp_path, "gpu.yaml", GOOD_GPU + "\nhbm_bandwith_gbps: 100\n")
    assert_one_line_error(run_cli("hw", str(p)), str(p), "hbm_bandwith_gbps", "unknown key")


def test_unknown_nested_key(tmp_path):
    p = write(tmp_path, "gpu.yaml", GOOD_GPU.replace("matmul_tflops:", "matmul_tflops:\n    fp7: 3"))
    line = assert_one_line_error(run_cli("hw", str(p)), str(p), "compute.matmul_tflops")
    assert "fp7" in line


def test_wrong_type(tmp_path):
    p = write(tmp_path, "gpu.yaml", GOOD_GPU.replace("sm_count: 132", "sm_count: many"))
    assert_one_line_error(run_cli("hw", str(p)), str(p), "sm_count", "'many'")


@pytest.mark.parametrize("value", ["0", "-3350"])
def test_zero_or_negative(tmp_path, value):
    p = write(tmp_path, "gpu.yaml", GOOD_GPU.replace("hbm_bw_gbps: 3350", f"hbm_bw_gbps: {value}"))
    assert_one_line_error(run_cli("hw", str(p)), str(p), "hbm_bw_gbps", "greater than 0", value)


def test_missing_required_key(tmp_path):
    p = write(tmp_path, "gpu.yaml", GOOD_GPU.replace("hbm_capacity_gb: 80", ""))
    assert_one_line_error(run_cli("hw", str(p)), "hbm_capacity_gb", "required")


def test_wrong_kind(tmp_path):
    p = write(tmp_path, "x.yaml", "kind: tpu\nname: x\n")
    assert_one_line_error(run_cli("hw", str(p)), "kind", "gpu, npu", "'tpu'")


def test_extends_missing_parent(tmp_path):
    p = write(tmp_path, "child.yaml", "extends: parent.yaml\nname: c\n")
    assert_one_line_error(run_cli("hw", str(p)), str(p), "extends", "parent.yaml", "not found")


def test_extends_cycle(tmp_path):
    write(tmp_path, "a.yaml", "extends: b.yaml\nname: a\n")
    b = write(tmp_path, "b.yaml", "extends: a.yaml\nname: b\n")
    assert_one_line_error(run_cli("hw", str(b)), "extends", "cycle")


def test_extends_and_set_override(tmp_path):
    write(tmp_path, "base.yaml", GOOD_GPU)
    child = write(tmp_path, "child.yaml", "extends: base.yaml\nname: h100-fast\nhbm_bw_gbps: 5000\n")
    cfg = load_hw(str(child), ["compute.matmul_tflops.bf16=1200"])
    assert cfg.name == "h100-fast" and cfg.hbm_bw_gbps == 5000 and cfg.sm_count == 132
    assert cfg.compute.matmul_tflops["bf16"] == 1200
    assert cfg.compute.matmul_tflops["fp16"] == 989.4


def test_set_override_error_is_one_line():
    proc = run_cli("roofline", "--gemm", "8", "8", "8", "--hw", "h100", "--set", "hbm_bw_gbps=-1")
    assert_one_line_error(proc, "h100.yaml", "hbm_bw_gbps")
    proc = run_cli("roofline", "--gemm", "8", "8", "8", "--hw", "h100", "--set", "nonsense")
    assert_one_line_error(proc, "--set", "key.path=value")


def test_truncated_trace(tmp_path):
    from sim.trace.fileio import save_trace
    from sim.trace.schema import Op, Trace

    tr = Trace(meta={"model": "x"}, ops=[Op(name="aten.mm.default", op_class="gemm", module="m", layer=0,
                                              phase="decode", flops=8.0, bytes_weight=4.0)])
    good = save_trace(tr, tmp_path / "t.json")
    bad = tmp_path / "trunc.json"
    bad.write_text(good.read_text()[:-20])
    assert_one_line_error(run_cli("roofline", "--trace", str(bad), "--hw", "h100"), str(bad), "truncated")
    wrong = tmp_path / "v9.json"
    doc = json.loads(good.read_text())
    doc["version"] = 9
    wrong.write_text(json.dumps(doc))
    assert_one_line_error(run_cli("roofline", "--trace", str(wrong), "--hw", "h100"), "version", "expected 1", "9")
    pq = save_trace(tr, tmp_path / "t.parquet")
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(pq.read_bytes()[:100])
    assert_one_line_error(run_cli("roofline", "--trace", str(cut), "--hw", "h100"), str(cut), "Parquet")
    neg = tmp_path / "neg.json"
    doc = json.loads(good.read_text())
    doc["ops"][0]["flops"] = -1
    neg.write_text(json.dumps(doc))
    assert_one_line_error(run_cli("roofline", "--trace", str(neg), "--hw", "h100"), "ops[0].flops", "non-negative")


def test_memory_config_has_no_roof():
    with pytest.raises(LlmsimError, match="no compute roof"):
        load_hw("hbm2-neupims").ceilings()


def test_bad_flags_are_one_line():
    assert_one_line_error(run_cli("trace", "--model", "minilm", "--phase", "decode"), "minilm", "decode", "encoder")
    assert_one_line_error(run_cli("trace", "--model", "llama2-7b", "--batch", "0"), "--batch", "positive")
    assert_one_line_error(run_cli("trace", "--model", "gpt9"), "gpt9", "expected one of")
    assert_one_line_error(run_cli("roofline", "--gemm", "1", "2"), "--gemm")


def test_all_bundled_hw_configs_validate():
    from sim.config.paths import project_root

    from sim.systems.config import load_system

    for p in (project_root() / "hw_configs").rglob("*.yaml"):
        cfg = load_system(str(p)) if p.parent.name == "systems" else load_hw(str(p))
        assert cfg.source, p
