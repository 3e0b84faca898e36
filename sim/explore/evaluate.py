"""One sweep point: a system configuration (base + overrides) on one workload -> a dict of metrics.

* NPU systems (with or without PIM): :func:`sim.systems.decode.decode_iteration` on the batch
  (``requests: sharegpt | alpaca``: a steady-state sample drawn with the seed; ``uniform``:
  ``batch`` requests of ``seq_len`` cached tokens).
* GPU systems: :func:`sim.gpu.iteration.gpu_decode_iteration` on the same batch.
* Bit-serial systems: :func:`sim.systems.bitserial_run.run_trace` of the model traced for the
  workload's phase at the system's weight and KV widths (as ``llmsim simulate`` does).

Every metric is a float; NaN where the model does not give it (energy of a GPU, PIM busy time of
a system without PIM, area where the configs give no PE area).
"""

from __future__ import annotations

import math
from typing import Any

METRICS = ("time_s", "tokens_per_s", "energy_j", "energy_per_token_j", "area_mm2", "pim_busy", "cycles")
NAN = float("nan")

_TRACES: dict[tuple, Any] = {}     # bit-serial traces of this process, by capture arguments


def nan_metrics() -> dict[str, float]:
    return {m: NAN for m in METRICS}


def make_batch(wl: dict[str, Any], seed: int):
    from sim.systems.requests import sample_batch, uniform_batch

    if wl["requests"] == "uniform":
        return uniform_batch(wl["batch"], wl["seq_len"])
    return sample_batch(wl["requests"], wl["batch"], seed=seed)


def npu_area_mm2(npu) -> float:
    """PE area of the NPU's systolic arrays: rows x cols x count x cores x pe.area_um2 (NaN when the
    PE has no area)."""
    s = npu.systolic
    if s.pe.area_um2 is None:
        return NAN
    return s.rows * s.cols * s.count * npu.cores * s.pe.area_um2 / 1e6


def _sram_area_mm2(buffers, width_bits: float) -> float | None:
    """Area of one SRAM macro at this port width: the table's entry, interpolated between widths
    (the nearest entry outside the table); None when the table gives no area."""
    rows = sorted((r for r in buffers.access_energy if r.area_mm2 is not None), key=lambda r: r.width_bits)
    if not rows:
        return None
    lo = [r for r in rows if r.width_bits <= width_bits]
    hi = [r for r in rows if r.width_bits >= width_bits]
    if lo and hi:
        a, b = lo[-1], hi[0]
        if a.width_bits == b.width_bits:
            return a.area_mm2
        t = (width_bits - a.width_bits) / (b.width_bits - a.width_bits)
        return a.area_mm2 + t * (b.area_mm2 - a.area_mm2)
    return (lo[-1] if lo else hi[0]).area_mm2


def bitserial_area_mm2(cfg, task: str, weight_bits: float) -> float:
    """PEs of the larger array x pe.area_um2, plus the weight and input SRAMs at the port widths of
    the task's array(s) (the artifact sizes the ports per array; the larger total when a generate
    run uses both) where the config's SRAM table gives areas."""
    from sim.bitserial.analytic import sram_widths

    pes = max(a.rows * a.cols for a in cfg.arrays.values())
    area = pes * cfg.pe.area_um2 / 1e6
    sram = []
    for phase in (["prefill", "decode"] if task == "generate" else [task]):
        if phase not in cfg.arrays:
            continue
        w, i = sram_widths(cfg, phase, weight_bits)
        aw, ai = _sram_area_mm2(cfg.buffers, w), _sram_area_mm2(cfg.buffers, i)
        if aw is not None and ai is not None:
            sram.append(aw + ai)
    return area + (max(sram) if sram else 0.0)


def _per_token(energy_j: float, tokens: float) -> float:
    return energy_j / tokens if tokens and not math.isnan(energy_j) else NAN


def _bitserial(sysconf, wl: dict[str, Any], seed: int) -> dict[str, float]:
    from sim.systems.bitserial_run import run_trace
    from sim.trace.tracer import capture

    task = wl["phase"]
    precision = sysconf.trace_precision(task, wl["model"])
    key = (wl["model"], task, wl["batch"], wl["seq_len"], wl["new_tokens"] or 1, wl["layers"], wl["tp"], seed,
           tuple(sorted(precision.items())), wl.get("technique"))
    tr = _TRACES.get(key)
    if tr is None:
        if len(_TRACES) >= 8:
            _TRACES.pop(next(iter(_TRACES)))
        tr = capture(wl["model"], phase=task, batch=wl["batch"], seq_len=wl["seq_len"],
                     new_tokens=wl["new_tokens"] or 1, layers=wl["layers"], tp=wl["tp"], seed=seed, **precision)
        if wl.get("technique"):
            from sim.techniques import apply_techniques

            tr = apply_techniques(tr, techniques_of(wl))
        _TRACES[key] = tr
    dev = sysconf.bitserial_config()
    res = run_trace(dev, tr, task, engine=wl["engine"], system=sysconf.name)
    time_s = res.time_s
    energy_j = res.energy_pj.get("total", NAN) * 1e-12
    return {"time_s": time_s, "tokens_per_s": res.tokens / time_s if time_s else NAN, "energy_j": energy_j,
            "energy_per_token_j": _per_token(energy_j, res.tokens),
            "area_mm2": bitserial_area_mm2(dev, task, precision.get("weight_bits", 16.0)),
            "pim_busy": NAN, "cycles": float(res.cycles)}


def techniques_of(wl: dict[str, Any]) -> list[str]:
    """The workload's techniques, in order (``a;b``)."""
    return [t for t in (wl.get("technique") or "").split(";") if t.strip()]


def evaluate_point(base: str, overrides: dict[str, Any], workload: dict[str, Any], seed: int = 0) -> dict[str, float]:
    """Metrics (:data:`METRICS`, floats) of system ``base`` with ``overrides`` (config path -> value,
    as a sweep axis gives them) on ``workload`` (a sweep workload mapping; defaults filled in)."""
    from sim.explore.spec import normalize_workload, override_strings
    from sim.systems.config import load_system

    sysconf = load_system(base, override_strings(overrides) or None)
    wl = normalize_workload(dict(workload), sysconf.accelerator)
    if sysconf.accelerator == "bitserial":
        return _bitserial(sysconf, wl, seed)
    batch = make_batch(wl, seed)
    if sysconf.accelerator == "gpu":
        from sim.gpu.iteration import gpu_decode_iteration

        res = gpu_decode_iteration(sysconf, sysconf.gpu, wl["model"], batch, tp=wl["tp"], layers=wl["layers"],
                                   techniques=tuple(techniques_of(wl)))
        area, pim_busy = NAN, NAN
    else:
        from sim.systems.decode import decode_iteration

        res = decode_iteration(sysconf, wl["model"], batch, tp=wl["tp"], layers=wl["layers"],
                               techniques=tuple(techniques_of(wl)))
        area = npu_area_mm2(sysconf.npu_config())
        pim_busy = float(res.utilization.get("pim_busy", NAN)) if sysconf.pim is not None else NAN
    energy_j = res.energy_pj["total"] * 1e-12 if "total" in res.energy_pj else NAN
    return {"time_s": float(res.time_s), "tokens_per_s": float(res.tokens_per_s), "energy_j": energy_j,
            "energy_per_token_j": _per_token(energy_j, res.batch * res.tokens_per_step), "area_mm2": area,
            "pim_busy": pim_busy,
            "cycles": float(res.cycles)}
