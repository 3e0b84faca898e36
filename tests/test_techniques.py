"""The technique framework and the sparsity transforms (closed forms from the model's dimensions)."""

from __future__ import annotations

import math

import pytest

from sim.errors import LlmsimError
from sim.techniques import apply_techniques, available, parse_technique
from sim.trace.resize import gemm_role

LLAMA = dict(phase="decode", batch=4, seq_len=128, layers=2, device="meta")
H, INTER, LAYERS, HEADS, D = 4096, 11008, 2, 32, 128
M = 4   # one new token per sequence


def _by_role(trace, role):
    return [o for o in trace.ops if gemm_role(o) == role]


def _total(ops, attr):
    return sum(getattr(o, attr) * o.repeat for o in ops)


def test_every_issue_technique_is_registered():
    names = set(available())
    assert {"medusa", "swift", "hydragen", "moe", "act-sparsity", "prune", "sparse24", "quant", "infllm"} <= names
    assert "swift-verify" not in names          # internal: not selectable by name


@pytest.mark.parametrize("text,needle", [
    ("nope", "unknown technique 'nope'"), ("prune:heads", "expected key=value"),
    ("prune:width=0.5", "unknown parameter 'width'"), ("prune:heads=half", "heads: expected float"),
    ("prune:heads=0", "heads: expected a fraction in (0, 1]"), ("act-sparsity:frac=1", "frac: expected a fraction"),
])
def test_bad_technique_specs_are_one_line(text, needle):
    with pytest.raises(LlmsimError) as e:
        parse_technique(text)
    assert "\n" not in str(e.value) and str(e.value).startswith("--technique") and needle in str(e.value)


def test_spec_round_trips_and_meta_records_it(traced):
    t = parse_technique("prune:ffn=0.5")
    assert t.spec() == "prune:heads=0.75,ffn=0.5" and parse_technique(t.spec()) == t
    tr = traced("llama2-7b", **LLAMA)
    out = apply_techniques(tr, ["prune:ffn=0.5", "act-sparsity:frac=0.5"])
    assert out.meta["techniques"] == ["prune:heads=0.75,ffn=0.5", "act-sparsity:frac=0.5"]
    assert out.meta["tokens_per_step"] == 1.0


def test_act_sparsity_skips_down_projection_rows(traced):
    tr = traced("llama2-7b", **LLAMA)
    before = [(o.flops, o.bytes) for o in tr.ops]
    out = apply_techniques(tr, ["act-sparsity:frac=0.6"])
    assert [(o.flops, o.bytes) for o in tr.ops] == before          # the input trace is untouched
    kept = math.ceil(INTER * 0.4)                                      # 4404 rows of W_down read
    down = _by_role(out, "ffn_out")
    assert _total(down, "bytes_weight") == LAYERS * kept * H * 2
    assert _total(down, "flops") == LAYERS * 2 * M * kept * H
    assert all(o.extra["K"] == kept for o in down)
    # everything else is as traced
    for a, b in zip(tr.ops, out.ops):
        if gemm_role(a) != "ffn_out":
            assert (a.flops, a.bytes) == (b.flops, b.bytes)


