"""The command log: what an engine issued, in the form the timing checker reads.

One row per command: the cycle it issued on, its index in the standard's command list, and its
coordinates, one per level of the standard (channel first). Coordinates below the command's scope
are -1 (a PREA names a rank, not a bank); an ACT names its row; a RD / WR names its row (the open
one) and its column in bursts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.memory.standard import Standard


@dataclass
class CommandLog:
    cycle: np.ndarray    # int64 [n], non-decreasing
    cmd: np.ndarray      # int16 [n]
    coords: np.ndarray   # int32 [n, levels]

    def __len__(self) -> int:
        return int(self.cycle.shape[0])

    @classmethod
    def empty(cls, levels: int) -> "CommandLog":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros((0, levels), np.int32))

    @classmethod
    def from_rows(cls, standard: Standard, rows: list[tuple[int, str, dict[str, int]]]) -> "CommandLog":
        """Build a log from (cycle, command name, {level name: index}) rows (tests, hand-made logs)."""
        n, levels = len(rows), len(standard.levels)
        cycle = np.zeros(n, np.int64)
        cmd = np.zeros(n, np.int16)
        coords = np.full((n, levels), -1, np.int32)
        names = [lvl.name for lvl in standard.levels]
        for i, (t, c, where) in enumerate(rows):
            cycle[i] = t
            cmd[i] = standard.command_index(c)
            for k, v in where.items():
                coords[i, names.index(k)] = v
        return cls(cycle, cmd, coords)

    def rows(self, standard: Standard) -> list[tuple[int, str, tuple[int, ...]]]:
        return [(int(t), standard.commands[int(c)].name, tuple(int(x) for x in xy))
                for t, c, xy in zip(self.cycle, self.cmd, self.coords)]
