"""Trace files: versioned JSON (small traces) or Parquet (large ones), written atomically.

JSON: ``{"format": "llmsim-trace", "version": 1, "meta": {...}, "ops": [{...}, ...]}``.
Parquet: one row per op; list and dict fields as JSON strings; ``format``, ``version`` and
``meta`` in the file's key-value metadata under ``llmsim``. See docs/trace-format.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from sim.errors import LlmsimError
from sim.io import atomic_path, write_text_atomic
from sim.trace.schema import OP_CLASSES, TRACE_FORMAT, TRACE_VERSION, Op, Trace

_OP_FIELDS = {f.name: f for f in fields(Op)}
_REQUIRED = ("name", "op_class", "module", "layer", "phase", "flops")
_JSON_COLS = ("input_shapes", "input_dtypes", "output_shapes", "output_dtypes", "extra")
PARQUET_THRESHOLD_OPS = 20_000


def default_suffix(trace: Trace) -> str:
    return ".parquet" if len(trace.ops) > PARQUET_THRESHOLD_OPS else ".json"


def check_trace_path(path: str | Path) -> Path:
    """Fail before any work if ``path`` is not a .json / .parquet name in a writable place."""
    from sim.io import check_writable_dir

    path = Path(path)
    if path.suffix not in (".json", ".parquet"):
        raise LlmsimError(f"{path}: expected a .json or .parquet trace file name, found suffix {path.suffix!r}")
    if path.is_dir():
        raise LlmsimError(f"{path}: expected a trace file name, found a folder")
    check_writable_dir(path.parent)
    return path


def save_trace(trace: Trace, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix == ".parquet":
        _save_parquet(trace, path)
    elif path.suffix == ".json":
        doc = {"format": TRACE_FORMAT, "version": TRACE_VERSION, "meta": trace.meta,
               "ops": [op.to_dict() for op in trace.ops]}
        write_text_atomic(path, json.dumps(doc, separators=(",", ":")))
    else:
        raise LlmsimError(f"{path}: expected a .json or .parquet trace file name, found suffix {path.suffix!r}")
    return path


def _save_parquet(trace: Trace, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {name: [] for name in _OP_FIELDS}
    for op in trace.ops:
        d = op.to_dict()
        for name in _OP_FIELDS:
            v = d[name]
            cols[name].append(json.dumps(v) if name in _JSON_COLS else v)
    table = pa.table(cols)
    header = {"format": TRACE_FORMAT, "version": TRACE_VERSION, "meta": trace.meta}
    table = table.replace_schema_metadata({b"llmsim": json.dumps(header).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _check_header(path: Path, header: Any) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != TRACE_FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise LlmsimError(f"{path}: format: expected {TRACE_FORMAT!r}, found {found!r}")
    if header.get("version") != TRACE_VERSION:
        raise LlmsimError(f"{path}: version: expected {TRACE_VERSION}, found {header.get('version')!r}")
    meta = header.get("meta")
    if not isinstance(meta, dict):
        raise LlmsimError(f"{path}: meta: expected a mapping, found {type(meta).__name__}")
    return meta


_PHASES = ("prefill", "decode")
_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int64", "int32", "int16", "int8", "int4",
           "uint8", "bool")
_NUMBERS = ("flops", "bytes_weight", "bytes_activation", "bytes_kv_read", "bytes_kv_write")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bad(path: Path, where: str, expected: str, found: Any) -> LlmsimError:
    text = repr(found)
    return LlmsimError(f"{path}: {where}: expected {expected}, found {text[:80]}")


def _op_from_dict(path: Path, i: int, d: Any) -> Op:
    """Validate one op record field by field; the first problem is a one-line error."""
    at = f"ops[{i}]"
    if not isinstance(d, dict):
        raise _bad(path, at, "a mapping", type(d).__name__)
    for key in _REQUIRED:
        if key not in d:
            raise LlmsimError(f"{path}: {at}.{key}: required key is missing")
    unknown = set(d) - set(_OP_FIELDS)
    if unknown:
        raise LlmsimError(f"{path}: {at}.{sorted(unknown)[0]}: unknown key (not part of trace version {TRACE_VERSION})")
    for key in ("name", "module"):
        if not isinstance(d[key], str):
            raise _bad(path, f"{at}.{key}", "a string", d[key])
    if d["op_class"] not in OP_CLASSES:
        raise _bad(path, f"{at}.op_class", f"one of {', '.join(OP_CLASSES)}", d["op_class"])
    if d["phase"] not in _PHASES:
        raise _bad(path, f"{at}.phase", "prefill or decode", d["phase"])
    if d["layer"] is not None and not (_is_int(d["layer"]) and d["layer"] >= 0):
        raise _bad(path, f"{at}.layer", "a non-negative integer or null", d["layer"])
    for key in _NUMBERS:
        v = d.get(key, 0.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
            raise _bad(path, f"{at}.{key}", "a finite non-negative number", v)
    if not (_is_int(d.get("repeat", 1)) and d.get("repeat", 1) >= 1):
        raise _bad(path, f"{at}.repeat", "a positive integer", d.get("repeat"))
    if not (_is_int(d.get("step", 0)) and d.get("step", 0) >= 0):
        raise _bad(path, f"{at}.step", "a non-negative integer", d.get("step"))
    if d.get("compute_dtype", "fp16") not in _DTYPES:
        raise _bad(path, f"{at}.compute_dtype", f"one of {', '.join(_DTYPES)}", d.get("compute_dtype"))
    for key in ("input_shapes", "output_shapes"):
        v = d.get(key, [])
        if not (isinstance(v, list) and all(isinstance(x, list) and all(_is_int(n) for n in x) for x in v)):
            raise _bad(path, f"{at}.{key}", "a list of integer lists", v)
    for key in ("input_dtypes", "output_dtypes"):
        v = d.get(key, [])
        if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise _bad(path, f"{at}.{key}", "a list of dtype names", v)
    for key in ("weight_bits", "kv_bits"):
        v = d.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v <= 64):
            raise _bad(path, f"{at}.{key}", "null or a bit width in (0, 64]", v)
    extra = d.get("extra", {})
    if not isinstance(extra, dict):
        raise _bad(path, f"{at}.extra", "a mapping", extra)
    comm = extra.get("comm_bytes", 0.0)
    if not isinstance(comm, (int, float)) or isinstance(comm, bool) or not math.isfinite(comm) or comm < 0:
        raise _bad(path, f"{at}.extra.comm_bytes", "a finite non-negative number", comm)
    return Op(**d)


def load_trace(path: str | Path) -> Trace:
    path = Path(path)
    if not path.exists():
        raise LlmsimError(f"{path}: trace file not found")
    if path.suffix == ".parquet":
        return _load_parquet(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlmsimError(
            f"{path}: not a valid trace file: JSON is truncated or corrupt at line {exc.lineno}, column {exc.colno}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LlmsimError(f"{path}: cannot read trace file: {exc}") from None
    meta = _check_header(path, doc)
    ops = doc.get("ops")
    if not isinstance(ops, list):
        raise LlmsimError(f"{path}: ops: expected a list, found {type(ops).__name__}")
    if not ops:
        raise LlmsimError(f"{path}: ops: expected at least one op, found an empty list")
    return Trace(meta=meta, ops=[_op_from_dict(path, i, d) for i, d in enumerate(ops)])


def _load_parquet(path: Path) -> Trace:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated files
        raise LlmsimError(f"{path}: not a valid trace file: Parquet is truncated or corrupt ({exc})") from None
    raw = (table.schema.metadata or {}).get(b"llmsim")
    if raw is None:
        raise LlmsimError(f"{path}: format: expected {TRACE_FORMAT!r} metadata, found none")
    meta = _check_header(path, json.loads(raw))
    rows = table.to_pylist()
    if not rows:
        raise LlmsimError(f"{path}: ops: expected at least one op, found none")
    ops = []
    for i, row in enumerate(rows):
        for col in _JSON_COLS:
            if isinstance(row.get(col), str):
                row[col] = json.loads(row[col])
        ops.append(_op_from_dict(path, i, row))
    return Trace(meta=meta, ops=ops)
