"""DRAM standards as data: levels, commands and a timing-constraint table, bound to a preset.

A standard file (``sim/memory/standards/<NAME>.yaml``) declares

* ``levels``: the hierarchy top-down (channel ... bank, row, column), each with a two-letter code
  used by address-mapping strings;
* ``commands``: each with its scope (the level it addresses) and what it does (opens or closes a
  row, reads, writes, refreshes);
* ``timings``: the timing parameters (in memory-clock cycles) a preset must give, and
  ``derived``: formulas for the ones a preset may leave out (the only place derivations live);
* ``constraints``: rows of (level, preceding commands, following commands, latency formula,
  window, sibling). A constraint at level L binds two commands addressed to the same L node (or,
  with ``sibling``, to different L nodes under the same parent); with ``window`` k, a following
  command must wait ``latency`` after the k-th most recent preceding one (tFAW: k = 4).

A :class:`DramSpec` is a standard with a preset's organisation and timing values resolved.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from sim.errors import LlmsimError

STANDARDS_DIR = Path(__file__).with_name("standards")


@dataclass(frozen=True)
class Level:
    name: str
    code: str


@dataclass(frozen=True)
class Command:
    name: str
    scope: int             # index of the level it addresses
    opens: bool = False
    closes: bool = False
    access: str | None = None  # "read" / "write"
    refresh: bool = False
    pim: str | None = None     # PIM role: "open" (G_ACT), "close", "compute", "result", "load", "header"


@dataclass(frozen=True)
class ConstraintRule:
    level: int
    prev: tuple[int, ...]
    next: tuple[int, ...]
    latency: str           # a formula over timing names
    window: int = 1
    sibling: bool = False


@dataclass(frozen=True)
class Standard:
    name: str
    description: str
    levels: tuple[Level, ...]
    commands: tuple[Command, ...]
    timings: dict[str, str]
    derived: dict[str, str]
    rules: tuple[ConstraintRule, ...]
    data_bus_level: int = 0
    command_bus: tuple[int, ...] = ()   # per command: the index of the command bus it uses
    modes: tuple[str, ...] = ()         # rule sets a preset chooses between (PIM: single / dual)
    mode_rules: dict[str, tuple[ConstraintRule, ...]] = field(default_factory=dict)

    def level_index(self, name: str) -> int:
        for i, lvl in enumerate(self.levels):
            if lvl.name == name:
                return i
        raise KeyError(name)

    def command_index(self, name: str) -> int:
        for i, c in enumerate(self.commands):
            if c.name == name:
                return i
        raise KeyError(name)

    @property
    def bank_level(self) -> int:
        return self.level_index("bank")


# ------------------------------------------------------------------------------- formulas
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv}
_FUNCS = {"max": max, "min": min}


def evaluate(expr: str, values: dict[str, int]) -> int:
    """Evaluate a timing formula (names, integers, + - * //, max, min) without ``eval``."""

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise KeyError(node.id)
            return values[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS:
            return _FUNCS[node.func.id](*(ev(a) for a in node.args))
        raise ValueError(f"unsupported formula element {ast.dump(node)}")

    return int(ev(ast.parse(str(expr), mode="eval")))


def formula_names(expr: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(str(expr), mode="eval")) if isinstance(n, ast.Name)} - set(_FUNCS)


# ------------------------------------------------------------------------------- loading
def available_standards() -> list[str]:
    return sorted(p.stem for p in STANDARDS_DIR.glob("*.yaml"))


def _read_standard(name: str, chain: tuple[str, ...] = ()) -> tuple[Path, dict[str, Any]]:
    """A standard's document with ``extends:`` merged: the child adds commands, buses, timings,
    derived formulas and constraints to its parent's (levels come from the parent)."""
    path = STANDARDS_DIR / f"{name}.yaml"
    if not path.exists():
        raise LlmsimError(f"standard: unknown DRAM standard {name!r} (expected one of: {', '.join(available_standards())})")
    if name in chain:
        raise LlmsimError(f"{path}: extends: cycle {' -> '.join((*chain, name))}")
    doc = yaml.safe_load(path.read_text())
    parent = doc.pop("extends", None)
    if parent is None:
        return path, doc
    _, base = _read_standard(parent, (*chain, name))
    merged = dict(base)
    merged.update({k: v for k, v in doc.items() if k not in ("commands", "command_buses", "timings", "derived",
                                                              "constraints")})
    merged["commands"] = {**base["commands"], **doc.get("commands", {})}
    buses = {k: list(v) for k, v in base.get("command_buses", {}).items()}
    for bus, members in doc.get("command_buses", {}).items():
        buses.setdefault(bus, []).extend(members)
    merged["command_buses"] = buses
    merged["timings"] = {**base["timings"], **doc.get("timings", {})}
    merged["derived"] = {**base.get("derived", {}), **doc.get("derived", {})}
    merged["constraints"] = [*base["constraints"], *doc.get("constraints", [])]
    return path, merged


@lru_cache(maxsize=None)
def load_standard(name: str) -> Standard:
    path, doc = _read_standard(name)
    levels = tuple(Level(l["name"], l["code"]) for l in doc["levels"])
    names = [l.name for l in levels]
    cmds = []
    for cname, c in doc["commands"].items():
        cmds.append(Command(cname, names.index(c["scope"]), bool(c.get("opens")), bool(c.get("closes")),
                            c.get("access"), bool(c.get("refresh")), c.get("pim")))
    cnames = [c.name for c in cmds]
    timings = dict(doc["timings"])
    buses = doc.get("command_buses") or {"command": cnames}
    bus_of = {}
    for b, (bus, members) in enumerate(buses.items()):
        for c in members:
            bus_of[cnames.index(c)] = b
    if sorted(bus_of) != list(range(len(cnames))):
        raise LlmsimError(f"{path}: command_buses: every command must use exactly one bus")
    def parse_rules(rows: list[dict], where: str) -> tuple[ConstraintRule, ...]:
        out = []
        for i, r in enumerate(rows):
            unknown = formula_names(r["latency"]) - set(timings)
            if unknown:
                raise LlmsimError(f"{path}: {where}[{i}].latency: unknown timing {sorted(unknown)[0]!r}")
            level = names.index(r["level"])
            for c in (*r["prev"], *r["next"]):
                if cmds[cnames.index(c)].scope < level:
                    raise LlmsimError(f"{path}: {where}[{i}]: {c} addresses the {names[cmds[cnames.index(c)].scope]} "
                                      f"level, above the rule's level {r['level']}")
            out.append(ConstraintRule(level=level, prev=tuple(cnames.index(c) for c in r["prev"]),
                                      next=tuple(cnames.index(c) for c in r["next"]), latency=str(r["latency"]),
                                      window=int(r.get("window", 1)), sibling=bool(r.get("sibling", False))))
        return tuple(out)

    rules = parse_rules(doc["constraints"], "constraints")
    modes = doc.get("mode_constraints", {})
    mode_rules = {m: parse_rules(rows, f"mode_constraints.{m}") for m, rows in modes.items()}
    return Standard(doc["name"], doc.get("description", ""), levels, tuple(cmds), timings,
                    dict(doc.get("derived", {})), tuple(rules), names.index(doc.get("data_bus_level", "channel")),
                    tuple(bus_of[i] for i in range(len(cnames))), tuple(mode_rules), mode_rules)


# ------------------------------------------------------------------------------- binding
@dataclass(frozen=True)
class Constraint:
    """One resolved timing constraint (latency in cycles)."""

    level: int
    prev: int
    next: int
    latency: int
    window: int
    sibling: bool
    rule: int              # index of the standard's rule it came from

    def describe(self, spec: "DramSpec") -> str:
        s = spec.standard
        kind = "sibling " if self.sibling else ""
        win = f", window {self.window}" if self.window > 1 else ""
        return (f"{s.commands[self.prev].name} -> {s.commands[self.next].name} at {kind}{s.levels[self.level].name}: "
                f"{s.rules[self.rule].latency} = {self.latency}{win}")


@dataclass(frozen=True)
class DramSpec:
    standard: Standard
    counts: tuple[int, ...]            # nodes per parent at each level (channel count first)
    timing: dict[str, int]
    timing_origin: dict[str, str]      # "given" or "derived: <formula>"
    constraints: tuple[Constraint, ...] = field(default=())
    mode: str | None = None            # the rule set chosen (PIM: "single" or "dual" row buffer)

    @property
    def shared_row_buffer(self) -> bool:
        """Single-row-buffer PIM: PIM and normal rows share each bank's row buffer (blocked mode)."""
        return self.mode == "single"

    def t(self, name: str) -> int:
        return self.timing[name]


def resolve_timings(standard: Standard, given: dict[str, int],
                    counts: dict[str, int] | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """Given timings as given; the missing ones from the standard's ``derived`` formulas (which
    may use level counts). Raises ``KeyError`` naming a timing neither given nor derivable."""
    values = {**(counts or {}), **given}
    origin = {k: "given" for k in given}
    pending = [k for k in standard.timings if k not in values]
    progress = True
    while pending and progress:
        progress = False
        for k in list(pending):
            expr = standard.derived.get(k)
            if expr is not None and formula_names(expr) <= set(values):
                values[k] = evaluate(expr, values)
                origin[k] = f"derived: {expr}"
                pending.remove(k)
                progress = True
    if pending:
        raise KeyError(pending[0])
    return {k: values[k] for k in standard.timings}, origin


def bind(standard: Standard, counts: dict[str, int], given: dict[str, int], mode: str | None = None) -> DramSpec:
    """Resolve timings and expand the rules (and, for a standard with modes, the chosen mode's rules,
    numbered after the common ones) into constraints in cycles."""
    timing, origin = resolve_timings(standard, given, counts)
    if standard.modes and mode not in standard.modes:
        raise LlmsimError(f"{standard.name}: mode: expected one of {', '.join(standard.modes)}, found {mode!r}")
    if mode is not None and mode != "" and mode not in standard.mode_rules:
        raise LlmsimError(f"{standard.name}: mode: the standard has no mode {mode!r}")
    all_rules = standard.rules + (standard.mode_rules[mode] if mode else ())
    if mode:
        standard = dataclasses.replace(standard, rules=all_rules)
    constraints = []
    for i, r in enumerate(standard.rules):
        lat = evaluate(r.latency, timing)
        for p in r.prev:
            for n in r.next:
                constraints.append(Constraint(r.level, p, n, lat, r.window, r.sibling, i))
    return DramSpec(standard, tuple(counts[l.name] for l in standard.levels), timing, origin, tuple(constraints),
                    mode)


def dominated_rules(spec: DramSpec) -> dict[int, str]:
    """Rules that can never be the binding constraint, with the reason.

    A rule is dominated when, for each of its (preceding, following) pairs, another rule binds the
    same pair at the same or a broader level with at least its latency (a sibling rule is covered by
    a non-sibling rule one level up), or it asks 1 cycle between commands of one command bus (which
    carries one command per cycle anyway); a window-k rule is dominated when k times the smallest such
    spacing already reaches its latency (tFAW against 4 x tRRD). Shortening a dominated rule by one
    cycle changes nothing an engine can do, so the mutation test skips exactly these.
    """
    out: dict[int, str] = {}
    rules = spec.standard.rules
    by_pair: dict[tuple[int, int], list[Constraint]] = {}
    for c in spec.constraints:
        by_pair.setdefault((c.prev, c.next), []).append(c)
    def binds_superset(o: Constraint, c: Constraint) -> bool:
        """o binds every pair c binds: o's level is broader, or only single-node levels lie between."""
        reach = c.level - 1 if c.sibling else c.level
        return o.level <= reach or all(spec.counts[lv] == 1 for lv in range(reach + 1, o.level + 1))

    for r, rule in enumerate(rules):
        reasons = []
        for c in (c for c in spec.constraints if c.rule == r):
            bus = spec.standard.command_bus
            if c.window == 1 and c.latency <= 1 and bus and bus[c.prev] == bus[c.next]:
                reasons.append("one command per command bus per cycle")
                continue
            covering = [
                o for o in by_pair[(c.prev, c.next)]
                if o.rule != r and o.window == 1 and not o.sibling and binds_superset(o, c)
            ]
            if c.window == 1:
                best = max(covering, key=lambda o: o.latency, default=None)
                if best is None or best.latency < c.latency:
                    break
                reasons.append(f"{rules[best.rule].latency} at {spec.standard.levels[best.level].name}")
            else:
                best = max(covering, key=lambda o: o.latency, default=None)
                if best is None or c.window * best.latency < c.latency:
                    break
                reasons.append(f"{c.window} x {rules[best.rule].latency}")
        else:
            out[r] = "covered by " + ", ".join(sorted(set(reasons)))
    return out
