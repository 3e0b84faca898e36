"""Vector-unit cost model: cycles of softmax, norms, activations and pointwise ops on a core's units.

Formulas (NeuPIMs' simulator, src/NeuPIMSystolicWS.cc ``get_vector_compute_cycles``, generalised;
``../shared/reference/neupims.md``). A row of n elements on one unit of ``lanes`` lanes takes

* ``iters(n) = ceil(n / lanes)`` steps per pass over it;
* ``tree(n)``: the reduction tree's iterations, ``1`` if n <= lanes, else
  ``ceil(n / lanes) + tree(ceil(n / lanes))``;

and per row:

| op | cycles per row |
|---|---|
| LayerNorm | 2 tree(n) add_tree + 2 scalar_mul + scalar_sqrt + iters(n) (2 add + 3 mul) |
| RMSNorm (ours, the same recipe) | tree(n) add_tree + scalar_mul + scalar_sqrt + iters(n) 3 mul |
| softmax | 2 tree(n) add_tree + iters(n) (add + exp + mul) |
| reduction (sum, mean, max) | tree(n) add_tree (+ iters(n) mul for a mean's scale) |
| pointwise | iters(n) x the op's steps (add, mul, exp, gelu ...; table ``POINTWISE_STEPS``) |

Rows are spread over the core's units (``ceil(rows / units)`` rows each; a unit does its rows one
after another). Pointwise ops have no rows: their elements are split evenly over the units.
Assumptions where NeuPIMs gives no recipe: division is a multiply by a reciprocal (``mul``), SiLU
is x * sigmoid(x) = exp, add, mul, mul; tanh exp, add, mul; square roots use ``scalar_sqrt`` per
step; casts and copies one ``add`` step (a pass through the unit).

Every formula costs at least as many lane-steps per element as the trace counts FLOPs for the op
(softmax 5, LayerNorm 7, pointwise and reductions 1; ``docs/accounting.md``), so no vector op beats
its roofline at one FLOP per lane per cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.config.hardware import NpuConfig

# ATen base name -> the vector steps of one pass over each element (latency keys of the config)
POINTWISE_STEPS: dict[str, tuple[str, ...]] = {
    "add": ("add",), "sub": ("add",), "rsub": ("add",), "neg": ("add",), "abs": ("add",),
    "maximum": ("add",), "minimum": ("add",), "clamp": ("add",), "clamp_min": ("add",), "clamp_max": ("add",),
    "where": ("add",), "masked_fill": ("add",), "eq": ("add",), "ne": ("add",), "gt": ("add",), "lt": ("add",),
    "ge": ("add",), "le": ("add",), "logical_not": ("add",), "bitwise_not": ("add",), "relu": ("add",),
    "mul": ("mul",), "div": ("mul",), "pow": ("mul",), "square": ("mul",), "reciprocal": ("mul",),
    "exp": ("exp",), "log": ("exp",), "sigmoid": ("exp", "add", "mul"),
    "tanh": ("exp", "add", "mul"), "silu": ("exp", "add", "mul", "mul"),
    "gelu": ("gelu",), "sqrt": ("scalar_sqrt",), "rsqrt": ("scalar_sqrt",),
    "sin": ("exp",), "cos": ("exp",),
}
COPY_STEPS = ("add",)          # casts, copies, concatenation: one pass through a unit
REDUCTIONS = {"sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "linalg_vector_norm", "norm",
              "logsumexp", "var", "std", "var_mean", "std_mean", "prod", "any", "all", "count_nonzero"}


def iters(n: int, lanes: int) -> int:
    return max(1, math.ceil(n / lanes))


def tree(n: int, lanes: int) -> int:
    """Iterations of the reduction tree over n elements (NeuPIMs' ``calculate_add_tree_iterations``)."""
    out = 0
    while n > lanes:
        n = math.ceil(n / lanes)
        out += n
    return out + 1


@dataclass(frozen=True)
class VectorCost:
    cycles: int        # core cycles on the vector units
    rows: int          # rows (or element groups) the units share
    row_cycles: int    # cycles of one row on one unit (pointwise: of one unit's share)
    units_used: int


def _lat(npu: NpuConfig, step: str) -> int:
    return getattr(npu.vector.op_latency_cycles, step)


def row_cycles(npu: NpuConfig, kind: str, n: int, name: str = "") -> int:
    """Cycles of one row of ``n`` elements on one unit for ``kind`` in softmax, layer_norm,
    rms_norm, reduction (``name`` "mean" adds the scale pass) or pointwise (``name`` picks the steps)."""
    lanes = npu.vector.lanes
    L = npu.vector.op_latency_cycles
    it, tr = iters(n, lanes), tree(n, lanes)
    if kind == "layer_norm":
        return 2 * tr * L.add_tree + 2 * L.scalar_mul + L.scalar_sqrt + it * (2 * L.add + 3 * L.mul)
    if kind == "rms_norm":
        return tr * L.add_tree + L.scalar_mul + L.scalar_sqrt + it * 3 * L.mul
    if kind == "softmax":
        return 2 * tr * L.add_tree + it * (L.add + L.exp + L.mul)
    if kind == "reduction":
        return tr * L.add_tree + (it * L.mul if name in ("mean", "var", "std", "var_mean", "std_mean") else 0)
    if kind == "pointwise":
        return it * sum(_lat(npu, s) for s in POINTWISE_STEPS.get(name, COPY_STEPS))
    raise ValueError(f"vector cost: unknown kind {kind!r}")


def vector_cycles(npu: NpuConfig, kind: str, rows: int, n: int, name: str = "") -> VectorCost:
    """Cycles of ``rows`` rows of ``n`` elements on the core's vector units (see the module doc).
    Pointwise work is split evenly over the units whatever its rows."""
    units = npu.vector.units
    if rows <= 0 or n <= 0:
        return VectorCost(0, 0, 0, 0)
    if kind == "pointwise":
        share = math.ceil(rows * n / units)
        per = row_cycles(npu, kind, share, name)
        return VectorCost(per, rows, per, min(units, rows * n))
    per = row_cycles(npu, kind, n, name)
    return VectorCost(math.ceil(rows / units) * per, rows, per, min(units, rows))
