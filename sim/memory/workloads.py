"""Request streams for the memory engine: streaming, strided, random and mixed traffic.

Each generator returns (arrival cycles, is_write, byte addresses), sorted by arrival, seeded.
"""

from __future__ import annotations

import numpy as np

from sim.memory.address import AddressMapping

PATTERNS = ("stream", "strided", "random", "hotspot")


def requests(mapping: AddressMapping, pattern: str, n: int, seed: int = 0, write_fraction: float = 0.0,
             burst_bytes: int = 64, stride_bursts: int = 17, mean_gap: float = 0.0):
    """``n`` requests of one burst each. ``mean_gap`` > 0 spaces arrivals (geometric gaps, in cycles);
    0 makes them all arrive at cycle 0 (a saturating stream)."""
    rng = np.random.default_rng(seed)
    bursts = mapping.capacity_bytes // burst_bytes
    if pattern == "stream":
        idx = np.arange(n, dtype=np.int64)
    elif pattern == "strided":
        idx = (np.arange(n, dtype=np.int64) * stride_bursts) % bursts
    elif pattern == "random":
        idx = rng.integers(0, bursts, n, dtype=np.int64)
    elif pattern == "hotspot":  # a few rows, hit over and over: row hits and conflicts in a few banks
        hot = rng.integers(0, bursts, 64, dtype=np.int64)
        idx = hot[rng.integers(0, 64, n)] + rng.integers(0, 4, n)
        idx %= bursts
    else:
        raise ValueError(f"unknown pattern {pattern!r} (expected one of {', '.join(PATTERNS)})")
    if mean_gap > 0:
        arrive = np.cumsum(rng.geometric(1.0 / (1.0 + mean_gap), n) - 1).astype(np.int64)
    else:
        arrive = np.zeros(n, np.int64)
    is_write = rng.random(n) < write_fraction
    return arrive, is_write, idx * burst_bytes
