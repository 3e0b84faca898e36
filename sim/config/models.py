"""Model-zoo entries (``workloads/models/*.yaml``): which transformers config class to build, with
which arguments, in which dtype, and which phases the model has.

The numbers in ``config:`` are the published model's ``config.json`` values (each file names its
source); nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sim.config.loader import load_config
from sim.config.paths import find_bundled, project_root

Family = Literal["llama", "mistral", "mixtral", "opt", "phi", "gpt2", "bert"]


class TpSurgery(BaseModel):
    """Megatron-style sharding applied to built modules: column-parallel layers keep 1/tp of their
    outputs, row-parallel layers 1/tp of their inputs, and the listed attributes are divided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column_parallel: list[str] = Field(description="module path suffixes (Linear / Conv1D)")
    row_parallel: list[str] = Field(description="module path suffixes (Linear / Conv1D)")
    divide_attrs: dict[str, list[str]] = Field(default_factory=dict, description="module suffix -> attributes")


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    source: str = Field(description="where the architecture numbers come from")
    family: Family
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"
    phases: list[Literal["prefill", "decode"]] = Field(default_factory=lambda: ["prefill", "decode"])
    config: dict[str, Any] = Field(default_factory=dict, description="kwargs of the transformers config class")
    weights_package: str | None = Field(None, description="pip package that ships real weights")
    sentences: list[str] = Field(default_factory=list, description="real inputs for real-weight encoders")
    tp_allreduce_after: list[str] = Field(
        default_factory=list, description="module path suffixes whose output is all-reduced under --tp"
    )
    tp_shard_keys: list[str] = Field(
        default_factory=list, description="config keys divided by --tp (heads, kv heads, FFN width)"
    )
    tp_surgery: "TpSurgery | None" = Field(
        None, description="Megatron sharding by module surgery, for families whose head size follows the config"
    )
    cpu_default: bool = Field(False, description="trace on the CPU with real tensors by default")


def load_model_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> ModelSpec:
    return load_config(find_bundled("workloads/models", str(name_or_path), "model"), ModelSpec, overrides)


def list_models() -> list[str]:
    return sorted(p.stem for p in (project_root() / "workloads" / "models").glob("*.yaml"))
