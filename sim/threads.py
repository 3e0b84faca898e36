"""How many threads the simulator's parallel kernels use: ``LLMSIM_THREADS`` or the usable cores.

Read at the CLI's start (a bad value is a one-line error before any output) and by the kernels
that share independent work out over threads (the DRAM fast mode's channels).
"""

from __future__ import annotations

import os

from sim.errors import LlmsimError


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:   # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_count(threads: int | None = None) -> int:
    """``threads`` as given (>= 1), else ``LLMSIM_THREADS`` when set, else the usable cores."""
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads: expected a whole number >= 1, got {threads!r}")
        return int(threads)
    env = os.environ.get("LLMSIM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise LlmsimError(f"environment variable LLMSIM_THREADS: expected a whole number of threads >= 1, "
                              f"got {env!r}")
        return int(env)
    return usable_cores()
