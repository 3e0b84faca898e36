"""Hardware config schemas: one pydantic model per kind of device, all with units in field names.

A hardware YAML names its ``kind`` (gpu, npu, memory, bitserial) and carries a ``source`` that says
where its numbers come from. Unknown keys are errors; sizes and rates must be positive.
Each computing kind turns itself into roofline :class:`~sim.roofline.ceilings.Ceilings`.
"""

from __future__ import annotations


import math
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, PrivateAttr,
                      ValidationInfo,
                      field_validator, model_validator)

from sim.config.loader import apply_overrides, load_yaml, validate_into
from sim.config.paths import find_bundled
from sim.errors import LlmsimError
from sim.roofline.ceilings import Ceilings, MemoryLevel

DType = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8", "int4"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ComputePeaks(Strict):
    """Peak throughput per dtype in TFLOP/s (TOP/s for integers), dense (no sparsity)."""

    matmul_tflops: dict[DType, PositiveFloat] = Field(description="matrix (tensor-core) peak per dtype")
    vector_tflops: dict[DType, PositiveFloat] = Field(
        default_factory=dict, description="elementwise / reduction (CUDA-core) peak per dtype"
    )


class OnChipLevel(Strict):
    name: str
    capacity_kb: PositiveFloat
    bw_gbps: PositiveFloat | None = None


class MeasuredCeilings(Strict):
    """Ceilings measured on real hardware; used by default when present."""

    source: str
    hbm_bw_gbps: PositiveFloat | None = None
    matmul_tflops: dict[DType, PositiveFloat] = Field(default_factory=dict)
    vector_tflops: dict[DType, PositiveFloat] = Field(default_factory=dict)


class GpuModelParams(Strict):
    """Constants of the GPU device model (``sim/gpu``): dimensionless efficiencies and fixed costs.

    Fitted by ``python -m sim.gpu.fit`` on measured rows; a device without measurements carries
    another device's dimensionless values (its YAML says which)."""

    kernel_overhead_us: float = Field(ge=0.0, description="fixed time of every kernel (launch, prologue, sync)")
    memory_latency_us: float = Field(0.0, ge=0.0, description="fixed ramp / tail time of a kernel's HBM stream")
    bw_efficiency: float = Field(gt=0.0, le=1.0, description="share of the datasheet HBM bandwidth a stream sustains")
    compute_efficiency: float = Field(gt=0.0, le=1.0, description="share of the datasheet matrix peak an 8192^3 "
                                                                  "GEMM reaches (measured where the device has it)")
    tile_fill_k: float = Field(0.0, ge=0.0, description="per-tile prologue / epilogue cost, in K elements of "
                                                        "main loop")
    source: str


class GpuConfig(Strict):
    kind: Literal["gpu"]
    name: str
    description: str = ""
    source: str
    sm_count: PositiveInt
    boost_freq_mhz: PositiveFloat
    compute: ComputePeaks
    hbm_bw_gbps: PositiveFloat
    hbm_capacity_gb: PositiveFloat
    on_chip: list[OnChipLevel] = Field(default_factory=list)
    interconnect_bw_gbps: PositiveFloat | None = Field(
        None, description="per-GPU NVLink bandwidth in one direction (what a ring all-reduce step uses)"
    )
    kernel_overhead_us: float = Field(0.0, ge=0.0, description="fixed time added to every kernel")
    measured: MeasuredCeilings | None = None
    model: GpuModelParams | None = Field(None, description="fitted constants of the GPU device model (sim/gpu)")
    sparse_24_speedup: PositiveFloat | None = Field(
        None, description="2:4 semi-structured sparse tensor throughput over the dense matrix peak "
                          "(datasheet 'with sparsity' figures / dense); absent: no sparse path"
    )

    def ceilings(self, measured: bool = True) -> Ceilings:
        mm = {k: v * 1e12 for k, v in self.compute.matmul_tflops.items()}
        vec = {k: v * 1e12 for k, v in self.compute.vector_tflops.items()}
        bw = self.hbm_bw_gbps * 1e9
        mode = "datasheet"
        notes: list[str] = []
        if measured and self.measured is not None:
            mode = "measured"
            mm.update({k: v * 1e12 for k, v in self.measured.matmul_tflops.items()})
            vec.update({k: v * 1e12 for k, v in self.measured.vector_tflops.items()})
            if self.measured.hbm_bw_gbps:
                bw = self.measured.hbm_bw_gbps * 1e9
            notes.append(f"measured ceilings: {self.measured.source}")
            kept = sorted(set(self.compute.matmul_tflops) - set(self.measured.matmul_tflops))
            if kept:
                notes.append(f"no measurement for matrix {', '.join(kept)}: datasheet peaks used")
        levels = tuple(
            MemoryLevel(l.name, l.capacity_kb * 1024, l.bw_gbps * 1e9 if l.bw_gbps else None) for l in self.on_chip
        )
        return Ceilings(
            device=self.name,
            mode=mode,
            matmul_flops=mm,
            vector_flops=vec,
            mem_bw=bw,
            kernel_overhead_s=self.kernel_overhead_us * 1e-6,
            link_bw=self.interconnect_bw_gbps * 1e9 if self.interconnect_bw_gbps else None,
            levels=levels,
            sparse_24_speedup=self.sparse_24_speedup,
            notes=tuple(notes),
        )


