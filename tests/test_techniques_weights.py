"""Weight-side techniques as trace transforms: quant, sparse24, moe. Closed forms from model dimensions.

Llama-2-7B: H = 4096, FFN 11008, 32 heads of 128, fp16. Mixtral-8x7B: H = 4096, FFN 14336,
8 experts, top-2, 8 KV heads, bf16. Meta traces, 1-2 layers.
"""

from __future__ import annotations

import copy

import pytest

from sim.config.hardware import hw_ceilings
from sim.errors import LlmsimError
from sim.roofline.analyzer import analyze, op_row
from sim.roofline.ceilings import Ceilings
from sim.techniques.base import apply_techniques, parse_technique
from sim.techniques.moe import zipf_counts
from sim.trace.resize import gemm_role

H, F7, HEADS, D = 4096, 11008, 32, 128
MX_F, MX_E = 14336, 8
DEC = dict(phase="decode", batch=2, seq_len=16, layers=1, device="meta")
MX = dict(phase="decode", batch=8, seq_len=64, layers=2, device="meta")


def by_module(trace, suffix):
    return [op for op in trace.ops if op.module.endswith(suffix) and op.op_class == "gemm"]


def snapshot(trace):
    return copy.deepcopy((trace.meta, [op.to_dict() for op in trace.ops]))


FIELDS = ("bytes_weight", "bytes_activation", "bytes_kv_read", "bytes_kv_write", "flops", "compute_dtype",
          "weight_bits", "kv_bits", "input_shapes", "output_shapes")


def assert_same_ops(a, b):
    assert len(a.ops) == len(b.ops)
    for x, y in zip(a.ops, b.ops):
        for f in FIELDS:
            assert getattr(x, f) == getattr(y, f), (f, x.name, x.module)


# ---------------------------------------------------------------------------------------------- quant

@pytest.mark.parametrize("spec, kw", [
    ("quant:w=4", dict(weight_bits=4)),
    ("quant:preset=bitmod3", dict(weight_bits=3, group_size=128, group_meta_bits=8)),
    ("quant:preset=w8a8", dict(weight_bits=8, act_bits=8)),
    ("quant:preset=kv4", dict(kv_bits=4)),
    ("quant:w=4,a=4,kv=4", dict(weight_bits=4, act_bits=4, kv_bits=4)),
])
def test_quant_equals_capture_op_by_op(traced, spec, kw):
    base = traced("llama2-7b", **DEC)
    assert_same_ops(apply_techniques(base, [spec]), traced("llama2-7b", **DEC, **kw))


def test_quant_equals_capture_with_biases_and_moe(traced):
    # OPT: linear layers with biases (1-D weights keep fp16); Mixtral: router, experts, fp32 casts
    for model, kw in (("opt-1.3b", dict(weight_bits=8, act_bits=8, kv_bits=8)),
                      ("mixtral-8x7b", dict(weight_bits=4, act_bits=8, kv_bits=8))):
        base = traced(model, **DEC)
        assert_same_ops(apply_techniques(base, ["quant:w=%g,a=8,kv=8" % kw["weight_bits"]]),
                        traced(model, **DEC, **kw))


