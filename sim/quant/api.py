"""The work behind ``llmsim quantize``: read a .npy weight, quantize it, write, return the JSON dict."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sim.errors import LlmsimError
from sim.io import atomic_path
from sim.quant.quantize import get_spec, quantize


def _load(input_path: str | os.PathLike) -> np.ndarray:
    p = Path(input_path)
    if not p.is_file():
        raise LlmsimError(f"--input: {p}: file not found")
    try:
        return np.load(p, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LlmsimError(f"--input: {p}: not a readable .npy array ({msg})") from None


def quantize_cli(format: str, bits: int, group_size: int | None, input_path: str | os.PathLike,
                 output_path: str | os.PathLike | None = None) -> dict:
    """Quantize the 2-D ``.npy`` weight at ``input_path``; return the ``--json`` dict.

    ``group_size=None``: the format's default (128; 32 for ``mxfp``/``mxint``). With
    ``output_path`` the dequantized weights (float32, the input's shape) are written there as .npy.
    Bad input raises :class:`~sim.errors.LlmsimError` with a one-line message naming the flag.
    """
    spec = get_spec(format, bits)  # a bad pair fails before the file is read
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                   or group_size < 1):
        raise LlmsimError(f"--group-size: expected a positive integer, found {group_size!r}")
    w = _load(input_path)
    res = quantize(w, format, bits, group_size)
    out = None
    if output_path is not None:
        out = Path(output_path)
        if out.suffix != ".npy":
            raise LlmsimError(f"--output: {out}: expected a .npy path")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, res.dequantized)
    x = np.asarray(w, dtype=np.float64)
    power = float(np.mean(x * x))
    return {
        "format": format,
        "bits": bits,
        "group_size": res.group_size,
        "shape": [int(s) for s in w.shape],
        "elements": int(w.size),
        "groups": res.groups,
        "mse": res.mse,
        "rel_mse": res.mse / power if power > 0 else 0.0,
        "dtype_counts": res.dtype_counts,
        "bits_per_weight": res.bits_per_weight,
        "description": spec.description,
        "output": str(out) if out is not None else None,
    }
