"""Operator traces: the schema and file format (torch-free), and capture from PyTorch (lazy)."""

from sim.trace.schema import Op, Trace, ROLES, OP_CLASSES, TRACE_FORMAT, TRACE_VERSION
from sim.trace.fileio import load_trace, save_trace


def capture(*args, **kwargs):
    """Trace a zoo model; see :func:`sim.trace.tracer.capture` (imports torch on first use)."""
    from sim.trace.tracer import capture as _capture

    return _capture(*args, **kwargs)


__all__ = ["Op", "Trace", "ROLES", "OP_CLASSES", "TRACE_FORMAT", "TRACE_VERSION", "load_trace", "save_trace",
           "capture"]
