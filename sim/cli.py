"""The ``llmsim`` command line.

Commands import what they need when they run (torch only in ``trace``), so ``llmsim --help`` is
fast. Every user error is one line on stderr and exit code 2; every ``--json`` output is a single
JSON object on stdout.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from sim.errors import LlmsimError

PHASES = ["prefill", "decode", "generate"]
TORCH_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
SHORT_DTYPES = {v: k for k, v in TORCH_DTYPE_ALIASES.items()}


def _emit_json(obj: Any) -> None:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if hasattr(x, "item"):
            return clean(x.item())
        return x

    click.echo(json.dumps(clean(obj)))


def _model_options(f):
    """The flags that describe one traced run (shared by ``trace`` and ``roofline``)."""
    opts = [
        click.option("--model", "-m", help="zoo model name (llmsim models) or path to a model YAML"),
        click.option("--phase", type=click.Choice(PHASES), default=None,
                     help="default: decode, or the model's only phase (prefill for encoders)"),
        click.option("--batch", "-b", type=int, default=1, show_default=True, help="sequences in the batch"),
        click.option("--seq-len", "-l", type=int, default=128, show_default=True,
                     help="prompt tokens (prefill) or tokens already in the KV cache (decode)"),
        click.option("--new-tokens", type=int, default=1, show_default=True, help="decode steps after prefill (generate)"),
        click.option("--layers", type=int, default=None, help="trace only the first N decoder layers (no embedding / lm_head)"),
        click.option("--tp", type=int, default=1, show_default=True, help="tensor-parallel degree (per-device trace)"),
        click.option("--device", type=click.Choice(["auto", "meta", "cpu"]), default="auto", show_default=True,
                     help="meta: shapes only; cpu: real tensors (small models)"),
        click.option("--dtype", default=None,
                     help="model dtype for tracing (float32/fp32, float16/fp16, bfloat16/bf16; default: the zoo "
                          "entry's), or a single op's dtype (fp32, tf32, bf16, fp16, fp8, int8, int4; default bf16)"),
        click.option("--weight-bits", type=float, default=None, help="bits per weight (sub-byte allowed)"),
        click.option("--act-bits", type=float, default=None, help="bits per activation element"),
        click.option("--kv-bits", type=float, default=None, help="bits per KV-cache element"),
        click.option("--group-size", type=int, default=None, help="weights per quantization group"),
        click.option("--group-meta-bits", type=float, default=0.0, show_default=True,
                     help="metadata bits per group (scale, type selector)"),
        click.option("--weight-bits-rule", "weight_bits_rules", multiple=True, metavar="GLOB=BITS",
                     help="bits per weight for the modules whose path matches GLOB (first match wins; "
                          "repeatable), e.g. 'model.layers.*.mlp.down_proj=8'"),
        click.option("--technique", "techniques", multiple=True, metavar="NAME[:KEY=VALUE,...]",
                     help="apply an inference technique to the trace (repeatable, in order; `llmsim techniques "
                          "--list`), e.g. medusa:heads=4,tree=64,accept=0.6"),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--model-set", "model_set", multiple=True, metavar="KEY.PATH=VALUE",
                     help="override a field of the model YAML (repeatable)"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _capture_from(kw: dict[str, Any]):
    from sim.config import load_model_spec
    from sim.trace import capture

    if not kw.get("model"):
        raise LlmsimError("--model: required (expected a zoo model name; see `llmsim models`)")
    spec = load_model_spec(kw["model"], list(kw["model_set"]) or None)
    if kw["phase"] is None:
        kw["phase"] = "decode" if "decode" in spec.phases else spec.phases[0]
    techniques = []
    if kw.get("techniques"):
        from sim.techniques import parse_technique

        techniques = [parse_technique(t) for t in kw["techniques"]]   # errors before the trace runs
    trace = capture(
        spec, phase=kw["phase"], batch=kw["batch"], seq_len=kw["seq_len"], new_tokens=kw["new_tokens"],
        layers=kw["layers"], tp=kw["tp"], device=kw["device"],
        dtype=TORCH_DTYPE_ALIASES.get(kw["dtype"], kw["dtype"]), weight_bits=kw["weight_bits"],
        act_bits=kw["act_bits"], kv_bits=kw["kv_bits"], group_size=kw["group_size"],
        group_meta_bits=kw["group_meta_bits"], weight_bits_rules=parse_weight_bits_rules(kw.get("weight_bits_rules", ())),
        seed=kw["seed"], overrides=list(kw["model_set"]) or None,
    )
    if techniques:
        from sim.techniques import apply_techniques

        trace = apply_techniques(trace, techniques)
    return trace


def parse_weight_bits_rules(rules) -> list[tuple[str, float]]:
    """``GLOB=BITS`` strings of ``--weight-bits-rule`` as (glob, bits) pairs."""
    out = []
    for r in rules:
        pattern, sep, bits = str(r).rpartition("=")
        try:
            value = float(bits)
        except ValueError:
            value = None
        if not sep or not pattern or value is None:
            raise LlmsimError(f"--weight-bits-rule: expected GLOB=BITS (e.g. '*.down_proj=8'), found {r!r}")
        out.append((pattern, value))
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="llmsim")
def cli() -> None:
    """llmsim: trace LLMs from PyTorch, score them on hardware, simulate accelerators."""


# ------------------------------------------------------------------------------------- trace
@cli.command()
@_model_options
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="trace file (.json or .parquet); default out/traces/<model>_<phase>_b<B>_l<L>.json")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE", help="same as --model-set")
@click.option("--json", "as_json", is_flag=True, help="print the trace summary as JSON")
def trace(output, sets, as_json, **kw) -> None:
    """Trace a zoo model's forward pass into an operator trace."""
    from sim.trace import save_trace
    from sim.trace.fileio import check_trace_path, default_suffix

    kw["model_set"] = tuple(kw["model_set"]) + tuple(sets)
    if output is not None:
        check_trace_path(output)
    tr = _capture_from(kw)
    if output is None:
        output = f"out/traces/{tr.meta['model']}_{kw['phase']}_b{kw['batch']}_l{kw['seq_len']}{default_suffix(tr)}"
    path = save_trace(tr, output)
    summary = tr.summary()
    summary["file"] = str(path)
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"{tr.meta['model']} {kw['phase']}: {summary['ops']} ops ({summary['records']} records), "
               f"{summary['flops'] / 1e9:.3f} GFLOP, {summary['bytes'] / 1e9:.3f} GB")
    for role, b in summary["bytes_by_role"].items():
        click.echo(f"  {role:<11} {b / 1e9:12.4f} GB")
    click.echo(f"wrote {path}")


