"""Typed, validated configuration: YAML files with ``extends:`` and ``--set`` overrides.

Public entry points:

* :func:`load_hw` -- a hardware config by bundled name or path, validated into its typed model.
* :func:`load_model_spec` -- a model-zoo entry from ``workloads/models``.
* :func:`load_yaml` -- the raw merged mapping (``extends:`` resolved, overrides applied).
"""

from sim.config.loader import load_yaml, parse_overrides, validate_into
from sim.config.paths import project_root, find_bundled
from sim.config.hardware import load_hw, HardwareConfig
from sim.config.models import load_model_spec, ModelSpec, list_models

__all__ = [
    "load_yaml",
    "parse_overrides",
    "validate_into",
    "project_root",
    "find_bundled",
    "load_hw",
    "HardwareConfig",
    "load_model_spec",
    "ModelSpec",
    "list_models",
]
