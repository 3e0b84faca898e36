"""The operator trace: the one interface between the PyTorch front end and every back end.

An :class:`Op` is one ATen operator (or one fused attention) with its shapes, dtypes, FLOPs and
bytes by role. A run of identical decoder layers is stored once with ``repeat`` = the number of
layers it stands for; every total multiplies by ``repeat``, so totals stay exact.
This module imports neither torch nor pandas.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

TRACE_FORMAT = "llmsim-trace"
TRACE_VERSION = 1

ROLES = ("weight", "activation", "kv_read", "kv_write")

OP_CLASSES = (
    "gemm",          # mm / addmm / bmm: dense matrix multiply (linear layers, lm_head)
    "attention",     # one fused attention: QK^T, softmax, SV
    "elementwise",   # pointwise arithmetic and activation functions
    "norm",          # everything inside a LayerNorm / RMSNorm module
    "softmax",       # a softmax outside attention (router, logits)
    "reduction",     # sum / mean / max over a dimension
    "embedding",     # gathered rows of an embedding table
    "moe_routing",   # router top-k and token bookkeeping
    "moe_gather",    # MoE token gather / scatter-add
    "kv_cache",      # appending new K/V to the cache
    "copy",          # casts, copies, concatenation, fills: memory traffic, no FLOPs
    "allreduce",     # tensor-parallel all-reduce (synthetic: not an ATen op)
    "other",
)


@dataclass
class Op:
    name: str                      # ATen overload, e.g. "aten.mm.default"
    op_class: str
    module: str                    # module path, e.g. "model.layers.0.self_attn.q_proj"
    layer: int | None              # decoder layer index (the first of a repeated run)
    phase: str                     # "prefill" or "decode"
    flops: float
    bytes_weight: float = 0.0
    bytes_activation: float = 0.0
    bytes_kv_read: float = 0.0
    bytes_kv_write: float = 0.0
    input_shapes: list[list[int]] = field(default_factory=list)
    input_dtypes: list[str] = field(default_factory=list)
    output_shapes: list[list[int]] = field(default_factory=list)
    output_dtypes: list[str] = field(default_factory=list)
    compute_dtype: str = "fp16"    # dtype the arithmetic runs in (peak lookup key)
    repeat: int = 1                # identical consecutive layers this record stands for
    step: int = 0                  # decode step within a generate trace (0 for prefill)
    extra: dict[str, Any] = field(default_factory=dict)
    weight_bits: float | None = None  # bits per element of the op's weight matrix, group metadata included
    kv_bits: float | None = None      # bits per KV-cache element the op reads or writes

    @property
    def bytes(self) -> float:
        return self.bytes_weight + self.bytes_activation + self.bytes_kv_read + self.bytes_kv_write

    def bytes_by_role(self) -> dict[str, float]:
        return {
            "weight": self.bytes_weight,
            "activation": self.bytes_activation,
            "kv_read": self.bytes_kv_read,
            "kv_write": self.bytes_kv_write,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trace:
    meta: dict[str, Any]
    ops: list[Op]

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    @property
    def num_ops(self) -> int:
        """Op records with repeats expanded."""
        return sum(op.repeat for op in self.ops)

    def expanded(self) -> Iterator[Op]:
        """Yield every op as if no layers were merged, layer by layer in execution order."""
        i = 0
        while i < len(self.ops):
            op = self.ops[i]
            if op.repeat == 1 or op.layer is None:
                yield op
                i += 1
                continue
            j = i
            while j < len(self.ops) and (self.ops[j].layer, self.ops[j].repeat, self.ops[j].phase,
                                         self.ops[j].step) == (op.layer, op.repeat, op.phase, op.step):
                j += 1
            for r in range(op.repeat):
                for src in self.ops[i:j]:
                    d = src.to_dict()
                    d["repeat"] = 1
                    d["layer"] = src.layer + r
                    d["module"] = shift_layer(src.module, src.layer, src.layer + r)
                    yield Op(**d)
            i = j

    def total_flops(self, phase: str | None = None) -> float:
        return sum(op.flops * op.repeat for op in self._sel(phase))

    def bytes_by_role(self, phase: str | None = None) -> dict[str, float]:
        tot = dict.fromkeys(ROLES, 0.0)
        for op in self._sel(phase):
            for role, b in op.bytes_by_role().items():
                tot[role] += b * op.repeat
        return tot

    def total_bytes(self, phase: str | None = None) -> float:
        return sum(self.bytes_by_role(phase).values())

    def _sel(self, phase: str | None) -> Iterable[Op]:
        return self.ops if phase is None else (o for o in self.ops if o.phase == phase)

    def summary(self) -> dict[str, Any]:
        """The ``llmsim trace --json`` object."""
        by_role = self.bytes_by_role()
        phases = sorted({o.phase for o in self.ops})
        by_class: dict[str, dict[str, float]] = {}
        for op in self.ops:
            c = by_class.setdefault(op.op_class, {"ops": 0, "flops": 0.0, "bytes": 0.0})
            c["ops"] += op.repeat
            c["flops"] += op.flops * op.repeat
            c["bytes"] += op.bytes * op.repeat
        return {
            "model": self.meta.get("model"),
            "phase": self.meta.get("phase"),
            "batch": self.meta.get("batch"),
            "seq_len": self.meta.get("seq_len"),
            "flops": self.total_flops(),
            "bytes": sum(by_role.values()),
            "bytes_by_role": by_role,
            "ops": self.num_ops,
            "records": len(self.ops),
            "by_phase": {
                p: {"flops": self.total_flops(p), "bytes": self.total_bytes(p), "bytes_by_role": self.bytes_by_role(p)}
                for p in phases
            },
            "by_class": by_class,
            "techniques": list(self.meta.get("techniques", [])),
            "tokens_per_step": float(self.meta.get("tokens_per_step", 1.0)),
        }


def shift_layer(module: str, old: int, new: int) -> str:
    """``module`` with its layer index ``old`` replaced by ``new`` (the first matching component)."""
    parts = module.split(".")
    for i, p in enumerate(parts):
        if p == str(old):
            parts[i] = str(new)
            break
    return ".".join(parts)
