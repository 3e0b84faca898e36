"""The TorchDispatchMode that turns a forward pass into :class:`~sim.trace.schema.Op` records.

It sees every ATen call after autograd and composite decomposition, on ``meta`` and CPU alike.
Two regions are folded into one op each, so that the trace does not depend on which kernel runs:

* attention (entered from the ``llmsim`` attention function registered with transformers):
  one ``attention`` op with its QK^T and SV parts computed from the shapes;
* the KV-cache append (entered from a wrapped cache ``update``): one ``kv_cache`` op that reads
  the new K/V and writes them to the cache.

Roles: parameters are ``weight``; views of a tensor inherit its role; everything else is
``activation``. KV-cache reads and writes are attributed inside the two regions above.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakTensorKeyDictionary

from sim.trace import costs
from sim.trace.costs import Precision, dtype_name, flatten_tensors
from sim.trace.formulas import attention_cost
from sim.trace.schema import Op

_LAYER_RE = re.compile(r"\.(\d+)(?:\.|$)")
_ACTIVE: "Recorder | None" = None
_FROM_INPUTS = object()  # compute dtype: infer the second operand's width from the op's inputs


def _shares_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage()._cdata == b.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, AttributeError):
        return False


def active_recorder() -> "Recorder | None":
    return _ACTIVE


def layer_of(module_path: str) -> int | None:
    m = _LAYER_RE.search(module_path)
    return int(m.group(1)) if m else None


class Recorder(TorchDispatchMode):
    """Record ATen ops of a forward pass with module path, layer, FLOPs and bytes by role."""

    def __init__(self, model: torch.nn.Module, phase: str, precision: Precision, past_len: int = 0,
                 step: int = 0, tp: int = 1, tp_allreduce_after: list[str] | None = None) -> None:
        super().__init__()
        self.phase = phase
        self.precision = precision
        self.past_len = past_len
        self.step = step
        self.tp = tp
        self.tp_allreduce_after = tuple(tp_allreduce_after or ())
        self.ops: list[Op] = []
        self.roles = WeakTensorKeyDictionary()
        for p in model.parameters():
            self.roles[p] = "weight"
        self.names = {id(m): n for n, m in model.named_modules()}
        self.stack: list[tuple[str, str]] = []  # (module path, class name)
        self._suppress = 0
        self._hooks: list[Any] = []
        self._prec_cache: dict[str, Precision] = {}

    # ---------------------------------------------------------------- module tracking
    def __enter__(self):
        global _ACTIVE
        _ACTIVE = self
        mm = torch.nn.modules.module
        self._hooks = [
            mm.register_module_forward_pre_hook(self._pre_hook),
            mm.register_module_forward_hook(self._post_hook, always_call=True),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        global _ACTIVE
        _ACTIVE = None
        for h in self._hooks:
            h.remove()
        return super().__exit__(*exc)

    def _pre_hook(self, module, args):
        name = self.names.get(id(module))
        if name is not None:
            self.stack.append((name, type(module).__name__))

    def _post_hook(self, module, args, output):
        name = self.names.get(id(module))
        if name is None or not self.stack:
            return
        if self.stack[-1][0] == name:
            self.stack.pop()
        if self.tp > 1 and self._suppress == 0 and any(
            name == s or name.endswith("." + s) for s in self.tp_allreduce_after
        ):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor):
                self._emit_allreduce(name, out)

    @property
    def module(self) -> str:
        return self.stack[-1][0] if self.stack else ""

    def _context_class(self) -> str | None:
        """Class forced by the enclosing module (norm, router, experts), innermost first."""
        for _, cls in reversed(self.stack):
            low = cls.lower()
            if "norm" in low:
                return "norm"
            if "router" in low:
                return "moe_routing"
            if low.endswith("experts") or "sparsemoe" in low or low.endswith("moeblock"):
                return "moe"
        return None

    # ---------------------------------------------------------------- regions
    @contextmanager
    def suppressed(self) -> Iterator[None]:
        self._suppress += 1
        try:
            yield
        finally:
            self._suppress -= 1

    def role(self, t: torch.Tensor) -> str:
        return self.roles.get(t, "activation")

    @property
    def prec(self) -> Precision:
        """The precision of the current module (its ``weight_bits_rules`` match, if any)."""
        if not self.precision.weight_bits_rules:
            return self.precision
        module = self.module
        cached = self._prec_cache.get(module)
        if cached is None:
            cached = self._prec_cache[module] = self.precision.for_module(module)
        return cached

    # ---------------------------------------------------------------- dispatch
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._suppress:
            return out
        name = costs.packet_name(func)
        ins = flatten_tensors(args) + flatten_tensors(kwargs)
        outs = flatten_tensors(out)
        # An op that hands back (a view of) its input moves no data: true views, and
        # maybe-copy ops (to, contiguous, reshape, eval-mode dropout) that did not copy. In-place
        # ops (trailing underscore) do write their input and are recorded.
        aliased = bool(ins and outs and not name.endswith("_") and _shares_storage(ins[0], outs[0]))
        kind = costs.classify(name, aliased)
        if kind == "free":
            if ins:
                role = self.roles.get(ins[0])
                if role is not None:
                    for o in outs:
                        self.roles[o] = role
            return out
        self._record(func, name, kind, args, ins, outs)
        return out

    def _record(self, func, name: str, kind: str, args: tuple, ins: list[torch.Tensor],
                outs: list[torch.Tensor]) -> None:
        prec = self.prec
        by_role = {"weight": 0.0, "activation": 0.0, "kv_read": 0.0, "kv_write": 0.0}
        extra: dict[str, Any] = {}
        seen: set[int] = set()
        uniq_in = []
        for t in ins:
            if id(t) not in seen:
                seen.add(id(t))
                uniq_in.append(t)

        if kind == "gemm":
            flops, dims = costs.gemm_flops(name, args)
            extra.update(dims)
            groups = costs.grouped_mm_groups(args) if "grouped_mm" in name else None
            for t in uniq_in:
                share = 1.0
                if groups is not None and t is args[1]:
                    extra["experts_active"], extra["experts"] = groups[1], groups[2]
                    share = groups[1] / groups[2]  # only experts with tokens read their weights
                by_role[self._byte_role(t)] += prec.nbytes(t, self.role(t)) * share
            for t in outs:
                by_role["activation"] += prec.nbytes(t, "activation")
        elif kind in ("embedding", "gather"):
            flops = 0.0
            src = uniq_in[0] if name != "embedding" else args[0]
            gathered = sum(o.numel() for o in outs)
            by_role[self._byte_role(src)] += prec.nbytes(src, self.role(src), numel=gathered)
            for t in uniq_in:
                if t is not src:
                    by_role["activation"] += prec.nbytes(t, self.role(t))
            for t in outs:
                by_role["activation"] += prec.nbytes(t, "activation")
        elif kind == "scatter":
            dst = args[0]
            src = args[3] if len(args) > 3 and isinstance(args[3], torch.Tensor) else (uniq_in[-1] if uniq_in else dst)
            touched = src.numel()
            flops = float(touched) if "add" in name else 0.0
            for t in uniq_in:
                if t is dst:
                    by_role["activation"] += prec.nbytes(t, "activation", numel=touched)
                else:
                    by_role[self._byte_role(t)] += prec.nbytes(t, self.role(t))
            by_role["activation"] += prec.nbytes(dst, "activation", numel=touched)
        else:
            flops = costs.pointwise_flops(kind, name, uniq_in, outs)
            for t in ([] if name in costs.TEMPLATE_OPS else uniq_in):
                by_role[self._byte_role(t)] += prec.nbytes(t, self.role(t))
            for t in outs:
                by_role["activation"] += prec.nbytes(t, "activation")

        op_class = self._op_class(kind)
        self.ops.append(self._make_op(costs.full_name(func), op_class, flops, by_role, uniq_in, outs,
                                      self._compute_dtype(kind, uniq_in, outs), extra))

    def _byte_role(self, t: torch.Tensor) -> str:
        r = self.role(t)
        return "weight" if r == "weight" else "activation"

    def _op_class(self, kind: str) -> str:
        ctx = self._context_class()
        if kind == "gemm":
            return "gemm"
        if ctx == "norm":
            return "norm"
        if ctx == "moe_routing":
            return "moe_routing"
        if ctx == "moe" and kind in ("gather", "scatter"):
            return "moe_gather"
        if ctx == "moe" and kind in ("copy", "reduction") :
            return "moe_routing" if kind == "reduction" else "copy"
        return {"gather": "copy", "scatter": "copy"}.get(kind, kind)

    def _compute_dtype(self, kind: str, ins: list[torch.Tensor], outs: list[torch.Tensor],
                       other_bits: float | None | object = _FROM_INPUTS) -> str:
        """The dtype whose peak applies. A matrix op runs on the integer path only when both of its
        operands are quantized to 8 bits or fewer: activations (``act_bits``) and the other operand
        (weights' ``weight_bits``, the KV cache's ``kv_bits``, or activations again)."""
        ref = next((t for t in ins if t.is_floating_point()), outs[0] if outs else None)
        native = dtype_name(ref.dtype) if ref is not None else "fp32"
        if kind != "gemm":
            return native
        a = self.prec.act_bits
        if other_bits is _FROM_INPUTS:
            has_weight = any(self.role(t) == "weight" and t.dim() >= 2 for t in ins)
            other_bits = self.prec.weight_bits if has_weight else a
        if a is not None and a <= 8 and isinstance(other_bits, (int, float)) and other_bits <= 8:
            return "int4" if max(a, other_bits) <= 4 else "int8"
        return native

    def _make_op(self, name: str, op_class: str, flops: float, by_role: dict[str, float],
                 ins: list[torch.Tensor], outs: list[torch.Tensor], compute_dtype: str,
                 extra: dict[str, Any], module: str | None = None) -> Op:
        module = self.module if module is None else module
        prec = self.prec
        weights = [t for t in ins if self.role(t) == "weight" and t.dim() >= 2 and t.is_floating_point()]
        weight_bits = prec.bits(weights[0], "weight") if weights else None
        kv_bits = None
        if op_class in ("attention", "kv_cache") and ins:
            kv_bits = prec.bits(ins[1] if op_class == "attention" else ins[0], "kv")
        return Op(
            name=name,
            op_class=op_class,
            module=module,
            layer=layer_of(module),
            phase=self.phase,
            flops=float(flops),
            bytes_weight=by_role["weight"],
            bytes_activation=by_role["activation"],
            bytes_kv_read=by_role["kv_read"],
            bytes_kv_write=by_role["kv_write"],
            input_shapes=[list(t.shape) for t in ins],
            input_dtypes=[dtype_name(t.dtype) for t in ins],
            output_shapes=[list(t.shape) for t in outs],
            output_dtypes=[dtype_name(t.dtype) for t in outs],
            compute_dtype=compute_dtype,
            step=self.step,
            extra=extra,
            weight_bits=weight_bits,
            kv_bits=kv_bits,
        )

    # ---------------------------------------------------------------- fused regions
    def emit_kv_append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if self._suppress:
            return
        prec = self.precision
        by_role = {"weight": 0.0, "activation": 0.0, "kv_read": 0.0, "kv_write": 0.0}
        for t in (key_states, value_states):
            by_role["activation"] += prec.nbytes(t, "activation")
            by_role["kv_write"] += prec.nbytes(t, "kv")
        extra = {"new_tokens": int(key_states.shape[-2]), "kv_heads": int(key_states.shape[1])}
        self.ops.append(self._make_op("aten.cat.default", "kv_cache", 0.0, by_role, [key_states, value_states],
                                      [key_states, value_states], dtype_name(key_states.dtype), extra))

    def emit_attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, out: torch.Tensor,
                       causal: bool, sliding_window: int | None) -> None:
        """One fused attention op: QK^T over the visible (query, key) pairs, softmax, SV."""
        if self._suppress:
            return
        prec = self.precision
        b, h, lq, d = query.shape
        hkv, lk, dv = key.shape[1], key.shape[2], value.shape[-1]
        past = min(self.past_len, max(lk - lq, 0))
        cost = attention_cost(b, h, hkv, lq, lk, d, dv, causal, sliding_window, past,
                              prec.bits(key, "activation"), prec.bits(key, "kv"), prec.bits(query, "activation"))
        by_role = {"weight": 0.0, "activation": cost.bytes_activation, "kv_read": cost.bytes_kv_read,
                   "kv_write": 0.0}
        extra = {
            "batch": int(b), "heads": int(h), "kv_heads": int(hkv), "q_len": int(lq), "kv_len": int(lk),
            "head_dim": int(d), "v_head_dim": int(dv), "causal": bool(causal), "pairs": int(cost.pairs),
            "sliding_window": sliding_window, "flops_qk": cost.flops_qk, "flops_sv": cost.flops_sv,
            "softmax_flops": cost.softmax_flops, "cached_tokens_read": int(cost.cached_tokens_read),
        }
        ins = [query, key, value]
        self.ops.append(self._make_op("aten.scaled_dot_product_attention", "attention", cost.flops,
                                      by_role, ins, [out],
                                      self._compute_dtype("gemm", ins, [out], self.precision.kv_bits
                                                          if cost.bytes_kv_read else self.precision.act_bits),
                                      extra))

    def _emit_allreduce(self, module: str, out: torch.Tensor) -> None:
        size = self.precision.nbytes(out, "activation")
        tp = self.tp
        by_role = {"weight": 0.0, "activation": 2.0 * size, "kv_read": 0.0, "kv_write": 0.0}
        extra = {"tp": tp, "comm_bytes": 2.0 * (tp - 1) / tp * size, "algorithm": "ring"}
        flops = (tp - 1) / tp * out.numel()
        self.ops.append(self._make_op("comm.all_reduce", "allreduce", flops, by_role, [out], [out],
                                      dtype_name(out.dtype), extra, module=module))