# ------------------------------------------------------------------------------------- simulate
SYSTEMS = ["npu-only", "npu-pim-naive", "neupims", "gpu-only", "bitmod", "ant", "olive", "fp16-accel"]


@cli.command()
@click.option("--system", default="npu-only", show_default=True,
              help=f"system config name or path (bundled: {', '.join(SYSTEMS)})")
@click.option("--hw", "hw_name", default=None, metavar="NAME_OR_PATH",
              help="NPU config for the op-by-op NPU run (default: the system's, neupims-npu)")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="override a config field: the device's in an op-by-op NPU or a bit-serial run (systolic.count=16); "
                   "the system's for a batch of requests, where npu.*, memory.* and gpu.* reach its devices")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False), default=None, help="trace file to simulate")
@click.option("--gemm", nargs=3, type=int, default=None, metavar="M K N", help="single GEMM x[M,K] @ W[K,N]")
@click.option("--lengths", "lengths_file", type=click.Path(dir_okay=False), default=None,
              help="CSV of the batch: seq_len (KV length) per request, optional ch_idx; overrides --batch")
@click.option("--requests", "requests_from", type=click.Choice(["sharegpt", "alpaca"]), default=None,
              help="sample a steady-state batch of --batch requests from this length distribution")
@click.option("--sub-batch", type=click.Choice(["on", "off"]), default=None,
              help="override the system's sub-batch interleaving")
@click.option("--gpu", "gpu_name", default=None, help="GPU of gpu-only (default h100)")
@click.option("--timeline", type=click.Path(dir_okay=False), default=None,
              help="write a Chrome trace-event timeline (open in Perfetto or chrome://tracing)")
@click.option("--max-chunks", type=int, default=None,
              help="fidelity: tiles of one op merged into at most about this many DES steps (default 48)")
@click.option("--top", type=int, default=None, help="list only the N slowest op records (default: every record)")
@click.option("--engine", type=click.Choice(["des", "analytic"]), default="des", show_default=True,
              help="bit-serial systems: the discrete-event model or the artifact's per-layer analytic model")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@_model_options
