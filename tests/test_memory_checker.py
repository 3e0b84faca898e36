"""The timing checker against hand-built and generated command logs.

The logs here come from :class:`LegalLog`, a small scheduler written for these tests only: it
keeps its own bank states and issues each command at the earliest cycle that every constraint row
allows, found either by brute force over all earlier commands or (for long logs) from per-node
histories; a test checks that the two agree. It shares nothing with the checker but the standard's
table, so the checker and it must agree on every log.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest

from sim.config import load_hw
from sim.memory.checker import check
from sim.memory.commands import CommandLog
from sim.memory.standard import Constraint, DramSpec

PRESETS = ("hbm2-neupims", "hbm3-6400")


@lru_cache(maxsize=None)
def spec_of(preset: str) -> DramSpec:
    return load_hw(preset).spec()


# ------------------------------------------------------------------------------- a legal scheduler
def where(spec: DramSpec, cmd: int, **levels: int) -> tuple[int, ...]:
    """Coordinates of ``cmd``: the given levels, 0 for the other levels down to its scope, -1 below."""
    std = spec.standard
    scope = std.commands[cmd].scope
    return tuple(levels.get(lvl.name, 0) if i <= scope else -1 for i, lvl in enumerate(std.levels))


def binds(con, earlier: tuple[int, ...], later: tuple[int, ...]) -> bool:
    """Does constraint ``con`` relate these two coordinate tuples (same or sibling node)?"""
    lvl = con.level
    if earlier[lvl] < 0 or later[lvl] < 0:
        return False
    if con.sibling:
        return earlier[:lvl] == later[:lvl] and earlier[lvl] != later[lvl]
    return earlier[: lvl + 1] == later[: lvl + 1]


class LegalLog:
    """A command log built one legal command at a time (cycles non-decreasing).

    ``issue`` places a command at the earliest cycle every constraint row and the command bus allow
    (plus ``slack``); ``prepare`` first issues what the bank states need (PRE before an ACT to an
    open bank, ACT before a column command, PREA before an all-bank refresh).
    """

    def __init__(self, spec: DramSpec, brute_force: bool = False):
        self.spec, self.std = spec, spec.standard
        self.brute_force = brute_force
        self.rows: list[tuple[int, int, tuple[int, ...]]] = []
        self.reason: list[tuple[int, int] | None] = []   # (constraint, earlier) that set each cycle
        self.open: dict[tuple[int, ...], int] = {}
        self.bank = self.std.bank_level
        self.row_level = self.std.level_index("row")
        self.by_next = defaultdict(list)
        for k, con in enumerate(spec.constraints):
            self.by_next[con.next].append(k)
        self.depth = max(c.window for c in spec.constraints)
        self.hist: dict[tuple, list[tuple[int, int]]] = defaultdict(list)   # (level, prev, node) -> [(t, i)]
        self.bus_last: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def c(self, name: str) -> int:
        return self.std.command_index(name)

    # -- timing
    def matching(self, con, coords: tuple[int, ...]) -> list[tuple[int, int]]:
        """(cycle, index) of the earlier commands ``con`` binds to ``coords``, oldest first."""
        if self.brute_force:
            return [(t, i) for i, (t, c, xy) in enumerate(self.rows) if c == con.prev and binds(con, xy, coords)]
        lvl = con.level
        if coords[lvl] < 0:
            return []
        if not con.sibling:
            return self.hist.get((lvl, con.prev, coords[: lvl + 1]), [])
        out = []
        for child in range(self.spec.counts[lvl]):
            if child != coords[lvl]:
                out += self.hist.get((lvl, con.prev, coords[:lvl] + (child,)), [])
        return sorted(out, key=lambda e: e[1])

    def bounds(self, cmd: int, coords: tuple[int, ...]) -> dict[int, tuple[int, int]]:
        """Per constraint row that binds this command: (earliest cycle, earlier command index)."""
        out = {}
        for k in self.by_next[cmd]:
            con = self.spec.constraints[k]
            m = self.matching(con, coords)
            if len(m) >= con.window:
                t, i = m[-con.window]
                out[k] = (t + con.latency, i)
        return out

    def earliest(self, cmd: int, coords: tuple[int, ...]) -> tuple[int, tuple[int, int] | None]:
        last = self.rows[-1][0] if self.rows else 0
        best, reason = last, None
        for k, (t, i) in self.bounds(cmd, coords).items():
            if t > best:
                best, reason = t, (k, i)
        return best, reason

    def bus_free(self, cmd: int, coords: tuple[int, ...], cycle: int) -> bool:
        return self.bus_last.get((coords[0], self.std.command_bus[cmd])) != cycle

    # -- bank states
    def banks_under(self, coords: tuple[int, ...]) -> list[tuple[int, ...]]:
        scope = max(i for i, x in enumerate(coords) if x >= 0)
        return [b for b in self.open if b[: scope + 1] == coords[: scope + 1]]

    def needs(self, cmd: int, coords: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        """The commands that make ``cmd`` legal in the current bank states."""
        c = self.std.commands[cmd]
        if c.scope < self.bank:
            if c.refresh and self.banks_under(coords):
                return [(self.c("PREA"), coords)]
            return []
        bank = coords[: self.bank + 1]
        row = self.open.get(bank)
        pre = (self.c("PRE"), where(self.spec, self.c("PRE"), **self._named(bank)))
        if c.opens or c.refresh:
            return [pre] if row is not None else []
        if c.access:
            act = (self.c("ACT"), bank + (coords[self.row_level],) + (-1,) * (len(coords) - self.bank - 2))
            if row is None:
                return [act]
            return [] if row == coords[self.row_level] else [pre, act]
        return []

    def _named(self, coords: tuple[int, ...]) -> dict[str, int]:
        return {self.std.levels[i].name: x for i, x in enumerate(coords) if x >= 0}

    def apply(self, cmd: int, coords: tuple[int, ...]) -> None:
        c = self.std.commands[cmd]
        if c.scope < self.bank:
            if c.closes:
                for b in self.banks_under(coords):
                    del self.open[b]
            return
        bank = coords[: self.bank + 1]
        if c.opens:
            self.open[bank] = coords[self.row_level]
        elif c.closes:
            self.open.pop(bank, None)

    # -- issuing
    def prepare(self, cmd: int, coords: tuple[int, ...]) -> None:
        for need in self.needs(cmd, coords):
            self.prepare(*need)
            self.issue(*need)

    def issue(self, cmd: int, coords: tuple[int, ...], slack: int = 0) -> int:
        """Append the command at its earliest legal cycle (+ slack); its index. ``reason`` keeps
        the (constraint, earlier command) that set the cycle, when one did."""
        t, reason = self.earliest(cmd, coords)
        if slack:
            t, reason = t + slack, None
        while not self.bus_free(cmd, coords, t):
            t, reason = t + 1, None
        i = len(self.rows)
        self.rows.append((t, cmd, coords))
        self.reason.append(reason)
        self.bus_last[(coords[0], self.std.command_bus[cmd])] = t
        self.apply(cmd, coords)
        for lvl, x in enumerate(coords):
            if x >= 0:
                h = self.hist[(lvl, cmd, coords[: lvl + 1])]
                h.append((t, i))
                del h[: -self.depth]
        return i

    def log(self, extra: list[tuple[int, int, tuple[int, ...]]] = ()) -> CommandLog:
        rows = self.rows + list(extra)
        levels = len(self.std.levels)
        return CommandLog(np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int16),
                          np.array([r[2] for r in rows], np.int32).reshape(len(rows), levels))


# ------------------------------------------------------------------------------- one test per constraint
def constraint_params():
    out = []
    for preset in PRESETS:
        spec = spec_of(preset)
        seen = set()
        for k, con in enumerate(spec.constraints):
            key = (con.rule, con.prev, con.next)
            if key not in seen:
                seen.add(key)
                out.append(pytest.param(preset, k, id=f"{preset}: {con.describe(spec)}"))
    return out


def placements(spec: DramSpec, con) -> list[tuple[list[tuple[int, ...]], tuple[int, ...]]]:
    """Candidate coordinates (preceding commands, following command) for ``con``, the ones least
    likely to meet other constraints first: the window's commands and the following one are
    consecutive nodes counted from the level below the rule's (first differing at that level,
    then one deeper, ...), the last candidate puts them all in one bank."""
    std = spec.standard
    bank, lvl = std.bank_level, con.level
    cands = []
    if con.sibling:
        base = {std.levels[lvl].name: 0}
        ps = [where(spec, con.prev, **base) for _ in range(con.window)]
        return [(ps, where(spec, con.next, **{std.levels[lvl].name: 1}))]
    for first in [*range(lvl + 1, bank + 1), None]:
        digits = [] if first is None else [*range(first, bank + 1), *range(lvl + 1, first)]

        def node(j: int) -> dict[str, int]:
            out = {}
            for d in digits:
                out[std.levels[d].name] = j % spec.counts[d]
                j //= spec.counts[d]
            return out

        ps = [where(spec, con.prev, **node(j)) for j in range(con.window)]
        cands.append((ps, where(spec, con.next, **node(con.window))))
    return cands


def build(spec: DramSpec, con, ps, nxt, prep_first: bool, settle: bool) -> tuple[LegalLog, int]:
    """A legal log: (the following command's preparation,) the preceding commands, the fixes the
    following command then needs; returns it and the index of the command the rule measures from.
    With ``settle`` the preceding commands wait until every rule from the set-up has expired."""
    log = LegalLog(spec, brute_force=True)
    if prep_first:
        log.prepare(con.next, nxt)
    idx = []
    for j, p in enumerate(ps):
        log.prepare(con.prev, p)
        wait = max(c.latency for c in spec.constraints) if settle and j == 0 else 0
        idx.append(log.issue(con.prev, p, slack=wait))
    log.prepare(con.next, nxt)
    return log, idx[0]


def setups(spec: DramSpec, con):
    """Candidate legal set-ups, best first; the test takes the first where the following command
    can issue exactly ``latency`` after the measured command without breaking any other rule."""
    for ps, nxt in placements(spec, con):
        plain = LegalLog(spec, brute_force=True)
        for p in ps:
            plain.prepare(con.prev, p)
            plain.apply(con.prev, p)
        # prepare the following command's bank first unless the preceding ones leave it ready
        prep_first = bool(plain.needs(con.next, nxt))
        for settle in (False, True):
            yield (*build(spec, con, ps, nxt, prep_first, settle), nxt)


def timing_set(violations, index):
    """{(constraint, earlier)} of the timing violations of command ``index``."""
    return {(v.constraint, v.earlier) for v in violations if v.kind == "timing" and v.index == index}


def expected_set(spec, log: LegalLog, cmd, coords, cycle):
    return {(spec.constraints[k], i) for k, (t, i) in log.bounds(cmd, coords).items() if t > cycle}


@pytest.mark.parametrize("preset,k", constraint_params())
def test_each_constraint_exactly_at_and_one_below_its_latency(preset, k):
    spec = spec_of(preset)
    con = spec.constraints[k]
    first = None
    for log, ref, nxt in setups(spec, con):
        at = log.rows[ref][0] + con.latency
        clean = log.earliest(con.next, nxt)[0] <= at and log.bus_free(con.next, nxt, at)
        first = first or (log, ref, nxt, at)
        if clean:
            break
    else:
        log, ref, nxt, at = first      # other rules necessarily bind too: check only this one
        # the one such case: HBM2-NeuPIMs's nCCDS (1) is below nBL (2) on the channel's shared bus
        assert preset == "hbm2-neupims" and spec.standard.rules[con.rule].latency == "nCCDS"
    assert check(spec, log.log()) == [], "the set-up itself must be legal"
    assert log.matching(con, nxt)[-con.window][1] == ref
    assert at - 1 >= log.rows[-1][0], "the set-up must end before the following command"
    n = len(log)
    for cycle in (at, at - 1):
        got = check(spec, log.log([(cycle, con.next, nxt)]))
        assert all(v.index == n for v in got), got
        assert timing_set(got, n) == expected_set(spec, log, con.next, nxt, cycle), got
        bus = [] if log.bus_free(con.next, nxt, cycle) else ["command_bus"]
        assert [v.kind for v in got if v.kind != "timing"] == bus, got
        mine = [v for v in got if v.constraint == con and v.earlier == ref]
        if cycle == at:
            assert not mine
            if clean:
                assert got == []
        else:
            assert len(mine) == 1
            assert (mine[0].required, mine[0].actual) == (con.latency, con.latency - 1)
            assert con.describe(spec) in str(mine[0])


def test_sibling_rule_with_a_window():
    """No shipped standard has one, but the table allows it: a window over sibling nodes counts
    the commands to every other node under the parent, and none to the command's own node."""
    spec = spec_of("hbm3-6400")
    std = spec.standard
    rd = std.command_index("RD")
    rule = Constraint(level=std.level_index("stackid"), prev=rd, next=rd, latency=10, window=2, sibling=True, rule=3)
    only = dataclasses.replace(spec, constraints=(rule,))
    sid = [{**bank(spec, stackid=s, bankgroup=s), "row": 0, "column": 0} for s in range(2)]
    setup = [(0, "ACT", sid[0]), (1, "ACT", sid[1])]
    reads = [(100, "RD", sid[1]), (101, "RD", sid[0]), (102, "RD", sid[1])]
    for at, expect in ((109, [(5, 2, 100)]), (110, [])):     # the 2nd most recent sibling read is at 100
        got = check(only, rows(spec, *setup, *reads, (at, "RD", sid[0])))
        assert [(v.index, v.earlier, v.cycle - v.actual) for v in got] == expect


def test_constraint_description_names_the_timing():
    spec = spec_of("hbm2-neupims")
    names = {c.describe(spec) for c in spec.constraints}
    assert "ACT -> RD at bank: nRCDRD = 14" in names
    assert "ACT -> ACT at rank: nFAW = 30, window 4" in names


# ------------------------------------------------------------------------------- state, bus, order
def rows(spec: DramSpec, *items):
    """A log from (cycle, command, {level: index}) items."""
    return CommandLog.from_rows(spec.standard, list(items))


def bank(spec: DramSpec, **kw) -> dict[str, int]:
    return {lvl.name: kw.get(lvl.name, 0) for lvl in spec.standard.levels[: spec.standard.bank_level + 1]}


@pytest.mark.parametrize("preset", PRESETS)
def test_state_violations(preset):
    spec = spec_of(preset)
    b0 = bank(spec)
    rank = {k: v for k, v in b0.items() if k not in ("bankgroup", "bank", "stackid")}
    read = [(0, "RD", {**b0, "row": 3, "column": 0})]
    assert [(v.kind, v.index) for v in check(spec, rows(spec, *read))] == [("state", 0)]
    twice = [(0, "ACT", {**b0, "row": 3}), (1000, "ACT", {**b0, "row": 4})]
    got = check(spec, rows(spec, *twice))
    assert [(v.kind, v.index, v.earlier) for v in got] == [("state", 1, 0)]
    wrong_row = [(0, "ACT", {**b0, "row": 3}), (1000, "RD", {**b0, "row": 4, "column": 0})]
    assert [(v.kind, v.index) for v in check(spec, rows(spec, *wrong_row))] == [("state", 1)]
    refab = [(0, "ACT", {**b0, "row": 3}), (1000, "REFab", rank)]
    got = check(spec, rows(spec, *refab))
    assert [(v.kind, v.index, v.earlier) for v in got] == [("state", 1, 0)]
    refpb = [(0, "ACT", {**b0, "row": 3}), (1000, "REFpb", b0)]
    assert [(v.kind, v.index) for v in check(spec, rows(spec, *refpb))] == [("state", 1)]


@pytest.mark.parametrize("preset", PRESETS)
def test_closing_commands(preset):
    """PREA closes every bank of its node, RDA / WRA their bank, PRE to a closed bank is a no-op."""
    spec = spec_of(preset)
    b0, b1 = bank(spec), bank(spec, bankgroup=1)
    rank = {k: v for k, v in b0.items() if k not in ("bankgroup", "bank", "stackid")}
    legal = [(0, "PRE", b0), (100, "ACT", {**b0, "row": 3}), (110, "ACT", {**b1, "row": 4}),
             (1000, "PREA", rank), (2000, "REFab", rank), (5000, "ACT", {**b0, "row": 5}),
             (5100, "RDA", {**b0, "row": 5, "column": 1}), (5300, "ACT", {**b0, "row": 6}),
             (5400, "WRA", {**b0, "row": 6, "column": 1}), (5600, "REFpb", b0)]
    assert check(spec, rows(spec, *legal)) == []
    after_rda = legal[:7] + [(5300, "RD", {**b0, "row": 5, "column": 2})]
    assert [(v.kind, v.index, v.earlier) for v in check(spec, rows(spec, *after_rda))] == [("state", 7, 6)]


@pytest.mark.parametrize("preset", PRESETS)
def test_command_bus(preset):
    spec = spec_of(preset)
    std = spec.standard
    second = std.levels[1].name             # rank (HBM2) / pseudo channel (HBM3): no ACT-ACT rule
    a, b = bank(spec), bank(spec, **{second: 1})
    two_rows = [(0, "ACT", {**a, "row": 1}), (0, "ACT", {**b, "row": 1})]
    got = check(spec, rows(spec, *two_rows))
    assert [(v.kind, v.index, v.earlier) for v in got] == [("command_bus", 1, 0)]
    other_channel = [(0, "ACT", {**a, "row": 1}), (0, "ACT", {**b, "channel": 1, "row": 1})]
    assert check(spec, rows(spec, *other_channel)) == []
    dual = [(0, "ACT", {**a, "row": 1}), (100, "ACT", {**b, "row": 1}), (100, "RD", {**a, "row": 1, "column": 0})]
    assert check(spec, rows(spec, *dual)) == []
    two_cols = dual + [(100, "RD", {**b, "row": 1, "column": 0})]
    assert ("command_bus", 3, 2) in {(v.kind, v.index, v.earlier) for v in check(spec, rows(spec, *two_cols))}


def test_cycles_must_not_decrease():
    spec = spec_of("hbm2-neupims")
    a, b = bank(spec), bank(spec, channel=1)
    got = check(spec, rows(spec, (10, "ACT", {**a, "row": 1}), (9, "ACT", {**b, "row": 1})))
    assert [(v.kind, v.index, v.earlier, v.actual) for v in got] == [("order", 1, 0, -1)]


def test_malformed_log_raises():
    spec = spec_of("hbm2-neupims")
    with pytest.raises(ValueError, match="bank coordinate 4"):
        check(spec, rows(spec, (0, "ACT", bank(spec, bank=4))))
    assert check(spec, CommandLog.empty(len(spec.standard.levels))) == []


# ------------------------------------------------------------------------------- random legal logs
WEIGHTS = {"RD": 30, "WR": 20, "ACT": 12, "PRE": 8, "RDA": 6, "WRA": 6, "PREA": 1, "REFpb": 3, "REFab": 1}


def random_legal_log(spec: DramSpec, n: int, seed: int, brute_force: bool = False, channels: int = 2) -> LegalLog:
    """``n`` commands to ``channels`` channels: random commands and coordinates (four rows per
    bank, so both row hits and conflicts), each after what its bank state needs, at the earliest
    legal cycle (one in five a few cycles later)."""
    rng = random.Random(seed)
    std = spec.standard
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    log = LegalLog(spec, brute_force=brute_force)
    while len(log) < n:
        cmd = std.command_index(rng.choices(names, weights)[0])
        levels = {lvl.name: rng.randrange(min(cnt, 4 if lvl.name in ("row", "column") else cnt))
                  for lvl, cnt in zip(std.levels, spec.counts)}
        levels["channel"] = rng.randrange(channels)
        coords = where(spec, cmd, **levels)
        log.prepare(cmd, coords)
        log.issue(cmd, coords, slack=rng.randint(1, 3) if rng.random() < 0.2 else 0)
    del log.rows[n:], log.reason[n:]
    return log


@pytest.mark.parametrize("preset", PRESETS)
def test_generator_fast_path_matches_brute_force(preset):
    spec = spec_of(preset)
    fast = random_legal_log(spec, 400, seed=7)
    slow = random_legal_log(spec, 400, seed=7, brute_force=True)
    assert fast.rows == slow.rows


@pytest.mark.parametrize("preset,n", [("hbm2-neupims", 100_000), ("hbm3-6400", 100_000)])
def test_random_legal_log(preset, n):
    spec = spec_of(preset)
    log = random_legal_log(spec, n, seed=1)
    cl = log.log()
    assert check(spec, cl) == []
    # every kind of command and every binding rule shows up
    assert set(cl.cmd.tolist()) == {spec.standard.command_index(c) for c in WEIGHTS}
    bound = [i for i, r in enumerate(log.reason) if r is not None]
    assert len({log.reason[i][0] for i in bound}) > len(spec.constraints) // 3
    # a command moved one cycle before its binding constraint allows is caught, and only it: one
    # such command for every constraint that binds somewhere in the log
    movable = {}
    for i in bound:
        if not _bus_taken(spec, cl, i, cl.cycle[i] - 1):
            movable.setdefault(log.reason[i][0], i)
    for i in movable.values():
        # moving i earlier only lengthens its distance to later commands, so a stretch of log
        # well past the longest latency after i is enough to see every violation it causes
        stop = i + 2_000
        bad = CommandLog(cl.cycle[:stop].copy(), cl.cmd[:stop], cl.coords[:stop])
        bad.cycle[i] -= 1
        got = check(spec, bad)
        assert got and all(v.index == i and v.kind == "timing" for v in got), got
        k, earlier = log.reason[i]
        assert (spec.constraints[k], earlier) in timing_set(got, i)


def _bus_taken(spec, cl: CommandLog, i: int, cycle: int) -> bool:
    bus = spec.standard.command_bus
    near = range(max(0, i - 8), i)
    return any(cl.cycle[j] == cycle and cl.coords[j, 0] == cl.coords[i, 0] and bus[cl.cmd[j]] == bus[cl.cmd[i]]
               for j in near)
