"""`llmsim validate memory`: the memory system against formulas of its standard's parameters.

Every reference is written here from the preset's datasheet numbers (a formula of the standard's
parameters), never taken from the engine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.config import load_hw
from sim.validate.cases import Case

PRESET = "hbm2-neupims"


def _neupims():
    m = load_hw(PRESET)
    return m, m.spec(), m.mapping()


def idle_read_latency() -> Case:
    from sim.memory.engine import run

    m, spec, mp = _neupims()
    res = run(spec, np.zeros(1, np.int64), np.zeros(1, bool), mp.decode_many(np.array([0])), refresh="none")
    ref = 14 + 14 + 4 // 2  # tRCDRD + CL + BL/2 as neupims.md lists them, not read from the preset
    return Case("idle read latency (ACT at 0, last data beat)", ref, float(res.done_cycle[0]), "cycles", "exact",
                float(res.done_cycle[0]) == ref, "tRCD + CL + BL/2 from reference/neupims.md: 14 + 14 + 2")


def streaming_read(quick: bool) -> Case:
    from sim.memory.engine import run

    m, spec, mp = _neupims()
    n = (64 if quick else 512) * 1024
    coords = mp.decode_many(np.arange(n, dtype=np.int64) * m.burst_bytes)
    res = run(spec, np.zeros(n, np.int64), np.zeros(n, bool), coords, queue_depth=m.transaction_queue_depth,
              refresh=m.refresh)
    peak = m.peak_bw_bytes_per_s / m.freq_hz  # bytes per cycle
    banks_per_rank = m.organization["bankgroup"] * m.organization["bank"]
    if m.refresh == "per_bank":  # each bank is away nRFCpb once every banks x nREFIpb cycles
        share = spec.t("nRFCpb") / (spec.t("nREFIpb") * banks_per_rank)
    elif m.refresh == "all_bank":
        share = spec.t("nRFC") / spec.t("nREFI")
    else:
        share = 0.0
    ref = peak * (1 - share)
    sim = n * m.burst_bytes / res.cycles
    return Case("streaming-read bandwidth", ref, sim, "B/cycle", ">= 0.95 x reference", sim >= 0.95 * ref,
                f"peak {peak:g} B/cycle (bus width x 2 per cycle x channels) x (1 - refresh share {share:.4f})",
                note=f"{n} sequential 64 B reads over 32 channels. The reference charges refresh as lost time; a "
                     "per-bank refresh overlaps with the other banks' streaming, so the simulated rate can sit above it. "
                     "What is left below peak: pipeline fill (tRCD + CL) and drain, and refresh slots")


def random_read(quick: bool) -> Case:
    from sim.memory.engine import run

    m, spec, mp = _neupims()
    n = (32 if quick else 256) * 1024
    rng = np.random.default_rng(7)
    addrs = rng.integers(0, mp.capacity_bytes // m.burst_bytes, n, dtype=np.int64) * m.burst_bytes
    res = run(spec, np.zeros(n, np.int64), np.zeros(n, bool), mp.decode_many(addrs),
              queue_depth=m.transaction_queue_depth, refresh=m.refresh)
    sim = n * m.burst_bytes / res.cycles
    ranks = m.organization["rank"] * m.channels
    faw_bound = ranks * 4 * m.burst_bytes / spec.t("nFAW")
    return Case("random-access bandwidth", None, sim, "B/cycle", None, None,
                "report-only", note=f"every random read opens a row; at most 4 ACTs per nFAW per rank bound it to "
                                     f"{faw_bound:.0f} B/cycle ({faw_bound / (m.peak_bw_bytes_per_s / m.freq_hz):.0%} of peak)")


PRESETS = ("hbm2-neupims", "hbm2-2gbps", "hbm3-6400", "hbm-pim-samsung", "attacc-hbm3-pim")


def fuzz_violations(quick: bool) -> Case:
    """Engine command logs read by the independent checker: random state-legal commands issued as
    early as the timing core allows, plus controller runs on random request streams, every preset."""
    from sim.memory.checker import check, refresh_violations
    from sim.memory.engine import fuzz_commands, run
    from sim.memory.workloads import requests

    per_preset = 20_000 if quick else 160_000
    commands = violations = 0
    for i, name in enumerate(PRESETS):
        m = load_hw(name)
        spec, mp = m.spec(), m.mapping()
        log = fuzz_commands(spec, per_preset, seed=i)
        commands += len(log)
        violations += len(check(spec, log))
        arrive, is_write, addrs = requests(mp, "random", per_preset // 4, seed=i, write_fraction=0.3,
                                           burst_bytes=m.burst_bytes, mean_gap=1.0)
        res = run(spec, arrive, is_write, mp.decode_many(addrs), refresh="per_bank")
        commands += len(res.log)
        violations += len(check(spec, res.log)) + len(refresh_violations(spec, res.log, "per_bank"))
    m = load_hw(PRESET)
    mp = m.mapping()
    from sim.memory.engine import run_mixed
    from sim.memory.pim import attention_program

    program, _, _ = attention_program(m, 1024 if quick else 4096, 128, "score", heads=2, row0=1000)
    for dual in (True, False):  # the PIM command set, both row-buffer modes
        spec = m.with_pim(dual_row_buffer=dual).spec(pim=True)
        log = fuzz_commands(spec, per_preset, seed=10 + dual)
        commands += len(log)
        violations += len(check(spec, log))
        for refresh in ("all_bank", "per_bank"):  # the controller with a PIM kernel beside random traffic
            arrive, is_write, addrs = requests(mp, "random", per_preset // 8, seed=3, write_fraction=0.3,
                                               burst_bytes=m.burst_bytes, mean_gap=2.0)
            xy = mp.decode_many(addrs)
            xy[:, 0] = 0
            res = run_mixed(spec, program, arrive, is_write, xy, refresh=refresh)
            commands += len(res.result.log)
            violations += len(check(spec, res.result.log)) + len(refresh_violations(spec, res.result.log, refresh))
    return Case("checker violations over fuzzed commands", 0, float(violations), "violations", "exact",
                violations == 0, "every command must respect every constraint of its standard's table, and "
                "every refresh node its refresh deadline (at most 8 postponed refreshes, JEDEC)",
                note=f"{commands:,} commands over {len(PRESETS)} presets and the PIM standard in both modes")


def pim_internal_bandwidth(quick: bool) -> list[Case]:
    """PIM GEMV (attention scores of one request) on the NeuPIMs config: bandwidth inside the
    banks while COMPs stream, against the channel's external bus."""
    from sim.memory.checker import check
    from sim.memory.pim import run_attention

    m = load_hw(PRESET)
    seq = 1024 if quick else 2048
    r = run_attention(m, seq, 128, "score", heads=2)
    bus = m.channel_bw_bytes_per_s / m.freq_hz
    banks, comp_gap = 32, 2
    ref = 32 * 32 / 2 / 32  # neupims.md: 32 banks x 32 B per COMP every 2 cycles against a 32 B/cycle bus
    sim = r.bytes_computed / r.comp_phase_cycles / bus
    violations = len(check(m.spec(pim=True), r.log))
    return [
        Case("PIM GEMV internal vs external bandwidth (COMP phase)", ref, sim, "x", "within 10%",
             abs(sim - ref) <= 0.1 * ref and violations == 0,
             f"{banks} banks x {m.pim.comp_coverage_macs * 2} B per COMP every {comp_gap} cycles against a "
             f"{bus:g} B/cycle channel bus", note=f"q.K^T of a {seq}-token request, 2 heads of 128; "
                                                  f"{violations} checker violations"),
        Case("PIM GEMV effective bandwidth over the whole kernel", None, r.bytes_computed / r.cycles / bus, "x",
             None, None, "report-only",
             note="includes GWRITE (96 cycles), the G_ACTs (two per tFAW) + tRCD before each tile's COMPs, "
                  "READRES and PIM_PRE: the activation of each 32 KB tile is not hidden"),
    ]


