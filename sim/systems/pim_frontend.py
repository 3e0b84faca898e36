"""NeuPIMs' C++ simulator's PIM instruction front end, for comparisons with that simulator.

What it models (read from casys-kaist/NeuPIMs; ``docs/neupims-reference-notes.md``, section 1.5):

* **Kernel shapes** (``src/operations/NeuPIMSLogitSoftmax.cc`` and ``NeuPIMSAttend.cc``). q.K^T:
  per request, chunks of the query of ``page // head_dim`` heads (a page holds ``page`` fp16
  elements; ``E / page`` chunks when head_dim divides the page), each a GWRITE and then
  ``ceil(L / banks)`` tiles; per tile a P_HEADER and, per head of the chunk, ``head_dim / 16``
  COMPs and a READRES (``newton``) or one fused COMPS_READRES (``fused``, NeuPIMs). p.V: per head
  and ``page``-token chunk of the sequence, a GWRITE and ``head_dim / banks`` tiles, each a
  P_HEADER and ``ceil(tokens / 16)`` COMPs and a READRES (``newton``) or one COMPS_READRES.
* **Issue** (``src/NeuPIMSystolicWS.cc``, ``pim_ld_queue_cycle`` at commit e51a4af, the snapshot
  that carries the naive baseline's ``baseline_exp`` switches): one PIM instruction per core cycle
  leaves the core, for all channels together, in the batch's order, which
  ``Scheduler::group_sub_batches`` builds channel by channel. So channel c gets its first
  instruction only when channels 0..c-1 have had all of theirs: channels work almost one after
  another. (At the later commit 1092220 the same function hands out a whole tile per cycle; the
  dual-row-buffer reference run is consistent with that.)

A phase (all q.K^T, then all p.V: the reference has one PIM tile for the whole batch per phase)
then ends at ``max_c(S_c + max(I_c, W_c))``: ``S_c`` the cycles to issue the channels before c,
``I_c`` channel c's instructions, ``W_c`` its DRAM work (llmsim's command-level PIM kernels for
that phase). This is not hardware: an HBM channel has its own command bus, and nothing makes 31
channels wait while one is fed.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def kernel_instructions(memory, length: int, heads: int, head_dim: int, kernel: str) -> tuple[int, int]:
    """(q.K^T, p.V) PIM instructions of one request with ``length`` KV tokens (module doc)."""
    org = memory.organization
    page = org["column"] * memory.bus_width_bits // 8 // 2          # fp16 elements per page
    banks = org["rank"] * org["bankgroup"] * org["bank"]
    per_comp = memory.pim.comp_coverage_macs
    heads_per_chunk = max(1, page // head_dim)
    chunks = math.ceil(heads / heads_per_chunk)
    tiles = math.ceil(length / banks)
    per_head_tile = (head_dim // per_comp + 1) if kernel == "newton" else 1
    score = 0
    for c in range(chunks):
        in_chunk = min(heads_per_chunk, heads - c * heads_per_chunk)
        score += 1 + tiles * (1 + in_chunk * per_head_tile)
    v_tiles = math.ceil(head_dim / banks)
    context = 0
    for c in range(math.ceil(length / page)):
        tokens = min(page, length - c * page)
        per_tile = 1 + (math.ceil(tokens / per_comp) + 1 if kernel == "newton" else 1)
        context += heads * (1 + v_tiles * per_tile)
    return score, context


def serial_phase_seconds(instructions: dict[int, int], work_s: dict[int, float], issue_hz: float) -> float:
    """One phase: channels fed one after another in channel order at ``issue_hz`` instructions per
    second; channel c ends at S_c + max(I_c / issue_hz, W_c) (module doc)."""
    start = end = 0.0
    for ch in sorted(instructions):
        issue = instructions[ch] / issue_hz
        end = max(end, start + max(issue, work_s.get(ch, 0.0)))
        start += issue
    return end


def serial_issue_mha(system, lengths: np.ndarray, channels: np.ndarray, head_dim: int, heads: int,
                     softmax_s: dict[int, float]) -> tuple[float, float, dict[str, int]]:
    """(MHA seconds, PIM busy seconds, PIM command counts) of one layer under the front end of
    ``system.pim.issue``: the q.K^T phase, the last channel's softmaxes, then the p.V phase. PIM
    busy is the busiest channel's DRAM work (not the time it waits for instructions); the command
    counts (energy) are those of the kernels, with the refreshes of their unthrottled runs."""
    from sim.memory.pim import run_attention_batch

    issue = system.pim.issue
    memory = system.memory()
    npu = system.npu_config()
    issue_hz = npu.freq_mhz * 1e6 * issue.instructions_per_cycle
    mem_hz = memory.freq_hz
    phases = {}
    busy: dict[int, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    per_length = {int(L): kernel_instructions(memory, int(L), heads, head_dim, issue.kernel) for L in np.unique(lengths)}
    for k, phase in enumerate(("score", "context")):
        res = run_attention_batch(memory, lengths.tolist(), channels.tolist(), head_dim, heads, phases=(phase,))
        instr: dict[int, int] = defaultdict(int)
        for L, ch in zip(lengths.tolist(), channels.tolist()):
            instr[int(ch)] += per_length[int(L)][k]
        work = {c: v / mem_hz for c, v in res.channel_cycles.items()}
        phases[phase] = serial_phase_seconds(instr, work, issue_hz)
        for c, w in work.items():
            busy[c] += w
        for name, n in res.command_counts.items():
            counts[name] += n
    last = max(int(c) for c in channels) if len(channels) else 0
    tail = sum(softmax_s[int(L)] for L, c in zip(lengths, channels) if int(c) == last)
    return phases["score"] + tail + phases["context"], max(busy.values(), default=0.0), dict(counts)
