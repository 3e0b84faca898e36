"""Command-level DRAM engine: an FR-FCFS controller per channel issuing every ACT / PRE / RD / WR /
REF command at the first cycle the standard's constraint table allows.

The per-command loop runs in numba (``_run_channel``); this module prepares flat arrays from a
:class:`~sim.memory.standard.DramSpec` and splits requests by channel (channels share nothing:
each has its own command and data buses). Time advances from event to event (the earliest cycle
any queued command, arrival or refresh can act), not cycle by cycle.

Controller model (per channel):
* a request queue of ``queue_depth`` entries, filled in arrival order;
* FR-FCFS: each cycle, on the column command bus, the oldest ready row hit; on the row command bus
  (HBM issues a row and a column command in the same cycle), the oldest request's ACT or PRE, a PRE
  only when no queued request still hits the open row;
* open page keeps rows open; closed page closes with RDA / WRA when no queued request hits the row;
* refresh: all-bank (PREA, then REFab every nREFI per refresh node) or per-bank (REFpb to the next
  bank every nREFIpb, after PRE if open); a bank due for refresh takes no new ACT.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from sim.memory.commands import CommandLog
from sim.memory.standard import DramSpec

NONE = -1
BIG = np.int64(1) << 60
HISTORY = 8  # issue times kept per window rule and node: the largest window the engine supports


@dataclass(frozen=True)
class Roles:
    """Indices of the standard's commands by what they do."""

    act: int
    pre: int
    prea: int
    rd: int
    wr: int
    rda: int
    wra: int
    refab: int
    refpb: int


def command_roles(spec: DramSpec) -> Roles:
    s = spec.standard
    bank = s.bank_level

    def find(pred) -> int:
        hits = [i for i, c in enumerate(s.commands) if pred(c)]
        return hits[0] if hits else NONE

    return Roles(
        act=find(lambda c: c.opens),
        pre=find(lambda c: c.closes and c.access is None and c.scope == bank),
        prea=find(lambda c: c.closes and c.access is None and c.scope < bank),
        rd=find(lambda c: c.access == "read" and not c.closes),
        wr=find(lambda c: c.access == "write" and not c.closes),
        rda=find(lambda c: c.access == "read" and c.closes),
        wra=find(lambda c: c.access == "write" and c.closes),
        refab=find(lambda c: c.refresh and c.scope < bank),
        refpb=find(lambda c: c.refresh and c.scope == bank),
    )


@dataclass(frozen=True)
class EngineTables:
    """Flat arrays the numba loop reads (levels 0 .. bank of one channel)."""

    counts: np.ndarray        # int64 [B+1], counts[0] = 1 (one channel at a time)
    level_offset: np.ndarray  # int64 [B+2], start of each level's nodes in `ready`
    c_level: np.ndarray       # int64 [K]
    c_next: np.ndarray        # int64 [K]
    c_lat: np.ndarray         # int64 [K]
    c_window: np.ndarray      # int64 [K]
    c_sibling: np.ndarray     # int64 [K]
    by_prev_ptr: np.ndarray   # CSR over prev command: constraints triggered by it
    by_prev_idx: np.ndarray
    scope: np.ndarray         # int64 [commands]: scope level (clamped to bank)
    bus: np.ndarray           # int64 [commands]: command bus index
    n_buses: int
    roles: np.ndarray         # int64 [9]: act, pre, prea, rd, wr, rda, wra, refab, refpb
    ref_level: int            # level of the all-bank refresh
    timing: np.ndarray        # int64: nCL, nCWL, nBL, nREFI, nREFIpb


def build_tables(spec: DramSpec) -> EngineTables:
    s = spec.standard
    bank = s.bank_level
    counts = np.array([1] + list(spec.counts[1: bank + 1]), dtype=np.int64)
    nodes = np.cumprod(counts)
    level_offset = np.concatenate([[0], np.cumsum(nodes)]).astype(np.int64)
    cons = spec.constraints
    order = sorted(range(len(cons)), key=lambda k: cons[k].prev)
    ptr = np.zeros(len(s.commands) + 1, dtype=np.int64)
    for k in order:
        ptr[cons[k].prev + 1] += 1
    ptr = np.cumsum(ptr)
    roles = command_roles(spec)
    ref_level = s.commands[roles.refab].scope if roles.refab != NONE else 1
    if any(c.window > HISTORY for c in cons):
        raise ValueError(f"engine: a window rule over more than {HISTORY} commands is not supported")
    return EngineTables(
        counts=counts,
        level_offset=level_offset,
        c_level=np.array([c.level for c in cons], np.int64),
        c_next=np.array([c.next for c in cons], np.int64),
        c_lat=np.array([c.latency for c in cons], np.int64),
        c_window=np.array([c.window for c in cons], np.int64),
        c_sibling=np.array([int(c.sibling) for c in cons], np.int64),
        by_prev_ptr=ptr,
        by_prev_idx=np.array(order, np.int64),
        scope=np.array([min(c.scope, bank) for c in s.commands], np.int64),
        bus=np.array(s.command_bus, np.int64),
        n_buses=max(s.command_bus) + 1,
        roles=np.array([roles.act, roles.pre, roles.prea, roles.rd, roles.wr, roles.rda, roles.wra,
                        roles.refab, roles.refpb], np.int64),
        ref_level=ref_level,
        timing=np.array([spec.t("nCL"), spec.t("nCWL"), spec.t("nBL"), spec.t("nREFI"), spec.t("nREFIpb")],
                        np.int64),
    )


# ----------------------------------------------------------------------------------- numba core
@njit(cache=True)
def _node(counts, coords, level):
    """Flat index of the node at ``level`` (within one channel) of a bank coordinate vector."""
    idx = 0
    for lv in range(1, level + 1):
        idx = idx * counts[lv] + coords[lv]
    return idx


@njit(cache=True)
def _timing_state(level_offset, n_cmds, n_constraints):
    """A fresh ready table (every node of levels 0 .. bank x every command) and the window
    histories (the last HISTORY issue times per constraint and node) of one channel."""
    B = level_offset.shape[0] - 2
    n_banks = level_offset[B + 1] - level_offset[B]  # the widest level: every node index fits
    ready = np.zeros((level_offset[B + 1], n_cmds), np.int64)
    hist = np.zeros((n_constraints, n_banks, HISTORY), np.int64)
    hist_pos = np.zeros((n_constraints, n_banks), np.int64)
    hist_n = np.zeros((n_constraints, n_banks), np.int64)
    return ready, hist, hist_pos, hist_n


