"""Where bundled configs live: ``hw_configs/`` and ``workloads/`` beside the ``sim`` package.

``LLMSIM_ROOT`` overrides the project root (for an installed copy outside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path

from sim.errors import LlmsimError


def project_root() -> Path:
    env = os.environ.get("LLMSIM_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent


def find_bundled(folder: str, name: str, what: str, exclude: tuple[str, ...] = ()) -> Path:
    """Resolve ``name`` (a path; a bundled name searched under ``folder``, skipping its subfolders
    ``exclude``; or ``sub/name`` inside ``folder``) to a YAML file."""
    candidate = Path(name)
    base = project_root() / folder
    if candidate.suffix not in (".yaml", ".yml") and "/" in name and not candidate.exists() \
            and (base / f"{name}.yaml").exists():
        return base / f"{name}.yaml"      # a qualified bundled name, e.g. systems/bitmod
    if candidate.suffix in (".yaml", ".yml") or os.sep in name:
        if not candidate.exists():
            raise LlmsimError(f"{name}: file not found (expected a {what} YAML file)")
        return candidate
    matches = sorted(p for p in base.rglob(f"{name}.yaml")
                     if not any(p.relative_to(base).parts[0] == x for x in exclude)) if base.exists() else []
    if not matches:
        known = sorted(p.stem for p in base.rglob("*.yaml")) if base.exists() else []
        raise LlmsimError(
            f"{name}: no bundled {what} of that name under {folder}/ "
            f"(expected one of: {', '.join(known) or 'none'}, or a path to a .yaml file)"
        )
    if len(matches) > 1:
        raise LlmsimError(f"{name}: ambiguous {what} name, found {', '.join(map(str, matches))}")
    return matches[0]
