"""Roofline analysis of any trace on any device config.

``analyze(trace, hw)`` returns a :class:`RooflineReport` (a per-op pandas table plus totals);
``single_gemm`` / ``single_attention`` answer quick one-op questions; ``write_report`` writes the
CSV / Parquet tables, the Markdown summary and the plots.
"""

from sim.roofline.ceilings import Ceilings, MemoryLevel


def __getattr__(name: str):  # lazy: pandas and matplotlib load only when used
    if name in ("analyze", "RooflineReport", "analyze_many"):
        from sim.roofline import analyzer as _a

        return getattr(_a, name)
    if name in ("single_gemm", "single_attention"):
        from sim.roofline import single as _s

        return getattr(_s, name)
    if name == "write_report":
        from sim.roofline.report import write_report

        return write_report
    raise AttributeError(name)


__all__ = ["Ceilings", "MemoryLevel", "analyze", "analyze_many", "RooflineReport", "single_gemm",
           "single_attention", "write_report"]
