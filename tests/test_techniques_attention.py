"""Speculative decoding (Medusa, SWIFT), shared-prefix attention (Hydragen) and retrieval attention
(InfLLM): closed forms computed by hand from the models' dimensions."""

from __future__ import annotations

import copy
import math

import pytest

from sim.errors import LlmsimError
from sim.techniques import apply_techniques, parse_technique
from sim.techniques.speculative import skipped_layers, tree_levels, tree_pairs
from sim.trace.resize import copy_op, gemm_role
from sim.trace.schema import Trace

# llama2-7b: MHA 32/32, hidden 4096, FFN 11008, vocab 32000, fp16; mistral-7b: GQA 32/8, FFN 14336, bf16
H, V, HEADS, D = 4096, 32000, 32, 128
LL_I, MI_I = 11008, 14336
LAYERS = 2
LLAMA = dict(phase="decode", batch=4, seq_len=128, layers=LAYERS, device="meta")
MISTRAL = dict(phase="decode", batch=2, seq_len=1024, layers=LAYERS, device="meta")
B, PAST = 4, 128
A = 2   # bytes per element (fp16 / bf16)


def _layer_gemm_flops(b_tokens: int, inter: int, kv_heads: int) -> float:
    """GEMM FLOPs of one decoder layer over ``b_tokens`` rows: q, o (H x H), k, v (H x hkv d), FFN 3 H x I."""
    return 2.0 * b_tokens * H * (2 * H + 2 * kv_heads * D + 3 * inter)


def _gemms(trace, layer_only=True):
    return [o for o in trace.ops if o.op_class == "gemm" and (o.layer is not None or not layer_only)]


def _total(ops, attr="flops"):
    return sum(getattr(o, attr) * o.repeat for o in ops)


def _atts(trace, **match):
    return [o for o in trace.ops if o.op_class == "attention" and all(o.extra.get(k) == v for k, v in match.items())]


def _snapshot(trace):
    return copy.deepcopy(trace.meta), [op.to_dict() for op in trace.ops]


@pytest.fixture
def llama(traced):
    return traced("llama2-7b", **LLAMA)


@pytest.fixture
def mistral(traced):
    return traced("mistral-7b", **MISTRAL)


# ------------------------------------------------------------------ parsing, purity, repeats
@pytest.mark.parametrize("text,needle", [
    ("medusa:tree=0", "tree: expected at least heads + 1 = 5"), ("medusa:depth=3", "unknown parameter 'depth'"),
    ("medusa:heads=0", "heads: expected a positive integer"), ("medusa:accept=1.5", "accept: expected a probability"),
    ("swift:skip=1", "skip: expected a fraction in [0, 1)"), ("swift:draft=0", "draft: expected a positive"),
    ("swift:skip=half", "skip: expected float"), ("hydragen:prefix=0", "prefix: expected a positive"),
    ("hydragen:len=4", "unknown parameter 'len'"), ("infllm:budget=600", "budget: expected at least"),
    ("infllm:reps=0", "reps: expected an integer >= 1"), ("infllm:reps=200", "reps: expected at most block=128"),
])
def test_bad_specs_are_one_line(text, needle):
    with pytest.raises(LlmsimError) as e:
        parse_technique(text)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("--technique") and needle in msg, msg


SPECS = ["medusa:heads=4,tree=64,accept=0.6", "swift:skip=0.5,draft=4,accept=0.7", "hydragen:prefix=64",
         "infllm:budget=96,block=16,local=32,init=16"]


@pytest.mark.parametrize("spec", SPECS)
def test_input_unchanged_and_repeats_exact(traced, spec):
    """apply never mutates its input; a trace with merged layers (repeat 2) gives the same totals
    as the same trace traced layer by layer."""
    merged = traced("llama2-7b", **LLAMA)
    flat = traced("llama2-7b", dedup=False, **LLAMA)
    assert any(o.repeat == 2 for o in merged.ops) and all(o.repeat == 1 for o in flat.ops)
    before = _snapshot(merged)
    a, b = apply_techniques(merged, [spec]), apply_techniques(flat, [spec])
    assert _snapshot(merged) == before
    assert a.total_flops() == pytest.approx(b.total_flops(), rel=1e-12)
    for role, v in a.bytes_by_role().items():
        assert v == pytest.approx(b.bytes_by_role()[role], rel=1e-12), role
    assert a.num_ops == b.num_ops
    tech = parse_technique(spec)
    assert parse_technique(tech.spec()) == tech and a.meta["techniques"] == [tech.spec()]


