"""Sweep specs (``llmsim sweep SPEC.yaml``): a base system, axes over config paths, and workloads.

A spec expands, in a fixed order, into points (one system configuration x one workload), each with
a stable ``point_id``. Everything is checked up front: a bad field, axis path or value is one
:class:`~sim.errors.LlmsimError` line naming the spec file and the field. See ``docs/sweeps.md``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sim.errors import LlmsimError

AXIS_KINDS = ("grid", "choice", "uniform", "loguniform")
RANDOM_ONLY = ("uniform", "loguniform")
SCALES = ("linear", "log2", "log10")
WORKLOAD_FIELDS = ("model", "phase", "batch", "tp", "requests", "seq_len", "new_tokens", "layers", "engine",
                   "technique")


class Workload(BaseModel):
    """One workload of a sweep. NPU and GPU systems run one decode iteration of a batch of requests
    (``requests``: a steady-state ``sharegpt`` / ``alpaca`` sample drawn with the spec's seed, or
    ``uniform`` requests of ``seq_len`` cached tokens); bit-serial systems run a traced model of
    ``phase`` (prefill / decode / generate) with ``seq_len`` prompt or cached tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="zoo model name (llmsim models)")
    phase: Literal["prefill", "decode", "generate"] = "decode"
    batch: int = Field(1, ge=1, description="requests in the batch (sequences)")
    tp: int = Field(1, ge=1, description="tensor-parallel degree (one device simulated)")
    requests: Literal["sharegpt", "alpaca", "uniform"] | None = Field(
        None, description="NPU / GPU systems: request lengths (default sharegpt; uniform with seq_len)")
    seq_len: int | None = Field(None, ge=1, description="uniform requests' cached tokens; bit-serial: prompt "
                                                        "(prefill) or cached (decode) tokens (default 128)")
    new_tokens: int | None = Field(None, ge=1, description="bit-serial generate: decode steps after the prompt "
                                                           "(default 1)")
    layers: int | None = Field(None, ge=1, description="decoder layers (default: all)")
    engine: Literal["des", "analytic"] | None = Field(None, description="bit-serial model (default des)")
    technique: str | None = Field(None, description="inference technique(s) applied to the step: name:key=value,... "
                                                    "(several joined by ';', applied in order; docs/techniques.md)")


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="the sweep's name (in every result row)")
    base: str = Field(min_length=1, description="system config name or path")
    seed: int = Field(0, ge=0, description="seeds request sampling and random axes")
    mode: Literal["grid", "random"] = "grid"
    samples: int | None = Field(None, ge=1, description="random mode: configurations drawn")
    axes: dict[str, Any] = Field(description="config path -> values")
    workloads: list[Workload] = Field(min_length=1)


# ---------------------------------------------------------------------------------------- axes
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _tidy_float(v: float) -> float:
    """12 significant digits: 0.1 * 3 is 0.3, and a value's JSON (and the point id) stays short."""
    return float(f"{v:.12g}")


@dataclass(frozen=True)
class Axis:
    """One axis: a config path and its values (list, grid, choice) or a range to draw from."""

    path: str
    kind: Literal["list", "grid", "choice", "uniform", "loguniform"]
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    linked: tuple[str, ...] = ()   # a linked axis ("a, b": [[1, 2], [3, 4]]): its paths; values are tuples

    @property
    def paths(self) -> tuple[str, ...]:
        return self.linked or (self.path,)

    def assign(self, value: Any) -> dict[str, Any]:
        """path -> value of this axis at ``value`` (a linked axis sets each of its paths)."""
        return dict(zip(self.linked, value)) if self.linked else {self.path: value}

    def columns(self) -> list[tuple[str, str]]:
        """(path, column kind) of each ``cfg.<path>`` column this axis fills."""
        if not self.linked:
            return [(self.path, self.column_kind())]
        return [(p, Axis(p, "list", tuple(dict.fromkeys(v[i] for v in self.values))).column_kind())
                for i, p in enumerate(self.linked)]

    @property
    def random_only(self) -> bool:
        return self.kind in RANDOM_ONLY

    def check_values(self) -> tuple:
        """Values the up-front check loads: every listed value, or a range's two ends and a value
        between them with a fraction (so a range over an integer field fails here, not per point)."""
        if self.values:
            return self.values
        inner = _tidy_float(self.low + (self.high - self.low) * 0.41421356237)
        return tuple(dict.fromkeys((self.low, self.high, inner)))

    def first(self) -> Any:
        return self.check_values()[0]

    def draw(self, rng) -> Any:
        if self.kind == "uniform":
            return _tidy_float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return _tidy_float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return self.values[int(rng.integers(len(self.values)))]

    def column_kind(self) -> str:
        """How the ``cfg.<path>`` column stores this axis: bool, int, float, str or json."""
        vals = self.check_values()
        if self.random_only:
            return "float"
        if all(isinstance(v, bool) for v in vals):
            return "bool"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            return "int"
        if all(_is_number(v) for v in vals):
            return "float"
        if all(isinstance(v, str) for v in vals):
            return "str"
        return "json"


