"""System configs (``hw_configs/systems/``): a composition of bundled devices and policies, not a
code path per paper. ``neupims`` is ``npu-pim-naive`` with two row buffers and sub-batching on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.config.hardware import MemoryConfig, NpuConfig, Strict, load_hw
from sim.config.loader import apply_overrides, load_yaml, validate_into
from sim.config.paths import find_bundled
from sim.errors import LlmsimError


class PimIssue(Strict):
    """NeuPIMs' C++ simulator's PIM instruction front end, for comparisons with that simulator only
    (``sim.systems.pim_frontend``): the NPU core hands out ``instructions_per_cycle`` PIM
    instructions per core cycle for all channels together, the batch's requests in channel order,
    in the kernel shapes of ``kernel``. Absent: every channel receives its commands as fast as it
    can take them (hardware: a command bus per channel)."""

    instructions_per_cycle: int = Field(1, gt=0, description="PIM instructions the core issues per core cycle, "
                                                             "all channels together")
    kernel: Literal["newton", "fused"] = Field(
        description="instruction shapes: newton, a COMP per 16 MACs and a READRES per head and tile; fused, "
                    "NeuPIMs' COMPS_READRES (one per head and tile)")


class PimUse(Strict):
    """How the system uses the PIM banks of its NPU's memory (the memory preset's ``pim`` block)."""

    row_buffers: Literal[1, 2] = Field(description="1: blocked PIM (one row buffer per bank); 2: NeuPIMs' dual row buffers")
    issue: PimIssue | None = Field(None, description="NeuPIMs' C++ simulator's PIM instruction front end (for "
                                                     "comparisons with it); absent: no front-end limit")


class WeightPrecision(Strict):
    """Weight widths a system runs a task at (the quantization policy, not a device property)."""

    bits: float = Field(gt=0, le=32, description="bits per weight before group metadata")
    group_size: int | None = Field(None, gt=0, description="weights per quantization group (metadata charged per group)")
    group_meta_bits: float = Field(0.0, ge=0, description="metadata bits per group (scale and type selector)")
    by_model: dict[str, float] = Field(default_factory=dict,
                                       description="per-model bits per weight (before metadata) where they differ")

    def bits_for(self, model: str) -> float:
        return float(self.by_model.get(model, self.bits))


class Quantization(Strict):
    """Per-task weight precision of an accelerator system: ``prefill`` is the discriminative task
    (prompt only); ``generate`` covers the generative task (prompt plus decode steps) and decode."""

    prefill: WeightPrecision
    generate: WeightPrecision
    kv_bits: float = Field(16, gt=0, le=32, description="bits per KV-cache element")

    def for_task(self, task: str) -> WeightPrecision:
        return self.prefill if task == "prefill" else self.generate


class SystemConfig(Strict):
    kind: Literal["system"]
    name: str
    description: str = ""
    source: str
    accelerator: Literal["gpu", "npu", "bitserial"]
    gpu: str | None = Field(None, description="GPU config for accelerator gpu (the --gpu flag overrides it)")
    bitserial: str | None = Field(None, description="bit-serial / bit-parallel accelerator config (hw_configs/bitserial) "
                                                    "for accelerator bitserial")
    quantization: Quantization | None = Field(
        None, description="weight and KV widths per task; absent: the traced dtype (NPU, GPU) or the bit-serial "
                          "device's own weight_bits / model_weight_bits / kv_bits")
    npu: str | None = Field(None, description="NPU config for accelerator npu; its memory is the system's")
    pim: PimUse | None = Field(None, description="attention on the memory's PIM units; null: on the accelerator")
    sub_batch: bool = Field(False, description="NeuPIMs' sub-batch interleaving (NPU GEMMs of one half overlap PIM "
                                               "attention of the other)")
    channel_assignment: Literal["round_robin", "greedy"] = Field(
        "round_robin", description="which channel holds each request's KV cache (greedy: least estimated load)")
    overrides: dict[Literal["npu", "memory", "gpu", "bitserial"], list[str]] = Field(
        default_factory=dict, description="key.path=value overrides of the devices this system composes (memory: "
                                          "the NPU's memory), e.g. {npu: [systolic.count=16]}; --set npu.systolic."
                                          "count=16 on a system lands here")

    @model_validator(mode="after")
    def _parts(self):
        if self.accelerator == "gpu" and not self.gpu:
            raise ValueError("gpu: required for accelerator gpu")
        if self.accelerator == "npu" and not self.npu:
            raise ValueError("npu: required for accelerator npu")
        if self.accelerator == "bitserial" and not self.bitserial:
            raise ValueError("bitserial: required for accelerator bitserial")
        if self.pim is not None and self.quantization is not None and self.quantization.kv_bits != 16:
            raise ValueError("quantization.kv_bits: PIM attention runs on fp16 KV caches (expected 16)")
        if self.pim is not None and self.accelerator != "npu":
            raise ValueError("pim: only an NPU system can use PIM")
        if self.sub_batch and self.pim is None:
            raise ValueError("sub_batch: needs pim (it overlaps NPU GEMMs with PIM attention)")
        return self

    def trace_precision(self, task: str, model: str) -> dict:
        """``capture()`` keyword arguments for this system's weight and KV widths on ``task``
        (prefill / decode / generate); empty without a ``quantization`` block (traced dtype)."""
        if self.quantization is None:
            if self.accelerator == "bitserial":   # the design's own precision (its artifact settings)
                dev = self.bitserial_config()
                array = "prefill" if task == "prefill" else "decode"
                return {"weight_bits": dev.linear_weight_bits(array, model), "kv_bits": float(dev.kv_bits)}
            return {}
        w = self.quantization.for_task(task)
        kw = {"weight_bits": w.bits_for(model), "kv_bits": self.quantization.kv_bits}
        if w.group_size:
            kw.update(group_size=w.group_size, group_meta_bits=w.group_meta_bits)
        return kw

    def check_devices(self) -> None:
        """Load every device this system composes (with its overrides): errors surface here."""
        unused = set(self.overrides) - {"npu", "memory"} if self.accelerator == "npu" else \
            set(self.overrides) - {self.accelerator}
        if unused:
            raise LlmsimError(f"{self.name}: overrides: {sorted(unused)[0]}: this {self.accelerator} system has no "
                              f"such device")
        if self.accelerator == "npu":
            npu = self.npu_config()
            if npu.memory_config() is None and self.overrides.get("memory"):
                raise LlmsimError(f"{self.name}: overrides: memory: {npu.name} has ideal memory (nothing to override)")
        elif self.accelerator == "gpu":
            self.gpu_config()
        else:
            self.bitserial_config()

    def gpu_config(self, name: str | None = None):
        """The GPU (``name`` or the system's ``gpu``) with the system's ``overrides.gpu``."""
        from sim.config.hardware import GpuConfig

        dev = load_hw(name or self.gpu, self.overrides.get("gpu") or None)
        if not isinstance(dev, GpuConfig):
            raise LlmsimError(f"{self.name}: gpu: expected a GPU config, found kind {dev.kind!r}")
        return dev

    def bitserial_config(self):
        from sim.config.hardware import BitSerialConfig

        dev = load_hw(self.bitserial, self.overrides.get("bitserial") or None)
        if not isinstance(dev, BitSerialConfig):
            raise LlmsimError(f"{self.name}: bitserial: expected a bitserial config, found kind {dev.kind!r}")
        return dev

    def npu_config(self) -> NpuConfig:
        npu = load_hw(self.npu, self.overrides.get("npu") or None)
        if not isinstance(npu, NpuConfig):
            raise LlmsimError(f"{self.name}: npu: expected an NPU config, found kind {npu.kind!r}")
        return npu.with_memory_overrides(self.overrides.get("memory")) if self.overrides.get("memory") else npu

    def memory(self) -> MemoryConfig:
        """The NPU's memory, with the PIM row-buffer mode this system uses."""
        mem = self.npu_config().memory_config()
        if mem is None:
            raise LlmsimError(f"{self.name}: npu: {self.npu} has no memory (ideal memory cannot hold PIM)")
        if self.pim is not None:
            if mem.pim is None or mem.pim.standard is None:
                raise LlmsimError(f"{self.name}: pim: memory {mem.name} declares no PIM command set")
            mem = mem.with_pim(dual_row_buffer=self.pim.row_buffers == 2)
        return mem


DEVICE_KEYS = ("npu", "memory", "gpu", "bitserial")


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """System-level ``key.path=value`` overrides, and those that reach into a device: a path of two
    or more keys starting with npu, memory, gpu or bitserial (``npu.systolic.count=16``). A bare
    ``npu=NAME`` swaps the device itself."""
    own: list[str] = []
    devices: dict[str, list[str]] = {}
    for item in overrides:
        key = str(item).split("=", 1)[0].strip()
        head, _, rest = key.partition(".")
        if head in DEVICE_KEYS and rest:
            devices.setdefault(head, []).append(f"{rest}={str(item).split('=', 1)[1]}" if "=" in str(item) else rest)
        else:
            own.append(item)
    return own, devices


def load_system(name_or_path: str, overrides: list[str] | None = None) -> SystemConfig:
    """A system config by bundled name or path, with ``key.path=value`` overrides (those under npu.,
    memory., gpu. or bitserial. go to the device; see :func:`split_overrides`). Every device the
    system names is loaded once here, so a bad override is reported now, in one line."""
    path = find_bundled("hw_configs/systems", name_or_path, "system config")
    data = load_yaml(path)
    device_overrides: dict[str, list[str]] = {}
    if overrides:
        overrides, device_overrides = split_overrides(list(overrides))
        data = apply_overrides(data, overrides, str(path)) if overrides else data
    if device_overrides:
        merged = dict(data.get("overrides") or {})
        for k, v in device_overrides.items():
            merged[k] = list(merged.get(k) or []) + v
        data = {**data, "overrides": merged}
    if data.get("kind") != "system":
        raise LlmsimError(f"{path}: kind: expected system, found {data.get('kind')!r}")
    sysconf = validate_into(SystemConfig, data, path)
    if sysconf.overrides:
        sysconf.check_devices()
    return sysconf


def available_systems() -> list[str]:
    from sim.config.paths import project_root

    return sorted(p.stem for p in (project_root() / "hw_configs/systems").glob("*.yaml"))