def test_prune_halves_heads_and_ffn_width(traced):
    tr = traced("llama2-7b", **LLAMA)
    out = apply_techniques(tr, ["prune:heads=0.5,ffn=0.5"])
    kh = HEADS // 2
    assert _total(_by_role(out, "qkv"), "bytes_weight") == LAYERS * 3 * H * kh * D * 2
    assert _total(_by_role(out, "attn_out"), "bytes_weight") == LAYERS * kh * D * H * 2
    assert _total(_by_role(out, "ffn_in"), "bytes_weight") == LAYERS * 2 * H * (INTER // 2) * 2
    assert _total(_by_role(out, "ffn_out"), "bytes_weight") == LAYERS * (INTER // 2) * H * 2
    att = [o for o in out.ops if o.op_class == "attention"]
    assert all(o.extra["heads"] == kh and o.extra["kv_heads"] == kh for o in att)
    # decode KV read: batch x layers x kept KV heads x cached tokens x (K + V) x 2 bytes
    assert _total(att, "bytes_kv_read") == 4 * LAYERS * kh * 128 * 2 * D * 2
    # the lm_head and the embedding are unchanged
    for a, b in zip(tr.ops, out.ops):
        if a.layer is None:
            assert (a.flops, a.bytes) == (b.flops, b.bytes)


def test_prune_keeps_gqa_groups(traced):
    tr = traced("mistral-7b", **LLAMA)
    out = apply_techniques(tr, ["prune:heads=0.5,ffn=1"])
    att = next(o for o in out.ops if o.op_class == "attention")
    assert (att.extra["heads"], att.extra["kv_heads"]) == (16, 4)     # 32 / 8 heads -> 16 / 4
    k = next(o for o in out.ops if o.module.endswith("k_proj"))
    assert k.extra["N"] == 4 * D


def test_act_sparsity_on_a_model_without_ffn_down_is_an_error(traced):
    tr = traced("llama2-7b", **LLAMA)
    no_ffn = type(tr)(meta=tr.meta, ops=[o for o in tr.ops if gemm_role(o) != "ffn_out"])
    with pytest.raises(LlmsimError, match="no FFN down projection"):
        apply_techniques(no_ffn, ["act-sparsity"])


def test_cli_technique_flag_transforms_the_trace_and_reports_it():
    import json

    from tests.helpers import assert_one_line_error, run_cli

    base = json.loads(run_cli("trace", "-m", "llama2-7b", "--layers", "1", "-b", "4", "-l", "64", "--json").stdout)
    r = run_cli("trace", "-m", "llama2-7b", "--layers", "1", "-b", "4", "-l", "64", "--technique", "prune:heads=0.5",
                "--technique", "act-sparsity:frac=0.5", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["techniques"] == ["prune:heads=0.5,ffn=0.75", "act-sparsity:frac=0.5"] and d["tokens_per_step"] == 1.0
    assert d["flops"] < base["flops"] and d["bytes"] < base["bytes"]
    assert_one_line_error(run_cli("roofline", "-m", "llama2-7b", "--layers", "1", "--hw", "h100",
                                  "--technique", "prune:heads=2"), "--technique prune", "heads")
    assert_one_line_error(run_cli("simulate", "--system", "neupims", "-m", "gpt3-7b", "--tp", "4", "--batch", "4",
                                  "--layers", "1", "--technique", "swift:draft=0"), "--technique swift", "draft")
    ok = run_cli("simulate", "--system", "neupims", "-m", "gpt3-7b", "--tp", "4", "--batch", "4", "--layers", "1",
                 "--technique", "prune", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["meta"]["techniques"] == ["prune:heads=0.75,ffn=0.75"]


def test_techniques_command_writes_table_heatmap_and_commentary(tmp_path):
    import json

    from tests.helpers import run_cli

    out = tmp_path / "cmp"
    r = run_cli("techniques", "-m", "llama2-7b", "--systems", "npu-only,neupims,bitmod", "--batch", "1,8",
                "--seq-len", "128", "--layers", "1", "--technique", "prune:heads=0.5,ffn=0.5",
                "--technique", "act-sparsity", "--technique", "no-such-thing", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cells = d["cells"]
    assert len(cells) == 3 * 3 * 2                      # techniques x systems x batches
    ok = [c for c in cells if c["status"] == "ok"]
    assert {c["system"] for c in ok} == {"npu-only", "neupims", "bitmod"}
    assert all(c["speedup"] > 1 for c in ok if c["technique"].startswith("prune"))   # half the heads and FFN
    assert all(c["status"] == "n/a" and "unknown technique" in c["note"] for c in cells
               if c["technique"] == "no-such-thing")
    for f in ("table.csv", "table.md", "heatmap.png", "commentary.md"):
        assert (out / f).stat().st_size > 0
    assert "prune" in (out / "commentary.md").read_text()


def test_techniques_in_decode_iterations_on_pim_systems():
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import uniform_batch

    sys_ = load_system("neupims")
    batch = uniform_batch(8, 2048)
    run = lambda *t: decode_iteration(sys_, "llama2-7b", batch, layers=1, sub_batch=False, techniques=t)  # noqa: E731
    base = run()
    # InfLLM: every request's PIM attention covers the budget, not its 2048 tokens
    inf = run("infllm:budget=1024")
    assert inf.meta["per_layer"]["mha_pim"] < 0.6 * base.meta["per_layer"]["mha_pim"]
    # Hydragen: the shared prefix leaves PIM (per-request suffixes), the layer count stays one
    hyd = run("hydragen:prefix=1024")
    assert hyd.layers == base.layers == 1
    assert hyd.meta["per_layer"]["mha_pim"] < 0.6 * base.meta["per_layer"]["mha_pim"]
    # pruning half the heads halves the PIM attention work
    pr = run("prune:heads=0.5,ffn=1")
    assert pr.meta["per_layer"]["mha_pim"] == pytest.approx(base.meta["per_layer"]["mha_pim"] / 2, rel=0.05)
    # Medusa: throughput counts the expected tokens per step
    med = run("medusa:heads=4,tree=8,accept=0.6")
    assert med.tokens_per_step == pytest.approx((1 - 0.6 ** 5) / 0.4)
    assert med.tokens_per_s == pytest.approx(8 * med.tokens_per_step / med.time_s)
    # SWIFT: 4 draft passes through half the layers, then one verification over 5 tokens
    sw = run("swift:skip=0.5,draft=4,accept=0.7")
    assert sw.tokens_per_step == pytest.approx((1 - 0.7 ** 5) / 0.3)
    info = sw.meta["swift"]
    assert info["draft_passes"] == 4 and info["draft_layers"] == 1   # one layer: round(0.5 x 1) = 0 skipped
    assert sw.time_s == pytest.approx(4 * info["draft_pass_s"] + info["verification_s"])


def test_review_fixes_verification_lengths_infllm_per_request_swift_everywhere(traced):
    import numpy as np

    from sim.systems.config import load_system
    from sim.systems.decode import attention_ops, decode_iteration, technique_lengths
    from sim.systems.requests import Batch, uniform_batch

    # a verification step's per-length attention reproduces the traced op (tree pairs, T - 1 more keys)
    tr = apply_techniques(traced("llama2-7b", phase="decode", batch=2, seq_len=256, layers=1, device="meta"),
                          ["medusa:tree=64"])
    att = next(o for o in tr.ops if o.op_class == "attention")
    ops = attention_ops(att, technique_lengths(att, np.array([257, 257])))
    assert sum(o.bytes_kv_read for o in ops) == att.bytes_kv_read and sum(o.flops for o in ops) == att.flops
    # InfLLM caps each request, even when the batch's mean context is within the budget
    gpu = load_system("gpu-only")
    from sim.gpu.iteration import gpu_decode_iteration

    mixed = Batch(np.array([1000, 1000, 1000, 8000]), None, "test")
    plain = gpu_decode_iteration(gpu, "h100", "llama2-7b", mixed, layers=1)
    capped = gpu_decode_iteration(gpu, "h100", "llama2-7b", mixed, layers=1, techniques=("infllm:budget=4096",))
    assert capped.time_s < plain.time_s
    # SWIFT on a GPU: drafts plus verification, the layer count stays the model's
    sw = gpu_decode_iteration(gpu, "h100", "llama2-7b", uniform_batch(4, 512), layers=2,
                              techniques=("swift:skip=0.5,draft=4",))
    assert sw.layers == 2 and sw.meta["swift"]["draft_passes"] == 4
    # SWIFT then Hydragen: the verification keeps its place before the prefix split
    r = decode_iteration(load_system("npu-only"), "llama2-7b", uniform_batch(4, 512), layers=1, sub_batch=False,
                         techniques=("swift:draft=2", "hydragen:prefix=128"))
    assert r.tokens_per_step == pytest.approx((1 - 0.7 ** 3) / 0.3)
    with pytest.raises(LlmsimError, match="before hydragen"):
        decode_iteration(load_system("npu-only"), "llama2-7b", uniform_batch(4, 512), layers=1, sub_batch=False,
                         techniques=("hydragen:prefix=128", "swift:draft=2"))


def test_sparse24_then_quant_keeps_the_index_bits_and_prune_refuses_moe_ffn(traced):
    tr = traced("llama2-7b", phase="decode", batch=2, seq_len=64, layers=1, device="meta")
    a, b = apply_techniques(tr, ["quant:w=4", "sparse24"]), apply_techniques(tr, ["sparse24", "quant:w=4"])
    qa, qb = (next(o for o in t.ops if o.module.endswith("q_proj")) for t in (a, b))
    assert qa.bytes_weight == qb.bytes_weight == 4096 * 4096 * 4 / 8 * 3 / 4   # half the 4-bit weights + 1 bit
    mix = traced("mixtral-8x7b", phase="decode", batch=4, seq_len=64, layers=1, device="meta")
    with pytest.raises(LlmsimError, match="MoE experts"):
        apply_techniques(mix, ["prune:ffn=0.5"])
    assert apply_techniques(mix, ["prune:heads=0.5,ffn=1"]).total_flops() < mix.total_flops()