def test_quant_closed_form_llama(traced):
    base = traced("llama2-7b", **DEC)
    before = snapshot(base)
    w4 = apply_techniques(base, ["quant:w=4"])
    (q,), (down,) = by_module(w4, "q_proj"), by_module(w4, "down_proj")
    assert q.bytes_weight == H * H * 4 / 8 and q.weight_bits == 4
    assert down.bytes_weight == F7 * H / 2
    assert q.bytes_activation == 2 * (H + H) * 2 and q.compute_dtype == "fp16"   # activations untouched
    norm_gain = [op for op in w4.ops if op.module.endswith("input_layernorm") and op.bytes_weight]
    assert norm_gain and all(op.bytes_weight == H * 2 for op in norm_gain)      # 1-D weight keeps fp16
    g = apply_techniques(base, ["quant:preset=bitmod4"])
    assert by_module(g, "q_proj")[0].bytes_weight == H * H * (4 + 8 / 128) / 8
    w8a8 = apply_techniques(base, ["quant:preset=w8a8"])
    (q8,) = by_module(w8a8, "q_proj")
    assert q8.compute_dtype == "int8" and q8.bytes_weight == H * H and q8.bytes_activation == 2 * (H + H)
    att = next(op for op in w8a8.ops if op.op_class == "attention")
    assert att.compute_dtype == "fp16"        # the KV cache stays 16-bit: not both operands <= 8 bits
    fp8 = apply_techniques(base, ["quant:preset=fp8"])
    assert {op.compute_dtype for op in fp8.ops if op.op_class in ("gemm", "attention")} == {"fp8"}
    kv4 = apply_techniques(base, ["quant:preset=kv4"])
    a0 = next(op for op in base.ops if op.op_class == "attention")
    a4 = next(op for op in kv4.ops if op.op_class == "attention")
    assert a0.bytes_kv_read == 2 * 32 * 16 * (D + D) * 2          # B x kv heads x cached x (d + dv) x 2 B
    assert a4.bytes_kv_read == a0.bytes_kv_read / 4 and a4.kv_bits == 4
    assert kv4.bytes_by_role()["kv_write"] == base.bytes_by_role()["kv_write"] / 4
    assert kv4.bytes_by_role()["weight"] == base.bytes_by_role()["weight"]
    assert kv4.meta["precision"]["kv_bits"] == 4 and w4.meta["precision"]["weight_bits_effective"] == 4
    assert snapshot(base) == before


def test_quant_parse_errors():
    for text, msg in (("quant:bits=4", "unknown parameter 'bits'"), ("quant:w=four", "expected float"),
                      ("quant:preset=w2a2", "preset"), ("quant:w=40", "bit width"),
                      ("quant", "nothing to do"), ("quant:w=4,meta=8", "group size"),
                      ("quant:w=4,fmt=bf", "fmt")):
        with pytest.raises(LlmsimError, match=msg) as e:
            parse_technique(text)
        assert "\n" not in str(e.value) and str(e.value).startswith("--technique quant")


# ------------------------------------------------------------------------------------------- sparse24

def test_sparse24_closed_form_and_peaks(traced):
    base = traced("llama2-7b", **DEC)
    before = snapshot(base)
    sp = apply_techniques(base, ["sparse24"])
    (q,), (up,) = by_module(sp, "q_proj"), by_module(sp, "up_proj")
    # half the weights + 2 index bits per kept weight: bytes x (1/2 + 2 / (2 x 16))
    assert q.bytes_weight == H * H * 2 * (0.5 + 2 / 32) and q.extra["sparse24"] is True
    assert up.bytes_weight == H * F7 * (8 + 1) / 8
    assert q.flops == by_module(base, "q_proj")[0].flops == 2 * 2 * H * H      # useful FLOPs unchanged
    assert sum(op.extra.get("sparse24", False) for op in sp.ops) == 7     # q k v o gate up down
    assert not any(op.extra.get("sparse24") for op in sp.ops if op.op_class != "gemm")
    # on top of W4: 4-bit kept values + 2 bits each -> 3 bits per dense weight
    w4s = apply_techniques(base, ["quant:w=4", "sparse24"])
    assert by_module(w4s, "q_proj")[0].bytes_weight == H * H * 3 / 8
    # roofline: 2x the dense bf16/fp16 peak on H100; a device without a sparse path: dense peak
    h100 = hw_ceilings("h100")
    assert h100.sparse_24_speedup == 2 and hw_ceilings("a100").sparse_24_speedup == 2
    assert hw_ceilings("h200").sparse_24_speedup == 2
    big = dict(q.extra, M=8192)
    op = type(q)(**{**q.to_dict(), "flops": 2 * 8192 * H * H, "extra": big})
    dense_op = type(q)(**{**op.to_dict(), "extra": dict(big, sparse24=False)})
    assert op_row(op, h100)["peak_flops"] == 2 * 989.4e12
    assert op_row(dense_op, h100)["peak_flops"] == 989.4e12
    plain = Ceilings("plain", "datasheet", {"fp16": 100e12}, {}, 1e12)
    assert op_row(op, plain)["peak_flops"] == 100e12
    assert h100.sparse_matmul_peak("fp32") == h100.matmul_peak("fp32")     # CUDA-core path: no sparsity
    rep = analyze(sp, "h100", measured=False)
    assert rep.table.time_s.gt(0).any()
    assert snapshot(base) == before


