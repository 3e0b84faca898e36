"""An independent timing checker: a command log against a standard's constraint table.

The checker reads only the bound :class:`~sim.memory.standard.DramSpec` (its constraint rows, the
standard's levels, command flags and command buses) and a :class:`~sim.memory.commands.CommandLog`.
It shares no code or bookkeeping with the engine that wrote the log, so an engine bug cannot hide
behind a checker that makes the same mistake.

What it checks, per command in log order:

* ``timing``: every constraint row whose following command is this one. A row at level L binds an
  earlier command addressed to the same L node (coordinates equal for levels 0..L) or, with
  ``sibling``, to a different L node under the same parent. Without a window the command must come
  ``latency`` cycles after the most recent such command; with ``window`` k, after the k-th most
  recent (tFAW: at most four ACTs in any nFAW).
* ``command_bus``: at most one command per channel per command bus per cycle (HBM issues one row
  and one column command per cycle: dual issue).
* ``state``: ACT only to a closed bank; a read or write only to a bank whose open row is the
  command's row; REFab only with every bank under its node closed, REFpb only to a closed bank.
  PRE closes a bank (a PRE to a closed bank is a no-op), PREA every bank under its node, RDA / WRA
  close their bank.
* ``order``: cycles must not decrease.

Speed: the scan is one pass compiled with numba. Each constraint row keeps, per node at its level,
a ring of the last ``window`` matching commands, shared by rows with the same (level, preceding
command); a check is then a ring lookup, not a search of the log (about 10^6 commands a second on
one core, after a one-off compile that numba caches on disk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from sim.memory.commands import CommandLog
from sim.memory.standard import Constraint, DramSpec

KINDS = ("timing", "state", "command_bus", "order")
_TIMING, _STATE, _BUS, _ORDER = range(4)

# state rules (the ``rule`` column of a state record)
_STATE_TEXT = (
    "activate to a bank whose row {row} is open",
    "column command to a closed bank",
    "column command to row {want} while row {row} is open",
    "all-bank refresh with an open bank (bank {bank} of the node, row {row})",
    "per-bank refresh to an open bank (row {row})",
    "PIM activation of a bank whose normal row {row} is open (single row buffer)",
    "PIM activation of a bank whose PIM row {row} is already open",
    "COMP with no PIM row open in the channel",
    "activate while the bank's PIM row {row} is open (single row buffer)",
    "refresh while a PIM row ({row}) is open",
    "normal precharge of a bank holding PIM row {row} (single row buffer)",
)
_ACT_OPEN, _COL_CLOSED, _COL_ROW, _REFAB_OPEN, _REFPB_OPEN, _PIM_NORMAL_OPEN, _PIM_OPEN, _COMP_CLOSED, \
    _ACT_PIM_OPEN, _REF_PIM_OPEN, _PRE_PIM_OPEN = range(11)
_PIM_KIND = {None: 0, "open": 1, "close": 2, "compute": 3}


@dataclass(frozen=True)
class Violation:
    """One broken rule: the offending command, and the earlier command it conflicts with.

    ``required`` and ``actual`` are distances in cycles from ``earlier`` (timing) or None.
    ``constraint`` is the constraint row for a timing violation, else None.
    """

    index: int
    cycle: int
    command: str
    kind: str
    earlier: int | None
    constraint: Constraint | None
    required: int | None
    actual: int | None
    what: str

    def __str__(self) -> str:
        ref = f" (earlier command #{self.earlier})" if self.earlier is not None else ""
        dist = f": {self.actual} cycles, needs {self.required}" if self.required is not None else ""
        return f"#{self.index} {self.command} at cycle {self.cycle}: {self.kind}: {self.what}{dist}{ref}"


def check(spec: DramSpec, log: CommandLog) -> list[Violation]:
    """Every violation of ``spec``'s rules in ``log``, in the order found (by command index)."""
    std = spec.standard
    cycle, cmd, coords = _validated(spec, log)
    if len(cycle) == 0:
        return []
    depth_level = max([std.bank_level, *(c.level for c in spec.constraints)])
    nodes = _node_ids(spec, cmd, coords, depth_level)
    row = coords[:, std.level_index("row")].astype(np.int64)
    t = _Tables.build(spec, depth_level)
    rec = _scan(cycle, cmd, nodes, row, np.asarray(spec.counts, np.int64),
                t.c_level, t.c_table, t.c_window, t.c_sibling, t.c_latency, t.next_ptr, t.next_con,
                t.t_level, t.t_base, t.prev_ptr, t.prev_tab, t.depth, t.total_nodes,
                *t.flags, spec.shared_row_buffer, std.bank_level, t.bank_span, t.bus_of, t.n_bus)
    return [_violation(spec, cycle, cmd, coords, r) for r in rec]


