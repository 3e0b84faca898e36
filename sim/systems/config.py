"""System configs (``hw_configs/systems/``): a composition of bundled devices and policies, not a
code path per paper. ``neupims`` is ``npu-pim-naive`` with two row buffers and sub-batching on."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.config.hardware import MemoryConfig, NpuConfig, Strict, load_hw
from sim.config.loader import apply_overrides, load_yaml, validate_into
from sim.config.paths import find_bundled
from sim.errors import LlmsimError


class PimUse(Strict):
    """How the system uses the PIM banks of its NPU's memory (the memory preset's ``pim`` block)."""

    row_buffers: Literal[1, 2] = Field(description="1: blocked PIM (one row buffer per bank); 2: NeuPIMs' dual row buffers")


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

    def bitserial_config(self):
        from sim.config.hardware import BitSerialConfig

        dev = load_hw(self.bitserial)
        if not isinstance(dev, BitSerialConfig):
            raise LlmsimError(f"{self.name}: bitserial: expected a bitserial config, found kind {dev.kind!r}")
        return dev

    def npu_config(self) -> NpuConfig:
        npu = load_hw(self.npu)
        if not isinstance(npu, NpuConfig):
            raise LlmsimError(f"{self.name}: npu: expected an NPU config, found kind {npu.kind!r}")
        return npu

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


def load_system(name_or_path: str, overrides: list[str] | None = None) -> SystemConfig:
    path = find_bundled("hw_configs/systems", name_or_path, "system config")
    data = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    if data.get("kind") != "system":
        raise LlmsimError(f"{path}: kind: expected system, found {data.get('kind')!r}")
    return validate_into(SystemConfig, data, path)


def available_systems() -> list[str]:
    from sim.config.paths import project_root

    return sorted(p.stem for p in (project_root() / "hw_configs/systems").glob("*.yaml"))