def _scalar_list(values: Any, where: str) -> tuple:
    if not isinstance(values, list) or not values:
        raise LlmsimError(f"{where}: expected a non-empty list of values, found {values!r}")
    for v in values:
        if isinstance(v, (list, dict)):
            raise LlmsimError(f"{where}: expected scalar values (number, bool, string, null), found {v!r}")
        if isinstance(v, float) and not math.isfinite(v):
            raise LlmsimError(f"{where}: expected finite numbers, found {v!r}")
    seen: list = []
    for v in values:
        if any(v == s and type(v) is type(s) for s in seen):
            raise LlmsimError(f"{where}: value {v!r} is listed twice")
        seen.append(v)
    return tuple(values)


def grid_values(start: Any, stop: Any, num: Any, scale: str, where: str) -> tuple:
    """``num`` values from ``start`` to ``stop`` (both included), evenly spaced on ``scale``;
    integers when start and stop are integers (rounded, repeats dropped)."""
    import numpy as np

    if not (_is_number(start) and _is_number(stop)):
        raise LlmsimError(f"{where}: expected [start, stop, num] with numbers start and stop, "
                          f"found {[start, stop, num]!r}")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise LlmsimError(f"{where}: expected a positive integer num (third item), found {num!r}")
    if scale not in SCALES:
        raise LlmsimError(f"{where.rsplit('.', 1)[0]}.scale: expected one of {', '.join(SCALES)}, found {scale!r}")
    if scale != "linear" and (start <= 0 or stop <= 0):
        raise LlmsimError(f"{where}: a {scale} grid needs positive start and stop, found {start} and {stop}")
    if scale == "linear":
        raw = np.linspace(start, stop, num)
    else:
        log = np.log2 if scale == "log2" else np.log10
        b = 2.0 if scale == "log2" else 10.0
        raw = b ** np.linspace(log(start), log(stop), num)
        if num > 1:
            raw[0], raw[-1] = start, stop
    ints = isinstance(start, int) and isinstance(stop, int)
    out: list = []
    for v in raw.tolist():
        v = int(round(v)) if ints else _tidy_float(v)
        if v not in out:
            out.append(v)
    return tuple(out)


def _linked_axis(path: str, raw: Any, where: str) -> Axis:
    """Paths that move together: ``"a, b": [[a1, b1], [a2, b2]]`` (or ``{choice: [...]}``), e.g. a
    memory's channel count with its capacity."""
    paths = tuple(p.strip() for p in path.split(","))
    if len(set(paths)) != len(paths):
        raise LlmsimError(f"{where}: a path is repeated in a linked axis")
    kind, rows = ("choice", raw["choice"]) if isinstance(raw, dict) and set(raw) == {"choice"} else ("list", raw)
    if not isinstance(rows, list) or not rows:
        raise LlmsimError(f"{where}: a linked axis ({len(paths)} paths) expects a non-empty list of "
                          f"{len(paths)}-item lists (or {{choice: [...]}}), found {raw!r}")
    for r in rows:
        if not isinstance(r, list) or len(r) != len(paths):
            raise LlmsimError(f"{where}: expected lists of {len(paths)} values (one per path), found {r!r}")
        for v in r:
            if isinstance(v, (list, dict)) or (isinstance(v, float) and not math.isfinite(v)):
                raise LlmsimError(f"{where}: expected scalar values (number, bool, string, null), found {v!r}")
    values = tuple(tuple(r) for r in rows)
    if len(set(map(json.dumps, values))) != len(values):
        raise LlmsimError(f"{where}: a combination is listed twice")
    return Axis(", ".join(paths), kind, values, linked=paths)