# ------------------------------------------------------------------------------- preparation
def _validated(spec: DramSpec, log: CommandLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The log's arrays as int64, after checking they can be indexed safely (a malformed log is a
    programming error in its writer, not a DRAM violation, so it raises)."""
    std = spec.standard
    n, levels = len(log), len(std.levels)
    cycle = np.asarray(log.cycle, np.int64)
    cmd = np.asarray(log.cmd, np.int64)
    coords = np.asarray(log.coords, np.int64)
    if cmd.shape != (n,) or coords.shape != (n, levels):
        raise ValueError(f"command log: expected cycle [{n}], cmd [{n}], coords [{n}, {levels}]; "
                         f"found {cycle.shape}, {cmd.shape}, {coords.shape}")
    if n and (cmd.min() < 0 or cmd.max() >= len(std.commands)):
        raise ValueError(f"command log: command index outside 0..{len(std.commands) - 1}")
    scope = np.array([c.scope for c in std.commands], np.int64)[cmd]
    row_level = std.level_index("row")
    for lvl in range(row_level + 1):     # the checker reads channel .. row; columns are not checked
        used = scope >= lvl
        bad = used & ((coords[:, lvl] < 0) | (coords[:, lvl] >= spec.counts[lvl]))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"command log: row {i} ({std.commands[cmd[i]].name}): {std.levels[lvl].name} "
                             f"coordinate {coords[i, lvl]} outside 0..{spec.counts[lvl] - 1}")
    return cycle, cmd, coords


def _node_ids(spec: DramSpec, cmd: np.ndarray, coords: np.ndarray, depth_level: int) -> np.ndarray:
    """Flat node id of every command at every level 0..depth_level (mixed radix over the counts,
    so the nodes under one node are a contiguous range), -1 below the command's scope."""
    scope = np.array([c.scope for c in spec.standard.commands], np.int64)[cmd]
    out = np.full((len(cmd), depth_level + 1), -1, np.int64)
    flat = np.zeros(len(cmd), np.int64)
    for lvl in range(depth_level + 1):
        flat = flat * spec.counts[lvl] + coords[:, lvl]
        out[:, lvl] = np.where(scope >= lvl, flat, -1)
    return out


