"""Shared-prefix attention (Hydragen) as a trace transform: ``hydragen:prefix=P``.

All B sequences of the batch share their first ``P`` context tokens. Each attention op (B
sequences, ``q_len`` new queries each, ``kv_len`` keys of which ``past = kv_len - q_len`` are
cached) becomes:

* **decode** (the prefix is cached: ``P <= past``):
  (a) a *prefix* op: the queries of all sequences stacked into one matrix product, batch 1,
  ``q_len = B x q_len`` over the ``P`` prefix keys, not causal; the prefix KV is read once per layer
  at the KV width (``P x kv_heads x (d + dv)`` elements);
  (b) a *suffix* op per sequence (batch B) over the ``kv_len - P`` other keys: the
  ``past - P`` cached ones at the KV width, the new tokens as activations (as the tracer counts
  them), the original mask (causal, or a speculative tree) over the new tokens;
  (c) a *merge* (elementwise) of the two partial softmaxes.
* **prefill** (``past = 0``, ``P < q_len``): the prefix's own causal attention is computed once
  for the batch (batch 1, ``P`` queries over ``P`` keys) instead of B times (the prefix tokens, hence
  their queries, keys and values, are the same in every sequence); the suffix queries of all
  sequences attend to the prefix as one matrix product (batch 1, ``B x (q_len - P)`` queries, ``P``
  keys, not causal; the prefix K/V are made in this pass: activations, read once); each sequence's
  suffix attends causally to its own ``q_len - P`` tokens; the suffix queries are merged. Only the
  attention ops change: the projections, FFN and KV writes of the prefix tokens stay as traced (B
  copies; computing those once too is prefix caching, not modelled here).

Each partial attention also writes a log-sum-exp (fp32) per query and head (``4 x B x q x heads``
bytes of activations). The merge, per query and head, rescales and adds the two ``dv``-vectors:
``m = max(l1, l2)``, ``w_i = exp(l_i - m) / (exp(l1 - m) + exp(l2 - m))``, ``o = w1 o1 + w2 o2``:
``3 dv + 8`` FLOPs; bytes: reads both partial outputs and both LSEs, writes ``o``:
``3 dv x act + 8`` bytes. Totals per layer and query row: FLOPs ``B q h (3 dv + 8)``, bytes
``B q h (3 dv act + 8)`` (``act`` = activation bytes per element).

``P`` must be smaller than the context of every attention op (``P < kv_len`` with the whole prefix
cached in decode; ``P < q_len`` in prefill): a one-line error otherwise. A sliding window shorter
than the context, or a non-causal (encoder) attention, is also a one-line error.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.resize import attention_widths, copy_op, mask_extra_pairs, resized_attention
from sim.trace.schema import Op, Trace

LSE_BYTES = 4.0   # one fp32 log-sum-exp per query and head


def _with_lse(op: Op, part: str, prefix: int) -> Op:
    e = op.extra
    lse = LSE_BYTES * int(e["batch"]) * int(e["q_len"]) * int(e["heads"])
    return copy_op(op, bytes_activation=op.bytes_activation + lse, extra=dict(e, hydragen=part, prefix=prefix))


def merge_op(op: Op, b: int, q: int, prefix: int) -> Op:
    """The merge of two partial attentions over ``b x q`` query rows (see the module doc)."""
    e = op.extra
    h, dv = int(e["heads"]), int(e["v_head_dim"])
    act_bits, _ = attention_widths(op)
    a = act_bits / 8
    dt = op.output_dtypes[0] if op.output_dtypes else "fp16"
    o, lse = [b, q, h, dv], [b, h, q]
    return Op(name="hydragen.merge", op_class="elementwise", module=op.module, layer=op.layer, phase=op.phase,
              flops=float(b * q * h * (3 * dv + 8)), bytes_activation=b * q * h * (3 * dv * a + 2 * LSE_BYTES),
              input_shapes=[o, o, lse, lse], input_dtypes=[dt, dt, "fp32", "fp32"], output_shapes=[o],
              output_dtypes=[dt], compute_dtype="fp32", repeat=op.repeat, step=op.step,
              extra={"hydragen": "merge", "prefix": prefix, "rows": b * q, "heads": h, "v_head_dim": dv})


@register
@dataclass(frozen=True)
class Hydragen(Technique):
    """Hydragen: attention over a shared prefix as one batched product, suffixes per sequence."""

    name = "hydragen"
    summary = "a prefix shared by the batch: one batched prefix attention, per-sequence suffixes, a merge"

    prefix: int = 1024   # tokens of context shared by every sequence of the batch, >= 1

    def check(self) -> None:
        if self.prefix < 1:
            raise LlmsimError(f"--technique {self.name}: prefix: expected a positive number of tokens, "
                              f"found {self.prefix}")

    def apply(self, trace: Trace) -> Trace:
        ops: list[Op] = []
        found = False
        for op in trace.ops:
            if op.op_class == "attention":
                ops += self.split(op)
                found = True
            else:
                ops.append(op)
        if not found:
            raise LlmsimError(f"--technique {self.name}: {trace.meta.get('model')}: the trace has no attention op")
        return replace_ops(trace, ops)

    def split(self, op: Op) -> list[Op]:
        e = op.extra
        p = self.prefix
        b, lq, lk = int(e["batch"]), int(e["q_len"]), int(e["kv_len"])
        past = lk - lq
        where = f"--technique {self.name}: prefix={p}: {op.module} ({op.phase}"
        where += f", step {op.step})" if op.phase == "decode" else ")"
        if not e.get("causal", True):
            raise LlmsimError(f"{where}: expected a causal (decoder) attention")
        window = e.get("sliding_window")
        if window and lk > window:
            raise LlmsimError(f"{where}: a sliding window of {window} tokens shorter than the context ({lk}) is "
                              "not modelled")
        extra_pairs = mask_extra_pairs(op)
        if past >= p:   # the prefix is in the cache (decode)
            pre = resized_attention(op, batch=1, q_len=b * lq, kv_len=p, past=p, causal=False)
            suf = resized_attention(op, kv_len=lk - p, past=past - p, extra_pairs=extra_pairs)
            return [_with_lse(pre, "prefix", p), _with_lse(suf, "suffix", p), merge_op(op, b, lq, p)]
        if past == 0 and p < lq:   # prefill: the prefix is the first P of the new tokens
            own = resized_attention(op, batch=1, q_len=p, kv_len=p, past=0, causal=True)
            pre = resized_attention(op, batch=1, q_len=b * (lq - p), kv_len=p, past=0, causal=False)
            suf = resized_attention(op, q_len=lq - p, kv_len=lk - p, past=0, extra_pairs=extra_pairs)
            return [copy_op(own, extra=dict(own.extra, hydragen="prefix_self", prefix=p)),
                    _with_lse(pre, "prefix", p), _with_lse(suf, "suffix", p), merge_op(op, b, lq - p, p)]
        raise LlmsimError(f"{where}: expected a prefix shorter than the context ({past} cached + {lq} new tokens)")