@njit(cache=True)
def _earliest(cmd, coords, counts, level_offset, scope, ready):
    """First cycle ``cmd`` to ``coords`` satisfies every constraint recorded so far."""
    t = np.int64(0)
    for lv in range(scope[cmd] + 1):
        r = ready[level_offset[lv] + _node(counts, coords, lv), cmd]
        if r > t:
            t = r
    return t


@njit(cache=True)
def _earliest_below(cmd, node_row, level_offset, scope, ready, cap):
    """First cycle ``cmd`` to the node indices ``node_row`` (one per level) satisfies every
    constraint recorded so far, when that is below ``cap``; else some value >= ``cap``: it stops at
    the first level whose ready time reaches ``cap`` (the controller's scans only need the earliest
    cycle of a candidate that could go before the next event)."""
    t = np.int64(0)
    for lv in range(scope[cmd] + 1):
        r = ready[level_offset[lv] + node_row[lv], cmd]
        if r > t:
            t = r
            if t >= cap:
                return t
    return t


@njit(cache=True)
def _issue(cmd, coords, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat, c_window,
           c_sibling, ready, hist, hist_pos, hist_n):
    """Record ``cmd`` issued at ``t``: raise the ready times of every command it constrains."""
    _issue_nodes(cmd, coords, _NO_NODES, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat,
                 c_window, c_sibling, ready, hist, hist_pos, hist_n)


_NO_NODES = np.zeros(0, np.int64)


@njit(cache=True, inline="always")
def _issue_nodes(cmd, coords, nodes, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat,
                 c_window, c_sibling, ready, hist, hist_pos, hist_n):
    """``_issue`` with the node index of each level given (``nodes``, e.g. a request's, precomputed
    once) or, when ``nodes`` is empty, computed from ``coords``."""
    have = nodes.shape[0] > 0
    for j in range(by_prev_ptr[cmd], by_prev_ptr[cmd + 1]):
        k = by_prev_idx[j]
        lv = c_level[k]
        node = nodes[lv] if have else _node(counts, coords, lv)
        nxt = c_next[k]
        if c_window[k] > 1:
            w = c_window[k]
            pos = hist_pos[k, node]
            hist[k, node, pos] = t
            hist_pos[k, node] = (pos + 1) % w
            if hist_n[k, node] < w:
                hist_n[k, node] += 1
            if hist_n[k, node] == w:
                oldest = hist[k, node, hist_pos[k, node]]
                v = oldest + c_lat[k]
                row = level_offset[lv] + node
                if v > ready[row, nxt]:
                    ready[row, nxt] = v
            continue
        v = t + c_lat[k]
        if c_sibling[k] == 1:
            base = node - coords[lv]  # first sibling under the same parent
            for s in range(counts[lv]):
                if s != coords[lv]:
                    row = level_offset[lv] + base + s
                    if v > ready[row, nxt]:
                        ready[row, nxt] = v
        else:
            row = level_offset[lv] + node
            if v > ready[row, nxt]:
                ready[row, nxt] = v


@njit(cache=True)
def _log(out_t, out_c, out_xy, n, t, cmd, coords, row, col, nlev, scope_level):
    out_t[n] = t
    out_c[n] = cmd
    for lv in range(nlev):
        out_xy[n, lv] = -1
    for lv in range(scope_level + 1):
        out_xy[n, lv] = coords[lv]
    return n + 1