# --------------------------------------------------------------------------------------------
# Memory (HBM / PIM)


class DramCurrents(Strict):
    """IDD currents in mA (JEDEC names)."""

    idd0: PositiveFloat
    idd2p: PositiveFloat
    idd2n: PositiveFloat
    idd3p: PositiveFloat
    idd3n: PositiveFloat
    idd4w: PositiveFloat
    idd4r: PositiveFloat
    idd5ab: PositiveFloat
    idd6: PositiveFloat


class DramPower(Strict):
    vdd_v: PositiveFloat
    idd_ma: DramCurrents


class PimConfig(Strict):
    """Per-bank PIM units (NeuPIMs / Newton style)."""

    comp_coverage_macs: PositiveInt = Field(description="fp16 MACs per bank per COMP command")
    dual_row_buffer: bool
    standard: str | None = Field(None, description="the standard with the PIM command set (sim/memory/standards)")
    gwrite_cycles: PositiveInt | None = None
    tile_bytes_per_bank: PositiveInt | None = Field(None, description="one DRAM page per bank per PIM tile")
    all_bank_mac_interval_cycles: PositiveInt | None = None
    placement: Literal["bank", "bank_pair", "bank_group"] = Field(
        "bank", description="one PIM unit per bank, per two banks, or per bank group")
    mac_energy_pj: PositiveFloat | None = Field(None, description="energy of one fp16 MAC in a PIM unit, if sourced")


