"""The common validation-case record: reference vs simulated, with its tolerance and verdict.

``llmsim validate SUITE --json`` prints a list of these objects; a report-only case has
``reference``, ``rel_error`` and ``passed`` null. The command exits 1 if and only if some
``passed`` is false.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Case:
    name: str
    reference: float | None
    simulated: float
    unit: str
    tolerance: str | None          # how `passed` is decided, in words ("exact", ">= 0.95 x reference")
    passed: bool | None
    source: str                    # where the reference comes from (never the code under test)
    note: str = ""
    suite: str = ""

    @property
    def rel_error(self) -> float | None:
        if self.reference in (None, 0):
            return None
        return (self.simulated - self.reference) / self.reference

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rel_error"] = self.rel_error
        return d