def test_sparse24_lm_head_flag_and_errors(traced):
    # layers=1 traces stop before the lm_head: add one (a copy of q_proj under that name)
    base = traced("llama2-7b", **DEC)
    q0 = by_module(base, "q_proj")[0]
    head = type(q0)(**{**q0.to_dict(), "module": "lm_head", "layer": None})
    with_head = type(base)(meta=base.meta, ops=[*base.ops, head])
    assert gemm_role(head) == "lm_head"
    assert not apply_techniques(with_head, ["sparse24"]).ops[-1].extra.get("sparse24")
    sp = apply_techniques(with_head, ["sparse24:lm_head=true,meta_bits=4"])
    assert sp.ops[-1].extra["sparse24"] and sp.ops[-1].bytes_weight == H * H * 2 * (0.5 + 4 / 32)
    (q,) = by_module(sp, "q_proj")
    assert q.bytes_weight == H * H * 2 * (0.5 + 4 / 32)
    assert not any(op.extra.get("sparse24") for op in apply_techniques(traced("mixtral-8x7b", **MX), ["sparse24"]).ops
                   if gemm_role(op) == "router")
    with pytest.raises(LlmsimError, match="meta_bits") as e:
        parse_technique("sparse24:meta_bits=-1")
    assert "\n" not in str(e.value)
    with pytest.raises(LlmsimError, match="unknown parameter"):
        parse_technique("sparse24:ratio=0.5")


# ------------------------------------------------------------------------------------------------ moe

def expert_gemms(trace, layer=0):
    return [op for op in trace.ops if gemm_role(op) == "experts" and op.layer == layer]


def test_moe_uniform_matches_the_tracer(traced):
    base = traced("mixtral-8x7b", **MX)
    before = snapshot(base)
    out = apply_techniques(base, ["moe"])
    m = out.meta["moe"]
    assert m["top_k"] == 2 and m["experts"] == MX_E
    assert m["layers"][0]["counts"] == [2] * 8 and m["imbalance"] == 1.0 and m["dropped"] == 0
    assert out.total_flops() == base.total_flops() and out.bytes_by_role() == base.bytes_by_role()
    assert snapshot(base) == before


def test_moe_zipf_capacity_closed_form(traced):
    base = traced("mixtral-8x7b", **MX)
    before = snapshot(base)
    # 8 tokens x top-2 = 16 slots; rank^-1.2 shares x 16 = 6.86 2.98 1.84 1.30 0.99 0.80 0.66 0.56,
    # rounded by largest remainder (floors 6 2 1 1 0 0 0 0, six more to .99 .98 .86 .84 .80 .66)
    assert zipf_counts(16, 8, 8, 1.2) == [7, 3, 2, 1, 1, 1, 1, 0]
    z = apply_techniques(base, ["moe:dist=zipf,skew=1.2"])
    lay = z.meta["moe"]["layers"][0]
    assert lay["counts"] == [7, 3, 2, 1, 1, 1, 1, 0] and lay["imbalance"] == 7 / 2 and lay["repeat"] == 2
    # capacity 1.25: ceil(1.25 x 16 / 8) = 3 tokens per expert, 4 + 0 = 4 slots dropped per layer
    c = apply_techniques(base, ["moe:dist=zipf,skew=1.2,capacity=1.25"])
    lay = c.meta["moe"]["layers"][0]
    assert lay["counts"] == [3, 3, 2, 1, 1, 1, 1, 0] and lay["capacity"] == 3 and lay["dropped"] == 4
    assert lay["imbalance"] == 3 / (12 / 8) and c.meta["moe"]["dropped"] == 4 * 2   # two layers (repeat)
    gemms = expert_gemms(c)
    assert len(gemms) == 2 * 7                       # expert 7 has no token: no GEMM, no weights read
    gate_up = [op for op in gemms if op.extra["N"] == 2 * MX_F]
    down = [op for op in gemms if op.extra["N"] == H]
    assert [op.extra["M"] for op in gate_up] == [3, 3, 2, 1, 1, 1, 1]
    assert [op.extra["expert"] for op in gate_up] == list(range(7))
    for op in gate_up:
        n = op.extra["expert_tokens"]
        assert op.flops == 2 * n * H * 2 * MX_F and op.bytes_weight == 2 * MX_F * H * 2
        assert op.bytes_activation == n * (H + 2 * MX_F) * 2 and op.input_shapes[0] == [n, H]
    for op in down:
        n = op.extra["expert_tokens"]
        assert op.flops == 2 * n * MX_F * H and op.bytes_weight == H * MX_F * 2
    # repeat keeps exact totals: 2 layers x (12 rows x expert FLOPs + 7 experts' weights)
    exp_flops = sum(op.flops * op.repeat for op in c.ops if gemm_role(op) == "experts")
    assert exp_flops == 2 * 12 * (2 * H * 2 * MX_F + 2 * MX_F * H)
    exp_w = sum(op.bytes_weight * op.repeat for op in c.ops if gemm_role(op) == "experts")
    assert exp_w == 2 * 7 * 3 * H * MX_F * 2
    assert sum(1 for _ in c.expanded()) == c.num_ops
    router = next(op for op in c.ops if gemm_role(op) == "router")
    assert router.extra["moe"]["dropped"] == 4 and router.extra["moe"]["counts"][0] == 3
    # the seed permutes which experts are hot, not the counts
    s = apply_techniques(base, ["moe:dist=zipf,seed=3"]).meta["moe"]["layers"][0]["counts"]
    assert sorted(s) == sorted([7, 3, 2, 1, 1, 1, 1, 0]) and s != [7, 3, 2, 1, 1, 1, 1, 0]
    assert snapshot(base) == before


