"""One decode iteration of a real batch (every request its own context length) on a composed system.

The model is traced once per batch size (GEMM shapes depend on the batch, not on lengths); each
decoder layer splits into three stages: **QKV** (the ops before attention: norm, QKV projection,
KV-cache append), **MHA** (attention) and **proj/FFN** (the ops after it). Ops outside the layers
(embedding, final norm, lm_head) run once before and after.

* **NPU stages** run on the NPU simulator (:func:`sim.npu.simulate.simulate_trace`), one layer's
  ops simulated and multiplied by the layer count (identical layers).
* **MHA on the NPU** (``npu-only``): one attention op per distinct context length (its requests
  as the op's batch), simulated the same way.
* **MHA on PIM**: each request's q.K^T and p.V run as PIM GEMVs on the channel that holds its KV
  cache (:func:`sim.memory.pim.run_attention_batch`, fast path; channels in parallel, a channel's
  requests one after another), in the row-buffer mode of the system. The softmax between the two
  GEMVs runs on the NPU's vector units (:mod:`sim.npu.vector`); a channel waits for its requests'
  softmaxes, so they add to that channel's time.
* **Sub-batch interleaving** (NeuPIMs' stage table, ``reference/neupims.md``): the batch splits in
  two halves of balanced PIM work; while one half's MHA runs on PIM, the other half's GEMMs run on
  the NPU. Total = A + B + (C + D) x (layers - 1) + E + F, each stage the longer of its NPU and PIM
  parts. While PIM runs, the NPU keeps only the share of its memory bandwidth that the
  command-level engine measured beside a PIM GEMV in that row-buffer mode
  (:func:`npu_bandwidth_share`); PIM, which has priority, is not slowed.
* Without sub-batching the stages run in sequence: QKV -> MHA -> proj/FFN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from sim.errors import LlmsimError
from sim.memory.energy import stream_pj_per_byte
from sim.systems.config import SystemConfig
from sim.systems.requests import Batch
from sim.trace.schema import Op, Trace


@dataclass
class Stages:
    """Seconds of one layer's stages for one (sub-)batch, and of the ops outside the layers."""

    qkv: float
    mha: float
    post: float
    head: float
    tail: float
    mha_pim: float = 0.0        # PIM part of mha (0 when MHA runs on the NPU)
    mha_softmax: float = 0.0    # NPU softmax part of PIM MHA
    layer_pj: dict[str, float] = field(default_factory=dict)   # energy of one layer by part, pJ
    once_pj: dict[str, float] = field(default_factory=dict)    # energy of the ops outside the layers, pJ
    tokens_per_step: float = 1.0  # tokens a step yields per sequence (speculative techniques: more)


@dataclass
class IterationResult:
    system: str
    model: str
    batch: int
    layers: int
    time_s: float
    freq_hz: float
    stages: dict[str, float]
    sub_batch: bool
    utilization: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)
    schedule: list[tuple[str, float, float, str]] = field(default_factory=list)   # (track, start s, end s, label)
    energy_pj: dict[str, float] = field(default_factory=dict)   # by part (npu_pe, npu_dram, pim) and total

    def write_timeline(self, path) -> None:
        """The iteration's stages as a Chrome trace-event timeline: an NPU track and a PIM (or
        attention) track, so sub-batch overlap shows."""
        from sim.des.clock import TimeBase
        from sim.des.core import Simulator
        from sim.des.timeline import write_chrome_trace

        sim = Simulator(TimeBase.from_freqs({"ns": 10 ** 9}))
        units = {}
        for track, t0, t1, label in self.schedule:
            if track not in units:
                units[track] = sim.unit(track, self.system)
            units[track].record(int(round(t0 * 1e9)), int(round(t1 * 1e9)), label)
        write_chrome_trace(path, sim, other_data={"system": self.system, "model": self.model, "batch": self.batch})

    @property
    def cycles(self) -> int:
        return int(round(self.time_s * self.freq_hz))

    @property
    def tokens_per_step(self) -> float:
        """Tokens a step yields per sequence (1; more with a speculative technique)."""
        return float(self.meta.get("tokens_per_step", 1.0))

    @property
    def tokens_per_s(self) -> float:
        return self.batch * self.tokens_per_step / self.time_s if self.time_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"system": self.system, "model": self.model, "batch": self.batch, "layers": self.layers,
                "time_s": self.time_s, "cycles": self.cycles, "tokens_per_s": self.tokens_per_s,
                "sub_batch": self.sub_batch, "stages": self.stages, "utilization": self.utilization,
                "energy_j": self.energy_pj.get("total", 0.0) * 1e-12,
                "energy_by_part_j": {k: v * 1e-12 for k, v in self.energy_pj.items() if k != "total"},
                "energy_per_token_j": (self.energy_pj.get("total", 0.0) * 1e-12 / (self.batch * self.tokens_per_step)
                                       if self.batch else 0.0),
                "meta": self.meta}


