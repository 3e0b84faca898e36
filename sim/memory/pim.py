"""PIM GEMV kernels for attention, NeuPIMs style, as command programs on one channel.

Layout (NeuPIMs, ../shared/reference/neupims.md): a request's KV cache lives in one channel, in
PIM tiles of one DRAM page in every bank of the channel (1 KB x 32 banks = 32 KB on HBM2-NeuPIMs).
K is spread over the banks along the sequence, V along the head dimension. Per head:

* GWRITE puts the vector (q for scores, the softmax probabilities for the context) in the
  channel's global buffer;
* per tile: P_HEADER, one G_ACT per bank group (the same row in each bank), COMPs over the page's
  columns (each COMP: ``comp_coverage_macs`` fp16 MACs in every bank), READRESs for the partial
  sums, PIM_PRE.

Assumptions (NeuPIMs' text gives the command set and its costs, not every count): a tile's COMP
count is the columns the data fills (page bytes / (MACs x 2 B) when full); the score phase returns
one fp16 per key, the context phase ``comp_coverage_macs`` fp16 partial sums per unit; READRES
moves one burst. With a unit shared by a bank pair or a bank group (``pim.placement``), each COMP
works in one bank of every unit, so a tile takes ``banks per unit`` times as many COMPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sim.memory.commands import CommandLog
import numpy as np

from sim.memory.engine import run_program, run_runs, runs_to_arrays


PIPELINE_FILL_COMPS = 6  # NeuPIMs: COMPS_READRES costs max(BL/2, tCCD_S) x (max(num_comps, 6) + 1)


@dataclass(frozen=True)
class KernelResult:
    log: CommandLog
    cycles: int
    tiles: int
    comps: int
    bytes_computed: int        # KV bytes read by the PIM units
    comp_phase_cycles: int     # cycles from each tile's first COMP to one COMP interval after its last
    units: int                 # PIM units in the channel


def banks_per_unit(memory) -> int:
    org = memory.organization
    return {"bank": 1, "bank_pair": 2, "bank_group": org["bank"]}[memory.pim.placement]


def attention_runs(memory, seq_len: int, head_dim: int, phase: str = "score", heads: int = 1,
                   row0: int = 0) -> tuple[list[tuple[str, dict[str, int], int]], int, int]:
    """One request's attention on PIM as runs (command, {level: index}, repeat); returns (runs,
    tiles, comps). A run is ``repeat`` back-to-back issues of one command (a tile's COMPs, its
    READRESs): :func:`attention_program` expands them, the fast path issues each run as one event."""
    if phase not in ("score", "context"):
        raise ValueError(f"phase: expected score or context, found {phase!r}")
    org = memory.organization
    pim = memory.pim
    page_bytes = org["column"] * memory.bus_width_bits // 8
    banks = org["rank"] * org["bankgroup"] * org["bank"]
    units = banks // banks_per_unit(memory)
    tile_bytes = page_bytes * banks
    comp_bytes = pim.comp_coverage_macs * 2  # bytes one unit consumes per COMP
    kv_bytes = seq_len * head_dim * 2
    tiles_per_head = math.ceil(kv_bytes / tile_bytes)
    runs: list[tuple[str, dict[str, int], int]] = []
    comps_total = 0
    for h in range(heads):
        runs.append(("GWRITE", {}, 1))
        left = kv_bytes
        for tile in range(tiles_per_head):
            used = min(left, tile_bytes)
            left -= used
            comps = math.ceil(math.ceil(used / units) / comp_bytes)
            if phase == "score":
                results = math.ceil(used / (head_dim * 2) * 2 / memory.burst_bytes)
            else:
                results = math.ceil(units * pim.comp_coverage_macs * 2 / memory.burst_bytes)
            row = row0 + h * tiles_per_head + tile
            runs.append(("P_HEADER", {}, 1))
            for r in range(org["rank"]):
                for g in range(org["bankgroup"]):
                    runs.append(("G_ACT", {"rank": r, "bankgroup": g, "row": row}, 1))
            # NeuPIMs' COMPS_READRES charges max(num_comps, 6) COMP slots (the unit's pipeline fill)
            comps = max(comps, PIPELINE_FILL_COMPS)
            runs.append(("COMP", {}, comps))
            runs.append(("READRES", {}, results))
            runs.append(("PIM_PRE", {}, 1))
            comps_total += comps
    return runs, tiles_per_head * heads, comps_total


def attention_program(memory, seq_len: int, head_dim: int, phase: str = "score", heads: int = 1,
                      row0: int = 0) -> tuple[list[tuple[str, dict[str, int]]], int, int]:
    """The command program of one request's attention on PIM; returns (program, tiles, comps)."""
    runs, tiles, comps = attention_runs(memory, seq_len, head_dim, phase, heads, row0)
    return [(c, where) for c, where, k in runs for _ in range(k)], tiles, comps


