"""A traced model on a BitMoD-style accelerator (``accelerator: bitserial`` systems).

The trace is captured at the system's weight precision (per op: ``Op.weight_bits``), and each
op becomes what the accelerator model in :mod:`sim.bitserial` sees:

* a GEMM with a weight matrix -> a ``linear`` layer (Cout = N, Cin = K, tokens = M) at the op's
  weight bits;
* a fused attention -> ``attn_qk`` (the keys are the stationary operand: Cout = KV length,
  Cin = head dim) and ``attn_v`` (Cout = value head dim, Cin = KV length), one instance per
  sequence and KV head, the query heads that share a KV head stacked as tokens (GQA), at the op's
  KV bits -- the artifact's own construction (reference/bitmod.md). The whole score rectangle is
  computed (a causal prefill does not skip the masked half), as in the artifact;
* a GEMM without weights (activation x activation) -> a ``linear`` layer at the activation width;
* every other op (norms, activations, residual adds, embedding, KV append) -> memory traffic only:
  its trace bytes at the DRAM rate, DRAM energy per bit. **Assumption**: the artifact charges these
  ops nothing; the accelerator has no vector-unit model, so llmsim charges their bytes (which keeps
  bytes conserved from trace to simulation) and no compute.

Each distinct op record is simulated once and weighted by its ``repeat`` (identical layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim.errors import LlmsimError



@dataclass
class KindTotals:
    cycles: float = 0.0
    dram_bytes: float = 0.0
    energy_pj: float = 0.0
    records: int = 0


@dataclass
class BitSerialRun:
    """One simulated run: cycles and energy of every op, totals by layer kind and by phase."""

    system: str
    design: str
    model: str
    phase: str
    engine: str
    freq_hz: float
    array: str
    weight_bits: float | None
    kv_bits: float | None
    cycles: float
    energy_pj: dict[str, float]
    dram_bytes: float
    trace_bytes: float
    tokens: float
    by_kind: dict[str, KindTotals] = field(default_factory=dict)
    by_phase: dict[str, float] = field(default_factory=dict)   # cycles
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def time_s(self) -> float:
        return self.cycles / self.freq_hz

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system, "design": self.design, "model": self.model, "phase": self.phase,
            "engine": self.engine, "array": self.array, "weight_bits": self.weight_bits, "kv_bits": self.kv_bits,
            "time_s": self.time_s, "cycles": int(round(self.cycles)),
            "tokens": self.tokens, "tokens_per_s": self.tokens / self.time_s if self.cycles else 0.0,
            "energy_j": self.energy_pj.get("total", 0.0) * 1e-12,
            "energy_pj": self.energy_pj,
            "dram_bytes": self.dram_bytes, "trace_bytes": self.trace_bytes,
            "by_kind": {k: vars(v) for k, v in self.by_kind.items()},
            "by_phase_s": {k: v / self.freq_hz for k, v in self.by_phase.items()},
            **self.meta,
        }


def trace_layers(trace, act_bits: int = 16):
    """(layers, records, others): the accelerator layers of a trace, the (op index, repeat) of each
    layer, and the ops that are memory traffic only."""
    from sim.bitserial import GemmLayer

    layers, owners, others = [], [], []
    for i, op in enumerate(trace.ops):
        x = op.extra
        if op.op_class == "gemm" and {"M", "K", "N"} <= set(x):
            bits = op.weight_bits if op.weight_bits is not None else act_bits
            layers.append(GemmLayer(name=op.module or op.name, kind="linear", cout=int(x["N"]), cin=int(x["K"]),
                                    tokens=int(x["M"]), instances=int(x.get("batch", 1)), weight_bits=float(bits),
                                    act_bits=int(act_bits), shared_weight=op.bytes_weight > 0))
            owners.append(i)
        elif op.op_class == "attention":
            b, h, hkv = int(x["batch"]), int(x["heads"]), int(x["kv_heads"])
            lq, lk, d, dv = int(x["q_len"]), int(x["kv_len"]), int(x["head_dim"]), int(x.get("v_head_dim", x["head_dim"]))
            kv = float(op.kv_bits if op.kv_bits is not None else act_bits)
            share = h // hkv
            base = op.module or op.name
            layers.append(GemmLayer(name=f"{base}.attn_qk", kind="attn_qk", cout=lk, cin=d, tokens=share * lq,
                                    instances=b * hkv, weight_bits=kv, act_bits=int(act_bits), shared_weight=False))
            owners.append(i)
            layers.append(GemmLayer(name=f"{base}.attn_v", kind="attn_v", cout=dv, cin=lk, tokens=share * lq,
                                    instances=b * hkv, weight_bits=kv, act_bits=int(act_bits), shared_weight=False))
            owners.append(i)
        else:
            others.append(i)
    return layers, owners, others


def run_trace(cfg, trace, task: str, engine: str = "des", system: str = "") -> BitSerialRun:
    """Simulate a trace on bit-serial config ``cfg``. Each op runs on the array of its phase: the
    designs' prefill and decode arrays hold the same PEs in two shapes (BitMoD 32x32 and 64x16,
    OliVe 36x32 and 72x16, FP16 32x24 and 64x12: reference/bitmod.md), so a generate run
    reshapes between its prompt and its decode steps. The widths are the trace's (one quantized
    model for the whole task)."""
    from sim.bitserial import analytic_run, des_run

    if engine not in ("des", "analytic"):
        raise LlmsimError(f"--engine: expected des or analytic, found {engine!r}")
    layers, owners, others = trace_layers(trace)
    simulate = des_run if engine == "des" else analytic_run
    results: list = [None] * len(layers)
    for phase in ("prefill", "decode"):
        idx = [j for j, i in enumerate(owners) if trace.ops[i].phase == phase]
        if idx:
            for j, lr in zip(idx, simulate(cfg, [layers[j] for j in idx], phase).layers):
                results[j] = lr
    run_layers = results
    array = "prefill" if task == "prefill" else "decode"
    freq = cfg.freq_mhz * 1e6
    bytes_per_cycle = cfg.dram.bw_bits_per_cycle / 8
    pj_per_byte = cfg.dram.energy_pj_per_64b / 8
    by_kind: dict[str, KindTotals] = {}
    by_phase: dict[str, float] = {}
    energy: dict[str, float] = {}
    total_cycles = dram = 0.0
    for layer, lr, i in zip(layers, run_layers, owners):
        op = trace.ops[i]
        rep = op.repeat
        k = by_kind.setdefault(layer.kind, KindTotals())
        e = sum(v for key, v in lr.energy_pj.items() if key != "total")
        k.cycles += lr.cycles * rep
        k.dram_bytes += lr.dram_bytes * rep
        k.energy_pj += e * rep
        k.records += 1
        for key, v in lr.energy_pj.items():
            if key != "total":
                energy[key] = energy.get(key, 0.0) + v * rep
        by_phase[op.phase] = by_phase.get(op.phase, 0.0) + lr.cycles * rep
        total_cycles += lr.cycles * rep
        dram += lr.dram_bytes * rep
    k = by_kind.setdefault("other", KindTotals())
    for i in others:
        op = trace.ops[i]
        cyc = op.bytes / bytes_per_cycle * op.repeat
        k.cycles += cyc
        k.dram_bytes += op.bytes * op.repeat
        k.energy_pj += op.bytes * pj_per_byte * op.repeat
        k.records += 1
        energy["dram"] = energy.get("dram", 0.0) + op.bytes * pj_per_byte * op.repeat
        by_phase[op.phase] = by_phase.get(op.phase, 0.0) + cyc
        total_cycles += cyc
        dram += op.bytes * op.repeat
    energy["total"] = sum(energy.values())
    m = trace.meta
    if task == "prefill":
        tokens = int(m.get("batch", 1)) * int(m.get("seq_len", 0))
    else:   # generated tokens; a speculative technique makes a step yield tokens_per_step of them
        tokens = int(m.get("batch", 1)) * int(m.get("new_tokens") or 1) * float(m.get("tokens_per_step", 1.0))
    prec = m.get("precision", {})
    arr = cfg.arrays[array]
    if task == "generate":
        p = cfg.arrays["prefill"]
        array_text = f"{p.rows}x{p.cols} prefill, {arr.rows}x{arr.cols} decode"
    else:
        array_text = f"{arr.rows}x{arr.cols}"
    return BitSerialRun(
        system=system, design=cfg.name, model=str(m.get("model")), phase=task, engine=engine, freq_hz=freq,
        array=array_text, weight_bits=prec.get("weight_bits_effective"),
        kv_bits=prec.get("kv_bits"), cycles=total_cycles, energy_pj=energy, dram_bytes=dram,
        trace_bytes=trace.total_bytes(), tokens=tokens, by_kind=by_kind, by_phase=by_phase,
        meta={"batch": m.get("batch"), "seq_len": m.get("seq_len"), "new_tokens": m.get("new_tokens"),
              "layers": m.get("num_layers_traced"), "tp": m.get("tp")},
    )