@dataclass
class _Tables:
    """The constraint table as flat arrays for the scan.

    A *history* is one (level, preceding command) pair with a ring of its last ``depth`` commands
    per node at that level; constraints index their history, and a command updates the histories
    whose preceding command it is. ``*_ptr`` / ``*_con`` / ``*_tab`` are per-command lists (CSR).
    """

    c_level: np.ndarray
    c_table: np.ndarray
    c_window: np.ndarray
    c_sibling: np.ndarray
    c_latency: np.ndarray
    next_ptr: np.ndarray
    next_con: np.ndarray
    t_level: np.ndarray
    t_base: np.ndarray
    prev_ptr: np.ndarray
    prev_tab: np.ndarray
    depth: int
    total_nodes: int
    flags: tuple[np.ndarray, ...]        # per command: scope, opens, closes, access, refresh, PIM kind
    bank_span: np.ndarray                # banks under one node, per level
    bus_of: np.ndarray
    n_bus: int

    @classmethod
    def build(cls, spec: DramSpec, depth_level: int) -> "_Tables":
        std, cons = spec.standard, spec.constraints
        ncmd = len(std.commands)
        nodes_at = np.cumprod(spec.counts[: depth_level + 1])
        hist = sorted({(c.level, c.prev) for c in cons})
        hist_of = {h: i for i, h in enumerate(hist)}
        t_level = np.array([lvl for lvl, _ in hist], np.int64)
        sizes = np.array([nodes_at[lvl] for lvl in t_level], np.int64)
        t_base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        next_ptr, next_con = _csr(ncmd, [(c.next, i) for i, c in enumerate(cons)])
        prev_ptr, prev_tab = _csr(ncmd, [(p, i) for i, (_, p) in enumerate(hist)])
        bank = std.bank_level
        span = [int(np.prod(spec.counts[lvl + 1: bank + 1])) if lvl <= bank else 1 for lvl in range(len(std.levels))]
        cmds = std.commands
        return cls(
            c_level=np.array([c.level for c in cons], np.int64),
            c_table=np.array([hist_of[(c.level, c.prev)] for c in cons], np.int64),
            c_window=np.array([c.window for c in cons], np.int64),
            c_sibling=np.array([c.sibling for c in cons], np.bool_),
            c_latency=np.array([c.latency for c in cons], np.int64),
            next_ptr=next_ptr, next_con=next_con, t_level=t_level, t_base=t_base,
            prev_ptr=prev_ptr, prev_tab=prev_tab,
            depth=max([1, *(c.window for c in cons)]), total_nodes=int(sizes.sum()),
            flags=(np.array([c.scope for c in cmds], np.int64), np.array([c.opens for c in cmds], np.bool_),
                   np.array([c.closes for c in cmds], np.bool_), np.array([c.access is not None for c in cmds], np.bool_),
                   np.array([c.refresh for c in cmds], np.bool_),
                   np.array([_PIM_KIND.get(c.pim, 0) for c in cmds], np.int64)),
            bank_span=np.array(span, np.int64),
            bus_of=np.array(std.command_bus or (0,) * ncmd, np.int64),
            n_bus=max(std.command_bus or (0,)) + 1,
        )