def simulate(system, hw_name, sets, trace_file, gemm, lengths_file, requests_from, sub_batch, gpu_name, timeline,
             max_chunks, top, engine, as_json, **kw) -> None:
    """Simulate a model (or one GEMM) on a system. Op by op on the NPU (npu-only with a uniform
    batch, --trace or --gemm): time per op class, utilization per unit and every op's roofline
    score. A batch of requests with their own lengths (--lengths, --requests, or a PIM or GPU
    system): one decode iteration by stages, with tokens/s."""
    from sim.config.hardware import NpuConfig, load_hw
    from sim.npu.executor import DEFAULT_MAX_CHUNKS
    from sim.systems.config import load_system

    sysconf = load_system(system)
    if sysconf.accelerator == "bitserial":
        if trace_file or gemm or lengths_file or requests_from or timeline or sub_batch:
            raise LlmsimError(f"--system: {sysconf.name} runs a traced model (--model, --phase prefill|decode|generate); "
                              "--trace, --gemm, --lengths, --requests, --timeline and --sub-batch do not apply")
        _simulate_bitserial(sysconf, sets, engine, as_json, kw)
        return
    if sysconf.accelerator == "gpu" and not (lengths_file or requests_from) and (
            trace_file or gemm or kw.get("phase") == "prefill"):
        _simulate_gpu_ops(sysconf, gpu_name, sets, trace_file, gemm, top, as_json, kw)
        return
    batch_mode = bool(lengths_file or requests_from or sysconf.pim is not None or sysconf.accelerator == "gpu"
                      or sub_batch)
    if batch_mode:
        if trace_file or gemm:
            raise LlmsimError("--trace: --trace and --gemm run op by op on the NPU (npu-only with a uniform "
                              "batch); a batch of requests takes --model")
        if timeline is not None:
            from sim.io import check_writable_dir

            check_writable_dir(str(Path(timeline).resolve().parent))
        if sets:
            sysconf = load_system(system, list(sets))
        _simulate_batch(sysconf, lengths_file, requests_from, sub_batch, gpu_name, as_json, kw, timeline)
        return
    npu = load_hw(hw_name or sysconf.npu, list(sets) or None)
    if not isinstance(npu, NpuConfig):
        raise LlmsimError(f"--hw: expected an NPU config for --system {system}, found kind {npu.kind!r}")
    if max_chunks is not None and max_chunks < 1:
        raise LlmsimError(f"--max-chunks: expected a positive integer, found {max_chunks}")
    if timeline is not None:
        from sim.io import check_writable_dir

        check_writable_dir(str(Path(timeline).resolve().parent))
    from sim.npu.simulate import gemm_trace, simulate_trace

    tr = _simulation_input(trace_file, gemm, kw, lambda m, k, n: gemm_trace(m, k, n, elem_bytes=npu.precision_bytes))

    res = simulate_trace(npu, tr, max_chunks or DEFAULT_MAX_CHUNKS, record_members=timeline is not None,
                         system=sysconf.name)
    if timeline:
        from sim.des.timeline import write_chrome_trace

        write_chrome_trace(timeline, res.core.sim, other_data={"system": system, "device": npu.name,
                                                               "model": tr.meta.get("model")})
    if as_json:
        out = res.to_json()
        out["trace"] = {k: tr.meta.get(k) for k in ("model", "phase", "batch", "seq_len", "tp")}
        if timeline:
            out["timeline"] = str(timeline)
        _emit_json(out)
        return
    _print_simulation(res, tr, top)
    if timeline:
        click.echo(f"wrote timeline {timeline}")


def _simulation_input(trace_file, gemm, kw, make_gemm):
    """The trace to simulate op by op: a trace file, a single GEMM (``make_gemm(M, K, N)``) or a
    model traced now; exactly one of them."""
    if len([x for x in (trace_file, gemm, kw.get("model")) if x]) > 1:
        raise LlmsimError("--trace: give one of --trace, --model and --gemm")
    if gemm:
        if min(gemm) < 1:
            raise LlmsimError(f"--gemm: expected three positive integers, found {' '.join(map(str, gemm))}")
        return make_gemm(*gemm)
    if trace_file:
        from sim.trace import load_trace

        return load_trace(trace_file)
    if kw.get("model"):
        return _capture_from(kw)
    raise LlmsimError("--model: required (expected a zoo model name, or --trace FILE, or --gemm M K N)")


def _simulate_bitserial(sysconf, sets, engine, as_json, kw) -> None:
    """A traced model on a bit-serial (BitMoD) or bit-parallel (ANT, OliVe, FP16) accelerator, at the
    system's weight precision for the task unless --weight-bits / --kv-bits say otherwise."""
    from sim.config.hardware import BitSerialConfig, load_hw
    from sim.systems.bitserial_run import run_trace

    dev = load_hw(sysconf.bitserial, list(sets) or None)
    if not isinstance(dev, BitSerialConfig):
        raise LlmsimError(f"--system: {sysconf.name}: bitserial: expected a bitserial config, found kind {dev.kind!r}")
    if not kw.get("model"):
        raise LlmsimError("--model: required (expected a zoo model name; see `llmsim models`)")
    task = kw.get("phase") or "decode"
    kw["phase"] = task
    precision = sysconf.trace_precision(task, kw["model"])
    if kw.get("weight_bits") is None and not kw.get("weight_bits_rules"):
        kw["weight_bits"] = precision["weight_bits"]
        if kw.get("group_size") is None and precision.get("group_size"):
            kw["group_size"], kw["group_meta_bits"] = precision["group_size"], precision["group_meta_bits"]
    if kw.get("kv_bits") is None:
        kw["kv_bits"] = precision["kv_bits"]
    tr = _capture_from(kw)
    res = run_trace(dev, tr, task, engine=engine, system=sysconf.name)
    out = res.to_json()
    if as_json:
        _emit_json(out)
        return
    click.echo(f"{out['system']} ({out['design']}, {out['array']} array, {engine}): {out['model']} {task}, "
               f"weights {out['weight_bits']} bits, KV {out['kv_bits']} bits")
    click.echo(f"  {out['time_s'] * 1e3:.3f} ms ({out['cycles']:,} cycles), {out['tokens_per_s']:,.1f} tokens/s, "
               f"{out['energy_j'] * 1e3:.3f} mJ")
    for kind, v in out["by_kind"].items():
        click.echo(f"  {kind:<8} {v['cycles'] / res.freq_hz * 1e3:10.3f} ms  {v['dram_bytes'] / 1e6:10.2f} MB  "
                   f"{v['energy_pj'] * 1e-9:10.3f} mJ")