# ------------------------------------------------------------------ Medusa
def test_medusa_tokens_per_step_and_tree():
    t = parse_technique("medusa:heads=4,tree=64,accept=0.6")
    assert t.tokens_per_step == pytest.approx((1 - 0.6 ** 5) / (1 - 0.6))   # 2.3056
    assert parse_technique("medusa:heads=4,tree=64,accept=1").tokens_per_step == 5.0
    assert parse_technique("medusa:heads=3,tree=8,accept=0").tokens_per_step == 1.0
    # 63 candidates over 4 levels: 16, 16, 16, 15; a node at depth l sees l ancestors and itself
    assert tree_levels(64, 4) == [1, 16, 16, 16, 15]
    assert tree_pairs(64, 4) == 1 + 16 * 2 + 16 * 3 + 16 * 4 + 15 * 5 == 220
    assert tree_pairs(5, 4) == 5 * 6 // 2   # a chain is the causal triangle


def test_medusa_closed_form(llama):
    T = 64
    out = apply_techniques(llama, ["medusa:heads=4,tree=64,accept=0.6"])
    assert out.meta["tokens_per_step"] == pytest.approx((1 - 0.6 ** 5) / 0.4)
    # every decoder GEMM runs over M x tree rows, weights read once
    ver = [o for o in _gemms(out) if o.extra.get("speculative") == "verify"]
    assert all(o.extra["M"] == B * T for o in ver)
    assert all(o.input_shapes[0][:2] == [B, T] for o in ver)
    assert _total(ver) == pytest.approx(LAYERS * _layer_gemm_flops(B * T, LL_I, HEADS))
    assert _total(ver) == pytest.approx(T * _total(_gemms(llama)))
    assert _total(ver, "bytes_weight") == _total(_gemms(llama), "bytes_weight")
    # tree attention: each node sees the 128 cached tokens, its ancestors and itself
    (att,) = _atts(out)
    pairs = T * PAST + 220
    assert (att.extra["q_len"], att.extra["kv_len"], att.extra["pairs"]) == (T, PAST + T, pairs)
    assert att.flops == pytest.approx(2.0 * B * HEADS * pairs * (D + D))
    assert att.bytes_kv_read == B * HEADS * PAST * 2 * D * A          # the cache, read once
    assert att.bytes_activation == pytest.approx(B * HEADS * T * 2 * D * A + B * HEADS * T * 2 * D * A)
    assert att.input_shapes[0] == [B, HEADS, T, D]
    # the KV append writes the whole tree
    (kv,) = [o for o in out.ops if o.op_class == "kv_cache"]
    assert kv.bytes_kv_write == T * B * HEADS * 2 * D * A and kv.extra["new_tokens"] == T
    # draft cost: 4 heads x (ResBlock H x H + bias, SiLU, add; H x vocab) on one token per sequence;
    # the --layers trace has no lm_head: hidden and vocab come from the model spec
    heads = [o for o in out.ops if o.module.startswith("medusa_head.")]
    assert len(heads) == 4 * 4 and out.meta["medusa"]["hidden"] == H and out.meta["medusa"]["vocab"] == V
    head_flops = 4 * (2.0 * B * H * H + B * H + B * H + B * H + 2.0 * B * H * V)
    assert _total(heads) == pytest.approx(head_flops)
    assert _total(heads, "bytes_weight") == 4 * (H * H * A + H * A + H * V * A)
    assert [gemm_role(o) for o in heads if o.op_class == "gemm"] == [None, "lm_head"] * 4
    # everything else per token scales by the tree; nothing else is added
    others = [o for o in llama.ops if o.op_class not in ("gemm", "attention")]
    expect = T * _total(others) + _total(ver) + LAYERS * att.flops + head_flops
    assert out.total_flops() == pytest.approx(expect)


