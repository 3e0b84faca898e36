"""YAML loading with ``extends:`` inheritance, ``--set a.b.c=value`` overrides and typed validation.

Every failure becomes one :class:`~sim.errors.LlmsimError` line naming the file, the key path,
what was expected and what was found.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sim.errors import LlmsimError

M = TypeVar("M", bound=BaseModel)


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise LlmsimError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LlmsimError(f"{path}: YAML syntax error{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LlmsimError(f"{path}: cannot read file: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LlmsimError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over ``base``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Load a YAML mapping, resolving ``extends:`` (a path relative to the file) recursively."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, resolved))
        raise LlmsimError(f"{path}: extends: cycle in the inheritance chain ({cycle})")
    data = _read_mapping(path)
    parent_ref = data.pop("extends", None)
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        raise LlmsimError(f"{path}: extends: expected a file path string, found {parent_ref!r}")
    parent = (path.parent / parent_ref)
    if parent.suffix not in (".yaml", ".yml"):
        parent = parent.with_suffix(".yaml")
    if not parent.exists():
        raise LlmsimError(f"{path}: extends: parent file {parent_ref!r} not found (looked for {parent})")
    base = load_yaml(parent, (*_chain, resolved))
    return deep_merge(base, data)


def parse_overrides(items: Iterable[str], source: str = "--set") -> list[tuple[list[str], Any]]:
    """Parse ``a.b.c=value`` strings; the value is read as YAML (numbers, bools, lists)."""
    parsed = []
    for item in items:
        if "=" not in item:
            raise LlmsimError(f"{source}: expected key.path=value, found {item!r}")
        key, raw = item.split("=", 1)
        keys = [k for k in key.strip().split(".")]
        if not all(keys):
            raise LlmsimError(f"{source}: expected a dotted key path before '=', found {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parsed.append((keys, value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: Iterable[str], origin: str) -> dict[str, Any]:
    """Apply ``--set`` overrides to a loaded mapping. A path may index into lists
    (``on_chip.0.bw_gbps``); a path through a scalar, or a list index out of range, is an error."""
    out = copy.deepcopy(data)
    for keys, value in parse_overrides(overrides):
        node: Any = out
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            where = ".".join(keys[: depth + 1])
            if isinstance(node, list):
                if not key.isdigit() or int(key) >= len(node):
                    raise LlmsimError(
                        f"{origin}: --set {'.'.join(keys)}: {where} expected a list index 0..{len(node) - 1}"
                    )
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
                continue
            if not isinstance(node, dict):
                parent = ".".join(keys[:depth])
                raise LlmsimError(
                    f"{origin}: --set {'.'.join(keys)}: {parent} is a {type(node).__name__}, not a mapping"
                )
            if last:
                node[key] = value
            else:
                if node.get(key) is None:
                    node[key] = {}
                node = node[key]
    return out


def _describe_error(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    msg = err.get("msg", "invalid value")
    if kind == "extra_forbidden":
        return "unknown key (not part of the schema)"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else "invalid value"


def validate_into(model: type[M], data: dict[str, Any], origin: str | Path) -> M:
    """Validate ``data`` into ``model``; the first error becomes a one-line :class:`LlmsimError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # a misspelt key shows up as "unknown" and "missing": the unknown one names the cause
        err = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        found = ""
        if err.get("type") not in ("missing", "value_error"):  # a value error's message names the value
            found = f", found {err.get('input')!r}"
            if len(found) > 120:
                found = found[:117] + "..."
        extra = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise LlmsimError(f"{origin}: {loc}: {_describe_error(err)}{found}{extra}") from None


def load_config(path: str | Path, model: type[M], overrides: Iterable[str] | None = None) -> M:
    """Load a YAML file (``extends:`` resolved), apply ``--set`` overrides, validate into ``model``."""
    data = load_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    return validate_into(model, data, path)