def iteration_energy(parts: list[Stages], n_layers: int) -> dict[str, float]:
    """pJ by part of an iteration whose (sub-)batches have these stages: each runs the ops outside
    the layers once and its layer ``n_layers`` times."""
    out: dict[str, float] = {}
    for st in parts:
        for k in set(st.layer_pj) | set(st.once_pj):
            out[k] = out.get(k, 0.0) + st.once_pj.get(k, 0.0) + n_layers * st.layer_pj.get(k, 0.0)
    out["total"] = sum(out.values())
    return out


# ------------------------------------------------------------------------------------------ split
def split_layer(trace: Trace) -> tuple[list[Op], Op | None, list[Op], list[Op], list[Op], int]:
    """(pre-attention ops, the attention op, post-attention ops, ops before the layers, ops after,
    layer count) of a deduplicated trace: one layer's records (repeat = layer count)."""
    layer_ops = [op for op in trace.ops if op.layer is not None]
    if not layer_ops:
        return [], None, [], list(trace.ops), [], 0
    first_layer = layer_ops[0].layer
    one = [op for op in layer_ops if op.layer == first_layer]
    # layers: the repeats of the attention records (identical layers are one record each)
    count = sum(op.repeat for op in layer_ops
                if op.op_class == "attention" and not is_shared_attention(op)) or one[0].repeat
    att = [i for i, op in enumerate(one) if op.op_class == "attention"]
    idx = [i for i, op in enumerate(trace.ops) if op.layer is not None]
    head = list(trace.ops[: idx[0]])
    tail = list(trace.ops[idx[-1] + 1:])
    once = [dataclasses.replace(op, repeat=1) for op in one]
    if not att:
        return once, None, [], head, tail, count
    # the per-sequence attention (a technique may add batched ones: Hydragen's shared prefix, which
    # stays with the NPU's ops)
    a = next((i for i in att if not is_shared_attention(one[i])), att[0])
    return once[:a], once[a], once[a + 1:], head, tail, count


def _per_request_retrieval(op: Op, lengths: np.ndarray) -> Op:
    """InfLLM's block retrieval, traced at the batch's mean context, re-costed from each request's
    own blocks (none for a request within the budget). **Approximation**: when the mean is within
    the budget the trace has no retrieval op, and the few long requests' retrieval is not charged."""
    from sim.trace.resize import scale_gemm

    e = op.extra
    blocks = np.where(lengths > int(e["budget"]),
                      np.ceil((lengths - int(e["init"]) - int(e["local"])) / int(e["block"])), 0)
    share = float(blocks.sum()) / (len(lengths) * int(e["blocks"])) if int(e["blocks"]) else 1.0
    return scale_gemm(op, m=max(share, 1e-9))


def is_shared_attention(op: Op) -> bool:
    """An attention op over keys shared by the batch (Hydragen's prefix), not per sequence."""
    return op.op_class == "attention" and str(op.extra.get("hydragen", "")).startswith("prefix")


def technique_lengths(att: Op, lengths: np.ndarray) -> np.ndarray:
    """Each request's keys as the (technique-transformed) attention op sees them: an InfLLM
    budget caps them; Hydragen's suffix attention leaves out the shared prefix."""
    out = np.asarray(lengths, np.int64)
    e = att.extra
    # a request's length counts its one new token; a step over q_len tokens (speculative
    # verification) attends to q_len - 1 more keys
    out = out + (int(e.get("q_len", 1)) - 1)
    if e.get("infllm") in ("attention", "within_budget"):
        out = np.minimum(out, int(e["budget"]))
    if e.get("hydragen") == "suffix":
        p = int(e["prefix"])
        if int(out.min()) <= p:
            raise LlmsimError(f"--technique hydragen: prefix={p}: a request of the batch has only {int(out.min())} "
                              "tokens (expected more than the shared prefix)")
        out = out - p
    return out