def test_medusa_gqa_and_lm_head_from_trace(mistral):
    T = 16
    out = apply_techniques(mistral, ["medusa:heads=3,tree=16"])
    (att,) = _atts(out)
    past, b, hkv = 1024, 2, 8
    pairs = T * past + tree_pairs(16, 3)   # levels 1, 5, 5, 5: 1 + 10 + 15 + 20
    assert tree_pairs(16, 3) == 46 and att.extra["pairs"] == pairs
    assert att.bytes_kv_read == b * hkv * past * 2 * D * A
    assert _total([o for o in _gemms(out) if o.extra.get("speculative") == "verify"]) == pytest.approx(
        LAYERS * _layer_gemm_flops(b * T, MI_I, hkv))
    # with an lm_head op in the trace, the heads take its K and N (and its weight width)
    q = next(o for o in mistral.ops if o.module.endswith("q_proj"))
    lm = copy_op(q, module="lm_head", layer=None, repeat=1, weight_bits=8.0,
                 extra=dict(q.extra, K=H, N=1000))
    out2 = apply_techniques(Trace(meta=dict(mistral.meta), ops=list(mistral.ops) + [lm]), ["medusa:heads=3,tree=16"])
    proj = [o for o in out2.ops if o.module.startswith("medusa_head.") and o.module.endswith("lm_head")]
    assert len(proj) == 3 and all(o.extra["N"] == 1000 and o.bytes_weight == H * 1000 for o in proj)


def test_speculative_needs_decode_and_keeps_prefill(traced):
    pre = traced("llama2-7b", phase="prefill", batch=2, seq_len=64, layers=LAYERS, device="meta")
    for spec in ("medusa", "swift"):
        with pytest.raises(LlmsimError) as e:
            apply_techniques(pre, [spec])
        assert "\n" not in str(e.value) and "no decode step" in str(e.value)
    gen = traced("llama2-7b", phase="generate", batch=2, seq_len=16, new_tokens=2, layers=LAYERS, device="meta")
    out = apply_techniques(gen, ["medusa:heads=2,tree=8"])
    assert [o for o in out.ops if o.phase == "prefill"] == [o for o in gen.ops if o.phase == "prefill"]
    for step, past in ((1, 16), (2, 17)):
        (att,) = [o for o in out.ops if o.op_class == "attention" and o.step == step]
        assert (att.extra["q_len"], att.extra["kv_len"], att.extra["pairs"]) == (
            8, past + 8, 8 * past + tree_pairs(8, 2))
        assert len([o for o in out.ops if o.step == step and o.module.startswith("medusa_head.")]) == 2 * 4