def parse_axis(path: Any, raw: Any, origin: str) -> Axis:
    where = f"{origin}: axes.{path}"
    if isinstance(path, str) and "," in path and "=" not in path and all(
            q.strip() and all(x.strip() for x in q.strip().split(".")) for q in path.split(",")):
        return _linked_axis(path, raw, where)
    if not isinstance(path, str) or not path or "=" in path or any(not p.strip() for p in path.split(".")):
        raise LlmsimError(f"{origin}: axes: expected dotted config paths (e.g. npu.systolic.count), found {path!r}")
    if isinstance(raw, list):
        return Axis(path, "list", _scalar_list(raw, where))
    if not isinstance(raw, dict):
        raise LlmsimError(f"{where}: expected a list of values or a mapping with one of "
                          f"{', '.join(AXIS_KINDS)}, found {raw!r}")
    kinds = [k for k in raw if k in AXIS_KINDS]
    unknown = [k for k in raw if k not in AXIS_KINDS and k != "scale"]
    if unknown:
        raise LlmsimError(f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(AXIS_KINDS)}, or scale "
                          f"with grid)")
    if len(kinds) != 1:
        raise LlmsimError(f"{where}: expected exactly one of {', '.join(AXIS_KINDS)}, found "
                          f"{', '.join(kinds) or 'none'}")
    kind = kinds[0]
    if "scale" in raw and kind != "grid":
        raise LlmsimError(f"{where}.scale: only with grid (found {kind})")
    arg = raw[kind]
    if kind == "grid":
        if not isinstance(arg, list) or len(arg) != 3:
            raise LlmsimError(f"{where}.grid: expected [start, stop, num], found {arg!r}")
        return Axis(path, "grid", grid_values(*arg, raw.get("scale", "linear"), f"{where}.grid"))
    if kind == "choice":
        return Axis(path, "choice", _scalar_list(arg, f"{where}.choice"))
    if not (isinstance(arg, list) and len(arg) == 2 and all(_is_number(v) and math.isfinite(v) for v in arg)):
        raise LlmsimError(f"{where}.{kind}: expected [low, high] numbers, found {arg!r}")
    low, high = float(arg[0]), float(arg[1])
    if low > high:
        raise LlmsimError(f"{where}.{kind}: expected low <= high, found {arg!r}")
    if kind == "loguniform" and low <= 0:
        raise LlmsimError(f"{where}.loguniform: expected positive bounds, found {arg!r}")
    return Axis(path, kind, (), low, high)


