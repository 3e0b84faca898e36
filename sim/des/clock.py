"""Integer time base shared by several clock domains.

Why: an NPU core at 1 GHz, an interconnect at 1.6 GHz and an HBM bus at 3.2 GHz have
periods (1 ns, 0.625 ns, 0.3125 ns) that no float time keeps exact; summing float periods
drifts, and two events that should coincide on a shared edge end up a few ulps apart, so
their order becomes arbitrary. Instead, simulated time is an integer count of *ticks*, with
the tick chosen as ``1 / lcm(frequencies)`` seconds: then every domain's period is a whole
number of ticks, every clock edge of every domain lies on a tick, and all time arithmetic is
exact integer arithmetic (Python ints do not overflow).

Frequencies are taken as exact rationals (:class:`fractions.Fraction`). A float is read as
the shortest decimal that prints as it (``1.6e9`` -> 1600000000, ``933.33e6`` -> 933330000),
not as its binary expansion; a frequency such as 1 GHz / 3 should be given exactly, as
``Fraction(10**9, 3)`` or the string ``"1000000000/3"``.

All clock domains have an edge at tick 0 (their edges are the multiples of their period).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Mapping, Union

FreqLike = Union[int, float, str, Fraction]

#: Tick rates above this (ticks per second, i.e. a tick under 1 fs) are refused: they come from
#: frequencies whose ratio is not a small rational (usually a float such as 1e9/3) and would
#: make every time value huge for no modelling benefit.
MAX_TICK_HZ = 10**15


def _as_fraction(domain: str, freq: FreqLike) -> Fraction:
    """Exact positive frequency in Hz from an int, float, str or Fraction."""
    if isinstance(freq, bool):
        raise TypeError(f"clock domain {domain!r}: frequency must be a number, got {freq!r}")
    try:
        if isinstance(freq, (int, Fraction)):
            q = Fraction(freq)
        elif isinstance(freq, float):  # numpy.float64 too (a float subclass)
            if not math.isfinite(freq):
                raise ValueError
            q = Fraction(repr(float(freq)))  # shortest round-tripping decimal, not binary expansion
        elif isinstance(freq, str):
            q = Fraction(freq.strip())
        else:
            q = Fraction(operator.index(freq))  # numpy integers
    except (ValueError, TypeError, ZeroDivisionError):
        raise ValueError(
            f"clock domain {domain!r}: frequency {freq!r} is not a finite number of Hz"
        ) from None
    if q <= 0:
        raise ValueError(f"clock domain {domain!r}: frequency must be > 0 Hz, got {freq!r}")
    return q


@dataclass(frozen=True, eq=False)
class TimeBase:
    """Ticks <-> cycles <-> seconds for a fixed set of clock domains.

    ``tick_hz``: ticks per second (exact; an int in practice). ``periods``: ticks per cycle of
    each domain (ints). Build one with :meth:`from_freqs`.
    """

    tick_hz: Fraction
    periods: Mapping[str, int]
    freqs: Mapping[str, Fraction] = field(repr=False)

    @classmethod
    def from_freqs(cls, freqs: Mapping[str, FreqLike], *, max_tick_hz: int = MAX_TICK_HZ) -> "TimeBase":
        """Time base whose tick is 1 / lcm(freqs) s.

        ``freqs``: domain name -> frequency in Hz. The lcm of rationals n_i/d_i (each in lowest
        terms) is lcm(n_i) / gcd(d_i): the smallest rate that is an integer multiple of every
        frequency. Raises ValueError if that rate exceeds ``max_tick_hz`` ticks/s.
        """
        if not freqs:
            raise ValueError("TimeBase needs at least one clock domain")
        exact = {str(d): _as_fraction(str(d), f) for d, f in freqs.items()}
        num_lcm = math.lcm(*(q.numerator for q in exact.values()))
        den_gcd = math.gcd(*(q.denominator for q in exact.values()))
        tick_hz = Fraction(num_lcm, den_gcd)
        if tick_hz > max_tick_hz:
            listing = ", ".join(f"{d}={f}" for d, f in exact.items())
            raise ValueError(
                f"clock domains ({listing} Hz) need a tick rate of {tick_hz} ticks/s (their lcm), "
                f"above the limit of {max_tick_hz:.0e}: the frequencies are not small rational "
                "multiples of each other. Round them, or give an exact value such as "
                "Fraction(10**9, 3) or '1000000000/3' instead of a float like 1e9/3."
            )
        periods = {d: int(tick_hz / q) for d, q in exact.items()}  # exact integers by construction
        return cls(tick_hz, MappingProxyType(periods), MappingProxyType(exact))

    # --- conversions (all exact integer arithmetic) -------------------------------------------

    def period(self, domain: str) -> int:
        """Ticks per cycle of ``domain``."""
        try:
            return self.periods[domain]
        except KeyError:
            raise KeyError(
                f"unknown clock domain {domain!r} (known: {', '.join(self.periods)})"
            ) from None

    def ticks(self, domain: str, cycles: int) -> int:
        """Ticks spanned by ``cycles`` cycles of ``domain`` (an int; floats are refused)."""
        return operator.index(cycles) * self.period(domain)

    def cycles(self, domain: str, ticks: int) -> int:
        """Whole cycles of ``domain`` completed in ``ticks`` ticks (floor)."""
        return operator.index(ticks) // self.period(domain)

    def cycles_ceil(self, domain: str, ticks: int) -> int:
        """Cycles of ``domain`` needed to cover ``ticks`` ticks (ceil)."""
        return -(-operator.index(ticks) // self.period(domain))

    def next_edge(self, domain: str, tick: int) -> int:
        """First clock edge of ``domain`` at or after ``tick`` (edges are multiples of the period)."""
        p = self.period(domain)
        return -(-operator.index(tick) // p) * p

    def seconds_exact(self, ticks: int) -> Fraction:
        """``ticks`` in seconds, exactly."""
        return Fraction(operator.index(ticks)) / self.tick_hz

    def seconds(self, ticks: int) -> float:
        """``ticks`` in seconds (the float nearest the exact value)."""
        return float(self.seconds_exact(ticks))

    def microseconds(self, ticks: int) -> float:
        """``ticks`` in microseconds, the float nearest the exact value (int/int true division
        is correctly rounded in Python). Used for trace timestamps; cheap enough for 1e6 calls."""
        return (ticks * 1_000_000 * self.tick_hz.denominator) / self.tick_hz.numerator

    def tick_seconds(self) -> Fraction:
        """Length of one tick in seconds (exact)."""
        return 1 / self.tick_hz