def run_attention(memory, seq_len: int, head_dim: int, phase: str = "score", heads: int = 1) -> KernelResult:
    spec = memory.spec(pim=True)
    program, tiles, comps = attention_program(memory, seq_len, head_dim, phase, heads)
    log = run_program(spec, program)
    comp = spec.standard.command_index("COMP")
    comp_gap = spec.t("nBL") if spec.t("nBL") > spec.t("nCCDS") else spec.t("nCCDS")
    # COMP-phase time per tile: from its first COMP to one interval after its last
    phase_cycles = 0
    start = last = None
    for t, c in zip(log.cycle, log.cmd):
        if c == comp:
            start = t if start is None else start
            last = t
        elif start is not None:
            phase_cycles += int(last - start + comp_gap)
            start = None
    banks = memory.organization["rank"] * memory.organization["bankgroup"] * memory.organization["bank"]
    units = banks // banks_per_unit(memory)
    computed = seq_len * head_dim * 2 * heads  # the KV bytes the units read (padding slots read none)
    return KernelResult(log, int(log.cycle[-1]) + 1 if len(log) else 0, tiles, comps, computed, phase_cycles,
                        units)


@dataclass(frozen=True)
class BatchResult:
    cycles: int                   # the slowest channel
    channel_cycles: dict[int, int]
    commands: int
    requests: int
    command_counts: dict[str, int] = field(default_factory=dict)   # over all channels, refreshes included


def run_attention_batch(memory, seq_lens, channels, head_dim: int = 128, heads: int = 1,
                        fast: bool = True, phases: tuple[str, ...] = ("score", "context")) -> BatchResult:
    """Decode attention of a batch on PIM: each request's q.K^T then p.V on its own channel (the
    softmax between them runs elsewhere, on the NPU, and is not timed here); channels run in
    parallel, a channel's requests one after another. ``seq_lens`` are KV lengths.

    ``fast`` issues each run of COMPs or READRESs as one event (:func:`~sim.memory.engine.run_runs`; the same
    cycles as the command-level path, tested); ``fast=False`` issues every command
    (:func:`run_program`). ``phases``: the kernels each request runs, in order."""
    by_channel: dict[int, list[int]] = {}
    for length, ch in zip(seq_lens, channels):
        by_channel.setdefault(int(ch), []).append(int(length))
    spec = memory.spec(pim=True)
    names = [c.name for c in spec.standard.commands]
    refab = names.index("REFab")
    totals = np.zeros(len(names), np.int64)
    out: dict[int, int] = {}
    commands = 0
    arrays: dict[tuple[int, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for ch, lengths in sorted(by_channel.items()):
        keys = [(length, phase) for length in lengths for phase in phases]
        if fast:  # rows only name the PIM row a G_ACT opens: timing does not depend on them
            for length, phase in keys:
                if (length, phase) not in arrays:  # heads repeat one head's program: build it once
                    one = runs_to_arrays(spec, attention_runs(memory, length, head_dim, phase, 1)[0])
                    arrays[length, phase] = (np.tile(one[0], heads), np.tile(one[1], (heads, 1)),
                                             np.tile(one[2], heads))
            cmds, xy, reps = (np.concatenate(part) for part in zip(*(arrays[k] for k in keys)))
            res = run_runs(spec, cmds, xy, reps)
            out[ch], n = res.cycles, res.commands + len(res.refresh_t)
            per_cmd = np.bincount(cmds, weights=reps, minlength=len(names))
            per_cmd[refab] += len(res.refresh_t)
        else:
            program: list[tuple[str, dict[str, int]]] = []
            row = 0
            for length, phase in keys:
                prog, tiles, _ = attention_program(memory, length, head_dim, phase, heads, row0=row)
                program += prog
                row += tiles
            log = run_program(spec, program, channel=ch)
            out[ch], n = (int(log.cycle[-1]) + 1 if len(log) else 0), len(log)
            per_cmd = np.bincount(np.asarray(log.cmd, np.int64), minlength=len(names))
        commands += n
        totals += per_cmd[:len(names)].astype(np.int64)
    counts = {name: int(c) for name, c in zip(names, totals) if c}
    return BatchResult(max(out.values(), default=0), out, commands, len(seq_lens), counts)
