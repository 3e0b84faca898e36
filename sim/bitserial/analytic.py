"""The BitMoD artifact's per-layer analytic model (``bitmod_sim/accelerator.py``), written anew.

Per layer (a :class:`~sim.bitserial.layers.GemmLayer`) on the array of the phase (H rows x W cols,
PEs of ``dot`` lanes):

* tiles = ceil(cin / dot) x ceil(cout / H) x ceil(tokens / W) x instances;
* compute cycles = tiles x cycles per weight: 1 bit-parallel, ceil(floor(bits) / 2) bit-serial, with
  the KV bits for the attention GEMMs (3.0625 and 4.0625 bits: 2 cycles; 6.0625: 3; 8: 4);
* bytes: weights ceil(cin x bits / 8) x cout x weight copies, inputs ceil(cin x 16 / 8) x tokens x
  instances, outputs ceil(cout x 16 / 8) x tokens x instances;
* re-fetch only when both the weights and the inputs exceed their SRAM (512 KB): re-read either the
  weights ceil(inputs / SRAM) times or the inputs ceil(weights / SRAM) times, whichever moves fewer
  bytes (ties re-read the inputs, as the artifact's strict ``<`` does);
* DRAM cycles = floor(bytes moved x 8 / DRAM bits per cycle) (the artifact's ``int()``);
* cycles = max(compute, DRAM): loads, compute and stores fully overlap;
* energy (pJ): PEs = PE energy x place-and-route factor x all PEs of the array x compute cycles;
  SRAM reads = tiles x (one weight-SRAM read + one input-SRAM read at their port widths); SRAM
  writes = 64-bit writes filling the SRAMs from DRAM (weights x re-fetches, inputs x re-fetches,
  outputs through the input SRAM), each at the full-width write energy x 64 / width; DRAM = bits
  moved / 64 x 1200 pJ.

SRAM port widths follow the artifact's ``_init_mem``: weight = dot x ceil(w / 4) x 4 x H, input =
dot x 16 x W, both halved on the bit-serial design; ``w`` is the design's linear weight bits (also for
the attention layers, whose operands share the same SRAMs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable

from sim.bitserial.layers import GemmLayer
from sim.config.hardware import BitSerialConfig, load_hw
from sim.errors import LlmsimError

DESIGNS: tuple[str, ...] = ("bitmod", "ant", "olive", "fp16-accel")
ENERGY_PARTS: tuple[str, ...] = ("pe", "sram_read", "sram_write", "dram")


def load_accelerator(name: str, overrides: list[str] | None = None) -> BitSerialConfig:
    """A bundled bit-serial / bit-parallel accelerator config (``bitmod``, ``ant``, ``olive``,
    ``fp16-accel``) or a path to one."""
    import os

    from sim.config.paths import project_root

    bundled = project_root() / "hw_configs" / "bitserial" / f"{name}.yaml"
    plain = not name.endswith((".yaml", ".yml")) and os.sep not in name
    # A bundled name is looked up in hw_configs/bitserial/ first: systems of the same name
    # (hw_configs/systems/bitmod.yaml, ...) compose these devices.
    cfg = load_hw(str(bundled) if plain and bundled.exists() else name, overrides)
    if not isinstance(cfg, BitSerialConfig):
        raise LlmsimError(f"{name}: kind: expected bitserial, found {cfg.kind}")
    return cfg


@dataclass(frozen=True)
class LayerResult:
    """Cycles, DRAM traffic and energy of one layer (for ``count`` identical layers: per layer;
    :class:`RunResult` multiplies by ``layer.count``)."""

    layer: GemmLayer
    tiles: int
    cycles_per_weight: int
    compute_cycles: int
    dram_cycles: int
    cycles: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    weight_fetches: int
    input_fetches: int
    energy_pj: dict[str, float]
    model: str = "analytic"
    notes: str = ""

    @property
    def dram_bytes(self) -> int:
        """Bytes moved over the DRAM bus: re-fetched operands counted each time."""
        return self.weight_bytes * self.weight_fetches + self.input_bytes * self.input_fetches + self.output_bytes

    @property
    def dram_bytes_by_operand(self) -> dict[str, int]:
        return {"weight": self.weight_bytes * self.weight_fetches, "input": self.input_bytes * self.input_fetches,
                "output": self.output_bytes}


@dataclass(frozen=True)
class RunResult:
    """A whole run (one phase of one model on one design): the layers and their totals."""

    design: str
    phase: str
    layers: list[LayerResult]
    freq_mhz: float
    model: str = "analytic"
    totals: dict[str, float] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return sum(r.cycles * r.layer.count for r in self.layers)

    @property
    def compute_cycles(self) -> int:
        return sum(r.compute_cycles * r.layer.count for r in self.layers)

    @property
    def dram_cycles(self) -> int:
        return sum(r.dram_cycles * r.layer.count for r in self.layers)

    @property
    def seconds(self) -> float:
        return self.cycles / (self.freq_mhz * 1e6)

    @property
    def dram_bytes(self) -> int:
        return sum(r.dram_bytes * r.layer.count for r in self.layers)

    @property
    def energy_pj(self) -> dict[str, float]:
        out = {p: sum(r.energy_pj[p] * r.layer.count for r in self.layers) for p in ENERGY_PARTS}
        out["total"] = sum(out.values())
        return out


# ------------------------------------------------------------------------------------------ helpers


def array_of(cfg: BitSerialConfig, phase: str) -> tuple[int, int]:
    if phase not in cfg.arrays:
        raise LlmsimError(f"{cfg.name}: arrays: no {phase!r} array (has {', '.join(cfg.arrays)})")
    a = cfg.arrays[phase]
    return a.rows, a.cols


def sram_widths(cfg: BitSerialConfig, phase: str, linear_bits: float) -> tuple[float, float]:
    """(weight, input) SRAM port widths in bits, as the artifact's ``_init_mem`` sizes them."""
    rows, cols = array_of(cfg, phase)
    half = 2 if cfg.pe.bit_serial else 1
    w = cfg.pe.dot_size * math.ceil(linear_bits / 4) * 4 * rows / half
    i = cfg.pe.dot_size * cfg.act_bits * cols / half
    return w, i