# ------------------------------------------------------------------ SWIFT
def test_swift_closed_form(llama):
    K, T = 4, 5
    out = apply_techniques(llama, ["swift:skip=0.5,draft=4,accept=0.7"])
    assert out.meta["tokens_per_step"] == pytest.approx((1 - 0.7 ** 5) / (1 - 0.7))
    assert parse_technique("swift:draft=4,accept=1").tokens_per_step == 5.0
    # draft: 4 passes over 1 of the 2 layers (skip 0.5), one token per sequence
    draft = [o for o in out.ops if o.extra.get("speculative") == "draft"]
    assert {o.extra["draft_pass"] for o in draft} == {1, 2, 3, 4} and all(o.repeat == 1 for o in draft)
    assert _total([o for o in draft if o.op_class == "gemm"]) == pytest.approx(K * _layer_gemm_flops(B, LL_I, HEADS))
    for j, att in enumerate(o for o in draft if o.op_class == "attention"):
        assert (att.extra["q_len"], att.extra["kv_len"]) == (1, PAST + 1 + j)     # j drafted tokens cached
        assert att.bytes_kv_read == B * HEADS * (PAST + j) * 2 * D * A
    # verification: both layers over draft + 1 tokens, a causal chain
    ver = [o for o in out.ops if o.extra.get("speculative") == "verify"]
    assert _total([o for o in ver if o.op_class == "gemm"]) == pytest.approx(
        LAYERS * _layer_gemm_flops(B * T, LL_I, HEADS))
    (att,) = [o for o in ver if o.op_class == "attention"]
    assert (att.extra["q_len"], att.extra["kv_len"], att.extra["pairs"]) == (T, PAST + T, T * PAST + T * (T + 1) // 2)
    # weights: 4 draft passes read one layer, the verification both: 3x the traced weight bytes
    assert out.bytes_by_role()["weight"] == pytest.approx(3 * llama.bytes_by_role()["weight"])
    assert out.meta["swift"]["draft_layers"] == 1


def test_swift_skips_intermediate_layers():
    s = skipped_layers(32, 0.5)
    assert len(s) == 16 and 0 not in s and 31 not in s
    assert skipped_layers(2, 0.5) == {1} and skipped_layers(4, 0.0) == set() and len(skipped_layers(3, 0.99)) == 2


# ------------------------------------------------------------------ Hydragen
def test_hydragen_decode_closed_form(llama, mistral):
    for trace, b, past, hkv, p in ((llama, B, PAST, HEADS, 64), (mistral, 2, 1024, 8, 1000)):
        out = apply_techniques(trace, [f"hydragen:prefix={p}"])
        (orig,) = _atts(trace)
        (pre,) = _atts(out, hydragen="prefix")
        (suf,) = _atts(out, hydragen="suffix")
        (merge,) = [o for o in out.ops if o.name == "hydragen.merge"]
        # (a) the queries of all sequences stacked, batch 1, over the P prefix keys, read once
        assert (pre.extra["batch"], pre.extra["q_len"], pre.extra["kv_len"], pre.extra["causal"]) == (1, b, p, False)
        assert pre.extra["pairs"] == b * p and pre.input_shapes[:2] == [[1, HEADS, b, D], [1, hkv, p, D]]
        assert pre.flops == pytest.approx(2.0 * HEADS * b * p * 2 * D)
        assert pre.bytes_kv_read == p * hkv * 2 * D * A
        # (b) each sequence over the rest: past - P cached, the new token as an activation
        assert (suf.extra["batch"], suf.extra["q_len"], suf.extra["kv_len"]) == (b, 1, past + 1 - p)
        assert suf.bytes_kv_read == b * (past - p) * hkv * 2 * D * A
        # KV bytes: one prefix read + B suffix reads (was B full reads)
        kv = sum(o.bytes_kv_read * o.repeat for o in out.ops if o.op_class == "attention")
        assert kv == LAYERS * (p + b * (past - p)) * hkv * 2 * D * A
        assert orig.bytes_kv_read == b * past * hkv * 2 * D * A
        # the pairs are conserved; partials write an fp32 LSE per query and head
        assert pre.flops + suf.flops == pytest.approx(orig.flops)
        assert pre.bytes_activation == pytest.approx(2 * b * HEADS * D * A + 4 * b * HEADS)
        assert suf.bytes_activation == pytest.approx(2 * b * HEADS * D * A + b * hkv * 2 * D * A + 4 * b * HEADS)
        # (c) the merge: per query and head, 3 dv + 8 FLOPs; reads 2 outputs + 2 LSEs, writes one
        assert merge.flops == b * HEADS * (3 * D + 8)
        assert merge.bytes_activation == b * HEADS * (3 * D * A + 8)
        assert merge.repeat == orig.repeat == LAYERS
        others = [o for o in trace.ops if o.op_class != "attention"]
        assert [o for o in out.ops if o.op_class not in ("attention",) and o.name != "hydragen.merge"] == others


def test_hydragen_prefill_and_limits(traced, llama):
    L, b, p = 64, 2, 16
    pre_trace = traced("llama2-7b", phase="prefill", batch=b, seq_len=L, layers=LAYERS, device="meta")
    out = apply_techniques(pre_trace, [f"hydragen:prefix={p}"])
    (own,) = _atts(out, hydragen="prefix_self")
    (pre,) = _atts(out, hydragen="prefix")
    (suf,) = _atts(out, hydragen="suffix")
    assert (own.extra["batch"], own.extra["q_len"], own.extra["pairs"]) == (1, p, p * (p + 1) // 2)
    assert (pre.extra["batch"], pre.extra["q_len"], pre.extra["kv_len"], pre.extra["pairs"]) == (
        1, b * (L - p), p, b * (L - p) * p)
    assert (suf.extra["batch"], suf.extra["q_len"], suf.extra["pairs"]) == (b, L - p, (L - p) * (L - p + 1) // 2)
    pairs = p * (p + 1) // 2 + b * (L - p) * p + b * (L - p) * (L - p + 1) // 2
    flops = sum(o.flops for o in (own, pre, suf))
    assert flops == pytest.approx(2.0 * HEADS * pairs * 2 * D)
    (orig,) = _atts(pre_trace)
    assert orig.flops == pytest.approx(2.0 * b * HEADS * L * (L + 1) // 2 * 2 * D)
    (merge,) = [o for o in out.ops if o.name == "hydragen.merge"]
    assert merge.extra["rows"] == b * (L - p)
    assert pre.bytes_kv_read == 0 and pre.bytes_activation >= p * HEADS * 2 * D * A   # prefix K/V: this pass
    # the prefix must be shorter than the context
    assert apply_techniques(llama, ["hydragen:prefix=128"])
    for trace, p_bad in ((llama, 129), (pre_trace, 64)):
        with pytest.raises(LlmsimError) as e:
            apply_techniques(trace, [f"hydragen:prefix={p_bad}"])
        assert "\n" not in str(e.value) and "shorter than the context" in str(e.value)


# ------------------------------------------------------------------ InfLLM
def test_infllm_closed_form(mistral, llama):
    budget, block, local, init = 512, 64, 128, 64
    b, hkv, ctx = 2, 8, 1025
    out = apply_techniques(mistral, [f"infllm:budget={budget},block={block},local={local},init={init}"])
    (att,) = _atts(out)
    (ret,) = [o for o in out.ops if o.name == "infllm.retrieval"]
    # attention over the budget: budget keys per query, budget - 1 of them cached
    assert (att.extra["kv_len"], att.extra["pairs"]) == (budget, budget)
    assert att.flops == pytest.approx(2.0 * b * HEADS * budget * 2 * D)
    assert att.bytes_kv_read == b * hkv * (budget - 1) * 2 * D * A
    # retrieval: one representative key per block of the rest of the context
    blocks = math.ceil((ctx - init - local) / block)
    assert blocks == 14 and ret.extra["blocks"] == blocks
    assert ret.flops == 2.0 * b * HEADS * blocks * D
    assert ret.bytes_kv_read == b * hkv * blocks * D * A
    assert ret.repeat == att.repeat == LAYERS and ret.op_class == "gemm" and gemm_role(ret) is None
    (orig,) = _atts(mistral)
    assert orig.extra["pairs"] == ctx
    out4 = apply_techniques(mistral, [f"infllm:budget={budget},block={block},local={local},init={init},reps=4"])
    (ret4,) = [o for o in out4.ops if o.name == "infllm.retrieval"]
    assert ret4.flops == 4 * ret.flops and ret4.bytes_kv_read == 4 * ret.bytes_kv_read
    # contexts within the budget (llama: 129 keys) are unchanged but for a marker (a decode iteration
    # caps each request's own keys at the budget); prefill is unchanged
    def plain(ops):
        return [(o.name, o.flops, o.bytes, o.input_shapes) for o in ops]

    within = apply_techniques(llama, ["infllm"])
    assert plain(within.ops) == plain(llama.ops)
    assert {o.extra.get("infllm") for o in within.ops if o.op_class == "attention"} == {"within_budget"}
    assert plain(apply_techniques(mistral, ["infllm:budget=1025,block=64,local=128,init=64"]).ops) == plain(mistral.ops)


# ------------------------------------------------------------------ composition
def test_tree_mask_survives_hydragen_and_infllm(llama):
    """Hydragen and InfLLM after Medusa keep the tree's pairs over the new tokens; speculative
    techniques do not stack (one-line error)."""
    T, p = 64, 64
    out = apply_techniques(llama, ["medusa:heads=4,tree=64", f"hydragen:prefix={p}"])
    (pre,) = _atts(out, hydragen="prefix")
    (suf,) = _atts(out, hydragen="suffix")
    assert pre.extra["pairs"] == B * T * p and suf.extra["pairs"] == T * (PAST - p) + 220
    inf = apply_techniques(llama, ["medusa:heads=4,tree=64", "infllm:budget=160,block=16,local=32,init=16"])
    (att,) = _atts(inf)
    assert (att.extra["kv_len"], att.extra["pairs"]) == (160, T * (160 - T) + 220)
    with pytest.raises(LlmsimError) as e:
        apply_techniques(llama, ["swift", "medusa"])
    assert "\n" not in str(e.value) and "do not stack" in str(e.value)