def _csr(n: int, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Group ``(key, value)`` pairs by key 0..n-1 as (pointers, values)."""
    pairs = sorted(pairs)
    ptr = np.zeros(n + 1, np.int64)
    for k, _ in pairs:
        ptr[k + 1] += 1
    return np.cumsum(ptr), np.array([v for _, v in pairs], np.int64)


# ------------------------------------------------------------------------------- the scan
@njit("Tuple((int64[:, ::1], int64))(int64[:, ::1], int64, int64, int64, int64, int64, int64, int64)", cache=True)
def _record(rec, n, index, kind, earlier, rule, required, actual):
    """Append one violation (index, kind, earlier, rule, required, actual), growing the buffer.
    (A fixed signature: one compiled version, not one per combination of literal arguments.)"""
    if n == rec.shape[0]:
        bigger = np.empty((2 * n, 6), np.int64)
        bigger[:n] = rec
        rec = bigger
    rec[n, 0] = index
    rec[n, 1] = kind
    rec[n, 2] = earlier
    rec[n, 3] = rule
    rec[n, 4] = required
    rec[n, 5] = actual
    return rec, n + 1


@njit(cache=True)
def _kth_recent(hist_t, hist_i, head, cnt, r, k, depth):
    """(cycle, index) of the k-th most recent command in history row ``r``, or (0, -1)."""
    if cnt[r] < k:
        return 0, -1
    pos = (head[r] - k) % depth
    return hist_t[r, pos], hist_i[r, pos]


@njit(cache=True)
def _kth_recent_sibling(hist_t, hist_i, head, cnt, base, parent, fanout, mine, k, depth):
    """The k-th most recent command over the histories of every child of ``parent`` but ``mine``
    (a sibling rule: a different node under the same parent). Log order is time order."""
    if k == 1:     # the common case, without allocating: the latest of the siblings' latest
        best_t, best_i = 0, -1
        for child in range(fanout):
            r = base + parent * fanout + child
            if child != mine and cnt[r] > 0:
                pos = (head[r] - 1) % depth
                if hist_i[r, pos] > best_i:
                    best_t, best_i = hist_t[r, pos], hist_i[r, pos]
        return best_t, best_i
    idx = np.full(fanout * depth, -1, np.int64)
    tim = np.zeros(fanout * depth, np.int64)
    m = 0
    for child in range(fanout):
        if child == mine:
            continue
        r = base + parent * fanout + child
        for j in range(min(cnt[r], depth)):
            pos = (head[r] - 1 - j) % depth
            idx[m] = hist_i[r, pos]
            tim[m] = hist_t[r, pos]
            m += 1
    if m < k:
        return 0, -1
    order = np.argsort(idx[:m])
    pick = order[m - k]
    return tim[pick], idx[pick]


@njit(cache=True)
def _update_pim_state(i, c, nodes, row, scope, opens, closes, refresh, pim_kind, shared, bank_level, bank_span,
                      open_row, pim_row, changed_by, rec, nrec):
    """PIM rows: a second open row per bank (or the same row buffer as normal traffic, ``shared``)."""
    s = scope[c]
    first = nodes[i, s] * bank_span[s] if s < bank_level else nodes[i, bank_level]
    span = bank_span[s] if s < bank_level else 1
    k = pim_kind[c]
    if k == 1:      # G_ACT: open the PIM row in every bank under the node
        for b in range(first, first + span):
            if shared and open_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], _PIM_NORMAL_OPEN, open_row[b], -1)
            if pim_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], _PIM_OPEN, pim_row[b], -1)
            pim_row[b] = row[i]
    elif k == 2:    # PIM_PRE: close the PIM rows under the node
        for b in range(first, first + span):
            pim_row[b] = -1
    elif k == 3:    # COMP: some bank under the node must compute
        some = False
        for b in range(first, first + span):
            if pim_row[b] >= 0:
                some = True
                break
        if not some:
            rec, nrec = _record(rec, nrec, i, 1, -1, _COMP_CLOSED, -1, -1)
    elif opens[c] and shared and s >= bank_level:
        b = nodes[i, bank_level]
        if pim_row[b] >= 0:
            rec, nrec = _record(rec, nrec, i, 1, changed_by[b], _ACT_PIM_OPEN, pim_row[b], -1)
    elif refresh[c]:
        for b in range(first, first + span):
            if pim_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], _REF_PIM_OPEN, pim_row[b], -1)
                break
    elif shared and closes[c] and not opens[c]:
        for b in range(first, first + span):
            if pim_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], _PRE_PIM_OPEN, pim_row[b], -1)
                break
    return rec, nrec


@njit(cache=True)
def _update_state(i, c, nodes, row, scope, opens, closes, access, refresh, bank_level, bank_span,
                  open_row, changed_by, rec, nrec):
    """Check command ``i`` against the bank states, then apply it. Returns the record buffer."""
    s = scope[c]
    if s >= bank_level:
        b = nodes[i, bank_level]
        if opens[c]:
            if open_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], 0, open_row[b], -1)
            open_row[b] = row[i]
            changed_by[b] = i
        elif access[c]:
            if open_row[b] < 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], 1, -1, -1)
            elif open_row[b] != row[i]:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], 2, open_row[b], -1)
            if closes[c]:
                open_row[b] = -1
                changed_by[b] = i
        elif refresh[c]:
            if open_row[b] >= 0:
                rec, nrec = _record(rec, nrec, i, 1, changed_by[b], 4, open_row[b], -1)
        elif closes[c] and open_row[b] >= 0:
            open_row[b] = -1
            changed_by[b] = i
    else:
        first = nodes[i, s] * bank_span[s]
        if refresh[c]:
            for b in range(first, first + bank_span[s]):
                if open_row[b] >= 0:
                    rec, nrec = _record(rec, nrec, i, 1, changed_by[b], 3, open_row[b], b - first)
                    break
        if closes[c]:
            for b in range(first, first + bank_span[s]):
                if open_row[b] >= 0:
                    open_row[b] = -1
                    changed_by[b] = i
    return rec, nrec


@njit(cache=True)
def _scan(cycle, cmd, nodes, row, counts,
          c_level, c_table, c_window, c_sibling, c_latency, next_ptr, next_con,
          t_level, t_base, prev_ptr, prev_tab, depth, total_nodes,
          scope, opens, closes, access, refresh, pim_kind, shared, bank_level, bank_span, bus_of, n_bus):
    """One pass over the log; returns the violation records [m, 6]."""
    n = cycle.shape[0]
    hist_t = np.zeros((total_nodes, depth), np.int64)
    hist_i = np.zeros((total_nodes, depth), np.int64)
    head = np.zeros(total_nodes, np.int64)
    cnt = np.zeros(total_nodes, np.int64)
    nbanks = bank_span[0] * counts[0]
    open_row = np.full(nbanks, -1, np.int64)
    pim_row = np.full(nbanks, -1, np.int64)
    changed_by = np.full(nbanks, -1, np.int64)
    bus_cycle = np.full((counts[0], n_bus), -1, np.int64)
    bus_idx = np.full((counts[0], n_bus), -1, np.int64)
    rec = np.empty((64, 6), np.int64)
    nrec = 0
    for i in range(n):
        c = cmd[i]
        now = cycle[i]
        if i > 0 and now < cycle[i - 1]:
            rec, nrec = _record(rec, nrec, i, 3, i - 1, -1, 0, now - cycle[i - 1])
        # command bus: one command per channel per bus per cycle
        ch, bus = nodes[i, 0], bus_of[c]
        if bus_cycle[ch, bus] == now:
            rec, nrec = _record(rec, nrec, i, 2, bus_idx[ch, bus], -1, 1, 0)
        bus_cycle[ch, bus] = now
        bus_idx[ch, bus] = i
        # timing: every constraint row that has this command as its following command
        for q in range(next_ptr[c], next_ptr[c + 1]):
            k = next_con[q]
            lvl = c_level[k]
            node = nodes[i, lvl]
            if node < 0:
                continue
            base = t_base[c_table[k]]
            if c_sibling[k]:
                parent = nodes[i, lvl - 1] if lvl > 0 else 0
                mine = node - parent * counts[lvl]
                t, j = _kth_recent_sibling(hist_t, hist_i, head, cnt, base, parent, counts[lvl], mine,
                                           c_window[k], depth)
            else:
                t, j = _kth_recent(hist_t, hist_i, head, cnt, base + node, c_window[k], depth)
            if j >= 0 and now - t < c_latency[k]:
                rec, nrec = _record(rec, nrec, i, 0, j, k, c_latency[k], now - t)
        rec, nrec = _update_pim_state(i, c, nodes, row, scope, opens, closes, refresh, pim_kind, shared, bank_level,
                                      bank_span, open_row, pim_row, changed_by, rec, nrec)
        rec, nrec = _update_state(i, c, nodes, row, scope, opens, closes, access, refresh, bank_level,
                                  bank_span, open_row, changed_by, rec, nrec)
        # this command is now the most recent one in every history it belongs to
        for q in range(prev_ptr[c], prev_ptr[c + 1]):
            tb = prev_tab[q]
            node = nodes[i, t_level[tb]]
            if node < 0:
                continue
            r = t_base[tb] + node
            hist_t[r, head[r]] = now
            hist_i[r, head[r]] = i
            head[r] = (head[r] + 1) % depth
            cnt[r] += 1
    return rec[:nrec]


# ------------------------------------------------------------------------------- reporting
def _violation(spec: DramSpec, cycle: np.ndarray, cmd: np.ndarray, coords: np.ndarray, r: np.ndarray) -> Violation:
    std = spec.standard
    i, kind, earlier, rule, a, b = (int(x) for x in r)
    common = dict(index=i, cycle=int(cycle[i]), command=std.commands[cmd[i]].name, kind=KINDS[kind],
                  earlier=earlier if earlier >= 0 else None)
    if kind == _TIMING:
        con = spec.constraints[rule]
        return Violation(**common, constraint=con, required=a, actual=b, what=con.describe(spec))
    if kind == _STATE:
        want = int(coords[i, std.level_index("row")])
        what = _STATE_TEXT[rule].format(row=a, want=want, bank=b)
        return Violation(**common, constraint=None, required=None, actual=None, what=what)
    if kind == _BUS:
        buses = std.command_bus or (0,) * len(std.commands)
        members = "/".join(c.name for c, b in zip(std.commands, buses) if b == buses[cmd[i]])
        return Violation(**common, constraint=None, required=None, actual=None,
                         what=f"second command in one cycle on channel {coords[i, 0]}'s {members} command bus")
    return Violation(**common, constraint=None, required=0, actual=b, what="cycle earlier than the previous command's")


# ------------------------------------------------------------------------------- refresh deadlines
JEDEC_MAX_POSTPONED = 8  # JEDEC lets a controller postpone up to 8 refresh commands


def refresh_violations(spec: DramSpec, log: CommandLog, mode: str, postponed: int = JEDEC_MAX_POSTPONED) -> list[str]:
    """Refresh deadlines: under all-bank refresh every refresh node (rank / pseudo channel) gets a
    REFab at least every (postponed + 1) x nREFI cycles; under per-bank refresh every bank gets a
    REFpb at least every (postponed + 1) x nREFIpb x banks-per-node cycles. The window runs from
    cycle 0 to the log's last command. Returns one line per node that missed its deadline."""
    std = spec.standard
    if mode == "none" or len(log) == 0:
        return []
    per_bank = mode == "per_bank"
    name = "REFpb" if per_bank else "REFab"
    cmd = std.command_index(name)
    level = std.bank_level if per_bank else std.commands[cmd].scope
    # per-bank refresh visits the banks of one all-bank-refresh node in turn, one every nREFIpb
    node_level = std.commands[std.command_index("REFab")].scope
    banks_per_node = int(np.prod(spec.counts[node_level + 1: std.bank_level + 1]))
    limit = (postponed + 1) * (spec.t("nREFIpb") * banks_per_node if per_bank else spec.t("nREFI"))
    end = int(log.cycle[-1])
    channels = np.unique(log.coords[:, 0])
    counts = spec.counts
    out: list[str] = []
    sel = log.cmd == cmd
    coords = log.coords[sel, : level + 1].astype(np.int64)
    times = log.cycle[sel].astype(np.int64)
    flat = np.zeros(len(times), np.int64)
    for lv in range(level + 1):
        flat = flat * counts[lv] + coords[:, lv]
    nodes_per_channel = int(np.prod(counts[1: level + 1]))
    for ch in channels:
        for k in range(nodes_per_channel):
            node = int(ch) * nodes_per_channel + k
            t = np.sort(times[flat == node])
            gaps = np.diff(np.concatenate([[0], t, [end]]))
            worst = int(gaps.max())
            if worst > limit:
                out.append(f"{name} deadline: node {node} of {std.levels[level].name} went {worst} cycles without one "
                           f"(limit {limit} = {postponed + 1} x the refresh interval)")
    return out