def override_string(path: str, value: Any) -> str:
    """``path=value`` as load_system reads it back (the value is parsed as YAML)."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:   # YAML 1.1 floats need a dot: 1.0e+20
            mant, exp = text.split("e")
            text = f"{mant}.0e{exp if exp[0] in '+-' else '+' + exp}"
    else:
        text = json.dumps(str(value))   # quoted: "true" or "1e3" stay strings
    return f"{path}={text}"


def override_strings(overrides: dict[str, Any]) -> list[str]:
    return [override_string(p, v) for p, v in overrides.items()]


# ------------------------------------------------------------------------------------ workloads
def normalize_workload(wl: Workload | dict, accelerator: str, where: str = "workload") -> dict[str, Any]:
    """The workload with the defaults of the system's kind filled in (fields that do not apply are
    None); a field that does not apply to this kind of system is an error."""
    if isinstance(wl, dict):
        from sim.config.loader import validate_into

        wl = validate_into(Workload, wl, where)
    d = wl.model_dump()
    if d.get("technique"):
        from sim.techniques import parse_technique

        try:
            d["technique"] = ";".join(parse_technique(t).spec() for t in d["technique"].split(";") if t.strip())
        except LlmsimError as exc:
            raise LlmsimError(f"{where}.technique: {exc}") from None
    if accelerator in ("npu", "gpu"):
        kind = "an NPU" if accelerator == "npu" else "a GPU"
        if d["phase"] != "decode":
            raise LlmsimError(f"{where}.phase: {kind} system runs one decode iteration of a batch "
                              f"(expected decode, found {d['phase']})")
        for k in ("new_tokens", "engine"):
            if d[k] is not None:
                raise LlmsimError(f"{where}.{k}: only for bit-serial systems (this is {kind} system)")
        if d["requests"] is None:
            d["requests"] = "uniform" if d["seq_len"] is not None else "sharegpt"
        if d["requests"] == "uniform":
            d["seq_len"] = d["seq_len"] or 128
        elif d["seq_len"] is not None:
            raise LlmsimError(f"{where}.seq_len: only with requests: uniform ({d['requests']} lengths are sampled)")
    else:
        if d["requests"] is not None:
            raise LlmsimError(f"{where}.requests: a bit-serial system runs a traced batch of seq_len tokens "
                              f"(remove requests)")
        if d["new_tokens"] is not None and d["phase"] != "generate":
            raise LlmsimError(f"{where}.new_tokens: only with phase: generate (found {d['phase']})")
        d["seq_len"] = d["seq_len"] or 128
        d["new_tokens"] = (d["new_tokens"] or 1) if d["phase"] == "generate" else None
        d["engine"] = d["engine"] or "des"
    return d


def workload_label(wl: dict[str, Any]) -> str:
    """``gpt3-7b/decode/b128/tp4`` plus what else sets it apart (requests, lengths, layers)."""
    parts = [wl["model"], wl["phase"], f"b{wl['batch']}", f"tp{wl['tp']}"]
    if wl.get("requests") not in (None, "sharegpt"):
        parts.append(wl["requests"])
    if wl.get("seq_len") is not None:
        parts.append(f"s{wl['seq_len']}")
    if wl.get("new_tokens") is not None:
        parts.append(f"n{wl['new_tokens']}")
    if wl.get("layers") is not None:
        parts.append(f"l{wl['layers']}")
    if wl.get("engine") not in (None, "des"):
        parts.append(wl["engine"])
    if wl.get("technique"):
        parts.append(wl["technique"])
    return "/".join(parts)


# ----------------------------------------------------------------------------------------- spec
@dataclass
class Point:
    index: int
    point_id: str
    overrides: dict[str, Any]      # axis path -> value, in axis order
    workload: dict[str, Any]       # normalized (every field; None where it does not apply)
    label: str


@dataclass
class SweepSpec:
    name: str
    base: str                       # as written in the spec
    base_ref: str                   # bundled name, or the path resolved against the spec's folder
    seed: int
    mode: str
    samples: int | None
    axes: list[Axis]
    workloads: list[dict[str, Any]]
    accelerator: str
    origin: str                     # the spec file (or "<spec>" for a mapping)
    raw: dict[str, Any] = field(repr=False)
    text: str | None = field(default=None, repr=False)   # the file's text, when it came from a file

    def canonical(self) -> str:
        return spec_fingerprint(self.raw)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def spec_fingerprint(raw: Any) -> str:
    """Canonical JSON of a spec mapping, the axes as a list of [path, values] pairs: the axes'
    order sets the expansion order (and each point's index), so it is part of the spec."""
    if isinstance(raw, dict) and isinstance(raw.get("axes"), dict):
        raw = {**raw, "axes": [[k, v] for k, v in raw["axes"].items()]}
    return canonical_json(raw)


def point_id(overrides: dict[str, Any], workload: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON (sorted keys, no spaces) of
    ``{"overrides": {path: value}, "workload": {field: value}}`` (workload fields that are None left
    out, so a new optional field does not change old ids)."""
    wl = {k: v for k, v in workload.items() if v is not None}
    return hashlib.sha256(canonical_json({"overrides": overrides, "workload": wl}).encode()).hexdigest()[:16]


def _resolve_base(base: str, spec_dir: Path | None) -> str:
    p = Path(base)
    if spec_dir is not None and (p.suffix in (".yaml", ".yml") or "/" in base) and not p.is_absolute():
        local = spec_dir / p
        if local.exists():
            return str(local.resolve())
    return base


def load_spec(path_or_dict: str | Path | dict | SweepSpec) -> SweepSpec:
    """Read and check a sweep spec (a YAML path or a mapping); one-line errors name the file and
    field. Axis paths and values are checked by loading the base system with them."""
    from sim.config.loader import load_yaml, validate_into

    if isinstance(path_or_dict, SweepSpec):
        return path_or_dict
    text = None
    if isinstance(path_or_dict, dict):
        # a plain JSON-like copy (tuples become lists), key order kept: the axes' order is the expansion's
        raw, origin, spec_dir = json.loads(json.dumps(path_or_dict, default=str)), "<spec>", None
    else:
        path = Path(path_or_dict)
        if path.is_dir():
            raise LlmsimError(f"{path}: expected a sweep spec YAML file, found a folder")
        raw = load_yaml(path)
        origin, spec_dir = str(path), path.resolve().parent
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = None
        if "extends:" in (text or ""):
            text = None     # written back as the resolved mapping
    if "axes" in raw and isinstance(raw["axes"], dict):
        for key in raw["axes"]:
            if not isinstance(key, str):
                raise LlmsimError(f"{origin}: axes: expected dotted config paths, found {key!r}")
    model = validate_into(_SpecModel, raw, origin)
    if not model.axes:
        raise LlmsimError(f"{origin}: axes: expected at least one axis (path -> values), found none")
    axes = [parse_axis(p, v, origin) for p, v in model.axes.items()]
    if model.mode == "grid":
        if model.samples is not None:
            raise LlmsimError(f"{origin}: samples: only for mode: random (found mode: grid)")
        for a in axes:
            if a.random_only:
                raise LlmsimError(f"{origin}: axes.{a.path}: {a.kind} draws random values (only with mode: random; "
                                  f"use a list or grid)")
    elif model.samples is None:
        raise LlmsimError(f"{origin}: samples: required with mode: random (expected a positive integer)")
    base_ref = _resolve_base(model.base, spec_dir)
    accelerator = _check_axes(base_ref, axes, origin)
    workloads = []
    for i, wl in enumerate(model.workloads):
        where = f"{origin}: workloads.{i}"
        d = normalize_workload(wl, accelerator, where)
        _check_model(d, where)
        workloads.append(d)
    seen: dict[str, int] = {}
    for i, d in enumerate(workloads):
        key = canonical_json(d)
        if key in seen:
            raise LlmsimError(f"{origin}: workloads.{i}: the same workload as workloads.{seen[key]}")
        seen[key] = i
    return SweepSpec(model.name, model.base, base_ref, model.seed, model.mode, model.samples, axes, workloads,
                     accelerator, origin, raw, text)


def _check_model(wl: dict[str, Any], where: str) -> None:
    from sim.config.models import load_model_spec

    try:
        spec = load_model_spec(wl["model"])
    except LlmsimError as exc:
        raise LlmsimError(f"{where}.model: {exc}") from None
    needed = ["prefill", "decode"] if wl["phase"] == "generate" else [wl["phase"]]
    for p in needed:
        if p not in spec.phases:
            raise LlmsimError(f"{where}.phase: {spec.name} has no {p} phase (it has {', '.join(spec.phases)})")
    if wl["tp"] > 1 and not (spec.tp_shard_keys or spec.tp_surgery):
        raise LlmsimError(f"{where}.tp: {spec.name} declares no tensor-parallel sharding (expected 1)")


def _check_axes(base: str, axes: list[Axis], origin: str) -> str:
    """Load the base system with the first value of every axis (naming the axis that fails), then
    with each value of each axis (the others at their first value). Returns the accelerator kind."""
    from sim.systems.config import load_system

    try:
        load_system(base)
    except LlmsimError as exc:
        raise LlmsimError(f"{origin}: base: {exc}") from None
    firsts: dict[str, Any] = {}
    for a in axes:
        firsts.update(a.assign(a.first()))
    try:
        sysconf = load_system(base, override_strings(firsts))
    except LlmsimError as exc:
        for a in axes:
            try:
                load_system(base, override_strings(a.assign(a.first())))
            except LlmsimError as one:
                raise LlmsimError(f"{origin}: axes.{a.path}: {one}") from None
        raise LlmsimError(f"{origin}: axes: the axes' first values together fail: {exc}") from None
    for a in axes:
        for v in a.check_values()[1:]:
            try:
                load_system(base, override_strings({**firsts, **a.assign(v)}))
            except LlmsimError as exc:
                raise LlmsimError(f"{origin}: axes.{a.path}: value {list(v) if a.linked else v!r}: {exc}") from None
    return sysconf.accelerator


# ------------------------------------------------------------------------------------ expansion
def configurations(spec: SweepSpec) -> list[dict[str, Any]]:
    """The system configurations (axis path -> value), in a fixed order: grid mode, the cartesian
    product with the last axis varying fastest; random mode, ``samples`` distinct draws from a
    generator seeded with the spec's seed (fewer when the axes hold fewer distinct points)."""
    def config(values) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a, v in zip(spec.axes, values):
            out.update(a.assign(v))
        return out

    if spec.mode == "grid":
        return [config(combo) for combo in itertools.product(*(a.values for a in spec.axes))]
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    out: list[dict[str, Any]] = []
    keys: set[str] = set()
    for _ in range(spec.samples * 50):
        if len(out) == spec.samples:
            break
        cfg = config([a.draw(rng) for a in spec.axes])
        key = canonical_json(cfg)
        if key not in keys:
            keys.add(key)
            out.append(cfg)
    return out


def expand_points(spec: SweepSpec | str | Path | dict) -> list[Point]:
    """Every point of the sweep: each configuration x each workload (workloads vary fastest)."""
    spec = load_spec(spec)
    points = []
    for cfg in configurations(spec):
        for wl in spec.workloads:
            points.append(Point(len(points), point_id(cfg, wl), cfg, wl, workload_label(wl)))
    return points