def _simulate_gpu_ops(sysconf, gpu_name, sets, trace_file, gemm, top, as_json, kw) -> None:
    """gpu-only op by op: a traced model (prefill or decode, uniform batch), a trace file or a GEMM."""
    from sim.config.hardware import GpuConfig, load_hw
    from sim.gpu.model import gemm_op, simulate_trace_gpu
    from sim.trace.schema import Trace

    gpu = load_hw(gpu_name or sysconf.gpu, list(sets) or None)
    if not isinstance(gpu, GpuConfig):
        raise LlmsimError(f"--gpu: expected a GPU config, found kind {gpu.kind!r}")
    tr = _simulation_input(trace_file, gemm, kw,
                           lambda m, k, n: Trace(meta={"model": f"gemm {m}x{k}x{n}"}, ops=[gemm_op(m, k, n)]))
    res = simulate_trace_gpu(gpu, tr, system=sysconf.name)
    if as_json:
        _emit_json(res.to_json())
        return
    for line in res.summary_lines(top):
        click.echo(line)


def _simulate_batch(sysconf, lengths_file, requests_from, sub_batch, gpu_name, as_json, kw, timeline=None) -> None:
    from sim.systems.requests import load_lengths, sample_batch, uniform_batch

    if not kw.get("model"):
        raise LlmsimError("--model: required (expected a zoo model name; see `llmsim models`)")
    if kw.get("phase") not in (None, "decode"):
        raise LlmsimError(f"--phase: a batch of requests runs one decode iteration, found {kw['phase']!r}")
    techniques = tuple(kw.get("techniques") or ())
    if techniques:
        from sim.techniques import parse_technique

        techniques = tuple(parse_technique(t) for t in techniques)   # one-line errors before any work
    if lengths_file and requests_from:
        raise LlmsimError("--lengths: give either --lengths or --requests, not both")
    if lengths_file:
        batch = load_lengths(lengths_file)
    elif requests_from:
        batch = sample_batch(requests_from, kw["batch"], seed=kw["seed"])
    else:
        batch = uniform_batch(kw["batch"], kw["seq_len"])
    if sysconf.accelerator == "gpu":
        from sim.gpu.iteration import gpu_decode_iteration

        res = gpu_decode_iteration(sysconf, gpu_name or sysconf.gpu, kw["model"], batch, tp=kw["tp"],
                                   layers=kw["layers"], techniques=techniques)
    else:
        from sim.systems.decode import decode_iteration

        sb = None if sub_batch is None else sub_batch == "on"
        res = decode_iteration(sysconf, kw["model"], batch, tp=kw["tp"], layers=kw["layers"], sub_batch=sb,
                               techniques=techniques)
    out = res.to_json()
    if timeline:
        res.write_timeline(timeline)
        out["timeline"] = str(timeline)
    if as_json:
        _emit_json(out)
        return
    click.echo(f"{out['system']}: {out['model']} decode, {out['batch']} requests ({batch.source}), "
               f"{out['layers']} layers, sub-batch {'on' if out['sub_batch'] else 'off'}")
    click.echo(f"  iteration {out['time_s'] * 1e3:.3f} ms ({out['cycles']:,} cycles), "
               f"{out['tokens_per_s']:,.0f} tokens/s")
    for k, v in out["stages"].items():
        click.echo(f"  {k:<9} {v * 1e3:10.3f} ms")
    for k, v in out["utilization"].items():
        click.echo(f"  {k:<32} {v:6.1%}")


def _print_simulation(res, tr, top: int) -> None:
    m = tr.meta
    click.echo(f"{res.system} on {res.device}: {m.get('model')} {m.get('phase', '')} "
               f"B={m.get('batch', '-')} L={m.get('seq_len', '-')}: {res.time_s * 1e3:.3f} ms "
               f"({res.cycles:,} cycles, {res.events:,} events)")
    click.echo("time per op class:")
    for cls, t in res.by_class.items():
        click.echo(f"  {cls:<12} {t * 1e3:10.3f} ms  {t / res.time_s:6.1%}")
    click.echo("utilization:")
    for name, u in res.utilization.items():
        if name in ("arrays", "vector_units", "dma0.load", "dma0.store", "memory"):
            click.echo(f"  {name:<12} {u:6.1%}")
    scores = [o.score for o in res.ops if o.roofline_s > 0]
    click.echo(f"roofline score (simulated / roofline time): min {min(scores):.3f}, "
               f"time-weighted {res.time_s / sum(o.roofline_s for o in res.ops):.3f}" if scores else "")
    click.echo(f"{'op':<44} {'class':<10} {'x':>4} {'time ms':>10} {'score':>7}")
    for o in sorted(res.ops, key=lambda o: -o.time_s)[:top if top is not None else len(res.ops)]:
        click.echo(f"{(o.module or o.name)[:44]:<44} {o.op_class:<10} {o.repeat:>4} {o.time_s * 1e3:10.3f} "
                   f"{o.score:7.3f}")


