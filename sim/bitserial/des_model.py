"""A discrete-event model of one BitMoD-style accelerator layer: tiles through the SRAMs and DRAM.

Units (:mod:`sim.des`): one DMA engine at the DRAM's bits per cycle (loads and stores in request
order), the PE array (one tile at a time) and the per-PE dequantization units (exposed slices
only). Time is in ticks of 1 / (DRAM bits per cycle) of a cycle, so a transfer of ``b`` bytes takes
exactly ``8 b`` ticks and no rounding accumulates.

Dataflow of a layer (a :class:`~sim.bitserial.layers.GemmLayer`):

* **the operands and their passes.** The re-fetch rule of the analytic model decides (so DRAM bytes
  are the same by construction): with the weights re-read ``n`` times, the inputs are *resident* in
  ``n`` chunks (one input-SRAM load each) and the weights *stream* once per chunk; with the inputs
  re-read ``n`` times, the weights are resident in ``n`` chunks and the inputs stream; with no
  re-fetch, the operand that fits its SRAM is resident (the weights when both fit) in one pass.
* **blocks.** Each operand is cut into blocks of whole array rows: weight blocks of a multiple of
  the array's H output channels, input blocks of a multiple of its W tokens, per instance (a KV
  head for attention), and along the reduction only when one aligned row-block would not fit
  (then in multiples of 128, the weight group size, so bytes stay exact). Streamed blocks are at
  most a quarter of their SRAM, which is a ring buffer: a block loads as soon as the SRAM has room
  for it, while earlier blocks compute (at least four in flight; a bigger block following a
  smaller one would stall plain double buffering); resident
  blocks at most a quarter (they are loaded at first use, so the array starts early), a sixteenth
  when the resident operand is cut into chunks (so the chunks carry about equal work).
* **tiles.** A tile is one (streamed block, resident block) pair of the same instance and reduction
  range; the PE array is busy for its share of the analytic tiles: ceil(k / dot) x ceil(rows / H) x
  ceil(tokens / W) x cycles per weight, so the tiles of a layer add up to the analytic compute cycles
  exactly. When the last reduction block of an output block is done, the outputs are written back.
* **dequantization (assumption).** The bit-serial dequantization unit rescales each 128-weight
  group's partial sum by its scale, one bit per cycle (``pe.dequant_cycles_per_group``, 8 for
  BitMoD), while the PE's MACs go on with the next group (64 cycles per group at dot 4, 2 cycles per
  weight), so it is hidden except after an output block's last group, where it delays the write-back
  (linear layers only; the KV cache has no groups). The artifact charges none.

Where the DES and the analytic model differ, by design: the DES pays the pipeline fill (the first
tile waits for its blocks), the drain (the last tile's compute, dequantization and write-back), the
start of a chunked layer (the first chunk's resident blocks are needed by the first tiles), and any
imbalance between load-heavy and compute-heavy stretches that the streamed ring buffer cannot absorb.
It can never be faster than max(compute, DRAM). Blocks are at most 1/48 of an operand
(``MIN_BLOCKS``), so on small layers fill and drain stay a small share. For batched attention
(instances = KV heads) whose operands both exceed 512 KB, the analytic rule re-reads the whole
streamed operand per chunk although each head would fit on its own; the DES follows the rule (its
streamed blocks of heads that are not in the chunk are loaded and dropped) so bytes agree.
Partial sums across reduction blocks are assumed to stay on chip (the analytic model writes each
output once); the block order is reduction-outermost within a chunk.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

import simpy

from sim.bitserial.analytic import (LayerResult, RunResult, analytic_layer, array_of, layer_energy, load_accelerator,
                                    operand_bytes, refetches, resolve, sram_bytes)
from sim.bitserial.layers import GemmLayer
from sim.config.hardware import BitSerialConfig
from sim.des.core import Simulator

GROUP = 128  # weight group size (reference/bitmod.md): reduction blocks are multiples of it
MIN_BLOCKS = 48  # small layers: blocks of at most 1/48 of an operand (fill and drain stay small)
RESIDENT_PRIORITY = 1  # 0: resident loads jump the DMA queue; 1: one queue in request order
# streamed blocks are at most a quarter of their SRAM: at least four in flight. A third left a
# balanced layer (OliVe's Llama-2-7B down_proj at 4.5 bits: compute 10.04 M, DRAM 8.96 M cycles)
# 6.4% above max(compute, DRAM), its chunk changes not covered; a quarter: 0.4%
STREAM_DIV = 4


@dataclass
class _Block:
    """One block of an operand: instance (None: shared weight), row range, reduction range, bytes."""

    inst: int | None
    r0: int
    r1: int
    k0: int
    k1: int
    nbytes: int
    chunk: int = 0


@dataclass
class _Plan:
    resident: str                  # "weight" or "input"
    passes: int
    w_blocks: list[_Block]
    i_blocks: list[_Block]
    k_blocks: list[tuple[int, int]]
    notes: list[str] = field(default_factory=list)


def _row_blocks(rows: int, align: int, row_bytes: float, cap: float) -> list[tuple[int, int]]:
    per = max(align, int(cap // max(row_bytes, 1e-9)) // align * align)
    return [(r, min(rows, r + per)) for r in range(0, rows, per)]


def _k_blocks(cin: int, w_row_bytes_per_k: float, i_row_bytes_per_k: float, h: int, w: int,
              cap_w: float, cap_i: float) -> list[tuple[int, int]]:
    """Reduction blocks: the whole reduction when H weight rows and W input rows fit their caps,
    else multiples of the group size that do."""
    if h * cin * w_row_bytes_per_k <= cap_w and w * cin * i_row_bytes_per_k <= cap_i:
        return [(0, cin)]
    k = min(cap_w / (h * w_row_bytes_per_k), cap_i / (w * i_row_bytes_per_k))
    k = max(GROUP, int(k) // GROUP * GROUP)
    return _equal_k(cin, math.ceil(cin / k))


def _equal_k(cin: int, n: int) -> list[tuple[int, int]]:
    """About ``n`` reduction blocks of equal size, each a multiple of the group size but the last."""
    k = max(GROUP, math.ceil(cin / max(1, n) / GROUP) * GROUP)
    return [(k0, min(cin, k0 + k)) for k0 in range(0, cin, k)]


def _span_bytes(k0: int, k1: int, bits: float) -> int:
    """Bytes of reduction elements [k0, k1) of one row stored at ``bits`` each: differences of the
    whole row's rounding, so a row's blocks add up to ceil(cin x bits / 8)."""
    return math.ceil(k1 * bits / 8) - math.ceil(k0 * bits / 8)


class _Dma:
    """The DMA engine: one transfer at a time, at one bit per tick, from two queues (queue 0 first;
    each in request order). Every transfer uses queue 1 unless ``RESIDENT_PRIORITY`` is 0 (resident
    loads first): tried, it starves the streamed operand when the resident one fits whole, so off."""

    def __init__(self, sim: Simulator, unit) -> None:
        self.sim, self.unit = sim, unit
        self.queues: tuple[deque, deque] = (deque(), deque())
        self.wake = sim.event()

    def transfer(self, ticks: int, label: str, priority: int) -> simpy.Event:
        done = self.sim.event()
        self.queues[priority].append((ticks, label, done))
        if not self.wake.triggered:
            self.wake.succeed()
        return done

    def serve(self):
        while True:
            if not (self.queues[0] or self.queues[1]):
                self.wake = self.sim.event()
                yield self.wake
            ticks, label, done = (self.queues[0] or self.queues[1]).popleft()
            if ticks:
                start = self.sim.now
                yield self.sim.timeout(ticks)
                self.unit.record(start, self.sim.now, label)
            done.succeed()


def _spread(items: list[tuple[int, list[int]]]) -> list[tuple[int, list[int]]]:
    """``items`` with those whose partner list is empty spread evenly among the others (order kept
    within each kind)."""
    busy = [it for it in items if it[1]]
    idle = [it for it in items if not it[1]]
    if not busy or not idle:
        return busy + idle
    out: list[tuple[int, list[int]]] = []
    j = 0
    for i, it in enumerate(busy):
        out.append(it)
        upto = (i + 1) * len(idle) // len(busy)
        out.extend(idle[j:upto])
        j = upto
    return out


def plan_layer(layer: GemmLayer, cfg: BitSerialConfig, phase: str) -> _Plan:
    """Resident / streamed operand, passes and blocks of one layer (module doc)."""
    h, w = array_of(cfg, phase)
    bits = float(layer.weight_bits)
    w_b, i_b, _ = operand_bytes(layer)
    w_sram, i_sram = sram_bytes(cfg)
    fw, fi = refetches(w_b, i_b, w_sram, i_sram)
    if fw > 1:
        resident, passes = "input", fw
    elif fi > 1:
        resident, passes = "weight", fi
    else:
        resident, passes = ("weight" if w_b <= w_sram else "input"), 1
    # Streamed blocks: a quarter of their SRAM (a ring buffer). Resident blocks: a quarter, or a sixteenth
    # when the operand is cut into chunks, so that the chunks (whole blocks) carry about equal work.
    res_div = 4 if passes == 1 else 16
    cap_w = w_sram / (res_div if resident == "weight" else STREAM_DIV)
    cap_i = i_sram / (res_div if resident == "input" else STREAM_DIV)
    # Small layers: blocks of at most 1/MIN_BLOCKS of the operand, so that the pipeline's fill (the
    # first blocks' loads) and drain (the last tile, its write-back) stay a small share of the layer.
    cap_w = min(cap_w, max(w_b / MIN_BLOCKS, 1.0))
    cap_i = min(cap_i, max(i_b / MIN_BLOCKS, 1.0))
    kb = _k_blocks(layer.cin, bits / 8, layer.act_bits / 8, h, w, cap_w, cap_i)
    w_rows = _row_blocks(layer.cout, h, math.ceil(layer.cin * bits / 8) / len(kb), cap_w)
    i_rows = _row_blocks(layer.tokens, w, math.ceil(layer.cin * layer.act_bits / 8) / len(kb), cap_i)
    n_stream = len(i_rows) * layer.instances if resident == "weight" else len(w_rows) * layer.weight_instances
    want_k = min(math.ceil(layer.cin / GROUP), math.ceil(MIN_BLOCKS / max(1, n_stream)))
    if want_k > len(kb):   # too few streamed row blocks (alignment): cut the reduction finer
        kb = _equal_k(layer.cin, want_k)
    w_row_k = {k: _span_bytes(k[0], k[1], bits) for k in kb}
    i_row_k = {k: _span_bytes(k[0], k[1], layer.act_bits) for k in kb}
    w_blocks: list[_Block] = []
    for j in range(layer.weight_instances):
        inst = None if layer.shared_weight else j
        for r0, r1 in w_rows:
            for k in kb:
                w_blocks.append(_Block(inst, r0, r1, k[0], k[1], (r1 - r0) * w_row_k[k]))
    i_blocks: list[_Block] = []
    for j in range(layer.instances):
        for t0, t1 in i_rows:
            for k in kb:
                i_blocks.append(_Block(j, t0, t1, k[0], k[1], (t1 - t0) * i_row_k[k]))
    res = w_blocks if resident == "weight" else i_blocks
    total = sum(b.nbytes for b in res)
    acc = 0
    for b in res:  # contiguous chunks of about equal bytes (each within one block of the SRAM)
        b.chunk = min(passes - 1, (acc * passes) // total) if total else 0
        acc += b.nbytes
    notes = [f"resident {resident} in {passes} pass(es); {len(w_blocks)} weight / {len(i_blocks)} input blocks; "
             f"{len(kb)} reduction block(s)"]
    return _Plan(resident, passes, w_blocks, i_blocks, kb, notes)


def des_layer(layer: GemmLayer, cfg: BitSerialConfig, phase: str, linear_bits: float | None = None) -> LayerResult:
    """Simulate one layer (bits resolved) and report it as a :class:`LayerResult` (``model="des"``)."""
    if layer.weight_bits is None:
        layer = layer.with_bits(cfg, phase)
    if linear_bits is None:
        linear_bits = layer.weight_bits if layer.kind == "linear" else cfg.linear_weight_bits(phase)
    h, w = array_of(cfg, phase)
    dot = cfg.pe.dot_size
    cpw = cfg.pe.cycles_per_weight(layer.weight_bits)
    T = cfg.dram.bw_bits_per_cycle  # ticks per cycle: one tick moves one bit
    plan = plan_layer(layer, cfg, phase)
    streamed = plan.i_blocks if plan.resident == "weight" else plan.w_blocks
    resident = plan.w_blocks if plan.resident == "weight" else plan.i_blocks
    dq = cfg.pe.dequant_cycles_per_group if (cfg.pe.bit_serial and layer.kind == "linear") else 0
    out_row_bytes = math.ceil(layer.cout * layer.act_bits / 8) / layer.cout  # exact for whole-byte activations
    n_k = len(plan.k_blocks)

    # Program order, per pass: the streamed blocks in turn, reduction block outermost (so the first
    # tiles need only the first reduction block of the resident chunk), each followed by its tiles
    # with the pass's resident blocks of the same instance and reduction range (a resident block
    # loads at its first use). Streamed blocks without a partner in the pass (heads of another chunk) are spread evenly
    # among the others, so their loads fill DRAM time while the array computes.
    res_by_key: dict[tuple, list[int]] = {}
    for idx, b in enumerate(resident):
        res_by_key.setdefault((b.chunk, b.inst, b.k0), []).append(idx)
    s_loads: list[tuple[int, int]] = []           # (streamed block, pass) in load order
    r_loads: list[tuple[int, int]] = []           # (resident block, pass) in load order
    tiles: list[tuple] = []                       # (s_load, r_load, cycles, out_key, out_bytes, pass)
    s_tiles: list[int] = []                       # streamed load -> tiles using it
    for p in range(plan.passes):
        res_loaded: dict[int, int] = {}
        partners: list[tuple[int, list[int]]] = []
        for si in sorted(range(len(streamed)), key=lambda i: (streamed[i].k0, i)):  # reduction-outer
            sb = streamed[si]
            if plan.resident == "weight":      # sb: an input block; weights of its instance (or shared)
                keys = [(p, None if layer.shared_weight else sb.inst, sb.k0)]
            elif sb.inst is None:              # sb: a shared weight block; inputs of every instance
                keys = [(p, j, sb.k0) for j in range(layer.instances)]
            else:                              # sb: one instance's weight block (attention)
                keys = [(p, sb.inst, sb.k0)]
            partners.append((si, [ri for key in keys for ri in res_by_key.get(key, [])]))
        for si, ris in _spread(partners):
            s_load = len(s_loads)
            s_loads.append((si, p))
            s_tiles.append(len(ris))
            sb = streamed[si]
            for ri in ris:
                if ri not in res_loaded:
                    res_loaded[ri] = len(r_loads)
                    r_loads.append((ri, p))
                rb = resident[ri]
                wb, ib = (rb, sb) if plan.resident == "weight" else (sb, rb)
                k = wb.k1 - wb.k0
                cyc = math.ceil(k / dot) * math.ceil((wb.r1 - wb.r0) / h) * math.ceil((ib.r1 - ib.r0) / w) * cpw
                out_key = (ib.inst, wb.r0, ib.r0)
                out_bytes = int(round((wb.r1 - wb.r0) * out_row_bytes)) * (ib.r1 - ib.r0)
                tiles.append((s_load, res_loaded[ri], cyc, out_key, out_bytes, p))

    sim = Simulator()
    dma = _Dma(sim, sim.unit("dma", group="memory"))
    pe = sim.unit("pe_array", group="compute")
    deq = sim.unit("dequant", group="compute")
    w_sram, i_sram = sram_bytes(cfg)
    s_cap = max(w_sram if plan.resident == "input" else i_sram, max((b.nbytes for b in streamed), default=0))
    space = simpy.Container(sim, capacity=s_cap, init=s_cap)  # the streamed operand's SRAM, bytes
    s_ready = [sim.event() for _ in s_loads]
    r_ready = [sim.event() for _ in r_loads]
    # The resident operand's SRAM, in bytes: a block loads when there is room for it and frees its
    # room after its last tile of the pass, so the next chunk loads while this one finishes (a chunk
    # may exceed the SRAM by less than a block: the room is at least the largest chunk).
    chunk_bytes = [0] * plan.passes
    for b in resident:
        chunk_bytes[b.chunk] += b.nbytes
    r_cap = max(i_sram if plan.resident == "input" else w_sram, max(chunk_bytes))
    r_space = simpy.Container(sim, capacity=r_cap, init=r_cap)
    r_uses = [0] * len(r_loads)
    for t in tiles:
        r_uses[t[1]] += 1

    def stream_loader():
        for li, (bi, _p) in enumerate(s_loads):
            yield space.get(streamed[bi].nbytes)   # a block loads when its SRAM has room for it
            yield dma.transfer(8 * streamed[bi].nbytes, "load streamed", 1)
            s_ready[li].succeed()
            if s_tiles[li] == 0:
                space.put(streamed[bi].nbytes)    # a block with no partner in this pass: dropped at once

    def resident_loader():
        for li, (bi, _p) in enumerate(r_loads):
            yield r_space.get(resident[bi].nbytes)
            yield dma.transfer(8 * resident[bi].nbytes, "load resident", RESIDENT_PRIORITY)
            r_ready[li].succeed()

    k_done: dict[tuple, int] = {}

    def store(out_bytes: int):
        if dq:
            yield sim.timeout(dq * T)
            deq.record(sim.now - dq * T, sim.now, "dequant tail")
        yield dma.transfer(8 * out_bytes, "store", 1)

    def compute():
        s_left = list(s_tiles)
        for s_load, r_load, cyc, out_key, out_bytes, p in tiles:
            if not s_ready[s_load].triggered:
                yield s_ready[s_load]
            if not r_ready[r_load].triggered:
                yield r_ready[r_load]
            yield from pe.busy(cyc * T, "tile")
            s_left[s_load] -= 1
            if s_left[s_load] == 0:
                space.put(streamed[s_loads[s_load][0]].nbytes)
            r_uses[r_load] -= 1
            if r_uses[r_load] == 0:
                r_space.put(resident[r_loads[r_load][0]].nbytes)
            n = k_done.get(out_key, 0) + 1
            k_done[out_key] = n
            if n == n_k:
                sim.process(store(out_bytes))

    sim.process(dma.serve())
    sim.process(stream_loader())
    sim.process(resident_loader())
    sim.process(compute())
    sim.run()
    end_ticks = max(dma.unit.stats().window_end, pe.stats().window_end, sim.now)
    a = analytic_layer(layer, cfg, phase, linear_bits)
    moved = dma.unit.busy_ticks // 8
    if moved != a.dram_bytes:  # the plan is built to move exactly the analytic bytes
        plan.notes.append(f"DES moved {moved} bytes, analytic {a.dram_bytes}")
    compute_cycles = pe.busy_ticks // T
    return LayerResult(
        layer=layer, tiles=a.tiles, cycles_per_weight=cpw, compute_cycles=compute_cycles,
        dram_cycles=math.ceil(dma.unit.busy_ticks / T), cycles=math.ceil(end_ticks / T),
        weight_bytes=a.weight_bytes, input_bytes=a.input_bytes, output_bytes=a.output_bytes,
        weight_fetches=a.weight_fetches, input_fetches=a.input_fetches,
        energy_pj=layer_energy(layer, cfg, phase, a.tiles, compute_cycles, a.weight_fetches, a.input_fetches,
                               linear_bits),
        model="des", notes="; ".join(plan.notes + [f"{len(tiles)} tiles, {sim.events} events"]))


def des_run(cfg: BitSerialConfig | str, layers: Iterable[GemmLayer], phase: str,
            model: str | None = None) -> RunResult:
    """Every layer through :func:`des_layer` (layers run one after another; identical layers are
    simulated once and counted ``count`` times)."""
    if isinstance(cfg, str):
        cfg = load_accelerator(cfg)
    resolved, linear_bits = resolve(layers, cfg, phase, model)
    cache: dict[tuple, LayerResult] = {}
    results = []
    for g in resolved:
        key = (g.kind, g.cout, g.cin, g.tokens, g.instances, g.weight_bits, g.act_bits, g.shared_weight)
        if key not in cache:
            cache[key] = des_layer(g, cfg, phase, linear_bits)
        r = cache[key]
        results.append(r if r.layer == g else _relabel(r, g))
    return RunResult(design=cfg.name, phase=phase, layers=results, freq_mhz=cfg.freq_mhz, model="des")


def _relabel(r: LayerResult, g: GemmLayer) -> LayerResult:
    from dataclasses import replace

    return replace(r, layer=g)
