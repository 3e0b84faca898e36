"""Runs op plans (:mod:`sim.npu.mapping`) on the DES core: one NPU core's arrays, vector units and
DMA engine over the memory system, with a timeline.

Per op, its tiles flow through three stages:

* **load**: the DMA engine's load stream queues a tile's requests on the channels the address
  mapping sends them to; each channel serves its share at the calibrated rate
  (:mod:`sim.npu.memory_service`) after what it already has queued, so channels that finish early
  go on with the next transfer; the tile's data is there the idle read latency after its last
  byte (the DMA keeps requests in flight: the next transfer does not wait for that latency);
* **compute**: the tile's phases in order, each holding its unit group (all arrays, or all vector
  units) for its cycles; tiles take the units in order, so one tile's softmax overlaps the next
  one's Q.K^T;
* **store**: the tile's output bytes are queued on the channels the same way (writes are posted;
  the op ends when they have drained).

A tile holds one operand buffer from its load until its compute ends: with double buffering two
tiles are in flight (the next loads while one computes), else one. Ops run one after another (an
op's inputs are its predecessor's outputs): an op starts when the previous op's last store is done.

Fidelity knob: an op with more tiles than ``max_chunks`` has consecutive tiles merged into chunks
(loads, phases and stores summed) whose sizes ramp up 1, 2, 4, ... and back down at the end, so the
pipeline's fill and drain stay at one-tile granularity; this bounds the events per op (tested
against the unmerged run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import simpy

from sim.config.hardware import NpuConfig
from sim.des.clock import TimeBase
from sim.des.core import Simulator
from sim.npu.mapping import OpPlan, Tile
from sim.npu.memory_service import MemoryService

DEFAULT_MAX_CHUNKS = 48


@dataclass(frozen=True)
class Chunk:
    tiles: int
    load_bytes: float
    phases: tuple[tuple[str, int, int], ...]   # (unit kind, cycles, units used)
    store_bytes: float


def chunk_sizes(n: int, max_chunks: int) -> list[int]:
    """Sizes (summing to n) ramping 1, 2, 4, ... up to a plateau and back down, about
    ``max_chunks`` of them; every tile its own chunk when n <= max_chunks."""
    if n <= max_chunks:
        return [1] * n
    levels = max(0, max_chunks // 4)
    while True:
        while levels and 2 * ((1 << levels) - 1) >= n:
            levels -= 1
        body = n - 2 * ((1 << levels) - 1)
        plateau = math.ceil(body / max(1, max_chunks - 2 * levels))
        if levels == 0 or (1 << (levels - 1)) <= plateau:
            break
        levels -= 1
    ramp = [1 << i for i in range(levels)]
    mids = [plateau] * (body // plateau) + ([body % plateau] if body % plateau else [])
    return ramp + mids + ramp[::-1]


def make_chunks(plan: OpPlan, max_chunks: int) -> list[Chunk]:
    """The plan's tiles merged into chunks of :func:`chunk_sizes` (whole repeats of the pattern are
    added at once, so a chunk costs O(pattern) to build, not O(tiles))."""
    pattern = plan.runs
    per = sum(c for c, _ in pattern)
    whole_load = sum(c * t.load_bytes for c, t in pattern)
    whole_store = sum(c * t.store_bytes for c, t in pattern)
    whole_phases: list[list] = []
    for c, t in pattern:
        _add_phases(whole_phases, t, c)
    out: list[Chunk] = []
    rep, idx, left = 0, 0, pattern[0][0] if pattern else 0   # cursor: repeat, run, tiles left in it
    for size in chunk_sizes(plan.tiles, max_chunks):
        need = size
        load = store = 0.0
        phases: list[list] = []
        while need:
            if idx == 0 and left == pattern[0][0] and need >= per:   # whole patterns at once
                k = min(need // per, plan.repeat - rep)
                load += k * whole_load
                store += k * whole_store
                _merge_phase_lists(phases, whole_phases, k)
                rep += k
                need -= k * per
                continue
            count, tile = pattern[idx]
            take = min(need, left)
            load += take * tile.load_bytes
            store += take * tile.store_bytes
            _add_phases(phases, tile, take)
            left -= take
            need -= take
            if left == 0:
                idx += 1
                if idx == len(pattern):
                    idx, rep = 0, rep + 1
                left = pattern[idx][0]
        out.append(Chunk(size, load, tuple((u, c, k) for u, c, k in phases), store))
    if (plan.fill_cycles or plan.first_load_bytes) and out:
        first = out[0]
        ph = list(first.phases)
        for i, (u, c, k) in enumerate(ph):
            if u == "array" and plan.fill_cycles:
                ph[i] = (u, c + plan.fill_cycles, k)
                break
        out[0] = Chunk(first.tiles, first.load_bytes + plan.first_load_bytes, tuple(ph), first.store_bytes)
    return out


def _merge_phase_lists(phases: list[list], add: list[list], times: int) -> None:
    """Add ``times`` x the phase list ``add`` to ``phases`` (summed when the unit order matches)."""
    if phases and [p[0] for p in phases] == [a[0] for a in add]:
        for p, a in zip(phases, add):
            p[1] += a[1] * times
    else:
        phases.extend([a[0], a[1] * times, a[2]] for a in add)


def _add_phases(phases: list[list], tile: Tile, times: int) -> None:
    """Merge ``times`` copies of a tile's phases into the chunk's phase list, phase by phase (a
    merged phase keeps busy the most units any of its tiles does)."""
    if phases and [p[0] for p in phases] == [u for u, _, _ in tile.phases]:
        for p, (_, cycles, used) in zip(phases, tile.phases):
            p[1] += cycles * times
            p[2] = max(p[2], used)
        return
    for unit, cycles, used in tile.phases:   # first, or a different shape of phases: append
        phases.append([unit, cycles * times, used])


@dataclass
class OpResult:
    index: int
    start: int          # ticks
    end: int
    tiles: int
    chunks: int
    read_bytes: float
    write_bytes: float
    busy_ticks: dict[str, int] = field(default_factory=dict)


class NpuCore:
    """The units of one NPU core and its memory on one simulator."""

    def __init__(self, npu: NpuConfig, svc: MemoryService | None, record_members: bool = True) -> None:
        freqs = {"npu": int(round(npu.freq_mhz * 1e6))}
        if svc is not None:
            freqs["dram"] = int(round(svc.freq_hz))
        self.npu = npu
        self.svc = svc
        self.sim = Simulator(TimeBase.from_freqs(freqs))
        tb = self.sim.timebase
        self.core_period = tb.period("npu")
        self.arrays = self.sim.unit("arrays", "core0")
        self.vector = self.sim.unit("vector_units", "core0")
        self.dma_load = self.sim.unit("dma0.load", "core0/dma")
        self.dma_store = self.sim.unit("dma0.store", "core0/dma")
        n_arr, n_vec = npu.systolic.count, npu.vector.units
        self.array_members = [self.sim.unit(f"array{i}", "core0/arrays") for i in range(n_arr)] if record_members else []
        self.vector_members = [self.sim.unit(f"vector{i}", "core0/vector") for i in range(n_vec)] if record_members else []
        self.latency_ticks = 0
        if svc is not None:
            self.dram_period = tb.period("dram")
            self.channels = [self.sim.unit(f"ch{c:02d}", f"memory/{svc.name}") for c in range(svc.channels)]
            self.channel_free = np.zeros(svc.channels, np.int64)   # tick each channel's queue drains
            self.channel_busy = np.zeros(svc.channels, np.int64)   # ticks each channel has moved data
            self.latency_ticks = svc.latency_cycles * self.dram_period
            self._tick_per_byte = {w: self.dram_period / (svc.write_bytes_per_cycle if w else svc.read_bytes_per_cycle)
                                   for w in (False, True)}
        self.groups = {"array": (self.arrays, self.array_members), "vector": (self.vector, self.vector_members)}
        self.record_members = record_members   # per-array, per-unit and per-channel tracks (timeline)
        self._chunks: dict[tuple[int, int], list[Chunk]] = {}
        self._addr = 0
        self._dma_end = {False: 0, True: 0}

    # ------------------------------------------------------------------------------------------
    def _transfer(self, nbytes: float, write: bool, label: str) -> int:
        """Queue a DMA transfer on the channels the address mapping sends its requests to; each
        channel serves its share at the calibrated rate after what it already has queued. Returns
        the tick the last byte moves (reads: the data is there ``latency`` later)."""
        now = self.sim.now
        if nbytes <= 0 or self.svc is None:
            return now
        svc = self.svc
        per_ch = svc.channel_bytes(self._addr, 1, int(math.ceil(nbytes)), 0)
        self._addr = (self._addr + int(math.ceil(nbytes / svc.request_bytes)) * svc.request_bytes) % svc.period_bytes
        used = per_ch > 0
        begin = np.maximum(self.channel_free, now)
        ends = begin + np.ceil(per_ch * self._tick_per_byte[write]).astype(np.int64)
        if self.record_members:
            for c in np.flatnonzero(used):
                self.channels[c].record(int(begin[c]), int(ends[c]), label)
        self.channel_busy += np.where(used, ends - begin, 0)
        self.channel_free = np.where(used, ends, self.channel_free)
        done = int(ends[used].max())
        engine = self.dma_store if write else self.dma_load
        s0 = max(now, self._dma_end[write])
        if done > s0:
            engine.record(s0, done, label)
            self._dma_end[write] = done
        return done

    def _compute(self, chunk: Chunk, label: str):
        for unit, cycles, used in chunk.phases:
            if cycles <= 0:
                continue
            group, members = self.groups[unit]
            ticks = cycles * self.core_period
            yield from group.busy(ticks, label)
            end = self.sim.now
            for m in members[:used]:
                m.record(end - ticks, end, label)

    def run_op(self, plan: OpPlan, index: int, label: str, max_chunks: int = DEFAULT_MAX_CHUNKS):
        """A process: the op's chunks through load, compute and store; returns its OpResult."""
        sim = self.sim
        sp = self.npu.scratchpad
        buffers = simpy.Resource(sim, 2 if (sp is None or sp.double_buffered) else 1)
        key = (id(plan), max_chunks)
        if key not in self._chunks:      # a repeated layer replays the same chunks
            self._chunks[key] = make_chunks(plan, max_chunks)
        chunks = self._chunks[key]
        start = sim.now
        busy0 = {k: g.busy_ticks for k, (g, _) in self.groups.items()}
        pending: list[simpy.Event] = []
        latency = self.latency_ticks
        last_store = [start]

        def tile_process(chunk: Chunk, buf_req, ready: int):
            if ready > sim.now:
                yield sim.timeout(ready - sim.now)     # the tile's data has arrived
            yield from self._compute(chunk, label)
            buffers.release(buf_req)
            if chunk.store_bytes > 0:                  # writes are posted: the op ends when they drain
                last_store[0] = max(last_store[0], self._transfer(chunk.store_bytes, True, label))

        def loader():
            for chunk in chunks:
                req = buffers.request()
                yield req
                ready = self._transfer(chunk.load_bytes, False, label)
                ready = ready + latency if chunk.load_bytes > 0 else ready
                # each tile runs its phases as its own process: tiles queue for each unit in the
                # order they loaded, so one tile's later phases overlap the next one's first
                pending.append(sim.process(tile_process(chunk, req, ready)))

        yield sim.process(loader())
        yield sim.all_of(pending)
        if last_store[0] > sim.now:
            yield sim.timeout(last_store[0] - sim.now)
        busy = {k: g.busy_ticks - busy0[k] for k, (g, _) in self.groups.items()}
        return OpResult(index, start, sim.now, plan.tiles, len(chunks), plan.read_bytes, plan.write_bytes, busy)
