"""`llmsim trace` and `llmsim roofline` work for every zoo model in each phase it has."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sim.cli import cli
from sim.config import list_models, load_model_spec

CASES = [(m, p) for m in list_models() for p in load_model_spec(m).phases]


def invoke(*args: str) -> dict:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_zoo_is_complete():
    want = {"llama2-7b", "llama2-13b", "llama2-70b", "llama3-8b", "mistral-7b", "mixtral-8x7b", "opt-1.3b",
            "phi-2", "yi-6b", "gpt3-7b", "gpt3-13b", "gpt3-30b", "gpt3-175b", "minilm"}
    assert want <= set(list_models())


@pytest.mark.parametrize("model,phase", CASES)
def test_trace_then_roofline(tmp_path, model, phase):
    out = tmp_path / f"{model}_{phase}.json"
    s = invoke("trace", "--model", model, "--phase", phase, "--batch", "2", "--seq-len", "16", "--layers", "1",
               "-o", str(out), "--json")
    assert s["ops"] > 0 and s["flops"] > 0
    assert s["bytes"] == pytest.approx(sum(s["bytes_by_role"].values()))
    assert set(s["bytes_by_role"]) == {"weight", "activation", "kv_read", "kv_write"}
    assert isinstance(s["ops"], int)
    r = invoke("roofline", "--trace", str(out), "--hw", "h100", "--hw", "neupims-npu", "--json")
    for dev in ("h100", "neupims-npu"):
        assert r["devices"][dev]["time_s"] > 0


def test_generate_has_both_phases(tmp_path):
    s = invoke("trace", "--model", "llama2-7b", "--phase", "generate", "--batch", "2", "--seq-len", "16",
               "--new-tokens", "2", "--layers", "1", "-o", str(tmp_path / "g.json"), "--json")
    assert set(s["by_phase"]) == {"prefill", "decode"}


def test_full_size_trace_json_keys(tmp_path):
    s = invoke("trace", "--model", "llama2-70b", "--phase", "decode", "--batch", "2", "--seq-len", "64",
               "-o", str(tmp_path / "t.parquet"), "--json")
    for key in ("flops", "bytes", "bytes_by_role", "ops"):
        assert key in s
    # 80 identical layers are stored once each op with repeat 80, but counted 80 times
    assert s["records"] < s["ops"]
    r = invoke("roofline", "--trace", str(tmp_path / "t.parquet"), "--hw", "h200", "--json")
    assert r["devices"]["h200"]["mode"] == "measured"


def test_tensor_parallel_shards_and_adds_allreduce(tmp_path):
    from sim.trace import capture

    full = capture("llama2-7b", phase="decode", batch=2, seq_len=64, layers=2)
    tp4 = capture("llama2-7b", phase="decode", batch=2, seq_len=64, layers=2, tp=4)
    gemm = lambda t: sum(o.flops * o.repeat for o in t.ops if o.op_class == "gemm")  # noqa: E731
    assert gemm(tp4) == pytest.approx(gemm(full) / 4)
    assert tp4.bytes_by_role()["kv_read"] == pytest.approx(full.bytes_by_role()["kv_read"] / 4)
    ar = [o for o in tp4.ops if o.op_class == "allreduce"]
    assert sum(o.repeat for o in ar) == 2 * 2  # after o_proj and down_proj, per layer
    size = 2 * 1 * 4096 * 2  # B x 1 token x hidden x fp16 bytes
    assert ar[0].extra["comm_bytes"] == pytest.approx(2 * 3 / 4 * size)
    # GPT-style models shard by module surgery: NeuPIMs' GPT-3 7B at tp 4 keeps 8 of 32 heads
    gpt = capture("gpt3-7b", phase="decode", batch=2, seq_len=64, layers=1, tp=4)
    attn = next(o for o in gpt.ops if o.op_class == "attention")
    assert attn.extra["heads"] == 8 and attn.extra["head_dim"] == 128
    up = next(o for o in gpt.ops if o.module.endswith("mlp.c_fc"))
    assert up.extra["N"] == 4 * 4096 // 4
    with pytest.raises(Exception, match="no tensor-parallel"):
        capture("minilm", phase="prefill", batch=1, seq_len=8, tp=2)
