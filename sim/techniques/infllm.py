"""Long-context retrieval attention (InfLLM) as a trace transform:
``infllm:budget=4096,block=128,local=512,init=128,reps=1`` (all in tokens).

A decode attention op whose context (``kv_len``, or the sliding window when shorter) exceeds
``budget`` attends to ``budget`` keys only: the ``init`` initial tokens, the ``local`` most recent
ones (the new token(s) included) and the top ``(budget - init - local) / block`` retrieved memory
blocks: ``kv_len_eff = min(context, budget)``, of which ``budget - q_len`` are cached keys read at
the KV width, so the attention pairs are ``budget`` per query (one new token per sequence). The
retrieval is a new op before it (a GEMM-like scoring of the queries against the blocks'
representative keys): the rest of the context, ``context - init - local`` tokens, is
``blocks = ceil(rest / block)`` memory blocks of ``reps`` representative keys each (InfLLM's paper
uses 4; the default here is 1):

* FLOPs ``2 x B x heads x q_len x blocks x reps x head_dim``;
* ``kv_read``: the representative keys, ``B x kv_heads x blocks x reps x head_dim`` elements at the
  KV width; ``activation``: the queries read and the scores written (``B x heads x q_len x
  (head_dim + blocks x reps)`` elements). The top-k selection over the scores is not counted.

Contexts no longer than the budget are unchanged, as are prefill ops (InfLLM's chunked prefill is
not modelled): a prefill-only trace comes back unchanged. The full KV cache is still written (the
memory blocks are kept, in device memory as traced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.resize import attention_widths, copy_op, mask_extra_pairs, resized_attention
from sim.trace.schema import Op, Trace


@register
@dataclass(frozen=True)
class InfLLM(Technique):
    """InfLLM: decode attention over initial, local and retrieved KV blocks within a token budget."""

    name = "infllm"
    summary = "decode attention over a fixed budget of initial, local and retrieved KV blocks"

    budget: int = 4096   # keys attended per query (tokens), >= init + local + block
    block: int = 128     # tokens per memory block, >= 1
    local: int = 512     # most recent tokens always attended (the new ones included), >= 1
    init: int = 128      # initial tokens always attended, >= 0
    reps: int = 1        # representative keys per block scored by the retrieval, in [1, block]

    def check(self) -> None:
        for key, low in (("block", 1), ("local", 1), ("init", 0), ("reps", 1)):
            v = getattr(self, key)
            if v < low:
                raise LlmsimError(f"--technique {self.name}: {key}: expected an integer >= {low}, found {v}")
        if self.reps > self.block:
            raise LlmsimError(f"--technique {self.name}: reps: expected at most block={self.block} representative "
                              f"keys per block, found {self.reps}")
        need = self.init + self.local + self.block
        if self.budget < need:
            raise LlmsimError(f"--technique {self.name}: budget: expected at least init + local + block = {need} "
                              f"tokens (room for one retrieved block), found {self.budget}")

    def apply(self, trace: Trace) -> Trace:
        ops: list[Op] = []
        for op in trace.ops:
            if op.op_class == "attention" and op.phase == "decode":
                ops += self.transform(op)
            else:
                ops.append(op)
        return replace_ops(trace, ops)

    def context(self, op: Op) -> int:
        """Keys a query of the op sees: the whole context, or the sliding window when shorter."""
        e = op.extra
        window = e.get("sliding_window") if e.get("causal", True) else None
        lk = int(e["kv_len"])
        return min(lk, int(window)) if window else lk

    def transform(self, op: Op) -> list[Op]:
        e = op.extra
        ctx = self.context(op)
        if ctx <= self.budget:
            # unchanged here, but marked: a decode iteration caps each request's own keys at the budget
            return [copy_op(op, extra=dict(e, infllm="within_budget", budget=self.budget, context=ctx))]
        b, h, hkv, lq, d = (int(e[k]) for k in ("batch", "heads", "kv_heads", "q_len", "head_dim"))
        if lq >= self.budget:
            raise LlmsimError(f"--technique {self.name}: budget={self.budget}: {op.module}: expected more keys than "
                              f"the {lq} new tokens of a decode step")
        att = resized_attention(op, kv_len=self.budget, past=self.budget - lq, extra_pairs=mask_extra_pairs(op))
        att = copy_op(att, extra=dict(att.extra, infllm="attention", budget=self.budget, context=ctx))
        blocks = math.ceil((ctx - self.init - self.local) / self.block)
        keys = blocks * self.reps
        act_bits, kv_bits = attention_widths(op)
        dt = op.input_dtypes[0] if op.input_dtypes else "fp16"
        retrieval = Op(
            name="infllm.retrieval", op_class="gemm", module=f"{op.module}.infllm_retrieval", layer=op.layer,
            phase=op.phase, flops=2.0 * b * h * lq * keys * d,
            bytes_activation=b * h * lq * (d + keys) * act_bits / 8,
            bytes_kv_read=b * hkv * keys * d * kv_bits / 8,
            input_shapes=[[b, h, lq, d], [b, hkv, keys, d]], input_dtypes=[dt, dt],
            output_shapes=[[b, h, lq, keys]], output_dtypes=[dt], compute_dtype=op.compute_dtype,
            repeat=op.repeat, step=op.step, kv_bits=op.kv_bits,
            extra={"batch": b * hkv, "M": (h // hkv) * lq, "K": d, "N": keys, "blocks": blocks,
                   "infllm": "retrieval", "block": self.block, "init": self.init, "local": self.local,
                   "budget": self.budget})
        return [retrieval, att]
