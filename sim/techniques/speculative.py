"""Speculative decoding as trace transforms: Medusa (extra decoding heads, tree verification) and
SWIFT (self-speculation by skipping layers, chain verification).

Both turn every decode step of a trace into a *verification step* over ``T`` tokens per sequence
plus a *draft cost*; prefill ops are unchanged, and a trace without a decode step (``--phase
prefill``) is a one-line error (there is nothing to speculate on, and a tokens-per-step factor
would be wrong).

Verification (:func:`verify_op`): every op of the decode step runs over ``T`` tokens per sequence
instead of one: GEMMs have ``M x T`` rows (weights read once); attention has ``q_len = T`` over the
``kv_len - 1`` cached keys plus the ``T`` new ones; the KV append writes ``T`` tokens; the other
per-token ops (norms, activations, rotary, embedding rows, all-reduces) scale their FLOPs and
activation bytes by ``T`` (norm gains and other weights are read once).

* ``medusa:heads=K,tree=T,accept=A``: ``T`` tree nodes (the root, the last accepted token, and
  ``T - 1`` candidates spread evenly over the ``K`` depth levels, the shallower levels taking the
  remainder); each node attends to the context and to its ancestors in the tree and itself:
  ``pairs = T x past + sum over depths l of n_l x (l + 1)`` per sequence and head (a chain of
  ``T`` nodes gives the causal ``T (T + 1) / 2``). Draft cost, per head and on one token per
  sequence (the hidden state of the last accepted token): a ResBlock (a ``hidden x hidden`` linear
  with bias, SiLU, residual add) and the head's own ``hidden x vocab`` projection. ``hidden`` and
  ``vocab`` are the traced ``lm_head``'s K and N, or, when the trace has no ``lm_head`` (``--layers``
  drops it), the model spec's ``hidden_size`` (``n_embd``) and ``vocab_size``.
* ``swift:skip=S,draft=K,accept=A``: ``K`` autoregressive draft passes of the decode step with
  ``round(S x L)`` of the ``L`` traced decoder layers skipped (at least one kept; the skipped layers
  are spread evenly over the intermediate layers), pass ``j`` attending to ``j`` more cached keys,
  then the verification of ``T = K + 1`` tokens with a causal (chain) mask.

``tokens_per_step`` = ``(1 - a^(k+1)) / (1 - a)`` (``k + 1`` for ``a = 1``), with ``k = heads``
(Medusa: the accepted path along the tree is at most ``heads`` long) or ``k = draft`` (SWIFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.resize import copy_op, gemm_role, resized_attention, scale_gemm
from sim.trace.schema import Op, Trace, shift_layer

_DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16}
_DTYPE_NAMES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def expected_tokens(accept: float, k: int) -> float:
    """Expected tokens per step of a chain of ``k`` drafts with per-token acceptance ``accept``."""
    if accept >= 1.0:
        return float(k + 1)
    return (1.0 - accept ** (k + 1)) / (1.0 - accept)


def tree_levels(tree: int, heads: int) -> list[int]:
    """Nodes per depth (0 = the root) of a Medusa tree of ``tree`` nodes over ``heads`` levels."""
    q, r = divmod(tree - 1, heads)
    return [1] + [q + 1 if i < r else q for i in range(heads)]


def tree_pairs(tree: int, heads: int) -> int:
    """(query, key) pairs inside the tree: each node sees its ancestors and itself."""
    return sum(n * (depth + 1) for depth, n in enumerate(tree_levels(tree, heads)))


# ------------------------------------------------------------------ decode steps and verification
def decode_groups(ops: Iterable[Op]) -> list[tuple[int | None, list[Op]]]:
    """Consecutive ops grouped by decode step: (step, ops), or (None, ops) for non-decode ops."""
    groups: list[tuple[int | None, list[Op]]] = []
    for op in ops:
        key = op.step if op.phase == "decode" else None
        if groups and groups[-1][0] == key:
            groups[-1][1].append(op)
        else:
            groups.append((key, [op]))
    return groups


def _grow(shape: list[int], batch: int | None, t: int) -> list[int]:
    """A token-carrying shape ([B, 1], [B, 1, hidden], [B, heads, 1, d]) with ``t`` tokens."""
    s = list(shape)
    if batch is not None and len(s) >= 2 and s[0] == batch:
        if len(s) == 4 and s[2] == 1:
            s[2] = t
        elif len(s) in (2, 3) and s[1] == 1:
            s[1] = t
    return s


def verify_op(op: Op, t: int, batch: int | None, tree_extra: int = 0, name: str = "") -> Op:
    """``op`` of a one-token decode step run over ``t`` tokens per sequence (see the module doc).
    ``tree_extra``: pairs a tree mask adds to the causal one, per sequence and head."""
    shapes = {"input_shapes": [_grow(s, batch, t) for s in op.input_shapes],
              "output_shapes": [_grow(s, batch, t) for s in op.output_shapes]}
    if op.op_class == "gemm":
        new = scale_gemm(op, m=t)
        return copy_op(new, extra=dict(new.extra, speculative="verify"), **shapes)
    if op.op_class == "attention":
        e = op.extra
        lq, lk = int(e["q_len"]), int(e["kv_len"])
        if str(e.get("hydragen", "")).startswith("prefix"):
            raise LlmsimError(f"--technique {name}: {op.module}: a shared-prefix attention (hydragen) is already in "
                              f"the step: apply {name} before hydragen")
        if lq != 1:
            raise LlmsimError(f"--technique {name}: {op.module}: expected one new token per sequence in a decode "
                              f"step, found q_len={lq} (speculative techniques do not stack)")
        new = resized_attention(op, q_len=t, kv_len=lk - 1 + t, past=lk - 1, extra_pairs=tree_extra)
        return copy_op(new, extra=dict(new.extra, speculative="verify"))
    extra = dict(op.extra, speculative="verify")
    if op.op_class == "kv_cache" and "new_tokens" in extra:
        extra["new_tokens"] = int(extra["new_tokens"]) * t
    if "comm_bytes" in extra:
        extra["comm_bytes"] = float(extra["comm_bytes"]) * t
    weight = op.bytes_weight * (t if op.op_class == "embedding" else 1)   # gathered rows: one per token
    return copy_op(op, flops=op.flops * t, bytes_weight=weight, bytes_activation=op.bytes_activation * t,
                   bytes_kv_write=op.bytes_kv_write * t, extra=extra, **shapes)


def decode_step_groups(name: str, trace: Trace) -> list[tuple[int | None, list[Op]]]:
    """:func:`decode_groups` of a trace that has a decode step (else the one-line error)."""
    groups = decode_groups(trace.ops)
    if not any(step is not None for step, _ in groups):
        raise _no_decode(name, trace)
    return groups


def _no_decode(name: str, trace: Trace) -> LlmsimError:
    return LlmsimError(f"--technique {name}: {trace.meta.get('model')}: the trace has no decode step (speculative "
                       f"decoding changes decode steps: trace with --phase decode or generate)")


def _check_accept(name: str, accept: float) -> None:
    if not 0.0 <= accept <= 1.0:
        raise LlmsimError(f"--technique {name}: accept: expected a probability in [0, 1], found {accept}")


def _widths(trace: Trace, template: Op | None) -> tuple[float, float, float, str]:
    """(weight bits, activation bits, 1-D weight bits, dtype name) for ops the technique adds."""
    dtype = str(trace.meta.get("dtype") or "float16")
    native = float(_DTYPE_BITS.get(dtype, 16))
    prec = trace.meta.get("precision") or {}
    w_bits = template.weight_bits if template is not None and template.weight_bits is not None else None
    if w_bits is None:
        w_bits = prec.get("weight_bits_effective") or native
    a_bits = prec.get("act_bits") or native
    return float(w_bits), float(a_bits), native, _DTYPE_NAMES.get(dtype, "fp16")


def model_dims(trace: Trace, name: str) -> tuple[int, int, Op | None]:
    """(hidden size, vocabulary, the lm_head op or None): from the traced lm_head, else the spec."""
    lm = next((o for o in trace.ops if gemm_role(o) == "lm_head"), None)
    if lm is not None:
        return int(lm.extra["K"]), int(lm.extra["N"]), lm
    from sim.config.models import load_model_spec

    model = trace.meta.get("model")
    try:
        cfg = load_model_spec(str(model)).config
    except Exception:  # noqa: BLE001 - any failure to find the spec is the same user error
        cfg = {}
    hidden = cfg.get("word_embed_proj_dim") or cfg.get("hidden_size") or cfg.get("n_embd") or cfg.get("d_model")
    vocab = cfg.get("vocab_size")
    if not hidden or not vocab:
        raise LlmsimError(f"--technique {name}: {model}: the trace has no lm_head op and no model spec gives the "
                          "hidden size and vocabulary")
    return int(hidden), int(vocab), None


# ------------------------------------------------------------------ Medusa
@register
@dataclass(frozen=True)
class Medusa(Technique):
    """Medusa: ``heads`` extra decoding heads propose a tree of ``tree`` candidates, verified at once."""

    name = "medusa"
    summary = "extra decoding heads draft a candidate tree; one tree-attention step verifies it"

    heads: int = 4        # Medusa heads (draft depth k), >= 1
    tree: int = 64        # tree nodes verified per sequence and step, the root included, >= heads + 1
    accept: float = 0.6   # per-token acceptance probability along the tree, in [0, 1]

    def check(self) -> None:
        if self.heads < 1:
            raise LlmsimError(f"--technique {self.name}: heads: expected a positive integer, found {self.heads}")
        if self.tree < self.heads + 1:
            raise LlmsimError(f"--technique {self.name}: tree: expected at least heads + 1 = {self.heads + 1} nodes "
                              f"(the root and one node per head), found {self.tree}")
        _check_accept(self.name, self.accept)

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.accept, self.heads)

    def apply(self, trace: Trace) -> Trace:
        groups = decode_step_groups(self.name, trace)
        hidden, vocab, lm = model_dims(trace, self.name)
        t = self.tree
        extra_pairs = tree_pairs(t, self.heads) - t * (t + 1) // 2
        batch = trace.meta.get("batch")
        ops: list[Op] = []
        for step, group in groups:
            if step is None:
                ops += group
                continue
            ops += [verify_op(op, t, batch, extra_pairs, self.name) for op in group]
            att = next((o for o in group if o.op_class == "attention"), None)
            b = int(att.extra["batch"]) if att is not None else int(batch or 1)
            template = lm or next((o for o in group if o.op_class == "gemm"), None)
            ops += self.head_ops(trace, step, b, hidden, vocab, template)
        return replace_ops(trace, ops, medusa={"hidden": hidden, "vocab": vocab,
                                               "tree_levels": tree_levels(t, self.heads)})

    def head_ops(self, trace: Trace, step: int, b: int, hidden: int, vocab: int, template: Op | None) -> list[Op]:
        """The draft cost of one step: per head a ResBlock and a vocabulary projection on B tokens."""
        w_bits, a_bits, bias_bits, dt = _widths(trace, template)
        compute = template.compute_dtype if template is not None else dt
        a = a_bits / 8
        x = [b, 1, hidden]

        def mk(name: str, cls: str, module: str, flops: float, act: float, weight: float = 0.0,
               ins: list | None = None, outs: list | None = None, extra: dict | None = None,
               wb: float | None = None) -> Op:
            ins = ins or [x]
            return Op(name=name, op_class=cls, module=module, layer=None, phase="decode", flops=flops,
                      bytes_weight=weight, bytes_activation=act, input_shapes=ins, input_dtypes=[dt] * len(ins),
                      output_shapes=outs or [x], output_dtypes=[dt], compute_dtype=compute, step=step,
                      extra=dict(extra or {}, speculative="draft"), weight_bits=wb)

        ops = []
        for i in range(self.heads):
            base = f"medusa_head.{i}"
            ops += [
                mk("aten.linear.default", "gemm", f"{base}.0.linear", 2.0 * b * hidden * hidden + b * hidden,
                   2.0 * b * hidden * a, hidden * hidden * w_bits / 8 + hidden * bias_bits / 8,
                   ins=[x, [hidden, hidden], [hidden]], extra={"batch": 1, "M": b, "K": hidden, "N": hidden},
                   wb=w_bits),
                mk("aten.silu.default", "elementwise", f"{base}.0.act", float(b * hidden), 2.0 * b * hidden * a),
                mk("aten.add.Tensor", "elementwise", f"{base}.0", float(b * hidden), 3.0 * b * hidden * a,
                   ins=[x, x]),
                mk("aten.linear.default", "gemm", f"{base}.lm_head", 2.0 * b * hidden * vocab,
                   (b * hidden + b * vocab) * a, hidden * vocab * w_bits / 8, ins=[x, [vocab, hidden]],
                   outs=[[b, 1, vocab]], extra={"batch": 1, "M": b, "K": hidden, "N": vocab}, wb=w_bits),
            ]
        return ops


# ------------------------------------------------------------------ SWIFT
def skipped_layers(n_layers: int, skip: float) -> set[int]:
    """Ordinal positions of the skipped layers: ``round(skip x L)`` (at most L - 1) spread evenly
    over the intermediate layers (over all layers when there are too few intermediate ones)."""
    n = min(n_layers - 1, math.floor(skip * n_layers + 0.5))
    if n <= 0:
        return set()
    cands = list(range(1, n_layers - 1)) if n <= n_layers - 2 else list(range(n_layers))
    return {cands[math.floor((i + 0.5) * len(cands) / n)] for i in range(n)}


@register
@dataclass(frozen=True)
class Swift(Technique):
    """SWIFT: the model with some layers skipped drafts ``draft`` tokens; the full model verifies them."""

    name = "swift"
    summary = "self-speculative decoding: draft with skipped layers, verify the chain in one step"

    skip: float = 0.5     # fraction of decoder layers the draft passes skip, in [0, 1)
    draft: int = 4        # draft tokens per step (autoregressive draft passes), >= 1
    accept: float = 0.7   # per-token acceptance probability, in [0, 1]

    def check(self) -> None:
        if not 0.0 <= self.skip < 1.0:
            raise LlmsimError(f"--technique {self.name}: skip: expected a fraction in [0, 1), found {self.skip}")
        if self.draft < 1:
            raise LlmsimError(f"--technique {self.name}: draft: expected a positive integer, found {self.draft}")
        _check_accept(self.name, self.accept)

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.accept, self.draft)

    def apply(self, trace: Trace) -> Trace:
        groups = decode_step_groups(self.name, trace)
        batch = trace.meta.get("batch")
        ops: list[Op] = []
        kept_total = 0
        for step, group in groups:
            if step is None:
                ops += group
                continue
            kept, kept_total = self.kept_runs(group)
            for j in range(self.draft):
                ops += self.draft_pass(group, kept, j)
            ops += [verify_op(op, self.draft + 1, batch, 0, self.name) for op in group]
        return replace_ops(trace, ops, swift={"draft_layers": kept_total})

    def kept_runs(self, group: list[Op]) -> tuple[dict[tuple[int, int], tuple[int, int]], int]:
        """(layer, repeat) of each traced run -> (first kept layer, kept layers) in the draft; the
        total of kept layers."""
        runs = sorted({(op.layer, op.repeat) for op in group if op.layer is not None})
        skipped = skipped_layers(sum(r for _, r in runs), self.skip)
        out, pos, total = {}, 0, 0
        for layer, rep in runs:
            kept = [i for i in range(rep) if pos + i not in skipped]
            out[(layer, rep)] = (layer + kept[0] if kept else layer, len(kept))
            pos += rep
            total += len(kept)
        return out, total

    def draft_pass(self, group: list[Op], kept: dict, j: int) -> list[Op]:
        """Draft pass ``j`` (0-based): the kept layers over one token, ``j`` drafted tokens cached."""
        ops = []
        for op in group:
            layer, rep = op.layer, op.repeat
            if op.layer is not None:
                layer, rep = kept[(op.layer, op.repeat)]
                if rep == 0:
                    continue
            if op.op_class == "attention":
                lq, lk = int(op.extra["q_len"]), int(op.extra["kv_len"])
                new = resized_attention(op, kv_len=lk + j, past=lk - lq + j)
            else:
                new = op
            module = shift_layer(op.module, op.layer, layer) if op.layer is not None else op.module
            ops.append(copy_op(new, layer=layer, repeat=rep, module=module,
                               extra=dict(new.extra, speculative="draft", draft_pass=j + 1)))
        return ops


@dataclass(frozen=True)
class SwiftVerification(Technique):
    """SWIFT's verification step alone (every layer over ``draft + 1`` tokens), without its draft
    passes: a decode iteration by identical layers (``sim/systems/decode.py``) costs the drafts
    itself, as ``draft`` plain steps through the kept layers. Internal: not selectable by name."""

    name = "swift-verify"
    summary = "SWIFT's verification step alone (internal)"

    draft: int = 4
    accept: float = 0.7

    @property
    def tokens_per_step(self) -> float:
        return expected_tokens(self.accept, self.draft)

    def apply(self, trace: Trace) -> Trace:
        groups = decode_step_groups("swift", trace)
        batch = trace.meta.get("batch")
        ops: list[Op] = []
        for step, group in groups:
            ops += group if step is None else [verify_op(op, self.draft + 1, batch, 0, "swift") for op in group]
        return replace_ops(trace, ops)
