"""Inference techniques as transforms of an operator trace.

A technique is selected as ``name:key=value,...`` (``--technique medusa:heads=4,tree=64,accept=0.6``;
repeatable, applied in order). Each is a small dataclass whose fields are its parameters (with
defaults and a docstring that gives their units), registered by :func:`register`; ``apply(trace)``
returns a new :class:`~sim.trace.schema.Trace` and never mutates its input. A technique that does
not apply to a trace (MoE routing on a dense model) raises a one-line ``LlmsimError``.

``tokens_per_step`` is what one step of the transformed trace generates per sequence (speculative
decoding: more than one), so throughput and per-token costs stay comparable across techniques;
:func:`apply_techniques` multiplies the factors and records them in ``trace.meta``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from sim.errors import LlmsimError
from sim.trace.schema import Trace

_REGISTRY: dict[str, type["Technique"]] = {}


def register(cls: type["Technique"]) -> type["Technique"]:
    """Class decorator: make ``cls`` selectable by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def technique_classes() -> dict[str, type["Technique"]]:
    """name -> class of every registered technique."""
    _load_all()
    return dict(sorted(_REGISTRY.items()))


@dataclass(frozen=True)
class Technique:
    """Base class. Subclasses set ``name`` and ``summary`` and declare their parameters as fields."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def apply(self, trace: Trace) -> Trace:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    @property
    def tokens_per_step(self) -> float:
        """Tokens one decode step generates per sequence (1 unless speculative)."""
        return 1.0

    def __str__(self) -> str:
        return self.spec()

    def spec(self) -> str:
        """The ``name:key=value,...`` text that selects this technique with these parameters."""
        params = ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))
        return f"{self.name}:{params}" if params else self.name

    def check(self) -> None:
        """Raise a one-line error for parameter values out of range (subclasses extend)."""


def _coerce(text: str, typ: Any, where: str) -> Any:
    t = typ if isinstance(typ, type) else {"int": int, "float": float, "str": str, "bool": bool}.get(str(typ), str)
    try:
        if t is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return t(text)
    except ValueError:
        raise LlmsimError(f"{where}: expected {t.__name__}, found {text!r}") from None


def parse_technique(text: str) -> Technique:
    """``name`` or ``name:key=value,key=value`` -> a checked technique (one-line errors)."""
    _load_all()
    raw = str(text).strip()
    name, _, rest = raw.partition(":")
    name = name.strip()
    if name not in _REGISTRY:
        raise LlmsimError(f"--technique: unknown technique {name!r} (expected one of: {', '.join(sorted(_REGISTRY))})")
    cls = _REGISTRY[name]
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise LlmsimError(f"--technique {name}: expected key=value, found {item!r}")
        if key not in known:
            raise LlmsimError(f"--technique {name}: unknown parameter {key!r} (expected one of: "
                              f"{', '.join(known) or 'none'})")
        kwargs[key] = _coerce(value.strip(), known[key].type, f"--technique {name}: {key}")
    tech = cls(**kwargs)
    tech.check()
    return tech


def apply_techniques(trace: Trace, techniques: list[Technique | str]) -> Trace:
    """``trace`` with each technique applied in order; ``meta`` records them and the tokens per step."""
    out = trace
    steps = float(trace.meta.get("tokens_per_step", 1.0))
    for t in techniques:
        tech = parse_technique(t) if isinstance(t, str) else t
        out = tech.apply(out)
        steps *= tech.tokens_per_step
        out = Trace(meta={**out.meta, "techniques": list(out.meta.get("techniques", [])) + [tech.spec()],
                          "tokens_per_step": steps}, ops=out.ops)
    return out


def replace_ops(trace: Trace, ops: list, **meta: Any) -> Trace:
    """A new trace with these ops (and meta entries added)."""
    return Trace(meta={**trace.meta, **meta}, ops=list(ops))


def _load_all() -> None:
    """Import the technique modules (they register themselves)."""
    import importlib

    for mod in ("sparsity", "sparse24", "infllm", "speculative", "hydragen", "quant", "moe"):
        importlib.import_module(f"sim.techniques.{mod}")