class MemoryConfig(Strict):
    """A DRAM preset: a standard (``sim/memory/standards``) with its organisation and timings.

    ``organization`` gives the node count of every level of the standard (channels first; columns
    in device columns). ``timing_cycles`` uses the standard's timing names; those left out are
    derived by the standard's formulas, and a timing neither given nor derivable is an error.
    """

    kind: Literal["memory"]
    name: str
    standard: str
    description: str = ""
    source: str
    tck_ps: PositiveFloat = Field(description="clock period in picoseconds")
    organization: dict[str, PositiveInt]
    bus_width_bits: PositiveInt = Field(description="data bus width of one channel")
    burst_length: PositiveInt
    capacity_gb: PositiveFloat = Field(description="GiB, checked against the organisation")
    timing_cycles: dict[str, NonNegativeInt]
    power: DramPower | None = None
    address_mapping: str = Field(description="level codes, most significant first (e.g. rorabgbachco)")
    page_policy: Literal["open", "closed"] = "open"
    refresh: Literal["all_bank", "per_bank", "none"] = "all_bank"
    command_queue_depth: PositiveInt = 32
    transaction_queue_depth: PositiveInt = 32
    pim: PimConfig | None = None

    @field_validator("standard")
    @classmethod
    def _known_standard(cls, v: str) -> str:
        from sim.memory.standard import available_standards

        if v not in available_standards():
            raise ValueError(f"unknown DRAM standard {v!r} (expected one of: {', '.join(available_standards())})")
        return v

    @field_validator("organization")
    @classmethod
    def _levels(cls, v: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        std = _standard_of(info)
        if std is None:
            return v
        names = [lvl.name for lvl in std.levels]
        for key in v:
            if key not in names:
                raise ValueError(f"unknown level {key!r} for {std.name} (expected {', '.join(names)})")
        for key in names:
            if key not in v:
                raise ValueError(f"missing level {key!r} (expected counts for {', '.join(names)})")
        return v

    @field_validator("timing_cycles")
    @classmethod
    def _timings(cls, v: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        from sim.memory.standard import resolve_timings

        std = _standard_of(info)
        if std is None:
            return v
        for key in v:
            if key not in std.timings:
                raise ValueError(f"unknown timing {key!r} for {std.name} (expected {', '.join(std.timings)})")
        try:
            t, _ = resolve_timings(std, v, info.data.get("organization"))
        except KeyError as exc:
            raise ValueError(f"{exc.args[0]} is neither given nor derivable ({std.timings.get(exc.args[0], '')})") from None
        for a, b in (("nRAS", "nRCDRD"), ("nRAS", "nRCDWR")):
            if a in t and b in t and t[a] < t[b]:
                raise ValueError(f"{a} ({t[a]}) must be >= {b} ({t[b]}): a row must stay open until it is read")
        if t.get("nRC", 1) < t.get("nRAS", 0):
            raise ValueError(f"nRC ({t['nRC']}) must be >= nRAS ({t['nRAS']})")
        if t.get("nBL", 1) < 1:
            raise ValueError("nBL must be at least 1 cycle")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "MemoryConfig":
        o = self.organization
        geometry = math.prod(o.values()) * self.bus_width_bits / 8
        if abs(geometry - self.capacity_gb * 2**30) > 1e-6 * geometry:
            raise ValueError(
                f"capacity_gb ({self.capacity_gb}) disagrees with the organisation: "
                f"{' x '.join(f'{k} {n}' for k, n in o.items())} x {self.bus_width_bits // 8} B = {geometry / 2**30:g} GiB"
            )
        self.mapping()  # raises LlmsimError for a mapping that misses, repeats or cannot address a field
        return self

    def spec(self, pim: bool = False):
        """The standard bound to this preset (timings resolved, constraint table in cycles). With
        ``pim``, the PIM standard in the mode the preset's row buffers give (single / dual)."""
        from sim.memory.standard import bind, load_standard

        if not pim:
            return bind(load_standard(self.standard), self.organization, self.timing_cycles)
        if self.pim is None or self.pim.standard is None:
            raise LlmsimError(f"{self.name}: pim.standard: this preset declares no PIM command set")
        mode = "dual" if self.pim.dual_row_buffer else "single"
        return bind(load_standard(self.pim.standard), self.organization, self.timing_cycles, mode)

    def with_pim(self, **changes) -> "MemoryConfig":
        """This preset with some PIM fields changed (``dual_row_buffer=False``, ``placement=...``)."""
        if self.pim is None:
            raise LlmsimError(f"{self.name}: pim: this preset has no PIM units")
        return self.model_copy(update={"pim": self.pim.model_copy(update=changes)})

    def mapping(self):
        from sim.memory.address import parse_mapping
        from sim.memory.standard import load_standard

        std = load_standard(self.standard)
        return parse_mapping(self.address_mapping, [lvl.code for lvl in std.levels],
                             [self.organization[lvl.name] for lvl in std.levels], self.burst_bytes,
                             self.burst_length, origin=f"{self.name}: address_mapping")

    @property
    def burst_bytes(self) -> int:
        return self.bus_width_bits // 8 * self.burst_length

    @property
    def channels(self) -> int:
        return self.organization["channel"]

    @property
    def freq_hz(self) -> float:
        return 1e12 / self.tck_ps

    @property
    def data_buses(self) -> int:
        """Independent data buses: the node count down to the standard's data-bus level."""
        from sim.memory.standard import load_standard

        std = load_standard(self.standard)
        return math.prod(self.organization[lvl.name] for lvl in std.levels[: std.data_bus_level + 1])

    @property
    def bus_bw_bytes_per_s(self) -> float:
        """Peak data rate of one data bus: one burst every nBL clock cycles."""
        return self.burst_bytes / self.spec().t("nBL") * self.freq_hz

    @property
    def channel_bw_bytes_per_s(self) -> float:
        return self.peak_bw_bytes_per_s / self.channels

    @property
    def peak_bw_bytes_per_s(self) -> float:
        return self.bus_bw_bytes_per_s * self.data_buses

    def ceilings(self, measured: bool = True) -> Ceilings:
        raise LlmsimError(
            f"{self.name}: kind: a memory config has no compute roof; give an npu, gpu or bitserial config"
        )


def _standard_of(info: ValidationInfo):
    from sim.memory.standard import available_standards, load_standard

    name = info.data.get("standard")
    return load_standard(name) if name in available_standards() else None


# --------------------------------------------------------------------------------------------
# NPU


class SystolicPe(Strict):
    """One processing element of a systolic array. ``parallel``: one MAC per cycle at the array's
    precision. ``bitserial`` (BitMoD): ``dot_size`` weights per PE, each consumed
    ``weight_bits_per_cycle`` bits per cycle, i.e. ceil(floor(bits) / weight_bits_per_cycle) cycles
    per weight (reference/bitmod.md); weight-stationary arrays only."""

    kind: Literal["parallel", "bitserial"] = "parallel"
    dot_size: PositiveInt = Field(1, description="weights (reduction lanes) per PE")
    weight_bits_per_cycle: PositiveInt | None = Field(None, description="bit-serial: weight bits consumed per cycle")
    energy_pj_per_cycle: float | None = Field(None, ge=0, description="energy of one busy PE per cycle, pJ "
                                                                     "(after any place-and-route factor)")
    area_um2: float | None = Field(None, gt=0, description="area of one PE, um^2")

    @model_validator(mode="after")
    def _serial(self):
        if self.kind == "bitserial" and not self.weight_bits_per_cycle:
            raise ValueError("weight_bits_per_cycle: required for a bit-serial PE")
        if self.kind == "parallel" and self.dot_size != 1:
            raise ValueError("dot_size: a bit-parallel PE is one MAC (expected 1)")
        return self

    def cycles_per_weight(self, bits: float | None) -> int:
        """Cycles one weight of ``bits`` bits (metadata included) takes: 1 on a bit-parallel PE;
        ceil(floor(bits) / bits-per-cycle) on a bit-serial one (3.0625 and 4.0625 bits: 2 cycles at
        2 bits per cycle; 6.0625: 3; 16: 8). ``None``: 16-bit."""
        if self.kind == "parallel":
            return 1
        b = 16.0 if bits is None else float(bits)
        return max(1, math.ceil(math.floor(b) / self.weight_bits_per_cycle))


class SystolicConfig(Strict):
    rows: PositiveInt
    cols: PositiveInt
    count: PositiveInt = Field(description="arrays per core")
    dataflow: Literal["ws", "os", "is"]
    fold_pipelining: bool = Field(
        False, description="true: a fold enters the array max(T, 4) cycles after the previous one and its "
                           "weight preload is hidden (NeuPIMs' model); false: folds run one after another, "
                           "each with its own preload, fill and drain (SCALE-Sim's model)")
    pe: SystolicPe = Field(default_factory=SystolicPe, description="the processing element (default: one MAC)")

    @model_validator(mode="after")
    def _bitserial_ws(self):
        if self.pe.kind == "bitserial" and self.dataflow != "ws":
            raise ValueError(f"dataflow: a bit-serial PE array is weight-stationary (expected ws, found {self.dataflow})")
        return self


class VectorLatencies(Strict):
    """Cycles per step of each vector operation (one step: one pass of a unit's lanes)."""

    add: PositiveInt
    mul: PositiveInt
    exp: PositiveInt
    gelu: PositiveInt
    add_tree: PositiveInt = Field(description="cycles per level-iteration of the reduction tree")
    scalar_sqrt: PositiveInt = Field(description="one scalar square root (norms)")
    scalar_mul: PositiveInt = Field(description="one scalar multiply (norms)")


class VectorUnitConfig(Strict):
    units: PositiveInt = Field(description="vector units per core")
    lanes: PositiveInt = Field(description="elements one unit handles per step")
    op_latency_cycles: VectorLatencies


class ScratchpadConfig(Strict):
    """On-chip buffers of one core."""

    operand_kib: PositiveInt = Field(description="scratchpad for input and weight tiles, KiB")
    accumulator_kib: PositiveInt = Field(description="accumulator for output tiles, KiB")
    accumulator_element_bytes: PositiveInt = Field(description="bytes of one partial sum in the accumulator")
    double_buffered: bool = Field(description="operand tiles double-buffered: the next tile loads while one computes")


class DmaConfig(Strict):
    engines: PositiveInt = Field(description="DMA engines per core (one load and one store stream each)")
    request_bytes: PositiveInt = Field(description="bytes of one memory request a DMA issues")


class InterconnectConfig(Strict):
    freq_mhz: PositiveFloat
    latency_cycles: PositiveInt


class NpuMapping(Strict):
    """How ops are placed on the core (a compiler's choice, not a hardware parameter)."""

    attention: Literal["tiled", "serial_gemv"] = Field(
        "tiled", description="tiled: flash-attention tiles over all arrays (sim.npu.mapping.plan_attention); "
                             "serial_gemv: NeuPIMs' C++ simulator's FusedMHA schedule (one request per tile, "
                             "every head's q.K^T, softmax and p.V in order on one in-order compute pipeline), "
                             "for comparisons with that simulator only")


class NpuConfig(Strict):
    kind: Literal["npu"]
    name: str
    description: str = ""
    source: str
    freq_mhz: PositiveFloat
    cores: PositiveInt
    systolic: SystolicConfig
    vector: VectorUnitConfig
    precision_bytes: PositiveInt
    scratchpad: ScratchpadConfig | None = Field(
        None, description="on-chip buffers; none: unbounded (a pure array model such as SCALE-Sim's)")
    dma: DmaConfig | None = None
    interconnect: InterconnectConfig | None = None
    mapping: NpuMapping = Field(default_factory=NpuMapping, description="op placement choices")
    memory: str | None = Field(description="bundled memory config name or path; null: ideal memory that "
                                           "never stalls the arrays (SCALE-Sim comparisons)")
    # ``key.path=value`` overrides of the memory config, set by a system (``overrides.memory``)
    _memory_overrides: tuple[str, ...] = PrivateAttr(default=())

    def with_memory_overrides(self, overrides) -> "NpuConfig":
        """A copy whose memory config is loaded with these ``key.path=value`` overrides."""
        npu = self.model_copy()
        npu._memory_overrides = tuple(overrides or ())
        return npu

    @model_validator(mode="after")
    def _memory_needs_buffers(self):
        if self.memory is not None and (self.scratchpad is None or self.dma is None):
            raise ValueError("scratchpad and dma: required when memory is set (tiles move through them)")
        return self

    def memory_config(self) -> MemoryConfig | None:
        """The memory this NPU sits on, with the overrides a system gave it (``memory.*``)."""
        if self.memory is None:
            return None
        mem = load_hw(self.memory, list(self._memory_overrides) or None)
        if not isinstance(mem, MemoryConfig):
            raise LlmsimError(f"{self.name}: memory: expected a memory config, found kind {mem.kind!r}")
        return mem

    def ceilings(self, measured: bool = True) -> Ceilings:
        f = self.freq_mhz * 1e6
        pe = self.systolic.pe
        # a bit-serial PE: dot_size weights per cycle at the narrowest width (1 cycle per weight);
        # Ceilings divides by the cycles per weight of each op's weight width
        macs = self.cores * self.systolic.count * self.systolic.rows * self.systolic.cols * pe.dot_size
        vec = self.cores * self.vector.units * self.vector.lanes
        dtype = {2: "fp16", 1: "int8", 4: "fp32"}.get(self.precision_bytes, "fp16")
        return Ceilings(
            device=self.name,
            mode="datasheet",
            matmul_flops={dtype: 2 * macs * f},
            vector_flops={dtype: vec * f},
            mem_bw=self.memory_config().peak_bw_bytes_per_s if self.memory else float("inf"),
            bitserial_bits_per_cycle=pe.weight_bits_per_cycle if pe.kind == "bitserial" else None,
            notes=(f"{macs} MACs/cycle at {self.freq_mhz} MHz; memory {self.memory or 'ideal (never stalls)'}",),
        )


# --------------------------------------------------------------------------------------------
# Bit-serial accelerator (BitMoD)


class PeArray(Strict):
    rows: PositiveInt
    cols: PositiveInt


class BitSerialPe(Strict):
    """One PE of a bit-serial (BitMoD) or bit-parallel (ANT, OliVe, FP16) accelerator array."""

    dot_size: PositiveInt = Field(description="lanes per PE (weights consumed in parallel)")
    weight_bits_per_cycle: PositiveInt = Field(description="bit-serial: weight bits consumed per cycle per lane "
                                                           "(ignored when bit_serial is false)")
    energy_pj_per_cycle: PositiveFloat = Field(description="energy of one PE per cycle, pJ, before place-and-route")
    area_um2: PositiveFloat = Field(description="area of one PE, um^2 (synthesis)")
    pnr_energy_factor: PositiveFloat = Field(1.0, description="place-and-route scaling of the PE energy (unitless)")
    bit_serial: bool = Field(True, description="true: ceil(floor(bits) / weight_bits_per_cycle) cycles per "
                                               "weight; false: one cycle per weight")
    dequant_cycles_per_group: NonNegativeInt = Field(
        0, description="cycles of the bit-serial dequantization of one weight group's partial sum (0: none)")

    def cycles_per_weight(self, bits: float) -> int:
        """Cycles one weight of ``bits`` bits (group metadata included) takes: 1 bit-parallel;
        ceil(floor(bits) / weight_bits_per_cycle) bit-serial (3.0625 and 4.0625 bits: 2; 6.0625: 3)."""
        if not self.bit_serial:
            return 1
        return max(1, math.ceil(math.floor(float(bits)) / self.weight_bits_per_cycle))


class SramAccessEnergy(Strict):
    """Energy of one access of a weight or input SRAM whose port is ``width_bits`` wide."""

    width_bits: PositiveInt = Field(description="port width, bits (one read returns this many bits)")
    read_pj: PositiveFloat = Field(description="dynamic energy of one full-width read, pJ")
    write_pj: PositiveFloat = Field(description="dynamic energy of one full-width write, pJ")
    area_mm2: PositiveFloat | None = Field(None, description="area of the SRAM macro at this width, mm^2")


class SramBuffers(Strict):
    weight_sram_kb: PositiveFloat = Field(description="weight SRAM capacity, KiB")
    input_sram_kb: PositiveFloat = Field(description="input (activation) SRAM capacity, KiB")
    banks: PositiveInt = Field(description="banks per SRAM")
    write_granularity_bits: PositiveInt = Field(64, description="bits per SRAM write when filling from DRAM")
    access_energy: list[SramAccessEnergy] = Field(
        default_factory=list, description="per-access energies by port width, pJ (empty: SRAM energy not modelled)")
    energy_source: str = Field("", description="where the SRAM access energies come from")

    def access(self, width_bits: float) -> tuple[float, float]:
        """(read_pj, write_pj) of one full-width access at ``width_bits``: the table's entry, or a
        linear interpolation between its neighbours (clamped proportionally outside the table)."""
        rows = sorted(self.access_energy, key=lambda r: r.width_bits)
        if not rows:
            return 0.0, 0.0
        w = float(width_bits)
        for r in rows:
            if r.width_bits == w:
                return r.read_pj, r.write_pj
        lo = [r for r in rows if r.width_bits < w]
        hi = [r for r in rows if r.width_bits > w]
        if lo and hi:
            a, b = lo[-1], hi[0]
            t = (w - a.width_bits) / (b.width_bits - a.width_bits)
            return a.read_pj + t * (b.read_pj - a.read_pj), a.write_pj + t * (b.write_pj - a.write_pj)
        r = lo[-1] if lo else hi[0]
        return r.read_pj * w / r.width_bits, r.write_pj * w / r.width_bits


class OffChipDram(Strict):
    bw_bits_per_cycle: PositiveInt = Field(description="DRAM bandwidth, bits per accelerator cycle")
    energy_pj_per_64b: PositiveFloat = Field(description="DRAM access energy, pJ per 64 bits moved")


class BitSerialConfig(Strict):
    kind: Literal["bitserial"]
    name: str
    description: str = ""
    source: str
    freq_mhz: PositiveFloat
    pe: BitSerialPe
    arrays: dict[Literal["prefill", "decode"], PeArray]
    buffers: SramBuffers
    dram: OffChipDram
    act_bits: PositiveInt = Field(16, description="activation (input and output) bits")
    weight_bits: dict[Literal["prefill", "decode"], PositiveFloat] = Field(
        default_factory=lambda: {"prefill": 16.0, "decode": 16.0},
        description="linear-layer weight bits per phase, group metadata included")
    kv_bits: PositiveFloat = Field(16.0, description="KV-cache bits (the attention GEMMs' stationary operand)")
    model_weight_bits: dict[str, dict[Literal["prefill", "decode"], PositiveFloat]] = Field(
        default_factory=dict, description="per-model weight bits overriding weight_bits (zoo model name -> phase)")

    def linear_weight_bits(self, phase: str, model: str | None = None) -> float:
        """Weight bits of the linear layers of ``model`` in ``phase`` (per-model override first)."""
        per = self.model_weight_bits.get(model or "", {})
        return float(per.get(phase, self.weight_bits.get(phase, 16.0)))

    def ceilings(self, measured: bool = True) -> Ceilings:
        f = self.freq_mhz * 1e6
        pes = max(a.rows * a.cols for a in self.arrays.values())
        # One weight term (weight_bits_per_cycle bits) per lane per cycle; the peak below is for
        # the narrowest weights (1 cycle per weight) and Ceilings divides by cycles per weight.
        peak = 2 * pes * self.pe.dot_size * f
        return Ceilings(
            device=self.name,
            mode="datasheet",
            matmul_flops={"fp16": peak},
            vector_flops={"fp16": pes * f},
            mem_bw=self.dram.bw_bits_per_cycle / 8 * f,
            bitserial_bits_per_cycle=self.pe.weight_bits_per_cycle if self.pe.bit_serial else None,
            notes=(f"{pes} {'bit-serial' if self.pe.bit_serial else 'bit-parallel'} PEs x {self.pe.dot_size} "
                   f"lanes at {self.freq_mhz} MHz",),
        )


HardwareConfig = Annotated[
    Union[GpuConfig, NpuConfig, MemoryConfig, BitSerialConfig], Field(discriminator="kind")
]


def load_hw(name_or_path: str | Path, overrides: list[str] | None = None):
    """Load a hardware config by bundled name (``h200``) or path, with ``--set`` overrides."""
    path = find_bundled("hw_configs", str(name_or_path), "hardware config", exclude=("systems",))
    data = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, str(path))
        _drop_shadowed_measurements(data, overrides)
    kind = data.get("kind")
    if kind not in ("gpu", "npu", "memory", "bitserial"):
        raise LlmsimError(f"{path}: kind: expected one of gpu, npu, memory, bitserial, found {kind!r}")
    model = {"gpu": GpuConfig, "npu": NpuConfig, "memory": MemoryConfig, "bitserial": BitSerialConfig}[kind]
    return validate_into(model, data, path)


def _drop_shadowed_measurements(data: dict, overrides: list[str]) -> None:
    """``--set hbm_bw_gbps=...`` on a device with measured ceilings means "this device, with that
    bandwidth": the measured value that would shadow the override is dropped."""
    measured = data.get("measured")
    if not isinstance(measured, dict):
        return
    for item in overrides:
        key = item.split("=", 1)[0].strip().split(".")
        if key == ["hbm_bw_gbps"]:
            measured.pop("hbm_bw_gbps", None)
        elif len(key) == 3 and key[0] == "compute" and isinstance(measured.get(key[1]), dict):
            measured[key[1]].pop(key[2], None)


def hw_ceilings(name_or_path: str | Path, measured: bool = True, overrides: list[str] | None = None) -> Ceilings:
    return load_hw(name_or_path, overrides).ceilings(measured=measured)


