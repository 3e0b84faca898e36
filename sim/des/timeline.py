"""Export units' busy slices as a Chrome trace-event JSON timeline.

Format: the Trace Event Format of chrome://tracing (Catapult), also read by Perfetto
(https://ui.perfetto.dev). Definition: "Trace Event Format", Google document
https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU
(linked from Catapult's docs/trace-event-format.md,
https://android.googlesource.com/platform/external/chromium-trace/+/be1f909/catapult/docs/trace-event-format.md).
What we use of it:

* JSON object form: ``{"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}``;
  ``displayTimeUnit`` ("ms" or "ns") only changes how the viewer prints times; extra top-level
  keys such as ``otherData`` are kept as trace metadata.
* Complete events, ``"ph": "X"``: ``name``, ``cat``, ``ph``, ``ts`` and ``dur`` (both in
  microseconds; fractions allowed), ``pid``, ``tid``, optional ``args`` (an object shown when
  the slice is selected). One X event = one :class:`~sim.des.core.Slice`.
* Metadata events, ``"ph": "M"``: ``process_name`` (``pid``, ``args.name``) and
  ``thread_name`` (``pid``, ``tid``, ``args.name``) label the tracks, and
  ``process_sort_index`` / ``thread_sort_index`` (``args.sort_index``) keep them in the
  order the units were created.

Mapping: one pid per unit group (1, 2, ... in order of first appearance), one tid per unit
(per lane for units of capacity > 1; tids are unique across the whole trace). X events on one
track never overlap, also after conversion to float microseconds (see :func:`_dur_us`), so
viewers nest nothing by accident.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from sim.des.clock import TimeBase
from sim.des.core import Simulator, Unit, all_units
from sim.io import write_text_atomic

DEFAULT_GROUP = "units"


def _dur_us(ts: float, end_us: float) -> float:
    """``end_us - ts``, nudged down so that ``ts + dur <= end_us`` holds in floats too.

    The viewer recomputes the end as ``ts + dur``; without the nudge that sum can round one ulp
    past the next slice's ``ts`` and draw two back-to-back slices as overlapping/nested.
    """
    dur = end_us - ts
    while dur > 0.0 and ts + dur > end_us:
        dur = math.nextafter(dur, 0.0)
    return dur


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def chrome_trace(
    units: Iterable[Unit] | Simulator,
    timebase: TimeBase | None = None,
    *,
    display_time_unit: str = "ns",
    other_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The trace as a JSON-ready dict (see the module docstring for the layout).

    ``timebase``: converts ticks to microseconds; defaults to the simulator's.
    """
    if timebase is None and isinstance(units, Simulator):
        timebase = units.timebase
    if timebase is None:
        raise ValueError("chrome_trace needs a TimeBase to convert ticks to microseconds")
    if display_time_unit not in ("ms", "ns"):
        raise ValueError(f"displayTimeUnit must be 'ms' or 'ns', got {display_time_unit!r}")
    us = timebase.microseconds

    meta: list[dict[str, Any]] = []
    slices: list[dict[str, Any]] = []
    pids: dict[str, int] = {}
    next_tid = 1
    for unit in all_units(units):
        group = unit.group or DEFAULT_GROUP
        pid = pids.get(group)
        if pid is None:
            pid = pids[group] = len(pids) + 1
            meta.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": group}})
            meta.append({"name": "process_sort_index", "ph": "M", "pid": pid,
                         "args": {"sort_index": pid}})
        for lane in range(unit.capacity):
            tid = next_tid
            next_tid += 1
            track = unit.name if unit.capacity == 1 else f"{unit.name}[{lane}]"
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"name": track}})
            meta.append({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                         "args": {"sort_index": tid}})
            for s in unit.lane_slices(lane):
                ts = us(s.start)
                ev: dict[str, Any] = {
                    "name": s.label, "cat": group, "ph": "X",
                    "ts": ts, "dur": _dur_us(ts, us(s.end)), "pid": pid, "tid": tid,
                }
                if s.args:
                    ev["args"] = dict(s.args)
                slices.append(ev)

    other = {
        "tick_hz": str(timebase.tick_hz),
        "clock_domains_hz": {d: str(f) for d, f in timebase.freqs.items()},
        "ticks_per_cycle": dict(timebase.periods),
    }
    if other_data:
        other.update(other_data)
    return {"traceEvents": meta + slices, "displayTimeUnit": display_time_unit, "otherData": other}


def write_chrome_trace(
    path: str | os.PathLike,
    units: Iterable[Unit] | Simulator,
    timebase: TimeBase | None = None,
    **kwargs: Any,
) -> Path:
    """Write :func:`chrome_trace` to ``path`` atomically (temp file + rename); returns the path."""
    trace = chrome_trace(units, timebase, **kwargs)
    text = json.dumps(trace, separators=(",", ":"), default=_json_default, allow_nan=False)
    write_text_atomic(path, text)
    return Path(path)
