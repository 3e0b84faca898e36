"""A decode iteration of a batch of requests (each its own context length) on one GPU: the model's
ops as traced, attention as one variable-length kernel whose FLOPs and bytes are the sum over the
requests (:func:`sim.systems.decode.attention_ops`), kernels one after another on the GPU model
(:mod:`sim.gpu.model`)."""

from __future__ import annotations

import dataclasses

from sim.config.hardware import GpuConfig, load_hw
from sim.errors import LlmsimError
from sim.systems.decode import IterationResult
from sim.systems.requests import Batch
from sim.trace.schema import Trace


def gpu_decode_iteration(system, gpu_name: str, model: str, batch: Batch, tp: int = 1,
                         layers: int | None = None, techniques: tuple = ()) -> IterationResult:
    from sim.gpu.model import simulate_trace_gpu
    from sim.systems.decode import attention_ops, is_shared_attention, technique_lengths
    from sim.trace.tracer import capture

    if techniques:
        from sim.systems.decode import _swift_iteration
        from sim.techniques import parse_technique

        parsed = tuple(parse_technique(t) if isinstance(t, str) else t for t in techniques)
        if any(t.name == "swift" for t in parsed):   # its drafts and its verification, as on an NPU
            return _swift_iteration(lambda ts: gpu_decode_iteration(system, gpu_name, model, batch, tp, layers, ts),
                                    parsed)
    gpu = system.gpu_config(gpu_name) if system is not None else load_hw(gpu_name)
    if not isinstance(gpu, GpuConfig):
        raise LlmsimError(f"--gpu: expected a GPU config, found kind {gpu.kind!r}")
    mean_len = max(1, int(round(float(batch.lengths.mean()))) - 1)
    trace = capture(model, phase="decode", batch=batch.size, seq_len=mean_len, layers=layers, tp=tp)
    if techniques:
        from sim.techniques import apply_techniques

        trace = apply_techniques(trace, list(techniques))
    # a GPU runs the batch's attention as one variable-length kernel (FlashAttention varlen, paged
    # attention): one op, traced at the mean length, carrying the exact FLOPs and bytes of every
    # request's own length
    ops = []
    for op in trace.ops:
        if op.op_class == "attention" and not is_shared_attention(op):
            parts = attention_ops(op, technique_lengths(op, batch.lengths))
            ops.append(dataclasses.replace(
                op, flops=sum(a.flops for a in parts), bytes_activation=sum(a.bytes_activation for a in parts),
                bytes_kv_read=sum(a.bytes_kv_read for a in parts),
                extra=dict(op.extra, varlen=True, kv_len_max=int(batch.lengths.max()))))
        else:
            ops.append(op)
    res = simulate_trace_gpu(gpu, Trace(meta=dict(trace.meta), ops=ops), system=system.name)
    n_layers = sum(op.repeat for op in trace.ops if op.op_class == "attention" and not is_shared_attention(op))
    stages = dict(res.by_class)
    meta = {"gpu": gpu.name, "lengths": batch.source, "mean_len": float(batch.lengths.mean()), "tp": tp}
    if techniques:
        meta.update(techniques=[str(t) for t in techniques], tokens_per_step=float(trace.meta.get("tokens_per_step", 1)))
    freq = gpu.boost_freq_mhz * 1e6
    return IterationResult(system.name, model, batch.size, n_layers, res.time_s, freq, stages, False,
                           dict(res.utilization), meta)