def attention_ops(template: Op, lengths: np.ndarray) -> list[Op]:
    """One decode attention op per distinct KV length (its requests as the batch), costed by the
    tracer's formulas (``sim.trace.formulas``) from the template's heads and widths; a step over
    ``q_len`` new tokens per sequence keeps ``length - q_len`` of them cached, and a speculative
    tree mask keeps its extra pairs."""
    from sim.trace.resize import mask_extra_pairs, resized_attention

    lq = int(template.extra["q_len"])
    tree = mask_extra_pairs(template)
    ops = []
    for length, count in zip(*np.unique(lengths, return_counts=True)):
        length, count = int(length), int(count)
        op = resized_attention(template, batch=count, kv_len=length, past=length - lq, extra_pairs=tree)
        ops.append(dataclasses.replace(op, repeat=1))
    return ops


def ragged_attention_op(template: Op, lengths: np.ndarray) -> Op:
    """The whole batch's attention as one op over requests of different KV lengths: the sums of
    :func:`attention_ops`' FLOPs and bytes, ``extra["kv_len_counts"]`` = [[length, requests], ...].
    The NPU runs it as one variable-length kernel (:func:`sim.npu.mapping.plan_attention`)."""
    from sim.trace.resize import copy_op

    ops = attention_ops(template, lengths)
    counts = [[int(op.extra["kv_len"]), int(op.extra["batch"])] for op in ops]
    total = lambda f: float(sum(getattr(op, f) for op in ops))  # noqa: E731
    e = template.extra
    b, h, lq, d, dv = int(len(lengths)), int(e["heads"]), int(e["q_len"]), int(e["head_dim"]), int(e["v_head_dim"])
    hkv, lk = int(e["kv_heads"]), int(max(lengths))
    # per-op counts the energy and roofline read (Q.K^T and P.V FLOPs, pairs, cached keys) are sums
    summed = {k: sum(float(op.extra.get(k, 0.0)) for op in ops)
              for k in ("flops_qk", "flops_sv", "softmax_flops", "pairs", "cached_tokens_read")}
    summed["pairs"], summed["cached_tokens_read"] = int(summed["pairs"]), int(summed["cached_tokens_read"])
    return copy_op(ops[-1], flops=total("flops"), bytes_activation=total("bytes_activation"),
                   bytes_kv_read=total("bytes_kv_read"), bytes_kv_write=total("bytes_kv_write"),
                   bytes_weight=total("bytes_weight"),
                   input_shapes=[[b, h, lq, d], [b, hkv, lk, d], [b, hkv, lk, dv]], output_shapes=[[b, lq, h, dv]],
                   extra=dict(ops[-1].extra, batch=b, kv_len=lk, kv_len_counts=counts, **summed))


# ------------------------------------------------------------------------------------ components
def npu_run(npu, ops: list[Op], bandwidth_share: float = 1.0) -> tuple[float, float]:
    """(seconds, DRAM read + write bytes) of ``ops`` one after another on the NPU simulator."""
    if not ops:
        return 0.0, 0.0
    from sim.npu.simulate import simulate_trace

    res = simulate_trace(npu, Trace(meta={"model": "stage"}, ops=ops), record_members=False,
                         bandwidth_share=bandwidth_share)
    return res.time_s, float(sum(o.read_bytes + o.write_bytes for o in res.ops))


@lru_cache(maxsize=8)
def _bandwidth_share_cached(memory_json: str) -> float:
    from sim.config.hardware import MemoryConfig

    return _measure_share(MemoryConfig.model_validate_json(memory_json))


def npu_bandwidth_share(memory) -> float:
    """Share of its stand-alone streaming-read bandwidth the NPU keeps on a channel while a PIM
    GEMV keeps every bank of it busy, measured with the command-level engine (``run_mixed``) in
    the memory's row-buffer mode (the validate memory suite's case, smaller)."""
    return _bandwidth_share_cached(memory.model_dump_json())


