"""Scenario files (``workloads/scenarios/*.yaml``): a model, a run shape and the devices to score."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from sim.config.loader import load_config
from sim.config.paths import find_bundled


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    model: str
    phase: Literal["prefill", "decode", "generate"]
    batch: PositiveInt
    seq_len: PositiveInt
    new_tokens: PositiveInt = 1
    layers: PositiveInt | None = None
    tp: PositiveInt = 1
    hw: list[str] = Field(min_length=1)
    out: str = "out/demo"


def load_scenario(name_or_path: str | Path, overrides: list[str] | None = None) -> Scenario:
    return load_config(find_bundled("workloads/scenarios", str(name_or_path), "scenario"), Scenario, overrides)
