"""DMA transfers over the memory system: per-channel bytes through the address mapping, timed at the
bandwidth the command-level DRAM engine sustains.

A whole-model run moves hundreds of millions of 64 B requests, too many for the command engine
(~2 M commands/s) inside a simulation that must take seconds. So each memory config is
*calibrated* once by the engine (:func:`sim.memory.engine.run`): a saturating stream of reads,
and one of writes, over every channel, with the preset's refresh mode and page policy, gives the
bytes per memory cycle a channel sustains (refresh, row switches and turnarounds included) and the
idle read latency. A transfer is then split over channels by the address mapping (every request
of ``request_bytes`` decoded to its channel; a tensor's rows are laid out contiguously from its base
address) and takes, on the memory, the time of its busiest channel at the calibrated rate.

What this leaves out: interference between the transfers' row streams inside a bank (a transfer
is timed as if it streamed alone, which for tile-sized contiguous runs is what the engine measured)
and the latency of individual requests beyond the first (DMA keeps enough requests in flight).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sim.config.hardware import MemoryConfig

CALIBRATION_REQUESTS_PER_CHANNEL = 2048   # 128 KB per channel: many row switches and refreshes


@dataclass(frozen=True)
class MemoryService:
    name: str
    channels: int
    freq_hz: float
    request_bytes: int
    read_bytes_per_cycle: float    # per channel, sustained (engine-measured)
    write_bytes_per_cycle: float   # per channel, sustained
    latency_cycles: int            # idle read: first ACT to last data beat
    peak_bytes_per_cycle: float    # per channel, the data bus
    channel_shift: int             # address bit where the channel field starts
    channel_bits: int
    period_bytes: int              # addresses repeat their channel pattern every period

    def channel_bytes(self, base: int, rows: int, row_bytes: int, stride: int) -> np.ndarray:
        """Bytes each channel serves for ``rows`` rows of ``row_bytes`` bytes, ``stride`` apart,
        from ``base`` (requests of ``request_bytes``; a partial request moves a whole one)."""
        return _channel_bytes(self, base % self.period_bytes, rows, row_bytes, stride)



@lru_cache(maxsize=4096)
def _channel_bytes(svc: MemoryService, base: int, rows: int, row_bytes: int, stride: int) -> np.ndarray:
    req = svc.request_bytes
    n_ch = svc.channels
    mask = (1 << svc.channel_bits) - 1
    out = np.zeros(n_ch, np.float64)
    if rows <= 0 or row_bytes <= 0:
        return out
    per_row = math.ceil(row_bytes / req)
    # rows whose starts are a whole number of periods apart fall on channels the same way: count
    # one representative of each residue class, weighted by its rows
    if stride % svc.period_bytes == 0:
        reps, weights = np.array([0], np.int64), np.array([rows], np.int64)
    else:
        cycle = svc.period_bytes // math.gcd(stride, svc.period_bytes)
        k = min(rows, cycle)
        reps = np.arange(k, dtype=np.int64)
        weights = np.full(k, rows // k, np.int64)
        weights[: rows % k] += 1
    if per_row * req >= svc.period_bytes:
        # any run of one whole period covers every channel equally; a row's rest starts a whole
        # number of periods later, so it falls on channels as if it started where the row does
        whole = (per_row * req) // svc.period_bytes
        out += float(weights.sum()) * whole * svc.period_bytes / n_ch
        per_row -= whole * svc.period_bytes // req
    if per_row:
        addrs = (base + reps * stride)[:, None] + np.arange(per_row, dtype=np.int64)[None, :] * req
        ch = ((addrs >> svc.channel_shift) & mask) % n_ch
        np.add.at(out, ch.ravel(), np.repeat(weights, per_row).astype(np.float64) * req)
    return out


def _channel_field(memory: MemoryConfig) -> tuple[int, int]:
    mp = memory.mapping()
    ch_level = 0  # channel is level 0 of every standard
    shift = mp.offset_bits
    for lvl in reversed(mp.order):
        if lvl == ch_level:
            return shift, mp.bits[lvl]
        shift += mp.bits[lvl]
    raise ValueError(f"{memory.name}: address mapping has no channel field")


_CALIBRATED: dict[tuple[str, int], MemoryService] = {}


def calibrate(memory: MemoryConfig, request_bytes: int) -> MemoryService:
    """Measure a memory config's sustained per-channel read and write rates with the engine (once
    per distinct config in a process)."""
    key = (memory.model_dump_json(), request_bytes)
    if key not in _CALIBRATED:
        _CALIBRATED[key] = _calibrate(memory, request_bytes)
    return _CALIBRATED[key]


def _calibrate(memory: MemoryConfig, request_bytes: int) -> MemoryService:
    from sim.memory.engine import run
    from sim.memory.workloads import requests

    spec, mp = memory.spec(), memory.mapping()
    n = CALIBRATION_REQUESTS_PER_CHANNEL * memory.channels
    burst = memory.burst_bytes
    rates = []
    for write in (False, True):
        arrive, _, addrs = requests(mp, "stream", n, seed=0, burst_bytes=burst)
        res = run(spec, arrive, np.full(n, write), mp.decode_many(addrs), refresh=memory.refresh,
                  page_policy=memory.page_policy)
        rates.append(n * burst / res.cycles / memory.channels)
    shift, bits = _channel_field(memory)
    t = spec.t
    latency = t("nRCDRD") + t("nCL") + t("nBL")
    peak = memory.channel_bw_bytes_per_s / memory.freq_hz
    return MemoryService(memory.name, memory.channels, memory.freq_hz, request_bytes, rates[0], rates[1],
                         int(latency), peak, shift, bits, 1 << (shift + bits))