def _measure_share(memory) -> float:
    from sim.memory.engine import run, run_mixed
    from sim.memory.pim import attention_program

    mp = memory.mapping()
    program, _, _ = attention_program(memory, 4096, 128, "score", heads=2, row0=memory.organization["row"] // 2)
    n = 20_000
    stream = mp.decode_many(np.arange(n * memory.channels, dtype=np.int64) * memory.burst_bytes)
    coords = stream[stream[:, 0] == 0][:n]
    alone = run(memory.spec(), np.zeros(n, np.int64), np.zeros(n, bool), coords, refresh=memory.refresh)
    res = run_mixed(memory.spec(pim=True), program, np.zeros(n, np.int64), np.zeros(n, bool), coords,
                    refresh=memory.refresh)
    served = int(np.sum((res.result.done_cycle >= 0) & (res.result.done_cycle <= res.pim_cycles)))
    return float(served * memory.burst_bytes / res.pim_cycles / (n * memory.burst_bytes / alone.cycles))


def pim_mha_seconds(system: SystemConfig, template: Op, lengths: np.ndarray, channels: np.ndarray,
                    with_energy: bool = False) -> tuple:
    """(MHA seconds, PIM part, softmax part) of one layer for these requests on PIM; with
    ``with_energy``, also the PIM commands' energy in pJ (G_ACT, COMP, READRES, GWRITE, refresh)."""
    from sim.memory.pim import run_attention_batch
    from sim.npu.vector import vector_cycles

    memory = system.memory()
    npu = system.npu_config()
    e = template.extra
    hkv, d, g = int(e["kv_heads"]), int(e["head_dim"]), int(e["heads"]) // int(e["kv_heads"])
    if len(lengths) == 0:
        return (0.0, 0.0, 0.0, 0.0) if with_energy else (0.0, 0.0, 0.0)
    # a step over several new tokens per sequence (speculative verification) runs one GEMV per query:
    # q_len passes of the one-query kernels, back to back on each channel
    lq = int(e.get("q_len", 1))
    mem_hz = memory.freq_hz
    npu_hz = npu.freq_mhz * 1e6
    rows = hkv * g * lq
    soft = {int(L): vector_cycles(npu, "softmax", rows, int(L)).cycles / npu_hz for L in np.unique(lengths)}
    if system.pim.issue is not None:   # NeuPIMs' C++ simulator's instruction front end (comparisons only)
        from sim.systems.pim_frontend import serial_issue_mha

        if lq > 1:
            raise LlmsimError(f"{system.name}: pim.issue: the reference front end runs one query per request")
        mha, pim_s, counts = serial_issue_mha(system, lengths, channels, d, hkv * g, soft)
        soft_total = sum(soft[int(L)] for L in lengths)
        out = (max(mha, soft_total / npu.vector.units), pim_s, soft_total)
        if with_energy:
            from sim.memory.energy import counts_energy

            return out + (counts_energy(memory, counts).total_pj if memory.power is not None else 0.0,)
        return out
    res = run_attention_batch(memory, lengths.tolist(), channels.tolist(), d, hkv * g)
    if lq > 1:
        res = dataclasses.replace(res, cycles=res.cycles * lq,
                                  channel_cycles={c: v * lq for c, v in res.channel_cycles.items()},
                                  commands=res.commands * lq,
                                  command_counts={k: v * lq for k, v in res.command_counts.items()})
    per_channel = dict.fromkeys(res.channel_cycles, 0.0)
    for L, c in zip(lengths, channels):
        per_channel[int(c)] += soft[int(L)]
    total = max(res.channel_cycles[c] / mem_hz + per_channel[c] for c in res.channel_cycles)
    # the vector units themselves: all softmaxes at most ``units`` at a time
    units_bound = sum(soft[int(L)] for L in lengths) / npu.vector.units
    out = (max(total, units_bound), res.cycles / mem_hz, sum(per_channel.values()))
    if with_energy:
        from sim.memory.energy import counts_energy

        pim_pj = counts_energy(memory, res.command_counts).total_pj if memory.power is not None else 0.0
        return out + (pim_pj,)
    return out


def stage_times(system: SystemConfig, model: str, batch: Batch, channels: np.ndarray, tp: int, layers: int | None,
                bandwidth_share: float = 1.0, techniques: tuple = ()) -> tuple[Stages, int, Op | None]:
    """Stages of one (sub-)batch: the requests in ``batch`` (channels already assigned), with the
    ``techniques`` applied to the traced step (``sim.techniques``)."""
    from sim.trace.tracer import capture

    mean_len = max(1, int(round(float(batch.lengths.mean())))) - 1   # cached tokens; the trace adds one
    trace = capture(model, phase="decode", batch=batch.size, seq_len=max(1, mean_len), layers=layers, tp=tp,
                    **system.trace_precision("decode", model))
    if techniques:
        from sim.techniques import apply_techniques, parse_technique

        for t in techniques:
            if (parse_technique(t) if isinstance(t, str) else t).name == "swift":
                raise LlmsimError("--technique swift: stage_times runs one step by identical layers; "
                                  "decode_iteration splits SWIFT into its verification and draft passes")
        trace = apply_techniques(trace, list(techniques))
    pre, att, post, head, tail, n_layers = split_layer(trace)
    if techniques and system.pim is not None and att is not None and att.kv_bits not in (None, 16):
        raise LlmsimError(f"--technique: {system.name}: PIM attention runs on an fp16 KV cache (NeuPIMs' PIM "
                          f"units multiply fp16), found {att.kv_bits:g}-bit KV")
    lengths = technique_lengths(att, batch.lengths) if att is not None else batch.lengths
    pre = [_per_request_retrieval(op, batch.lengths) if op.extra.get("infllm") == "retrieval" else op for op in pre]
    npu = system.npu_config() if system.accelerator == "npu" else None
    if system.accelerator == "gpu":
        raise NotImplementedError("gpu-only decode iterations run through sim.gpu")
    once = [dataclasses.replace(op, repeat=1) for op in head + tail]
    qkv_s, qkv_b = npu_run(npu, pre, bandwidth_share)
    post_s, post_b = npu_run(npu, post, bandwidth_share)
    head_s, head_b = npu_run(npu, once[:len(head)])
    tail_s, tail_b = npu_run(npu, once[len(head):])
    mha = pim = soft = 0.0
    layer_npu_ops, layer_bytes, pim_pj = pre + post, qkv_b + post_b, 0.0
    if att is not None:
        if system.pim is None:
            att_ops = [ragged_attention_op(att, lengths)] if len(lengths) else []
            mha, att_b = npu_run(npu, att_ops)
            layer_npu_ops, layer_bytes = layer_npu_ops + att_ops, layer_bytes + att_b
        else:
            mha, pim, soft, pim_pj = pim_mha_seconds(system, att, lengths, channels, with_energy=True)
    layer_pj = {**npu_energy_pj(npu, layer_npu_ops, layer_bytes), "pim": pim_pj}
    once_pj = {**npu_energy_pj(npu, once, head_b + tail_b), "pim": 0.0}
    return (Stages(qkv_s, mha, post_s, head_s, tail_s, pim, soft, layer_pj, once_pj,
                   float(trace.meta.get("tokens_per_step", 1.0))), n_layers, att)


def npu_energy_pj(npu, ops: list[Op], dram_bytes: float) -> dict[str, float]:
    """{"npu_pe", "npu_dram"} pJ of ``ops`` on the NPU that moved ``dram_bytes``: busy PE-cycles
    (:func:`pe_energy_pj`) and the memory preset's streaming energy per byte (0 without IDD data)."""
    memory = npu.memory_config()
    per_byte = stream_pj_per_byte(memory) if memory is not None and memory.power is not None else 0.0
    return {"npu_pe": pe_energy_pj(npu, ops), "npu_dram": dram_bytes * per_byte}


def pe_energy_pj(npu, ops: list[Op]) -> float:
    """Energy of the systolic arrays' busy PE-cycles for ``ops``: every MAC of a matrix op keeps one
    PE lane busy for its cycles per weight (bit-serial: ceil(floor(bits) / bits per cycle) over the
    PE's dot-size lanes; bit-parallel: one cycle). **Assumption**: idle PEs cost nothing (clock
    gating), and vector units and SRAMs are not charged (no source gives their energy at this
    design point). ``pe.energy_pj_per_cycle`` unset: 0."""
    pe = npu.systolic.pe
    if pe.energy_pj_per_cycle is None:
        return 0.0
    busy = 0.0
    for op in ops:
        x = op.extra
        if op.op_class == "gemm" and {"M", "K", "N"} <= set(x):
            macs, bits = float(x.get("batch", 1)) * x["M"] * x["K"] * x["N"], (op.weight_bits if op.bytes_weight else None)
        elif op.op_class == "attention":
            macs, bits = (float(x.get("flops_qk", 0.0)) + float(x.get("flops_sv", 0.0))) / 2, op.kv_bits
        else:
            continue
        busy += macs * pe.cycles_per_weight(bits) / pe.dot_size * op.repeat
    return busy * pe.energy_pj_per_cycle


# ------------------------------------------------------------------------------------ iteration
def split_sub_batches(lengths: np.ndarray, channels: np.ndarray, cost: dict[int, int]) -> np.ndarray:
    """Mask of the first sub-batch: requests, heaviest first, each to the half whose PIM work on
    its channel is smaller (ties: the half with fewer requests), so both halves have about the same
    work on every channel and about the same size."""
    first = np.zeros(len(lengths), bool)
    loads: dict[int, list[int]] = {}
    counts = [0, 0]
    for i in np.argsort(-np.array([cost[int(n)] for n in lengths]), kind="stable"):
        ch_load = loads.setdefault(int(channels[i]), [0, 0])
        side = 0 if (ch_load[0], counts[0]) <= (ch_load[1], counts[1]) else 1
        first[i] = side == 0
        ch_load[side] += cost[int(lengths[i])]
        counts[side] += 1
    return first


def _overlap(pim_s: float, npu_alone_s: float, npu_shared_s: float) -> float:
    """A stage where PIM and NPU work at once: the NPU progresses at the shared rate while PIM
    runs and at full rate after it."""
    if npu_shared_s <= pim_s or npu_alone_s == 0:
        return max(pim_s, npu_shared_s)
    rate = npu_alone_s / npu_shared_s
    return pim_s + npu_alone_s - pim_s * rate


def sub_batch_stages(a1: Stages, s1: Stages, a2: Stages, s2: Stages, n: int) -> dict[str, float]:
    """NeuPIMs' sub-batch stage table for two halves (``a``: stages alone, ``s``: with the NPU's
    bandwidth share beside PIM): per-layer stages A..F and the ``total``
    A + B + (C + D) x (layers - 1) + E + F, plus the ops outside the layers (both halves' embedding
    and lm_head run, one after the other, on the NPU)."""
    st = {"A": a1.qkv, "B": _overlap(a1.mha, a2.qkv, s2.qkv),
          "C": _overlap(a2.mha, a1.post + a1.qkv, s1.post + s1.qkv),
          "D": _overlap(a1.mha, a2.post + a2.qkv, s2.post + s2.qkv),
          "E": _overlap(a2.mha, a1.post, s1.post), "F": a2.post,
          "head": a1.head + a2.head, "tail": a1.tail + a2.tail}
    st["total"] = (st["head"] + st["A"] + st["B"] + (st["C"] + st["D"]) * (n - 1) + st["E"] + st["F"]
                   + st["tail"])
    return st


def decode_iteration(system: SystemConfig, model: str, batch: Batch, tp: int = 1, layers: int | None = None,
                     sub_batch: bool | None = None, techniques: tuple = ()) -> IterationResult:
    """One decode step of every request in ``batch`` on ``system`` (see the module doc)."""
    from sim.systems.channels import assign_channels, request_pim_cycles

    if techniques:
        from sim.techniques import parse_technique

        parsed = tuple(parse_technique(t) if isinstance(t, str) else t for t in techniques)
        if any(t.name == "swift" for t in parsed):
            return _swift_iteration(lambda ts: decode_iteration(system, model, batch, tp, layers, sub_batch, ts),
                                    parsed)

    use_sub = system.sub_batch if sub_batch is None else sub_batch
    if use_sub and system.pim is None:
        raise LlmsimError(f"--sub-batch: on needs a system with PIM ({system.name} has none)")
    if use_sub and system.pim.row_buffers == 1:
        raise LlmsimError(f"--sub-batch: on needs dual row buffers (pim.row_buffers: 2): {system.name} blocks normal "
                          "traffic to a bank while PIM computes, so NPU GEMMs cannot overlap PIM attention")
    npu = system.npu_config()
    freq = npu.freq_mhz * 1e6
    channels = np.zeros(batch.size, np.int64)
    meta: dict[str, Any] = {"lengths": batch.source, "mean_len": float(batch.lengths.mean()), "tp": tp}
    head_dim = heads = 0
    if system.pim is not None:
        from sim.trace.tracer import capture

        probe = capture(model, phase="decode", batch=1, seq_len=1, layers=1, tp=tp)
        att = next(op for op in probe.ops if op.op_class == "attention")
        head_dim, heads = int(att.extra["head_dim"]), int(att.extra["heads"])
        memory = system.memory()
        channels = assign_channels(system.channel_assignment, batch.lengths, memory.channels, memory, head_dim,
                                   heads, batch.channels)
        meta["channel_assignment"] = "pinned (ch_idx)" if batch.channels is not None else system.channel_assignment
    if not use_sub or batch.size < 2:   # one request cannot be split
        st, n, _ = stage_times(system, model, batch, channels, tp, layers, techniques=techniques)
        layer = st.qkv + st.mha + st.post
        total = st.head + n * layer + st.tail
        stages = {"head": st.head, "qkv": st.qkv * n, "mha": st.mha * n, "proj_ffn": st.post * n, "tail": st.tail}
        util = {"pim_busy": st.mha_pim * n / total if total else 0.0}
        meta["per_layer"] = {"qkv": st.qkv, "mha": st.mha, "proj_ffn": st.post, "mha_pim": st.mha_pim}
        meta["energy_outside_layers_pj"] = iteration_energy([st], 0)["total"]
        if techniques:
            meta.update(techniques=[str(t) for t in techniques], tokens_per_step=st.tokens_per_step)
        attn_track = "pim" if system.pim is not None else "npu"
        sched, t = [], 0.0
        for label, track, d in [("head", "npu", st.head)] + [
                item for i in range(n) for item in ((f"L{i} QKV", "npu", st.qkv), (f"L{i} MHA", attn_track, st.mha),
                                                    (f"L{i} proj/FFN", "npu", st.post))] + [("tail", "npu", st.tail)]:
            if d > 0:
                sched.append((track, t, t + d, label))
            t += d
        return IterationResult(system.name, model, batch.size, n, total, freq, stages, False, util, meta, sched,
                               iteration_energy([st], n))
    # ---- sub-batch interleaving
    cost = request_pim_cycles(system.memory(), batch.lengths, head_dim, heads)
    first = split_sub_batches(batch.lengths, channels, cost)
    halves = []
    share = npu_bandwidth_share(system.memory())
    for mask in (first, ~first):
        b = Batch(batch.lengths[mask], None, batch.source)
        alone, n, _ = stage_times(system, model, b, channels[mask], tp, layers, techniques=techniques)
        shared, _, _ = stage_times(system, model, b, channels[mask], tp, layers, bandwidth_share=share,
                                   techniques=techniques)
        halves.append((alone, shared))
    (a1, s1), (a2, s2) = halves
    sb = sub_batch_stages(a1, s1, a2, s2, n)
    A, B, C, D, E, F, total = (sb[k] for k in ("A", "B", "C", "D", "E", "F", "total"))
    stages = {"head": sb["head"], "A": A, "B": B, "C": C * (n - 1), "D": D * (n - 1), "E": E, "F": F,
              "tail": sb["tail"]}
    pim_busy = (a1.mha_pim + a2.mha_pim) * n
    util = {"pim_busy": pim_busy / total if total else 0.0, "npu_bandwidth_share_beside_pim": share}
    meta["sub_batches"] = [int(first.sum()), int((~first).sum())]
    meta["per_layer"] = {"A": A, "B": B, "C": C, "D": D, "E": E, "F": F}
    meta["energy_outside_layers_pj"] = iteration_energy([a1, a2], 0)["total"]
    if techniques:
        meta.update(techniques=[str(t) for t in techniques], tokens_per_step=a1.tokens_per_step)
    # the stage table as slices: each stage starts when the previous one ends; inside it, the NPU
    # runs its sub-batch's work and PIM the other sub-batch's attention, from the stage's start
    sched, t = [], 0.0

    def stage(dur: float, npu: list[tuple[str, float]], pim: tuple[str, float] | None) -> None:
        nonlocal t
        u = t
        work = sum(d for _, d in npu)
        scale = min(1.0, dur / work) if work else 0.0   # the NPU's items, fitted into the stage
        for label, d in npu:
            sched.append(("npu", u, u + d * scale, label))
            u += d * scale
        if pim is not None and pim[1] > 0:
            sched.append(("pim", t, t + pim[1], pim[0]))
        t += dur

    if sb["head"]:
        stage(sb["head"], [("head", sb["head"])], None)
    stage(A, [("L0 QKV sb1", a1.qkv)], None)
    stage(B, [("L0 QKV sb2", s2.qkv)], ("L0 MHA sb1", a1.mha))
    for i in range(n - 1):
        stage(C, [(f"L{i} proj/FFN sb1", s1.post), (f"L{i + 1} QKV sb1", s1.qkv)], (f"L{i} MHA sb2", a2.mha))
        stage(D, [(f"L{i} proj/FFN sb2", s2.post), (f"L{i + 1} QKV sb2", s2.qkv)], (f"L{i + 1} MHA sb1", a1.mha))
    stage(E, [(f"L{n - 1} proj/FFN sb1", s1.post)], (f"L{n - 1} MHA sb2", a2.mha))
    stage(F, [(f"L{n - 1} proj/FFN sb2", a2.post)], None)
    if sb["tail"]:
        stage(sb["tail"], [("tail", sb["tail"])], None)
    sched = [x for x in sched if x[2] > x[1]]
    return IterationResult(system.name, model, batch.size, n, total, freq, stages, True, util, meta, sched,
                           iteration_energy([a1, a2], n))


def _swift_iteration(run, techniques: tuple) -> IterationResult:
    """SWIFT on a decode iteration: ``draft`` plain steps through the kept layers (the ops outside
    the layers, lm_head included, every pass; the draft's KV context grows by one token a pass,
    which is left out), then one verification step of every layer over ``draft + 1`` tokens. Time
    and energy add; throughput counts the expected tokens per step."""
    from sim.techniques.speculative import SwiftVerification, skipped_layers

    sw = next(t for t in techniques if t.name == "swift")
    others = tuple(t for t in techniques if t.name != "swift")
    plain = run(others)
    # the verification in SWIFT's place among the techniques (the order a user gave is kept)
    verify = run(tuple(SwiftVerification(sw.draft, sw.accept) if t is sw else t for t in techniques))
    n = plain.layers
    kept = n - len(skipped_layers(n, sw.skip))
    outside = plain.stages.get("head", 0.0) + plain.stages.get("tail", 0.0)
    draft_s = outside + (plain.time_s - outside) * kept / n
    total = sw.draft * draft_s + verify.time_s
    once = float(plain.meta.get("energy_outside_layers_pj", 0.0))   # the ops outside the layers, every pass
    share = (once + (plain.energy_pj.get("total", 0.0) - once) * kept / n) / plain.energy_pj["total"] \
        if plain.energy_pj.get("total") else 0.0
    energy = {k: sw.draft * plain.energy_pj.get(k, 0.0) * share + v for k, v in verify.energy_pj.items()}
    meta = dict(verify.meta, techniques=[str(t) for t in techniques], tokens_per_step=sw.tokens_per_step,
                swift={"draft_passes": sw.draft, "draft_layers": kept, "draft_pass_s": draft_s,
                       "verification_s": verify.time_s})
    stages = {"draft": sw.draft * draft_s, **{f"verify_{k}": v for k, v in verify.stages.items()}}
    sched = [("npu", 0.0, sw.draft * draft_s, f"{sw.draft} SWIFT draft passes ({kept} of {n} layers)")] + [
        (track, t0 + sw.draft * draft_s, t1 + sw.draft * draft_s, label) for track, t0, t1, label in verify.schedule]
    return IterationResult(verify.system, verify.model, verify.batch, n, total, verify.freq_hz, stages,
                           verify.sub_batch, verify.utilization, meta, sched, energy)