@njit(cache=True)
def _run_channel(arrive, is_write, coords, rows, cols, channel, counts, level_offset, c_level, c_next, c_lat,
                 c_window, c_sibling, by_prev_ptr, by_prev_idx, scope, bus, n_buses, roles, ref_level, timing,
                 queue_depth, closed_page, refresh_mode, horizon, out_t, out_c, out_xy, done,
                 pim_cmds, pim_xy, pim_rows, pim_kind, shared, bg_level, pim_t):
    """Simulate one channel. ``coords`` [n, B+1] hold bank coordinates (channel column ignored).
    A PIM program (``pim_cmds``, in order; empty for plain traffic) runs beside the requests with
    priority; ``shared``: one row buffer per bank (blocked PIM). Returns (commands logged, final
    cycle); -1 commands if the log arrays were too small."""
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (roles[0], roles[1], roles[2], roles[3], roles[4], roles[5],
                                                      roles[6], roles[7], roles[8])
    n_cl, n_cwl, n_bl, n_refi, n_refipb = timing[0], timing[1], timing[2], timing[3], timing[4]
    B = counts.shape[0] - 1
    nlev = out_xy.shape[1]
    n_req = arrive.shape[0]
    n_cmds = scope.shape[0]
    n_banks = level_offset[B + 1] - level_offset[B]
    ready, hist, hist_pos, hist_n = _timing_state(level_offset, n_cmds, c_level.shape[0])
    open_row = np.full(n_banks, -1, np.int64)
    # refresh bookkeeping
    ref_nodes = level_offset[ref_level + 1] - level_offset[ref_level]
    banks_per_ref = n_banks // ref_nodes
    next_ref = np.full(ref_nodes, n_refi if refresh_mode == 1 else n_refipb, np.int64)
    ref_bank = np.zeros(ref_nodes, np.int64)  # per-bank refresh: next bank offset in the node
    queue = np.full(queue_depth, -1, np.int64)  # request indices, oldest first (arrival order)
    qbank = np.zeros(queue_depth, np.int64)     # and their banks and rows, in queue order (the scans read these)
    qrow = np.zeros(queue_depth, np.int64)
    qn = 0
    head = 0
    n_log = 0
    cap = out_t.shape[0]
    t = np.int64(0)
    served = 0
    bank_coords = np.zeros(B + 1, np.int64)
    tmp = np.zeros(B + 1, np.int64)
    bus_used = np.zeros(n_buses, np.int64)
    # banks whose refresh is due (no new ACT) / that the next G_ACT takes (single row buffer: no new
    # ACT): marked with the loop's iteration number, so nothing is cleared per iteration
    blocked = np.full(n_banks, -1, np.int64)
    it = np.int64(0)
    bank_of = np.empty(n_req, np.int64)
    req_nodes = np.empty((n_req, B + 1), np.int64)  # node index of each request at each level
    for i in range(n_req):
        for lv in range(B + 1):
            req_nodes[i, lv] = _node(counts, coords[i], lv)
        bank_of[i] = req_nodes[i, B]
    hits = np.zeros(n_banks, np.int64)     # queued requests that hit their bank's open row
    # per bank and command: a cycle before which it cannot issue (an earliest cycle computed earlier,
    # or part of one: the ready table only grows, so it stays a lower bound). The scans skip a queued
    # request while its bank's bound is in the future; it then only makes the next event no later
    # than that bound, which may wake the loop at a cycle where nothing issues (that changes no
    # state: the same commands at the same cycles), and the request is looked at afresh there
    not_before = np.zeros((n_banks, n_cmds), np.int64)
    pim_row = np.full(n_banks, -1, np.int64)
    claimed = np.full(n_banks, -1, np.int64)
    n_pim = pim_cmds.shape[0]
    pp = 0
    banks_per_bg = n_banks // (level_offset[bg_level + 1] - level_offset[bg_level])
    while served < n_req or pp < n_pim:
        # admit arrivals into free queue slots
        while qn < queue_depth and head < n_req and arrive[head] <= t:
            queue[qn] = head
            qbank[qn] = bank_of[head]
            qrow[qn] = rows[head]
            qn += 1
            if open_row[bank_of[head]] == rows[head]:
                hits[bank_of[head]] += 1
            head += 1
        bus_used[:] = 0
        it += 1
        next_event = BIG
        if head < n_req and arrive[head] > t:
            next_event = arrive[head]
        # ------------------------------------------------------------- refresh
        if refresh_mode != 0:
            for r in range(ref_nodes):
                if t < next_ref[r]:
                    if next_ref[r] < next_event:
                        next_event = next_ref[r]
                    continue
                # decode the refresh node into coordinates (levels 1..ref_level)
                rem = r
                for lv in range(ref_level, 0, -1):
                    tmp[lv] = rem % counts[lv]
                    rem //= counts[lv]
                tmp[0] = 0
                first_bank = r * banks_per_ref
                if refresh_mode == 1:  # all-bank
                    any_open = False
                    pim_open = False
                    for b in range(first_bank, first_bank + banks_per_ref):
                        blocked[b] = it
                        if open_row[b] != -1:
                            any_open = True
                        if pim_row[b] != -1:
                            pim_open = True
                    if pim_open:
                        continue  # the PIM tile closes its rows first (PIM_PRE), then PREA / refresh
                    cmd = prea if any_open else refab
                    e = _earliest(cmd, tmp, counts, level_offset, scope, ready)
                    if e <= t and bus_used[bus[cmd]] == 0:
                        if n_log >= cap:
                            return -1, t
                        _issue(cmd, tmp, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat,
                               c_window, c_sibling, ready, hist, hist_pos, hist_n)
                        n_log = _log(out_t, out_c, out_xy, n_log, t, cmd, tmp, -1, -1, nlev, ref_level)
                        out_xy[n_log - 1, 0] = channel
                        bus_used[bus[cmd]] = 1
                        if any_open:
                            for b in range(first_bank, first_bank + banks_per_ref):
                                open_row[b] = -1
                                hits[b] = 0
                        else:
                            next_ref[r] += n_refi
                    elif e < next_event:
                        next_event = max(e, t + 1)
                else:  # per-bank
                    b = first_bank + ref_bank[r]
                    blocked[b] = it
                    if pim_row[b] != -1 and open_row[b] == -1:
                        continue
                    rem = b
                    for lv in range(B, 0, -1):
                        bank_coords[lv] = rem % counts[lv]
                        rem //= counts[lv]
                    cmd = pre if open_row[b] != -1 else refpb
                    e = _earliest(cmd, bank_coords, counts, level_offset, scope, ready)
                    if e <= t and bus_used[bus[cmd]] == 0:
                        if n_log >= cap:
                            return -1, t
                        _issue(cmd, bank_coords, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                               c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                        n_log = _log(out_t, out_c, out_xy, n_log, t, cmd, bank_coords, -1, -1, nlev, B)
                        out_xy[n_log - 1, 0] = channel
                        bus_used[bus[cmd]] = 1
                        if cmd == pre:
                            open_row[b] = -1
                            hits[b] = 0
                        else:
                            next_ref[r] += n_refipb
                            ref_bank[r] = (ref_bank[r] + 1) % banks_per_ref
                    elif e < next_event:
                        next_event = max(e, t + 1)
        # ------------------------------------------------------------- PIM program: priority
        if pp < n_pim:
            cmd = pim_cmds[pp]
            kind = pim_kind[cmd]
            can = True
            if kind == 1:  # G_ACT: a new tile waits for a due refresh; a started tile finishes first
                tile_open = False
                for b in range(n_banks):
                    if pim_row[b] != -1:
                        tile_open = True
                        break
                g0 = _node(counts, pim_xy[pp], bg_level) * banks_per_bg
                for b in range(g0, g0 + banks_per_bg):
                    if blocked[b] == it and not tile_open:
                        can = False
                    if shared:
                        claimed[b] = it
                        if open_row[b] != -1:
                            can = False
                            rem = b
                            for lv in range(B, 0, -1):
                                bank_coords[lv] = rem % counts[lv]
                                rem //= counts[lv]
                            e = _earliest(pre, bank_coords, counts, level_offset, scope, ready)
                            if e <= t and bus_used[bus[pre]] == 0:
                                if n_log >= cap:
                                    return -1, t
                                _issue(pre, bank_coords, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level,
                                       c_next, c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                                n_log = _log(out_t, out_c, out_xy, n_log, t, pre, bank_coords, -1, -1, nlev, B)
                                out_xy[n_log - 1, 0] = channel
                                bus_used[bus[pre]] = 1
                                open_row[b] = -1
                                hits[b] = 0
                            elif e < next_event:
                                next_event = max(e, t + 1)
            if can:
                e = _earliest(cmd, pim_xy[pp], counts, level_offset, scope, ready)
                if e <= t and bus_used[bus[cmd]] == 0:
                    if n_log >= cap:
                        return -1, t
                    _issue(cmd, pim_xy[pp], t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                           c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                    lvl = scope[cmd]
                    n_log = _log(out_t, out_c, out_xy, n_log, t, cmd, pim_xy[pp], -1, -1, nlev, lvl)
                    out_xy[n_log - 1, 0] = channel
                    bus_used[bus[cmd]] = 1
                    pim_t[pp] = t
                    if kind == 1:
                        out_xy[n_log - 1, B + 1] = pim_rows[pp]
                        g0 = _node(counts, pim_xy[pp], bg_level) * banks_per_bg
                        for b in range(g0, g0 + banks_per_bg):
                            pim_row[b] = pim_rows[pp]
                    elif kind == 2:
                        pim_row[:] = -1
                    pp += 1
                elif e < next_event:
                    next_event = max(e, t + 1)
        # ------------------------------------------------------------- column bus: oldest ready hit
        best_q = -1
        for q in range(qn):  # oldest first: the first ready hit is the FR-FCFS choice
            b = qbank[q]
            if open_row[b] != qrow[q] or blocked[b] == it or (shared and claimed[b] == it):
                continue  # a due refresh (or PIM, single row buffer) is not put off by row hits
            i = queue[q]
            cmd = wr if is_write[i] else rd
            if bus_used[bus[cmd]] != 0:
                break
            lo = not_before[b, cmd]
            if lo > t:               # known not ready yet (see not_before)
                if lo < next_event:
                    next_event = lo
                continue
            e = _earliest_below(cmd, req_nodes[i], level_offset, scope, ready, next_event)
            if e <= t:
                best_q = q
                break
            not_before[b, cmd] = e
            if e < next_event:
                next_event = max(e, t + 1)
        if best_q != -1:
            i = queue[best_q]
            b = bank_of[i]
            cmd = wr if is_write[i] else rd
            hits[b] -= 1
            if closed_page and hits[b] == 0:
                cmd = wra if is_write[i] else rda
            if n_log >= cap:
                return -1, t
            _issue_nodes(cmd, coords[i], req_nodes[i], t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level,
                         c_next, c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
            n_log = _log(out_t, out_c, out_xy, n_log, t, cmd, coords[i], rows[i], cols[i], nlev, B)
            out_xy[n_log - 1, 0] = channel
            out_xy[n_log - 1, B + 1] = rows[i]
            out_xy[n_log - 1, B + 2] = cols[i]
            bus_used[bus[cmd]] = 1
            done[i] = t + (n_cwl if is_write[i] else n_cl) + n_bl
            if cmd == rda or cmd == wra:
                open_row[b] = -1
                hits[b] = 0
            for q in range(best_q, qn - 1):
                queue[q] = queue[q + 1]
                qbank[q] = qbank[q + 1]
                qrow[q] = qrow[q + 1]
            qn -= 1
            queue[qn] = -1
            served += 1
        # ------------------------------------------------------------- row bus: oldest ACT / PRE
        best_q = -1
        best_cmd = -1
        for q in range(qn):
            b = qbank[q]
            if open_row[b] == qrow[q] or blocked[b] == it and open_row[b] == -1:
                continue
            i = queue[q]
            if shared and open_row[b] == -1 and (pim_row[b] != -1 or claimed[b] == it):
                continue  # one row buffer: the bank is PIM's until PIM_PRE
            if open_row[b] == -1:
                cmd = act
            else:
                if hits[b] > 0:  # conflict: precharge only once no queued request hits the open row
                    continue
                cmd = pre
            if bus_used[bus[cmd]] != 0:
                break
            lo = not_before[b, cmd]
            if lo > t:
                if lo < next_event:
                    next_event = lo
                continue
            e = _earliest_below(cmd, req_nodes[i], level_offset, scope, ready, next_event)
            if e <= t:
                best_q = q
                best_cmd = cmd
                break
            not_before[b, cmd] = e
            if e < next_event:
                next_event = max(e, t + 1)
        if best_q != -1:
            i = queue[best_q]
            b = bank_of[i]
            if n_log >= cap:
                return -1, t
            _issue_nodes(best_cmd, coords[i], req_nodes[i], t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level,
                         c_next, c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
            n_log = _log(out_t, out_c, out_xy, n_log, t, best_cmd, coords[i], -1, -1, nlev, B)
            out_xy[n_log - 1, 0] = channel
            if best_cmd == act:
                out_xy[n_log - 1, B + 1] = rows[i]
                open_row[b] = rows[i]
                hits[b] = 0
                for q in range(qn):
                    if qbank[q] == b and qrow[q] == rows[i]:
                        hits[b] += 1
            else:
                open_row[b] = -1
                hits[b] = 0
            bus_used[bus[best_cmd]] = 1
        # ------------------------------------------------------------- advance time
        issued = 0
        for k in range(n_buses):
            issued += bus_used[k]
        if issued > 0:
            t += 1
        else:
            if next_event == BIG:
                return -2, t  # nothing can ever issue again (e.g. a PIM program left rows open)
            t = max(next_event, t + 1)
        if t > horizon:
            break
    return n_log, t


# ----------------------------------------------------------------------------------- Python API
def _no_program(B: int):
    z = np.zeros(0, np.int64)
    return z, np.zeros((0, B + 1), np.int64), z, np.zeros(1, np.int64), False, 1, np.zeros(0, np.int64)



@njit(cache=True)
def _merge_by_cycle(buf_t, buf_c, buf_xy, run_start, run_len, out_t, out_c, out_xy):
    """Merge per-channel logs (run r: rows ``run_start[r]`` onwards, ``run_len[r]`` of them, each
    run in cycle order) into one log in cycle order; equal cycles keep run order, as a stable sort
    of their concatenation would. A counting sort over the cycles when they span at most 8 rows
    per command (the usual case: every channel busy), else a stable merge sort."""
    n = out_t.shape[0]
    nlev = out_xy.shape[1]
    n_runs = run_start.shape[0]
    if n == 0:
        return
    t_lo = np.int64(1) << 62
    t_hi = -t_lo
    for r in range(n_runs):
        if run_len[r] > 0:
            t_lo = min(t_lo, buf_t[run_start[r]])
            t_hi = max(t_hi, buf_t[run_start[r] + run_len[r] - 1])
    span = t_hi - t_lo + 1
    if span <= 8 * n + 1024:
        pos = np.zeros(span + 1, np.int64)
        for r in range(n_runs):
            for i in range(run_start[r], run_start[r] + run_len[r]):
                pos[buf_t[i] - t_lo + 1] += 1
        for k in range(span):
            pos[k + 1] += pos[k]
        for r in range(n_runs):
            for i in range(run_start[r], run_start[r] + run_len[r]):
                k = buf_t[i] - t_lo
                j = pos[k]
                pos[k] = j + 1
                out_t[j] = buf_t[i]
                out_c[j] = buf_c[i]
                for lv in range(nlev):
                    out_xy[j, lv] = buf_xy[i, lv]
        return
    rows = np.empty(n, np.int64)
    allt = np.empty(n, np.int64)
    j = 0
    for r in range(n_runs):
        for i in range(run_start[r], run_start[r] + run_len[r]):
            rows[j] = i
            allt[j] = buf_t[i]
            j += 1
    order = np.argsort(allt, kind="mergesort")
    for j in range(n):
        i = rows[order[j]]
        out_t[j] = buf_t[i]
        out_c[j] = buf_c[i]
        for lv in range(nlev):
            out_xy[j, lv] = buf_xy[i, lv]


@dataclass
class EngineResult:
    log: CommandLog
    done_cycle: np.ndarray   # per request: cycle its data transfer ends
    cycles: int              # last data transfer end over all channels


def run(spec: DramSpec, arrive: np.ndarray, is_write: np.ndarray, coords: np.ndarray, queue_depth: int = 32,
        page_policy: str = "open", refresh: str = "all_bank", horizon: int = 1 << 50) -> EngineResult:
    """Serve requests (arrival cycle, read/write, full coordinates [n, levels]) and log every command.

    ``coords`` columns follow the standard's levels: channel, ..., bank, row, column (in bursts).
    Requests must be sorted by arrival.
    """
    tab = build_tables(spec)
    s = spec.standard
    B = s.bank_level
    nlev = len(s.levels)
    arrive = np.asarray(arrive, np.int64)
    is_write = np.asarray(is_write, np.bool_)
    coords = np.asarray(coords, np.int64)
    n = arrive.shape[0]
    if n and np.any(np.diff(arrive) < 0):
        raise ValueError("requests must be sorted by arrival cycle")
    done = np.full(n, -1, np.int64)
    refresh_mode = {"none": 0, "all_bank": 1, "per_bank": 2}[refresh]
    end = 0
    ch_col = coords[:, 0]
    if n and 0 <= ch_col.min() and ch_col.max() < (1 << 15):
        ch_col = ch_col.astype(np.int16)     # numpy's stable sort of 16-bit keys is a radix sort (4x faster)
    by_channel = np.argsort(ch_col, kind="stable") if n else np.zeros(0, np.int64)
    channels = ch_col[by_channel] if n else np.zeros(0, np.int64)
    bounds = np.flatnonzero(np.diff(channels)) + 1
    groups = np.split(by_channel, bounds) if n else []
    # one log buffer for every channel (each its slice: 4 commands a request and some slack; a channel
    # that needs more gets a buffer of its own), merged by cycle at the end
    caps = [4 * len(sel) + 1024 for sel in groups]
    start = np.concatenate(([0], np.cumsum(caps))).astype(np.int64)
    buf_t = np.empty(int(start[-1]), np.int64)
    buf_c = np.empty(int(start[-1]), np.int16)      # the log's own types: no conversion afterwards
    buf_xy = np.empty((int(start[-1]), nlev), np.int32)
    run_start = start[:-1].copy()
    run_len = np.zeros(len(groups), np.int64)
    extra = []        # logs of channels that outgrew their slice: appended to the buffers at the end
    for k, sel in enumerate(groups):
        ch = int(coords[sel[0], 0])
        sub = coords[sel]
        cap = caps[k]
        out_t, out_c, out_xy = buf_t[start[k]:start[k + 1]], buf_c[start[k]:start[k + 1]], buf_xy[start[k]:start[k + 1]]
        while True:
            d = np.full(len(sel), -1, np.int64)
            n_log, t_end = _run_channel(
                arrive[sel], is_write[sel], sub[:, : B + 1], sub[:, B + 1], sub[:, B + 2], ch,
                tab.counts, tab.level_offset, tab.c_level, tab.c_next, tab.c_lat, tab.c_window, tab.c_sibling,
                tab.by_prev_ptr, tab.by_prev_idx, tab.scope, tab.bus, tab.n_buses, tab.roles, tab.ref_level,
                tab.timing, queue_depth, page_policy == "closed", refresh_mode, horizon, out_t, out_c, out_xy, d,
                *_no_program(B))
            if n_log == -2:
                raise RuntimeError(f"engine: channel {ch} can make no progress at cycle {t_end}")
            if n_log >= 0:
                break
            cap *= 2
            out_t, out_c, out_xy = np.empty(cap, np.int64), np.empty(cap, np.int16), np.empty((cap, nlev), np.int32)
        done[sel] = d
        run_len[k] = n_log
        if cap != caps[k]:
            run_start[k] = int(start[-1]) + sum(len(e[0]) for e in extra)
            extra.append((out_t[:n_log], out_c[:n_log], out_xy[:n_log]))
        end = max(end, int(d.max()) if len(d) else 0)
    if extra:
        buf_t = np.concatenate([buf_t] + [e[0] for e in extra])
        buf_c = np.concatenate([buf_c] + [e[1] for e in extra])
        buf_xy = np.concatenate([buf_xy] + [e[2] for e in extra])
    total = int(run_len.sum())
    log = CommandLog(np.empty(total, np.int64), np.empty(total, np.int16), np.empty((total, nlev), np.int32))
    _merge_by_cycle(buf_t, buf_c, buf_xy, run_start, run_len, log.cycle, log.cmd, log.coords)
    return EngineResult(log=log, done_cycle=done, cycles=end)


# ----------------------------------------------------------------------------------- command fuzzer
@njit(cache=True)
def _fuzz_channel(n, seed, rows_used, counts, level_offset, c_level, c_next, c_lat, c_window, c_sibling,
                  by_prev_ptr, by_prev_idx, scope, bus, n_buses, roles, ref_level, out_t, out_c, out_xy,
                  pim_roles, shared, bg_level):
    """Issue ``n`` random state-legal commands to channel 0, each at the first cycle the ready
    table allows (and its command bus is free). Exercises every constraint, whatever a controller
    policy would or would not do."""
    np.random.seed(seed)
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (roles[0], roles[1], roles[2], roles[3], roles[4], roles[5],
                                                      roles[6], roles[7], roles[8])
    B = counts.shape[0] - 1
    n_cmds = scope.shape[0]
    n_banks = level_offset[B + 1] - level_offset[B]
    ready, hist, hist_pos, hist_n = _timing_state(level_offset, n_cmds, c_level.shape[0])
    open_row = np.full(n_banks, -1, np.int64)
    bus_last = np.full(n_buses, -1, np.int64)
    ref_nodes = level_offset[ref_level + 1] - level_offset[ref_level]
    banks_per_ref = n_banks // ref_nodes
    coords = np.zeros(B + 1, np.int64)
    t = np.int64(0)
    b = 0
    # PIM (a PIM standard): G_ACT, COMP, READRES, PIM_PRE, GWRITE, P_HEADER; -1 when absent
    gact, comp, readres, pimpre, gwrite, pheader = (pim_roles[0], pim_roles[1], pim_roles[2], pim_roles[3],
                                                    pim_roles[4], pim_roles[5])
    pim_row = np.full(n_banks, -1, np.int64)
    banks_per_bg = n_banks // (level_offset[bg_level + 1] - level_offset[bg_level])
    for k in range(n):
        if np.random.random() < 0.5:  # stay near the last bank: same refresh node, often the same bank
            first = (b // banks_per_ref) * banks_per_ref
            b = first + np.random.randint(0, min(banks_per_ref, 4))
        else:
            b = np.random.randint(0, n_banks)
        rem = b
        for lv in range(B, 0, -1):
            coords[lv] = rem % counts[lv]
            rem //= counts[lv]
        r = np.random.random()
        row = -1
        level = B
        cmd = -1
        any_pim = False
        for bb in range(n_banks):
            if pim_row[bb] != -1:
                any_pim = True
                break
        g0 = (b // banks_per_bg) * banks_per_bg
        if gact >= 0 and np.random.random() < 0.35:
            r2 = np.random.random()
            want_gact = (r2 < 0.6) if not any_pim else (0.65 <= r2 < 0.8)
            if want_gact:
                legal = True
                blocker = -1
                for bb in range(g0, g0 + banks_per_bg):
                    if pim_row[bb] != -1:
                        legal = False
                    if shared and open_row[bb] != -1:
                        legal = False
                        blocker = bb
                if legal:
                    cmd = gact
                    level = bg_level
                    row = np.random.randint(0, rows_used)
                elif blocker >= 0 and pim_row[blocker] == -1:
                    b = blocker  # single row buffer: precharge the normal row first
                    rem = b
                    for lv in range(B, 0, -1):
                        coords[lv] = rem % counts[lv]
                        rem //= counts[lv]
                    cmd = pre
                elif any_pim:
                    cmd = pimpre
                    level = 0
            elif not any_pim:
                cmd = gwrite if r2 < 0.8 else pheader
                level = 0
            else:
                cmd = comp if r2 < 0.45 else (readres if r2 < 0.65 else pimpre)
                level = 0
        if cmd == -1:
            if open_row[b] == -1:
                if shared and pim_row[b] != -1 and r < 0.6:
                    cmd = pimpre  # single row buffer: the PIM row must close before an ACT
                    level = 0
                elif r < 0.6:
                    cmd = act
                    row = np.random.randint(0, rows_used)
                elif r < 0.75 and refpb >= 0:
                    cmd = refpb if pim_row[b] == -1 else pimpre
                    level = B if pim_row[b] == -1 else 0
                elif r < 0.85 and prea >= 0:
                    cmd = prea
                    level = ref_level
                    if shared:
                        first = (b // banks_per_ref) * banks_per_ref
                        for bb in range(first, first + banks_per_ref):
                            if pim_row[bb] != -1:
                                cmd = pimpre  # one row buffer: PREA would close a PIM row
                                level = 0
                                break
                elif refab >= 0:
                    first = (b // banks_per_ref) * banks_per_ref
                    closed = True
                    pim_closed = True
                    for bb in range(first, first + banks_per_ref):
                        if open_row[bb] != -1:
                            closed = False
                        if pim_row[bb] != -1:
                            pim_closed = False
                    if not pim_closed:
                        cmd = pimpre
                        level = 0
                    else:
                        cmd = refab if closed else prea
                        level = ref_level
                else:
                    cmd = act
                    row = np.random.randint(0, rows_used)
            else:
                row = open_row[b]
                if r < 0.3:
                    cmd = rd
                elif r < 0.55:
                    cmd = wr
                elif r < 0.65:
                    cmd = rda
                elif r < 0.75:
                    cmd = wra
                elif r < 0.92:
                    cmd = pre
                    row = -1
                else:
                    cmd = prea
                    level = ref_level
                    row = -1
                    if shared:
                        first = (b // banks_per_ref) * banks_per_ref
                        for bb in range(first, first + banks_per_ref):
                            if pim_row[bb] != -1:
                                cmd = pre  # one row buffer: PREA would close a PIM row
                                level = B
                                break
        e = _earliest(cmd, coords, counts, level_offset, scope, ready)
        if e > t:
            t = e
        while bus_last[bus[cmd]] >= t:
            t += 1
        bus_last[bus[cmd]] = t
        _issue(cmd, coords, t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat, c_window,
               c_sibling, ready, hist, hist_pos, hist_n)
        out_t[k] = t
        out_c[k] = cmd
        for lv in range(out_xy.shape[1]):
            out_xy[k, lv] = -1
        out_xy[k, 0] = 0
        for lv in range(1, level + 1):
            out_xy[k, lv] = coords[lv]
        if cmd == act:
            open_row[b] = row
            out_xy[k, B + 1] = row
        elif cmd == rd or cmd == wr or cmd == rda or cmd == wra:
            out_xy[k, B + 1] = row
            out_xy[k, B + 2] = np.random.randint(0, 4)
            if cmd == rda or cmd == wra:
                open_row[b] = -1
        elif cmd == pre:
            open_row[b] = -1
        elif cmd == prea:
            first = (b // banks_per_ref) * banks_per_ref
            for bb in range(first, first + banks_per_ref):
                open_row[bb] = -1
        elif cmd == gact:
            out_xy[k, B + 1] = row
            for bb in range(g0, g0 + banks_per_bg):
                pim_row[bb] = row
        elif cmd == pimpre:
            pim_row[:] = -1
    return t


def fuzz_commands(spec: DramSpec, n: int, seed: int = 0, rows_used: int = 4) -> CommandLog:
    """``n`` random state-legal commands, each issued as early as the engine's timing core allows."""
    tab = build_tables(spec)
    nlev = len(spec.standard.levels)
    out_t = np.zeros(n, np.int64)
    out_c = np.zeros(n, np.int64)
    out_xy = np.full((n, nlev), -1, np.int64)
    s = spec.standard
    pim = {c.pim: i for i, c in enumerate(s.commands) if c.pim}
    pim_roles = np.array([pim.get(k, -1) for k in ("open", "compute", "result", "close", "load", "header")], np.int64)
    bg_level = s.level_index("bankgroup") if any(l.name == "bankgroup" for l in s.levels) else s.bank_level
    _fuzz_channel(n, seed, rows_used, tab.counts, tab.level_offset, tab.c_level, tab.c_next, tab.c_lat, tab.c_window,
                  tab.c_sibling, tab.by_prev_ptr, tab.by_prev_idx, tab.scope, tab.bus, tab.n_buses, tab.roles,
                  tab.ref_level, out_t, out_c, out_xy, pim_roles, spec.shared_row_buffer, bg_level)
    return CommandLog(out_t, out_c.astype(np.int16), out_xy.astype(np.int32))


# ----------------------------------------------------------------------------------- command programs
def run_program(spec: DramSpec, program: list[tuple[str, dict[str, int]]], channel: int = 0,
                refresh: bool = True) -> CommandLog:
    """Issue ``program`` ((command name, {level: index}) in order) on one channel as early as the
    standard allows; returns the command log (the row coordinate carries an ACT's or G_ACT's row).
    A PIM program gets all-bank refreshes between its tiles (see ``_run_runs``; ``refresh=False``
    leaves them out); they are in the log."""
    tab = build_tables(spec)
    s = spec.standard
    B = s.bank_level
    names = [lvl.name for lvl in s.levels]
    n = len(program)
    cmds = np.array([s.command_index(c) for c, _ in program], np.int64)
    xy = np.full((n, len(names)), -1, np.int64)
    for k, (c, where) in enumerate(program):
        for lvl, v in where.items():
            xy[k, names.index(lvl)] = v
        xy[k, 0] = channel
    node_xy = np.where(xy[:, : B + 1] < 0, 0, xy[:, : B + 1])
    out_t = np.zeros(n, np.int64)
    last = np.zeros(n, np.int64)
    header, close, refab, n_refi, ref_t, ref_rank = _refresh_args(spec, cmds, refresh)
    _, n_ref = _run_runs(cmds, node_xy, np.ones(n, np.int64), np.ones(len(s.commands), np.int64), tab.counts,
                         tab.level_offset, tab.c_level, tab.c_next, tab.c_lat, tab.c_window, tab.c_sibling,
                         tab.by_prev_ptr, tab.by_prev_idx, tab.scope, tab.bus, tab.n_buses, out_t, last, header, close,
                         refab, n_refi, ref_t, ref_rank)
    if n_ref:
        rxy = np.full((n_ref, len(names)), -1, np.int64)
        rxy[:, 0] = channel
        rxy[:, 1] = ref_rank[:n_ref]
        all_t = np.concatenate([out_t, ref_t[:n_ref]])
        order = np.argsort(all_t, kind="stable")
        cmds = np.concatenate([cmds, np.full(n_ref, refab, np.int64)])[order]
        xy = np.concatenate([xy, rxy])[order]
        out_t = all_t[order]
    return CommandLog(out_t, cmds.astype(np.int16), xy.astype(np.int32))


def run_spacing(spec: DramSpec) -> np.ndarray:
    """Per command: the spacing of back-to-back issues of that command to one node (the max over
    the window-1, non-sibling rules binding the pair at any level), at least one cycle (its
    command bus)."""
    sp = np.ones(len(spec.standard.commands), np.int64)
    for c in spec.constraints:
        if c.prev == c.next and c.window == 1 and not c.sibling:
            sp[c.prev] = max(sp[c.prev], c.latency)
    return sp


@njit(cache=True)
def _run_runs(cmds, coords, repeats, spacing, counts, level_offset, c_level, c_next, c_lat, c_window, c_sibling,
              by_prev_ptr, by_prev_idx, scope, bus, n_buses, first_t, last_t, header_cmd, close_cmd, refab_cmd,
              n_refi, ref_t, ref_rank):
    """``_run_program`` over runs: run k is ``repeats[k]`` issues of one command to one node, the
    first as early as the table allows, the others ``spacing[cmd]`` apart. Only the last issue is
    recorded: for window-1 rules a later issue of the same command dominates an earlier one, so the
    result equals the expanded program's (runs of windowed commands are refused by the caller).

    Refresh (``refab_cmd`` >= 0 and ``n_refi`` > 0): an all-bank refresh per rank, ranks staggered
    over nREFI (rank r first due at nREFI (r + 1) / ranks). A PIM tile (``header_cmd`` .. ``close_cmd``)
    needs every bank, so refreshes go between tiles: before a tile's header, every rank whose
    refresh falls due before the tile would end (the previous tile's length) is refreshed first
    (JEDEC allows pulling a refresh in). Returns (last cycle, refreshes issued)."""
    ready, hist, hist_pos, hist_n = _timing_state(level_offset, scope.shape[0], c_level.shape[0])
    bus_last = np.full(n_buses, -1, np.int64)
    t = np.int64(0)
    B = counts.shape[0] - 1
    n_ranks = counts[1] if B >= 1 else 1
    next_due = np.empty(n_ranks, np.int64)
    for r in range(n_ranks):
        next_due[r] = n_refi * (r + 1) // n_ranks
    ref_xy = np.zeros(B + 1, np.int64)
    n_ref = 0
    tile_start = np.int64(-1)
    tile_len = np.int64(0)
    for k in range(cmds.shape[0]):
        cmd = cmds[k]
        if cmd == header_cmd and refab_cmd >= 0 and n_refi > 0:
            for r in range(n_ranks):
                if next_due[r] <= t + tile_len:
                    ref_xy[1] = r
                    e = _earliest(refab_cmd, ref_xy, counts, level_offset, scope, ready)
                    if e < t:
                        e = t
                    while bus_last[bus[refab_cmd]] >= e:
                        e += 1
                    bus_last[bus[refab_cmd]] = e
                    _issue(refab_cmd, ref_xy, e, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                           c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                    ref_t[n_ref] = e
                    ref_rank[n_ref] = r
                    n_ref += 1
                    t = e
                    next_due[r] += n_refi
        e = _earliest(cmd, coords[k], counts, level_offset, scope, ready)
        if e > t:
            t = e
        while bus_last[bus[cmd]] >= t:
            t += 1
        first_t[k] = t
        t += (repeats[k] - 1) * spacing[cmd]
        bus_last[bus[cmd]] = t
        _issue(cmd, coords[k], t, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next, c_lat, c_window,
               c_sibling, ready, hist, hist_pos, hist_n)
        last_t[k] = t
        if cmd == header_cmd:
            tile_start = first_t[k]
        elif cmd == close_cmd and tile_start >= 0:
            tile_len = t - tile_start
            tile_start = -1
    return t, n_ref


def _refresh_args(spec: DramSpec, cmds: np.ndarray, refresh: bool):
    """(header, close, REFab command indices, nREFI, refresh buffers) for ``_run_runs``."""
    s = spec.standard
    names = [c.name for c in s.commands]
    header = names.index("P_HEADER") if "P_HEADER" in names else -1
    close = names.index("PIM_PRE") if "PIM_PRE" in names else -1
    refab = names.index("REFab") if (refresh and "REFab" in names and header >= 0) else -1
    n_refi = int(spec.t("nREFI")) if refab >= 0 else 0
    ranks = int(spec.counts[1]) if s.bank_level >= 1 else 1
    cap = (int(np.sum(cmds == header)) + 1) * ranks if refab >= 0 else 1
    return header, close, refab, n_refi, np.zeros(cap, np.int64), np.zeros(cap, np.int64)


@dataclass
class RunsResult:
    first: np.ndarray    # issue cycle of each run's first command
    last: np.ndarray     # issue cycle of each run's last command
    spacing: np.ndarray  # per run: cycles between its commands
    commands: int        # commands the runs stand for (refreshes not counted)
    refresh_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))     # REFab issue cycles
    refresh_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def cycles(self) -> int:
        """The last command's cycle + 1 (0 for no runs)."""
        return int(self.last[-1]) + 1 if len(self.last) else 0


def runs_to_arrays(spec: DramSpec, runs: list[tuple[str, dict[str, int], int]]):
    """(command index, node coordinates [levels 0 .. bank], repeat) arrays of a list of runs, the
    form :func:`run_runs` takes (concatenate several requests' arrays to issue them in order)."""
    s = spec.standard
    names = [lvl.name for lvl in s.levels]
    n = len(runs)
    index = {c.name: i for i, c in enumerate(s.commands)}
    cmds = np.array([index[c] for c, _, _ in runs], np.int64)
    reps = np.array([k for _, _, k in runs], np.int64)
    xy = np.zeros((n, s.bank_level + 1), np.int64)
    for k, (_, where, _) in enumerate(runs):
        for lvl, v in where.items():
            if lvl != "row":
                xy[k, names.index(lvl)] = v
    return cmds, xy, reps


def run_runs(spec: DramSpec, cmds: np.ndarray, xy: np.ndarray, reps: np.ndarray, refresh: bool = True) -> RunsResult:
    """:func:`run_program` for a program given as runs on one channel, one event per run: the fast
    path of PIM kernels (a tile's COMPs and READRESs are runs). Issue times equal the expanded
    program's (tested); a run of a command bound to itself by a window rule (tFAW-style) is
    refused, since its issues would not be evenly spaced."""
    s = spec.standard
    if len(reps) and reps.min() < 1:
        raise ValueError("run_runs: every run repeats its command at least once")
    windowed = {c.prev for c in spec.constraints if c.prev == c.next and c.window > 1}
    bad = {s.commands[c].name for c in np.unique(cmds[reps > 1]) if c in windowed}
    if bad:
        raise ValueError(f"run_runs: runs of {sorted(bad)} (bound by a window rule) are not supported")
    tab = build_tables(spec)
    n = len(cmds)
    first = np.zeros(n, np.int64)
    last = np.zeros(n, np.int64)
    sp = run_spacing(spec)
    cmds = np.ascontiguousarray(cmds, np.int64)
    header, close, refab, n_refi, ref_t, ref_rank = _refresh_args(spec, cmds, refresh)
    _, n_ref = _run_runs(cmds, np.ascontiguousarray(xy, np.int64), np.ascontiguousarray(reps, np.int64), sp,
                         tab.counts, tab.level_offset, tab.c_level, tab.c_next, tab.c_lat, tab.c_window, tab.c_sibling,
                         tab.by_prev_ptr, tab.by_prev_idx, tab.scope, tab.bus, tab.n_buses, first, last, header,
                         close, refab, n_refi, ref_t, ref_rank)
    return RunsResult(first, last, sp[cmds], int(reps.sum()), ref_t[:n_ref].copy(), ref_rank[:n_ref].copy())


def run_program_runs(spec: DramSpec, runs: list[tuple[str, dict[str, int], int]], refresh: bool = True) -> RunsResult:
    """:func:`run_runs` for runs given as (command name, {level: index}, repeat)."""
    return run_runs(spec, *runs_to_arrays(spec, runs), refresh=refresh)


@dataclass
class MixedResult:
    result: EngineResult
    pim_issue: np.ndarray    # issue cycle of every PIM command
    pim_cycles: int          # the PIM program's last command cycle + 1


def run_mixed(spec: DramSpec, program: list[tuple[str, dict[str, int]]], arrive: np.ndarray, is_write: np.ndarray,
              coords: np.ndarray, channel: int = 0, queue_depth: int = 32, page_policy: str = "open",
              refresh: str = "all_bank") -> MixedResult:
    """Normal requests and a PIM program on one channel at once (PIM first, normal traffic in the
    gaps). ``spec`` is a PIM spec (``MemoryConfig.spec(pim=True)``): its mode decides whether a
    bank's PIM row and normal row share one row buffer (single) or not (dual)."""
    tab = build_tables(spec)
    s = spec.standard
    B = s.bank_level
    nlev = len(s.levels)
    names = [lvl.name for lvl in s.levels]
    coords = np.asarray(coords, np.int64)
    if len(coords) and np.any(coords[:, 0] != channel):
        raise ValueError(f"run_mixed: every request must be on channel {channel}")
    kinds = {"open": 1, "close": 2, "compute": 3}
    pim_kind = np.array([kinds.get(c.pim, 0) for c in s.commands], np.int64)
    open_rows = False
    for c, _ in program:
        k = kinds.get(s.commands[s.command_index(c)].pim, 0)
        open_rows = True if k == 1 else (False if k == 2 else open_rows)
    if open_rows:
        raise ValueError("run_mixed: the PIM program must close its rows (PIM_PRE after its last G_ACT)")
    m = len(program)
    pim_cmds = np.array([s.command_index(c) for c, _ in program], np.int64)
    pim_xy = np.zeros((m, B + 1), np.int64)
    pim_rows = np.full(m, -1, np.int64)
    for k, (_, where) in enumerate(program):
        for lvl, v in where.items():
            if lvl == "row":
                pim_rows[k] = v
            else:
                pim_xy[k, names.index(lvl)] = v
    n = len(arrive)
    cap = 4 * (n + m) + 1024
    while True:
        out_t = np.empty(cap, np.int64)
        out_c = np.empty(cap, np.int16)
        out_xy = np.empty((cap, nlev), np.int32)
        done = np.full(n, -1, np.int64)
        pim_t = np.full(m, -1, np.int64)
        n_log, _ = _run_channel(
            np.asarray(arrive, np.int64), np.asarray(is_write, np.bool_), coords[:, : B + 1], coords[:, B + 1],
            coords[:, B + 2], channel, tab.counts, tab.level_offset, tab.c_level, tab.c_next, tab.c_lat,
            tab.c_window, tab.c_sibling, tab.by_prev_ptr, tab.by_prev_idx, tab.scope, tab.bus, tab.n_buses,
            tab.roles, tab.ref_level, tab.timing, queue_depth, page_policy == "closed",
            {"none": 0, "all_bank": 1, "per_bank": 2}[refresh], 1 << 50, out_t, out_c, out_xy, done,
            pim_cmds, pim_xy, pim_rows, pim_kind, spec.shared_row_buffer, s.level_index("bankgroup"), pim_t)
        if n_log == -2:
            raise RuntimeError("run_mixed: the channel can make no progress (a PIM row left open?)")
        if n_log >= 0:
            break
        cap *= 2
    log = CommandLog(out_t[:n_log].copy(), out_c[:n_log].copy(), out_xy[:n_log].copy())
    end = int(done.max()) if n else 0
    return MixedResult(EngineResult(log, done, end), pim_t, int(pim_t.max()) + 1 if m else 0)