def test_moe_fills_experts_missing_from_the_trace(traced):
    # decode, batch 2, top-2: the traced uniform routing has blocks for experts 0-3 only; a seeded
    # Zipf load (4 slots: 1.72 .75 .46 .32 ... -> 2 1 1 0 by rank, at most 2 per expert) puts
    # tokens on other experts, re-costed from a traced block
    base = traced("mixtral-8x7b", phase="decode", batch=2, seq_len=16, layers=1, device="meta")
    assert len(expert_gemms(base)) == 2 * 4
    out = apply_techniques(base, ["moe:dist=zipf,seed=3"])
    lay = out.meta["moe"]["layers"][0]
    assert sorted(lay["counts"], reverse=True)[:4] == [2, 1, 1, 0] and sum(lay["counts"]) == 4
    hot = [e for e, c in enumerate(lay["counts"]) if c]
    assert max(hot) > 3
    down = [op for op in expert_gemms(out) if op.extra["N"] == H]
    assert [op.extra["expert"] for op in down] == hot
    assert [op.extra["M"] for op in down] == [lay["counts"][e] for e in hot]
    assert analyze(out, "h100").table.time_s.sum() > 0


def test_moe_errors():
    with pytest.raises(LlmsimError, match="dist") as e:
        parse_technique("moe:dist=normal")
    assert "\n" not in str(e.value)
    with pytest.raises(LlmsimError, match="unknown parameter 'topk'"):
        parse_technique("moe:topk=2")
    with pytest.raises(LlmsimError, match="expected float"):
        parse_technique("moe:capacity=lots")
    with pytest.raises(LlmsimError, match="capacity"):
        parse_technique("moe:capacity=-1")


def test_moe_on_a_dense_model_is_one_line(traced):
    with pytest.raises(LlmsimError, match="llama2-7b is a dense model") as e:
        apply_techniques(traced("llama2-7b", **DEC), ["moe"])
    assert "\n" not in str(e.value) and str(e.value).startswith("--technique moe")


def test_gpu_model_runs_sparse24_gemms_at_the_sparse_rate():
    from sim.config import load_hw
    from sim.gpu.model import op_time
    from sim.techniques import apply_techniques
    from sim.trace import capture

    tr = capture("llama2-7b", phase="prefill", batch=1, seq_len=4096, layers=1, device="meta")
    sp = apply_techniques(tr, ["sparse24"])
    gpu = load_hw("h100")
    q_dense = next(o for o in tr.ops if o.module.endswith("q_proj"))
    q_sparse = next(o for o in sp.ops if o.module.endswith("q_proj"))
    dense, sparse = op_time(q_dense, gpu), op_time(q_sparse, gpu)
    # a 4096-token prefill GEMM is compute-bound: the sparse tensor cores halve its compute time
    assert sparse.compute_s == pytest.approx(dense.compute_s / 2, rel=0.05)
    assert sparse.time_s < dense.time_s