# ------------------------------------------------------------------------------------- serve
@cli.command()
@click.option("--system", default="neupims", show_default=True,
              help=f"system config name or path (bundled: {', '.join(SYSTEMS)})")
@click.option("--model", "-m", required=True, help="zoo model name")
@click.option("--tp", type=int, default=1, show_default=True, help="tensor-parallel degree (one device simulated)")
@click.option("--layers", type=int, default=None, help="decoder layers (default: all)")
@click.option("--requests", "dataset", type=click.Choice(["sharegpt", "alpaca"]), default="sharegpt",
              show_default=True, help="request length distribution")
@click.option("--n", "n_requests", type=int, default=1000, show_default=True, help="requests in the stream")
@click.option("--max-batch", type=int, default=256, show_default=True)
@click.option("--max-seq-len", type=int, default=2048, show_default=True)
@click.option("--rate", type=float, default=None, help="Poisson arrivals, requests/s (default: all at t=0)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sub-batch", type=click.Choice(["on", "off"]), default=None,
              help="override the system's sub-batch interleaving")
@click.option("--gpu", "gpu_name", default=None, help="GPU of gpu-only (default h100)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def serve(system, model, tp, layers, dataset, n_requests, max_batch, max_seq_len, rate, seed, sub_batch, gpu_name,
          as_json) -> None:
    """Continuous (Orca-style, iteration-level) batching of a request stream on a system:
    throughput, TTFT, TBT, per-iteration latency, utilization and memory traffic."""
    from sim.systems.config import load_system
    from sim.systems.serving import ServeConfig
    from sim.systems.serving import serve as run_serve

    cfg = ServeConfig(load_system(system), model, tp=tp, max_batch=max_batch, max_seq_len=max_seq_len,
                      dataset=dataset, n_requests=n_requests, arrival="all-at-once" if rate is None else "poisson",
                      rate=rate, seed=seed, layers=layers, gpu=gpu_name,
                      sub_batch=None if sub_batch is None else sub_batch == "on")
    res = run_serve(cfg)
    if as_json:
        _emit_json(res.to_json())
        return
    for line in res.summary_lines():
        click.echo(line)


# ------------------------------------------------------------------------------------- quantize
@cli.command()
@click.option("--format", "fmt", required=True,
              help="int, fp, flint, ant, olive, bitmod, bitmod-er, bitmod-ea, mxfp, mxint")