def sram_bytes(cfg: BitSerialConfig) -> tuple[int, int]:
    """(weight, input) SRAM capacities in bytes."""
    return int(cfg.buffers.weight_sram_kb * 1024), int(cfg.buffers.input_sram_kb * 1024)


def operand_bytes(layer: GemmLayer) -> tuple[int, int, int]:
    """(weight, input, output) bytes of a layer, each operand read / written once."""
    bits = layer.weight_bits if layer.weight_bits is not None else 16.0
    w = math.ceil(layer.cin * bits / 8) * layer.cout * layer.weight_instances
    i = math.ceil(layer.cin * layer.act_bits / 8) * layer.tokens * layer.instances
    o = math.ceil(layer.cout * layer.act_bits / 8) * layer.tokens * layer.instances
    return w, i, o


def refetches(w_bytes: int, i_bytes: int, w_sram: int, i_sram: int) -> tuple[int, int]:
    """(weight fetches, input fetches): (1, 1) unless both operands exceed their SRAM; then the
    cheaper of re-reading the weights once per input-SRAM load or the inputs once per weight-SRAM
    load."""
    if w_bytes > w_sram and i_bytes > i_sram:
        n_inputs = math.ceil(w_bytes / w_sram)   # weight chunks: the inputs stream once per chunk
        n_weights = math.ceil(i_bytes / i_sram)  # input chunks: the weights stream once per chunk
        if n_weights * w_bytes + i_bytes < n_inputs * i_bytes + w_bytes:
            return n_weights, 1
        return 1, n_inputs
    return 1, 1


def tile_count(layer: GemmLayer, cfg: BitSerialConfig, phase: str) -> int:
    rows, cols = array_of(cfg, phase)
    return (math.ceil(layer.cin / cfg.pe.dot_size) * math.ceil(layer.cout / rows)
            * math.ceil(layer.tokens / cols) * layer.instances)


