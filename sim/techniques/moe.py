"""Mixture-of-experts routing as a trace transform: per-expert token counts, capacity, imbalance.

``moe:dist=uniform|zipf,skew=1.2,capacity=1.25,seed=0``. In each MoE layer the T x k (token,
expert) assignments (T tokens from the router GEMM's M, E experts from its N, k = the traced
expert rows / T) are spread over the experts:

* ``uniform``: as even as possible (T k // E each, the remainder one more), as the tracer does;
* ``zipf``: expected counts proportional to rank^-skew (rank 1 the busiest), *in expectation*
  (rounded by largest remainder, no sampling); an expert takes at most T tokens (a token picks k
  distinct experts), the excess goes to the others in proportion. ``seed`` 0 gives rank r to
  expert r-1; another seed permutes which experts are hot (deterministically).

``capacity`` > 0 caps each expert at ceil(capacity x T k / E) tokens (GShard / Switch capacity
factor); the overflow is dropped (the token skips that expert) and counted. 0: no cap (dropless).

The traced per-expert blocks (gather, gate/up GEMM, activation, down GEMM, weighting,
scatter-add) are re-costed as one block per expert with its own token count: GEMM M = the
expert's tokens, the other ops in proportion; an expert with no token has no block and reads no
weights. Every op of a block carries ``extra["expert"]`` and ``extra["expert_tokens"]``, so the
roofline, GPU and NPU simulators cost each expert as an ordinary GEMM (the busiest expert's
share is visible per op). The router op's ``extra["moe"]`` and ``trace.meta["moe"]`` hold the
counts, the dropped assignments and the load imbalance (max / mean tokens per expert).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from sim.errors import LlmsimError
from sim.techniques.base import Technique, register, replace_ops
from sim.trace.moe import balanced_counts
from sim.trace.resize import copy_op, gemm_role, scale_gemm
from sim.trace.schema import Op, Trace

DISTS = ("uniform", "zipf")


def zipf_counts(slots: int, experts: int, per_expert_max: int, skew: float) -> list[int]:
    """Integer counts by rank (index 0 = rank 1) summing to ``slots``: proportional to
    rank^-skew, each at most ``per_expert_max`` (water-filling), rounded by largest remainder."""
    w = [(r + 1) ** -skew for r in range(experts)]
    x = [0.0] * experts
    active, left = set(range(experts)), float(slots)
    while active:
        tot = sum(w[r] for r in active)
        over = {r for r in active if left * w[r] / tot > per_expert_max}
        if not over:
            for r in active:
                x[r] = left * w[r] / tot
            break
        for r in over:
            x[r] = per_expert_max
            left -= per_expert_max
        active -= over
    counts = [min(per_expert_max, math.floor(v + 1e-9)) for v in x]
    rest = slots - sum(counts)
    order = sorted(range(experts), key=lambda r: (-(x[r] - counts[r]), r))
    for r in order:
        if rest <= 0:
            break
        if counts[r] < per_expert_max:
            counts[r] += 1
            rest -= 1
    return counts


@register
@dataclass(frozen=True)
class Moe(Technique):
    """``dist`` uniform or zipf; ``skew`` the Zipf exponent (> 0); ``capacity`` the capacity
    factor (0: no cap); ``seed`` which experts are hot (0: expert 0 the busiest)."""

    name = "moe"
    summary = "MoE top-k routing: uniform or Zipf expert load, capacity factor with token drop, imbalance"

    dist: str = "uniform"
    skew: float = 1.2
    capacity: float = 0.0
    seed: int = 0

    def check(self) -> None:
        where = f"--technique {self.name}"
        if self.dist not in DISTS:
            raise LlmsimError(f"{where}: dist: expected one of {', '.join(DISTS)}, found {self.dist!r}")
        if not self.skew > 0:
            raise LlmsimError(f"{where}: skew: expected a Zipf exponent > 0, found {self.skew}")
        if self.capacity < 0:
            raise LlmsimError(f"{where}: capacity: expected a capacity factor > 0 (0: no cap), found {self.capacity}")
        if self.seed < 0:
            raise LlmsimError(f"{where}: seed: expected an integer >= 0, found {self.seed}")

    def counts(self, tokens: int, top_k: int, experts: int) -> tuple[list[int], int, int | None]:
        """(kept tokens per expert, dropped assignments, capacity per expert or None)."""
        slots = tokens * top_k
        if self.dist == "uniform":
            by_rank = balanced_counts(tokens, top_k, experts)
        else:
            by_rank = zipf_counts(slots, experts, tokens, self.skew)
        perm = list(range(experts))
        if self.seed:
            random.Random(self.seed).shuffle(perm)
        raw = [0] * experts
        for rank, e in enumerate(perm):
            raw[e] = by_rank[rank]
        cap = math.ceil(self.capacity * slots / experts - 1e-9) if self.capacity else None
        kept = [min(c, cap) for c in raw] if cap is not None else raw
        return kept, slots - sum(kept), cap

    def apply(self, trace: Trace) -> Trace:
        if not any(gemm_role(op) == "experts" for op in trace.ops):
            raise LlmsimError(f"--technique {self.name}: {trace.meta.get('model', 'this trace')} is a dense model "
                              "(no expert GEMMs in the trace)")
        out: list[Op] = []
        layers: list[dict[str, Any]] = []
        i, ops = 0, trace.ops
        while i < len(ops):
            j = i
            key = (ops[i].phase, ops[i].step, ops[i].layer)
            while j < len(ops) and (ops[j].phase, ops[j].step, ops[j].layer) == key:
                j += 1
            seg = ops[i:j]
            if any(gemm_role(op) == "experts" for op in seg):
                new, info = self._segment(trace, seg)
                out += new
                layers.append(info)
            else:
                out += [copy_op(op) for op in seg]
            i = j
        first = layers[0]
        meta = {"dist": self.dist, "skew": self.skew if self.dist == "zipf" else None,
                "capacity_factor": self.capacity or None, "seed": self.seed, "experts": first["experts"],
                "top_k": first["top_k"], "imbalance": max(x["imbalance"] for x in layers),
                "dropped": sum(x["dropped"] * x["repeat"] for x in layers), "layers": layers}
        return replace_ops(trace, out, moe=meta)

    def _segment(self, trace: Trace, seg: list[Op]) -> tuple[list[Op], dict[str, Any]]:
        model = trace.meta.get("model", "this trace")
        where = f"--technique {self.name}: {model}"
        router = next((k for k, op in enumerate(seg) if gemm_role(op) == "router"), None)
        if router is None:
            raise LlmsimError(f"{where}: no router GEMM (mlp.gate) next to the expert GEMMs of layer {seg[0].layer}")
        tokens, experts = int(seg[router].extra["M"]), int(seg[router].extra["N"])
        idx = [k for k, op in enumerate(seg) if ".experts" in op.module or op.module.endswith("experts")]
        lo, hi = idx[0], idx[-1] + 1
        ends = [k for k in range(lo, hi) if "index_add" in seg[k].name]
        if not ends:
            raise LlmsimError(f"{where}: the expert GEMMs are not per-expert blocks (grouped GEMM): "
                              "trace on meta to use this technique")
        blocks, start = [], lo
        for e in ends:
            blocks.append(list(range(start, e + 1)))
            start = e + 1
        template = blocks[-1]
        names = [seg[k].name for k in template]
        if len(blocks) > 1 and [seg[k].name for k in blocks[0][-len(template):]] == names:
            pre = blocks[0][:-len(template)]
        else:   # one block: the preamble ends where the first expert's gather begins
            first = next((k for k in blocks[0] if seg[k].name.startswith(("aten.arange", "aten.index.",
                                                                             "aten.nonzero", "aten.where"))),
                         blocks[0][0])
            pre = [k for k in blocks[0] if k < first]
        tmpl = [seg[k] for k in template]
        gemm0 = next((op for op in tmpl if gemm_role(op) == "experts"), None)
        if gemm0 is None:
            raise LlmsimError(f"{where}: could not find an expert GEMM in the expert block of layer {seg[0].layer}")
        n_t = int(gemm0.extra["M"])
        traced = 0   # (token, expert) rows the trace multiplies: its first expert GEMM per block
        for b in blocks:
            g = next((seg[q] for q in b if gemm_role(seg[q]) == "experts"), None)
            traced += int(g.extra["M"]) if g is not None else 0
        top_k = max(1, round(traced / tokens))
        kept, dropped, cap = self.counts(tokens, top_k, experts)
        mean = sum(kept) / experts
        imbalance = max(kept) / mean if mean else 1.0
        info = {"phase": seg[0].phase, "step": seg[0].step, "layer": seg[0].layer, "repeat": seg[0].repeat,
                "tokens": tokens, "top_k": top_k, "experts": experts, "counts": kept, "dropped": dropped,
                "capacity": cap, "imbalance": imbalance, "active": sum(1 for c in kept if c)}
        new: list[Op] = []
        for k in range(lo):
            op = seg[k]
            if k == router:
                op = copy_op(op, extra=dict(op.extra, moe={x: info[x] for x in
                                                         ("counts", "dropped", "capacity", "imbalance", "top_k")}))
            else:
                op = copy_op(op)
            new.append(op)
        new += [copy_op(seg[k]) for k in pre]
        for e, c in enumerate(kept):
            if c:
                new += [_rescale(op, n_t, c, e) for op in tmpl]
        new += [copy_op(op) for op in seg[hi:]]
        return new, info


def _rescale(op: Op, n_old: int, n_new: int, expert: int) -> Op:
    """One op of an expert block re-costed for ``n_new`` tokens instead of ``n_old``."""
    r = n_new / n_old
    if op.op_class == "gemm":
        out = scale_gemm(op, m=r)
    else:
        keep_in = {0} if ("aten.index." in op.name or "index_add" in op.name) else set()
        keep_out = {0} if "index_add" in op.name else set()
        ins = [_shape(s, n_old, n_new, k in keep_in) for k, s in enumerate(op.input_shapes)]
        outs = [_shape(s, n_old, n_new, k in keep_out) for k, s in enumerate(op.output_shapes)]
        out = copy_op(op, flops=op.flops * r, bytes_activation=op.bytes_activation * r, input_shapes=ins,
                      output_shapes=outs)
    out.extra["expert"] = expert
    out.extra["expert_tokens"] = n_new
    if op.op_class == "gemm":
        out.input_shapes = [_shape(s, n_old, n_new, k > 0) for k, s in enumerate(op.input_shapes)]
        out.output_shapes = [_shape(s, n_old, n_new, False) for s in op.output_shapes]
    return out


def _shape(shape: list[int], n_old: int, n_new: int, keep: bool) -> list[int]:
    s = list(shape)
    if s and not keep and s[0] == n_old:
        s[0] = n_new
    return s
