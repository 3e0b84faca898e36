"""Discrete-event simulation core for the NPU simulator.

* :mod:`sim.des.clock`: an integer time base ("ticks") in which every clock domain's period
  is a whole number of ticks, so mixed 1 GHz / 1.6 GHz / 3.2 GHz designs stay exact.
* :mod:`sim.des.core`: :class:`Simulator` (a ``simpy.Environment`` whose ``now`` is in ticks)
  and :class:`Unit` (a named hardware unit with contention and a busy-slice record).
* :mod:`sim.des.timeline`: export of the units' slices as a Chrome trace-event JSON file
  (opens in chrome://tracing and https://ui.perfetto.dev).
"""

from sim.des.clock import TimeBase
from sim.des.core import Simulator, Slice, Unit, UnitStats
from sim.des.timeline import chrome_trace, write_chrome_trace

__all__ = [
    "Simulator",
    "Slice",
    "TimeBase",
    "Unit",
    "UnitStats",
    "chrome_trace",
    "write_chrome_trace",
]