def npu_reads_with_pim(quick: bool) -> list[Case]:
    """NPU streaming reads on one channel while a PIM GEMV keeps every bank of it busy: the share of
    the stand-alone read bandwidth kept inside the PIM window, dual vs single row buffer."""
    from sim.memory.checker import check
    from sim.memory.engine import run, run_mixed
    from sim.memory.pim import attention_program

    m = load_hw(PRESET)
    mp = m.mapping()
    heads = 2 if quick else 8
    program, _, _ = attention_program(m, 8192, 128, "score", heads=heads, row0=m.organization["row"] // 2)
    n = 20_000 * heads // 2
    stream = mp.decode_many(np.arange(n * m.channels, dtype=np.int64) * m.burst_bytes)
    coords = stream[stream[:, 0] == 0][:n]  # channel 0 only: the channel the PIM kernel runs on
    alone = run(m.spec(), np.zeros(n, np.int64), np.zeros(n, bool), coords, refresh=m.refresh)
    alone_bw = n * m.burst_bytes / alone.cycles
    cases = []
    for dual in (True, False):
        mem = m.with_pim(dual_row_buffer=dual)
        spec = mem.spec(pim=True)
        res = run_mixed(spec, program, np.zeros(n, np.int64), np.zeros(n, bool), coords, refresh=m.refresh)
        window = res.pim_cycles
        served = int(np.sum((res.result.done_cycle >= 0) & (res.result.done_cycle <= window)))
        kept = served * m.burst_bytes / window / alone_bw
        bad = len(check(spec, res.result.log))
        name = "dual" if dual else "single (blocked)"
        ok = (kept >= 0.5 if dual else kept <= 0.2) and bad == 0
        cases.append(Case(f"NPU read bandwidth kept beside a PIM GEMV, {name} row buffer", 0.5 if dual else 0.2, kept,
                          "fraction", ">= reference" if dual else "<= reference", ok, "NeuPIMs: dual row buffers let NPU traffic and PIM "
                          "compute proceed at once; a single row buffer blocks the bank",
                          note=f"{served} of {n} reads done inside the {window}-cycle PIM window; "
                               f"{bad} checker violations"))
    return cases


def fast_mode_agreement(quick: bool) -> list[Case]:
    """The row-granularity fast mode and the PIM runs path against the command-level engine (the
    reference here is the engine's own cycle count: the fast mode is an approximation of it)."""
    from sim.memory.engine import run
    from sim.memory.fast import run_fast
    from sim.memory.pim import run_attention_batch
    from sim.memory.workloads import requests

    m, spec, mp = _neupims()
    n = 20_000 if quick else 100_000
    cases = []
    for pattern in ("stream", "strided", "random"):
        arrive, is_write, addrs = requests(mp, pattern, n, seed=0, burst_bytes=m.burst_bytes)
        xy = mp.decode_many(addrs)
        eng = run(spec, arrive, is_write, xy, refresh=m.refresh)
        fast = run_fast(spec, arrive, is_write, xy, refresh=m.refresh)
        cases.append(Case(f"fast mode vs engine: {pattern} reads", float(eng.cycles), float(fast.cycles), "cycles",
                          "within 2%", abs(fast.cycles - eng.cycles) <= 0.02 * eng.cycles,
                          "the command-level engine on the same requests",
                          note=f"{n:,} requests, {fast.row_visits:,} row visits"))
    lengths = [37, 300, 1025, 2048, 700, 90] * (2 if quick else 8)
    channels = [i % 8 for i in range(len(lengths))]
    slow = run_attention_batch(m, lengths, channels, 128, 2, fast=False)
    quick_path = run_attention_batch(m, lengths, channels, 128, 2, fast=True)
    cases.append(Case("fast mode vs engine: PIM attention batch (runs of COMPs / READRESs)", float(slow.cycles),
                      float(quick_path.cycles), "cycles", "within 2%",
                      abs(quick_path.cycles - slow.cycles) <= 0.02 * slow.cycles,
                      "every command issued by the command-level program runner",
                      note=f"{len(lengths)} requests on 8 channels, 2 heads of 128; {slow.commands:,} commands"))
    return cases


def run(quick: bool = False) -> dict[str, Any]:
    cases = [idle_read_latency(), streaming_read(quick), random_read(quick), fuzz_violations(quick),
             *pim_internal_bandwidth(quick), *npu_reads_with_pim(quick), *fast_mode_agreement(quick)]
    for c in cases:
        c.suite = "memory"
    return {"suite": "memory", "what": "HBM memory system vs its standard's formulas", "cases": cases}
