"""Inference techniques as operator-trace transforms (``--technique name:key=value,...``).

See :mod:`sim.techniques.base` for the framework and ``docs/techniques.md`` for each technique's
transform, parameters and assumptions.
"""

from sim.techniques.base import Technique, apply_techniques, available, parse_technique, register

__all__ = ["Technique", "apply_techniques", "available", "parse_technique", "register"]