@click.option("--bits", type=int, required=True, help="bits per weight (3 or 4; int 8; mx formats 4/6/8)")
@click.option("--group-size", type=int, default=None, help="weights per group (default 128; 32 for mx formats)")
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy weight [out_features, in_features]")
@click.option("--output", "output_path", default=None, type=click.Path(dir_okay=False),
              help="write the dequantized weights here (.npy)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def quantize(fmt, bits, group_size, input_path, output_path, as_json) -> None:
    """Quantize a weight matrix per group with a number format (BitMoD's mixtures, ANT, OliVe, INT,
    FP, MX); prints the MSE and the data type chosen per group."""
    from sim.quant.api import quantize_cli

    out = quantize_cli(fmt, bits, group_size, input_path, output_path)
    if as_json:
        _emit_json(out)
        return
    click.echo(f"{out['format']} {out['bits']}-bit, group {out['group_size']}: {out['groups']:,} groups, "
               f"mse {out['mse']:.4g} (relative {out['rel_mse']:.4g}), {out['bits_per_weight']:.4g} bits/weight")
    for name, count in out["dtype_counts"].items():
        click.echo(f"  {name:<16} {count:>10,}")
    if out.get("output"):
        click.echo(f"wrote {out['output']}")


# ------------------------------------------------------------------------------------- roofline
@cli.command()
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False), default=None, help="trace file to score")
@click.option("--hw", "hws", multiple=True, metavar="NAME_OR_PATH", help="device config (repeatable)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None, help="report folder")
@click.option("--datasheet", is_flag=True, help="use datasheet peaks even where measured ceilings exist")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE", help="override a hardware config field")
@click.option("--gemm", nargs=3, type=int, default=None, metavar="M K N", help="single GEMM x[M,K] @ W[K,N]")
@click.option("--attention", nargs=4, type=int, default=None, metavar="B H L D", help="single attention op")
@click.option("--kv-heads", type=int, default=None, help="KV heads for --attention (GQA)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@_model_options
def roofline(trace_file, hws, out_dir, datasheet, sets, gemm, attention, kv_heads, as_json, **kw) -> None:
    """Roofline of a trace (or of one GEMM / attention) on one or more devices."""
    hws = list(hws) or ["h200"]
    measured = not datasheet
    overrides = list(sets) or None
    if gemm and attention:
        raise LlmsimError("--gemm: give either --gemm or --attention, not both")
    if gemm or attention:
        op_dtype = SHORT_DTYPES.get(kw["dtype"], kw["dtype"]) or "bf16"
        _single(gemm, attention, kw["phase"] or "decode", kv_heads, op_dtype, hws, measured, overrides, as_json)
        return
    from sim.io import check_writable_dir
    from sim.roofline import analyze_many
    from sim.roofline.analyzer import resolve_all
    from sim.trace import load_trace

    ceilings = resolve_all(hws, measured, overrides)  # config errors before any tracing
    if out_dir:
        check_writable_dir(out_dir)
    if trace_file and kw.get("model"):
        raise LlmsimError("--trace: give either --trace or --model, not both")
    if trace_file:
        tr = load_trace(trace_file)
    elif kw.get("model"):
        tr = _capture_from(kw)
    else:
        raise LlmsimError("--trace: required (expected a trace file, or --model to trace one now, or --gemm/--attention)")
    report = analyze_many(tr, ceilings)
    written = []
    if out_dir:
        from sim.roofline.report import write_report

        written = write_report(report, out_dir)
    summary = report.summary()
    if as_json:
        summary["files"] = [str(p) for p in written]
        _emit_json(summary)
        return
    for dev, d in summary["devices"].items():
        click.echo(f"{dev} ({d['mode']}): {d['time_s'] * 1e3:.3f} ms")
        for ph, p in d["phases"].items():
            click.echo(f"  {ph:<8} {p['time_s'] * 1e3:10.3f} ms  {p['achieved_tflops']:8.2f} TFLOP/s  "
                       f"{p['achieved_bw_gbps']:8.1f} GB/s")
    if written:
        click.echo(f"wrote {len(written)} files to {out_dir}")


def _single(gemm, attention, phase, kv_heads, dtype, hws, measured, overrides, as_json) -> None:
    from sim.roofline.single import single_attention, single_gemm

    if len(set(hws)) < len(hws):
        raise LlmsimError("--hw: a device is given twice (expected each device once)")
    results = []
    for hw in hws:
        if gemm:
            results.append(single_gemm(*gemm, hw, dtype, measured=measured, overrides=overrides))
        else:
            if phase not in ("prefill", "decode"):
                raise LlmsimError(f"--phase: expected prefill or decode for --attention, found {phase!r}")
            b, h, l, d = attention
            results.append(single_attention(b, h, l, d, phase, hw, dtype, kv_heads=kv_heads, measured=measured,
                                             overrides=overrides))
    if as_json:
        _emit_json(results[0] if len(results) == 1 else results)
        return
    for r in results:
        click.echo(f"{r['device']} ({r['mode']}): {r['op']} {r['time_s'] * 1e6:.2f} us, {r['bound']} bound, "
                   f"intensity {r['intensity']:.1f} FLOP/B, attainable {r['attainable_flops'] / 1e12:.1f} TFLOP/s")


# ------------------------------------------------------------------------------------- listing
@cli.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json) -> None:
    """List the model zoo."""
    from sim.config import list_models, load_model_spec

    specs = [load_model_spec(m) for m in list_models()]
    if as_json:
        _emit_json([{"name": s.name, "family": s.family, "phases": s.phases, "description": s.description}
                    for s in specs])
        return
    for s in specs:
        click.echo(f"{s.name:<14} {s.family:<8} {','.join(s.phases):<15} {s.description}")


@cli.command()
@click.argument("name", required=False)
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE")
@click.option("--json", "as_json", is_flag=True)
def hw(name, sets, as_json) -> None:
    """List bundled hardware configs, or validate and show one."""
    from sim.config.hardware import load_hw
    from sim.config.paths import project_root

    if name is None:
        names = sorted((p.parent.name, p.stem) for p in (project_root() / "hw_configs").rglob("*.yaml"))
        if as_json:
            _emit_json([{"kind": k, "name": n} for k, n in names])
        else:
            for k, n in names:
                click.echo(f"{k:<10} {n}")
        return
    from sim.config.loader import load_yaml
    from sim.config.paths import find_bundled

    try:   # a device first (bitmod, ant, ... name both a device and the system built on it)
        path = find_bundled("hw_configs", name, "hardware config", exclude=("systems",))
    except LlmsimError:
        path = find_bundled("hw_configs", name, "hardware or system config")
    if load_yaml(path).get("kind") == "system":
        from sim.systems.config import load_system

        cfg = load_system(str(path), list(sets) or None)
    else:
        cfg = load_hw(str(path), list(sets) or None)
    if as_json:
        _emit_json(cfg.model_dump())
    else:
        import yaml

        click.echo(yaml.safe_dump(cfg.model_dump(), sort_keys=False).rstrip())


# ------------------------------------------------------------------------------------- validate
@cli.command()
@click.argument("suite", required=False)
@click.option("--quick", is_flag=True, help="the quick form the test suite runs")
@click.option("--json", "as_json", is_flag=True)
def validate(suite, quick, as_json) -> None:
    """Reproduce published / measured numbers and print them side by side."""
    import importlib

    from sim.validate import SUITES

    names = [suite] if suite else list(SUITES)
    results = []
    for n in names:
        if n not in SUITES:
            raise LlmsimError(f"validate: unknown suite {n!r} (expected one of: {', '.join(SUITES)})")
        results.append(importlib.import_module(SUITES[n]).run(quick=quick))
    cases = [c for r in results for c in r.get("cases", [])]
    failed = any(c.passed is False for c in cases)
    if as_json:
        if suite and "cases" in results[0]:
            _emit_json([c.to_dict() for c in cases])
        else:
            _emit_json([_jsonable_result(r) for r in results] if len(results) > 1 else _jsonable_result(results[0]))
    else:
        for r in results:
            _print_result(r)
    if failed:
        sys.exit(1)


def _jsonable_result(r: dict) -> dict:
    if "cases" in r:
        return {**r, "cases": [c.to_dict() for c in r["cases"]]}
    return r


def _print_result(r: dict) -> None:
    click.echo(f"== {r['suite']}: {r['what']}")
    if "cases" in r:
        for c in r["cases"]:
            ref = "-" if c.reference is None else f"{c.reference:.4g}"
            err = "" if c.rel_error is None else f" ({c.rel_error:+.1%})"
            verdict = {True: "PASS", False: "FAIL", None: "report"}[c.passed]
            click.echo(f"  {verdict:<6} {c.name}: reference {ref}, simulated {c.simulated:.4g} {c.unit}{err}"
                       f"{'  [' + c.tolerance + ']' if c.tolerance else ''}")
            if c.note:
                click.echo(f"         {c.note}")
        return
    cols = r["columns"]
    click.echo("  ".join(f"{c:>12}" for c in cols))
    for row in r["rows"]:
        click.echo("  ".join(f"{row[c]:>12.1f}" if isinstance(row[c], float) else f"{row[c]:>12}" for c in cols))
    for k, v in r.items():
        if k.startswith("mean_"):
            click.echo(f"{k}: {v:.1f}")


# ------------------------------------------------------------------------------------- demo
@cli.command()
@click.option("--scenario", default="default", show_default=True, help="scenario name or YAML path")
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE", help="override a scenario field")
@click.option("--json", "as_json", is_flag=True)
def demo(scenario, sets, as_json) -> None:
    """Run the bundled default job: trace a model and write its roofline report."""
    from sim.config.scenario import load_scenario
    from sim.io import check_writable_dir
    from sim.roofline import analyze_many
    from sim.roofline.analyzer import resolve_all
    from sim.roofline.report import write_report
    from sim.trace import capture, save_trace

    sc = load_scenario(scenario, list(sets) or None)
    ceilings = resolve_all(sc.hw)  # every config error before any work
    out = check_writable_dir(sc.out)
    tr = capture(sc.model, phase=sc.phase, batch=sc.batch, seq_len=sc.seq_len, new_tokens=sc.new_tokens,
                 layers=sc.layers, tp=sc.tp)
    report = analyze_many(tr, ceilings)
    files = write_report(report, out)
    files.append(save_trace(tr, out / "trace.json"))
    summary = report.summary()
    if as_json:
        summary["files"] = [str(f) for f in files]
        _emit_json(summary)
        return
    click.echo(f"{sc.description}")
    for dev, d in summary["devices"].items():
        click.echo(f"  {dev:<6} ({d['mode']}): {d['time_s'] * 1e3:8.3f} ms per step")
    click.echo(f"report: {out}/summary.md, charts: {out}/roofline.png, {out}/breakdown.png")


# ------------------------------------------------------------------------------------- sweep
@cli.command()
@click.argument("spec_file", metavar="SPEC.yaml")
@click.option("--out", "out_dir", required=True, metavar="DIR",
              help="results folder (spec.yaml, points/, results.parquet); a re-run resumes")
@click.option("--backend", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool; dask: a dask.distributed cluster")
@click.option("--workers", type=int, default=None, help="worker processes (default: every core; 1: in-process)")
@click.option("--scheduler", default=None, metavar="ADDR", help="a running Dask scheduler (--backend dask)")
@click.option("--quiet", is_flag=True, help="no progress bar")
@click.option("--json", "as_json", is_flag=True, help="print {points, done, skipped, errors, wall_s, out}")
def sweep(spec_file, out_dir, backend, workers, scheduler, quiet, as_json) -> None:
    """Run a design-space sweep: a base system, axes over config paths (grid or seeded random) and
    workloads; every point's metrics go to DIR/results.parquet (see docs/sweeps.md)."""
    from sim.explore.store import sweep as run

    _, s = run(spec_file, out_dir, backend=backend, workers=workers, quiet=quiet, scheduler=scheduler)
    if as_json:
        _emit_json({k: s[k] for k in ("points", "done", "skipped", "errors", "wall_s", "out")})
        return
    click.echo(f"sweep {s['sweep']}: {s['points']} points ({s['done']} run, {s['skipped']} already done, "
               f"{s['errors']} errors) in {s['wall_s']:.1f} s -> {s['results']}")


# ------------------------------------------------------------------------------------- report
@cli.command()
@click.argument("sweep_dir", metavar="DIR")
@click.option("--out", "-o", "out", default=None, metavar="FILE",
              help="the HTML file to write (default: DIR/report.html)")
@click.option("--json", "as_json", is_flag=True, help="print {out, points, plots, pareto_points}")
def report(sweep_dir, out, as_json) -> None:
    """Write a sweep's results (llmsim sweep's DIR) as one self-contained HTML page: Pareto fronts,
    sensitivity plots, the Pareto points and the full results table."""
    from sim.explore.report import write_report

    res = write_report(sweep_dir, out)
    if as_json:
        _emit_json({k: res[k] for k in ("out", "points", "plots", "pareto_points")})
        return
    click.echo(f"report: {res['out']} ({res['points']} points, {res['errors']} errors, {res['plots']} plots, "
               f"{res['pareto_points']} Pareto points)")


@cli.command()
@click.option("--model", "-m", default=None, help="zoo model name")
@click.option("--systems", default=",".join(("gpu-only", "npu-only", "neupims", "bitmod")), show_default=True,
              help="comma-separated system configs")
@click.option("--batch", "batches", default="1,32,256", show_default=True, help="comma-separated batch sizes")
@click.option("--seq-len", type=int, default=2048, show_default=True, help="tokens in the KV cache")
@click.option("--technique", "techniques", multiple=True, metavar="NAME[:KEY=VALUE,...]",
              help="technique to compare (repeatable; default: one setting of each)")
@click.option("--layers", type=int, default=None, help="decoder layers simulated (default: all)")
@click.option("--gpu", "gpu_name", default=None, help="GPU of gpu-only (default: the system's, h100)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for table.csv, table.md, heatmap.png, commentary.md")
@click.option("--list", "list_only", is_flag=True, help="list the techniques and their parameters")
@click.option("--json", "as_json", is_flag=True, help="print the cells as JSON")
def techniques(model, systems, batches, seq_len, techniques, layers, gpu_name, out_dir, list_only, as_json) -> None:
    """Every technique on every system and batch: speed-up per generated token against the plain model."""
    from dataclasses import fields as dc_fields

    from sim.techniques.base import technique_classes

    if list_only:
        rows = []
        for name, cls in technique_classes().items():
            params = {f.name: f.default for f in dc_fields(cls)}
            rows.append({"name": name, "summary": cls.summary, "parameters": params})
        if as_json:
            _emit_json(rows)
        else:
            for r in rows:
                ps = ",".join(f"{k}={v}" for k, v in r["parameters"].items())
                click.echo(f"{r['name']:<14} {r['summary']}" + (f"  [{ps}]" if ps else ""))
        return
    if not model:
        raise LlmsimError("--model: required (expected a zoo model name; see `llmsim models`)")
    try:
        batch_list = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError:
        raise LlmsimError(f"--batch: expected comma-separated positive integers, found {batches!r}") from None
    if not batch_list or min(batch_list) < 1:
        raise LlmsimError(f"--batch: expected comma-separated positive integers, found {batches!r}")
    if out_dir:
        from sim.io import check_writable_dir

        check_writable_dir(out_dir)
    from sim.techniques.compare import compare, write_outputs

    system_list = [s.strip() for s in systems.split(",") if s.strip()]
    def show(t, s, b):   # a one-line status on the terminal
        click.echo(f"\r{s} batch {b}: {t:<48}", nl=False, err=True)

    progress = show if sys.stderr.isatty() else None
    cmp = compare(model, system_list, batch_list, list(techniques) or None, seq_len=seq_len, layers=layers,
                  gpu=gpu_name, progress=progress)
    if progress:
        click.echo("", err=True)
    files = write_outputs(cmp, out_dir) if out_dir else {}
    if as_json:
        _emit_json({"model": model, "seq_len": seq_len, "cells": [vars(c) for c in cmp.cells], "files": files})
        return
    from sim.techniques.compare import commentary

    df = cmp.table()
    piv = df.assign(value=df.apply(lambda r: f"{r.speedup:.2f}" if r.status == "ok" else r.status, axis=1)).pivot_table(
        index="technique", columns=["system", "batch"], values="value", aggfunc="first", sort=False)
    click.echo(f"{model}, decode at context {seq_len}: speed-up per generated token (plain model = 1)")
    click.echo(piv.to_string())
    for line in commentary(cmp):
        click.echo(line)
    for k, v in files.items():
        click.echo(f"wrote {v}")


def main() -> None:
    try:
        from sim.threads import thread_count

        thread_count()   # a bad LLMSIM_THREADS: one line now, not halfway through a command's output
        cli.main(standalone_mode=False)
    except LlmsimError as exc:
        click.echo(f"llmsim: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"llmsim: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("llmsim: aborted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
