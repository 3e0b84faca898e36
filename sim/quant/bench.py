"""Quantization speed: ``python -m sim.quant.bench [--weights 1e8] [--formats bitmod:4,int:4]``.

Streams layers of standard-normal float32 weights (4096 x 4096 by default), one at a time, through
:func:`sim.quant.quantize` and prints seconds per format with the extrapolation to 10^9 weights.
Weight generation is excluded from the timing; the numba compile is done once before timing.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.quant.quantize import quantize

DEFAULT = ("int:3,int:4,int:8,fp:3,fp:4,flint:4,ant:3,ant:4,olive:4,bitmod:3,bitmod:4,"
           "bitmod-er:4,bitmod-ea:4,mxfp:4,mxint:8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=float, default=1e8, help="weights per format (default 1e8)")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--formats", default=DEFAULT, help="comma list of format:bits")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    pairs = [(f, int(b)) for f, b in (p.split(":") for p in a.formats.split(","))]
    per_layer = a.rows * a.cols
    n_layers = max(1, round(a.weights / per_layer))
    warm = np.random.default_rng(1).standard_normal((4, 300)).astype(np.float32)
    for f, b in pairs:
        quantize(warm, f, b)  # compile / load the numba cache outside the timing
    print(f"{n_layers} layers of {a.rows}x{a.cols} float32 N(0,1) = {n_layers * per_layer:.3g} weights per format")
    print(f"{'format':<12}{'bits':>5}{'s':>9}{'ns/weight':>11}{'s per 1e9':>11}{'mse':>12}")
    for f, b in pairs:
        rng = np.random.default_rng(a.seed)
        spent = 0.0
        sq = 0.0
        for _ in range(n_layers):
            w = rng.standard_normal((a.rows, a.cols), dtype=np.float32)
            t0 = time.perf_counter()
            r = quantize(w, f, b)
            spent += time.perf_counter() - t0
            sq += r.mse * w.size
        n = n_layers * per_layer
        print(f"{f:<12}{b:>5}{spent:>9.2f}{spent / n * 1e9:>11.2f}{spent / n * 1e9:>11.1f}{sq / n:>12.4g}")


if __name__ == "__main__":
    main()