def layer_energy(layer: GemmLayer, cfg: BitSerialConfig, phase: str, tiles: int, compute_cycles: int,
                 fetch_w: int, fetch_i: int, linear_bits: float) -> dict[str, float]:
    """Energy parts (pJ) of one layer, the artifact's way (module doc)."""
    rows, cols = array_of(cfg, phase)
    pe = cfg.pe.energy_pj_per_cycle * cfg.pe.pnr_energy_factor * rows * cols * compute_cycles
    w_width, i_width = sram_widths(cfg, phase, linear_bits)
    w_rd, w_wr = cfg.buffers.access(w_width)
    i_rd, i_wr = cfg.buffers.access(i_width)
    g = cfg.buffers.write_granularity_bits
    w_wr_g, i_wr_g = w_wr * g / w_width, i_wr * g / i_width
    bits = layer.weight_bits if layer.weight_bits is not None else 16.0
    n_w = math.ceil(layer.cin * bits / g) * layer.cout * layer.weight_instances
    n_i = math.ceil(layer.cin * layer.act_bits / g) * layer.tokens * layer.instances
    n_o = math.ceil(layer.cout * layer.act_bits / g) * layer.tokens * layer.instances
    sram_write = n_w * w_wr_g * fetch_w + n_i * i_wr_g * fetch_i + n_o * i_wr_g
    sram_read = tiles * (w_rd + i_rd)
    w_b, i_b, o_b = operand_bytes(layer)
    dram = (w_b * fetch_w + i_b * fetch_i + o_b) * 8 / 64 * cfg.dram.energy_pj_per_64b
    return {"pe": pe, "sram_read": sram_read, "sram_write": sram_write, "dram": dram}


def resolve(layers: Iterable[GemmLayer], cfg: BitSerialConfig, phase: str,
            model: str | None = None) -> tuple[list[GemmLayer], float]:
    """Layers with their bits filled in, and the linear weight bits that size the SRAM ports."""
    out = [g.with_bits(cfg, phase, model) for g in layers]
    lin = [g.weight_bits for g in out if g.kind == "linear"]
    linear_bits = max(lin) if lin else cfg.linear_weight_bits(phase, model)
    return out, float(linear_bits)


# ------------------------------------------------------------------------------------------ model


def analytic_layer(layer: GemmLayer, cfg: BitSerialConfig, phase: str, linear_bits: float | None = None) -> LayerResult:
    """The artifact's per-layer model (module doc) for one layer whose bits are resolved."""
    if layer.weight_bits is None:
        layer = layer.with_bits(cfg, phase)
    if linear_bits is None:
        linear_bits = layer.weight_bits if layer.kind == "linear" else cfg.linear_weight_bits(phase)
    tiles = tile_count(layer, cfg, phase)
    cpw = cfg.pe.cycles_per_weight(layer.weight_bits)
    compute = tiles * cpw
    w_b, i_b, o_b = operand_bytes(layer)
    w_sram, i_sram = sram_bytes(cfg)
    fw, fi = refetches(w_b, i_b, w_sram, i_sram)
    dram = int((w_b * fw + i_b * fi + o_b) * 8 / cfg.dram.bw_bits_per_cycle)
    return LayerResult(
        layer=layer, tiles=tiles, cycles_per_weight=cpw, compute_cycles=compute, dram_cycles=dram,
        cycles=max(compute, dram), weight_bytes=w_b, input_bytes=i_b, output_bytes=o_b,
        weight_fetches=fw, input_fetches=fi,
        energy_pj=layer_energy(layer, cfg, phase, tiles, compute, fw, fi, linear_bits), model="analytic")


def analytic_run(cfg: BitSerialConfig | str, layers: Iterable[GemmLayer], phase: str,
                 model: str | None = None) -> RunResult:
    """Every layer through :func:`analytic_layer` on the array of ``phase``. ``model``: the zoo name
    whose per-model weight bits apply to layers whose bits are not set."""
    if isinstance(cfg, str):
        cfg = load_accelerator(cfg)
    resolved, linear_bits = resolve(layers, cfg, phase, model)
    results = [analytic_layer(g, cfg, phase, linear_bits) for g in resolved]
    return RunResult(design=cfg.name, phase=phase, layers=results, freq_mhz=cfg.freq_mhz, model="analytic")


def scaled(run: RunResult, times: int) -> RunResult:
    """``run`` repeated ``times`` times (e.g. 20 identical decode steps)."""
    return replace(run, layers=[replace(r, layer=replace(r.layer, count=r.layer.count * times)) for r in run.layers])
