"""Shared fixtures for the test suite.

``traced`` is a session-wide memo of :func:`sim.trace.tracer.capture`: several tests read the same
trace, and a meta trace of a full 7B/8B model costs a second or two to build. Treat the returned
:class:`~sim.trace.schema.Trace` as read-only: it is shared between tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) from another directory
    sys.path.insert(0, str(ROOT))


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


@pytest.fixture(scope="session")
def traced() -> Callable[..., Any]:
    """``traced(model, **capture_kwargs)`` -> Trace, computed once per distinct argument set."""
    from sim.trace.tracer import capture

    cache: dict[Any, Any] = {}

    def get(model: str, **kw: Any):
        key = (model, _freeze(kw))
        if key not in cache:
            cache[key] = capture(model, **kw)
        return cache[key]

    return get
