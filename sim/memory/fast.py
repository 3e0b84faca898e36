"""Row-granularity fast mode of the DRAM engine: one event per *row visit*, not per command.

Per channel, consecutive requests (in arrival order) to the same bank and row form a visit. A
small FR-FCFS-like scheduler, in numba, picks visits instead of commands:

* a visit is eligible once its first request is in the controller's queue (``queue_depth``
  requests: request j enters when request j - queue_depth has been served) and it is the oldest
  pending visit to its bank;
* among the eligible visits the one whose row can open earliest goes first (ties: the oldest), so
  the activations of younger visits overlap the data transfers of older ones, as the command
  engine's row bus does (this lookahead is what makes random traffic come out tFAW-bound);
* its PRE (row conflict) and ACT are placed at the first cycle the standard's constraint table
  allows (the same ready table and issue rule as :mod:`sim.memory.engine`: tRP, tRC, tRRD_S/L,
  tFAW windows, refresh); a visit to the bank's open row needs neither;
* its k bursts then go out as runs of same-direction column commands: the first at the first
  cycle the table allows (tRCD, bus free, read/write turnarounds, tWTR, tCCD), the others back to
  back at the run's same-bank spacing (max of the RD->RD or WR->WR latencies: nBL, nCCD_L ...).
  Only the last command of a run updates the table (later issues dominate window-1 rules);
* refresh as in the engine, but at visit granularity: when the next row to open in a refresh node
  would open after its refresh is due, the node (all-bank: PREA + REFab every nREFI) or its next
  bank (per-bank: PRE + REFpb every nREFIpb, round robin) is refreshed first.

What is approximate (against :func:`sim.memory.engine.run`): columns go out in the order rows were
opened and a visit's bursts back to back (the engine may interleave bursts of two open rows);
requests to a row that are not consecutive in a channel's arrival order form separate visits
(a later one is a row hit if the row is still open); a younger hit to an open row does not hold
back an older request's precharge (the engine's "no PRE while a queued request hits"); the row
command bus is not modelled (one ACT / PRE per cycle); refresh is only checked when a row opens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from sim.memory.engine import _earliest, _earliest_at, _issue, _node, _timing_state, build_tables
from sim.memory.standard import DramSpec


@dataclass
class FastResult:
    cycles: int                     # last data-transfer end over all channels
    done_cycle: np.ndarray | None   # per request: cycle its data transfer ends (model estimate)
    row_visits: int                 # row visits (events) simulated


@njit(cache=True)
def _split_channels(ch, n_ch):
    """Stable counting sort of request indices by channel: (order, start offsets [n_ch + 1])."""
    n = ch.shape[0]
    cnt = np.zeros(n_ch + 1, np.int64)
    for i in range(n):
        cnt[ch[i] + 1] += 1
    for c in range(n_ch):
        cnt[c + 1] += cnt[c]
    pos = cnt[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        c = ch[i]
        order[pos[c]] = i
        pos[c] += 1
    return order, cnt


@njit(cache=True)
def _run_fast(arrive, is_write, coords, order, bounds, counts, level_offset, c_level, c_next, c_lat, c_window,
              c_sibling, by_prev_ptr, by_prev_idx, scope, roles, ref_level, timing, spacing, n_rp, n_rfcpb, queue_depth,
              closed_page, refresh_mode, done, n_turn):
    """All channels, one after the other. Returns (last data end, row visits)."""
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (roles[0], roles[1], roles[2], roles[3], roles[4], roles[5],
                                                      roles[6], roles[7], roles[8])
    n_cl, n_cwl, n_bl, n_refi, n_refipb = timing[0], timing[1], timing[2], timing[3], timing[4]
    B = counts.shape[0] - 1
    nlev = coords.shape[1]
    n_cmds = scope.shape[0]
    n_banks = level_offset[B + 1] - level_offset[B]
    ref_nodes = level_offset[ref_level + 1] - level_offset[ref_level]
    banks_per_ref = n_banks // ref_nodes
    Q = queue_depth
    ready, hist, hist_pos, hist_n = _timing_state(level_offset, n_cmds, c_level.shape[0])
    open_row = np.full(n_banks, -1, np.int64)
    seen = np.zeros(n_banks, np.int64)
    next_ref = np.zeros(ref_nodes, np.int64)
    ref_bank = np.zeros(ref_nodes, np.int64)
    tmp = np.zeros(B + 1, np.int64)
    bank_xy = np.zeros(B + 1, np.int64)
    end = np.int64(0)
    visits_total = 0
    n_ch = bounds.shape[0] - 1
    for ch in range(n_ch):
        lo_r = bounds[ch]
        hi_r = bounds[ch + 1]
        n = hi_r - lo_r
        if n == 0:
            continue
        # ---- reset per-channel state
        ready[:, :] = 0
        hist_pos[:, :] = 0
        hist_n[:, :] = 0
        open_row[:] = -1
        seen[:] = -1
        next_ref[:] = n_refi if refresh_mode == 1 else n_refipb
        ref_bank[:] = 0
        # ---- visits: runs of consecutive requests to one bank and row
        vstart = np.empty(n + 1, np.int64)
        vwrites = np.zeros(n, np.int64)  # writes in each visit (a phase with none is skipped)
        vbank = np.empty(n, np.int64)
        vrow = np.empty(n, np.int64)
        nodes = np.empty((n, B + 1), np.int64)
        nv = 0
        prev_b = -1
        prev_r = -1
        for j in range(n):
            i = order[lo_r + j]
            b = _node(counts, coords[i], B)
            r = coords[i, B + 1]
            if b != prev_b or r != prev_r:
                vstart[nv] = j
                vbank[nv] = b
                vrow[nv] = r
                for lv in range(B + 1):
                    nodes[nv, lv] = _node(counts, coords[i], lv)
                nv += 1
                prev_b = b
                prev_r = r
            if is_write[i]:
                vwrites[nv - 1] += 1
        vstart[nv] = n
        visits_total += nv
        done_v = np.zeros(nv, np.bool_)
        left_w = vwrites[:nv].copy()              # bursts not yet served, per visit and direction
        left_r = np.empty(nv, np.int64)
        for vv in range(nv):
            left_r[vv] = vstart[vv + 1] - vstart[vv] - vwrites[vv]
        served_time = np.empty(n, np.int64)  # served_time[k]: cycle the (k+1)-th request was served
        served = 0
        last_served_t = np.int64(0)
        lo = 0          # oldest visit not yet served
        bus_write = False
        t_col = np.int64(0)   # the last column command's cycle
        scan = 0
        while lo < nv:
            # -------- pick the eligible visit whose row opens earliest
            best_v = -1
            best_e = np.int64(1) << 60
            best_p = np.int64(-1)
            best_pref = 2
            v = lo
            scan += 1
            stamp = scan
            while v < nv:
                first = vstart[v]
                if first >= served + Q:
                    break
                if done_v[v]:
                    v += 1
                    continue
                b = vbank[v]
                if seen[b] == stamp:   # an older pending visit to this bank goes first
                    v += 1
                    continue
                seen[b] = stamp
                adm = arrive[order[lo_r + first]]
                if first >= Q:
                    a2 = served_time[first - Q] + 1
                    if a2 > adm:
                        adm = a2
                p = np.int64(-1)
                if open_row[b] == vrow[v]:
                    e = adm
                else:
                    if open_row[b] != -1:
                        p = _earliest_at(pre, nodes[v], level_offset, scope, ready)
                        if adm > p:
                            p = adm
                        e = p + n_rp
                    else:
                        e = adm
                    ea = _earliest_at(act, nodes[v], level_offset, scope, ready)
                    if ea > e:
                        e = ea
                # FR-FCFS keeps the bus in its direction while such bursts are ready: prefer a
                # visit with bursts in the current direction, then the one that opens earliest
                same = left_w[v] > 0 if bus_write else left_r[v] > 0
                pref = 0 if (same and e <= t_col + n_turn) else 1
                if pref < best_pref or (pref == best_pref and e < best_e):
                    best_pref = pref
                    best_e = e
                    best_v = v
                    best_p = p
                v += 1
            v = best_v
            b = vbank[v]
            # -------- refresh due in this visit's refresh node before its row opens
            if refresh_mode != 0 and open_row[b] != vrow[v]:
                rn = nodes[v, ref_level]
                if best_e >= next_ref[rn]:
                    rem = rn
                    for lv in range(ref_level, 0, -1):
                        tmp[lv] = rem % counts[lv]
                        rem //= counts[lv]
                    tmp[0] = 0
                    first_bank = rn * banks_per_ref
                    if refresh_mode == 1:
                        any_open = False
                        for bb in range(first_bank, first_bank + banks_per_ref):
                            if open_row[bb] != -1:
                                any_open = True
                        tr = next_ref[rn]
                        if any_open:
                            e = max(tr, _earliest(prea, tmp, counts, level_offset, scope, ready))
                            _issue(prea, tmp, e, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                                   c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                            for bb in range(first_bank, first_bank + banks_per_ref):
                                open_row[bb] = -1
                            tr = e + 1
                        e = max(tr, _earliest(refab, tmp, counts, level_offset, scope, ready))
                        _issue(refab, tmp, e, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                               c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                        next_ref[rn] += n_refi
                    else:
                        bb = first_bank + ref_bank[rn]
                        rem = bb
                        for lv in range(B, 0, -1):
                            bank_xy[lv] = rem % counts[lv]
                            rem //= counts[lv]
                        bank_xy[0] = 0
                        # the engine slots REFpb into gaps between ACTs of the other banks:
                        # charge it to its own bank only (PRE if open, then nRFCpb before its next ACT)
                        tr = next_ref[rn]
                        rowb = level_offset[B] + bb
                        if open_row[bb] != -1:
                            e = max(tr, ready[rowb, pre])
                            tr = e + n_rp
                            open_row[bb] = -1
                        e = max(tr, ready[rowb, refpb])
                        if e + n_rfcpb > ready[rowb, act]:
                            ready[rowb, act] = e + n_rfcpb
                        next_ref[rn] += n_refipb
                        ref_bank[rn] = (ref_bank[rn] + 1) % banks_per_ref
                    continue  # re-pick: readiness changed
            # -------- open the row
            i0 = order[lo_r + vstart[v]]
            if open_row[b] != vrow[v]:
                if open_row[b] != -1:
                    _issue(pre, coords[i0], best_p, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                           c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                _issue(act, coords[i0], best_e, counts, level_offset, by_prev_ptr, by_prev_idx, c_level, c_next,
                       c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                open_row[b] = vrow[v]
            # -------- its bursts in one direction: the bus's current one if it has any; bursts of
            # the other direction wait (still row hits) for a later pick, as FR-FCFS lets ready
            # hits of the current direction pass them
            jb = vstart[v]
            jend = vstart[v + 1]
            w = bus_write
            if (w and left_w[v] == 0) or (not w and left_r[v] == 0):
                w = not w
            cmd = wr if w else rd
            c = np.int64(-1)
            last_i = -1
            s = spacing[cmd]
            lat = (n_cwl if w else n_cl) + n_bl
            for jj in range(jb, jend):
                ii = order[lo_r + jj]
                if is_write[ii] != w or done[ii] >= 0:
                    continue
                if last_i == -1:
                    c = _earliest_at(cmd, nodes[v], level_offset, scope, ready)
                else:
                    c += s
                if arrive[ii] > c:
                    c = arrive[ii]
                last_i = ii
                done[ii] = c + lat
                served_time[served] = max(c, last_served_t)
                last_served_t = served_time[served]
                served += 1
            if w:
                left_w[v] = 0
            else:
                left_r[v] = 0
            finished = left_w[v] == 0 and left_r[v] == 0
            if last_i != -1:
                if c + lat > end:
                    end = c + lat
                issue_cmd = cmd
                if closed_page and finished:
                    issue_cmd = wra if w else rda
                _issue(issue_cmd, coords[last_i], c, counts, level_offset, by_prev_ptr, by_prev_idx,
                       c_level, c_next, c_lat, c_window, c_sibling, ready, hist, hist_pos, hist_n)
                bus_write = w
                t_col = c
            if finished:
                if closed_page:
                    open_row[b] = -1
                done_v[v] = True
                while lo < nv and done_v[lo]:
                    lo += 1
    return end, visits_total


def _run_spacing(spec: DramSpec, tab) -> np.ndarray:
    """Per column command: spacing of back-to-back same-command issues to one bank (max over the
    window-1, non-sibling rules binding that pair at any level), at least one cycle (command bus)."""
    sp = np.ones(len(spec.standard.commands), np.int64)
    for c in spec.constraints:
        if c.prev == c.next and c.window == 1 and not c.sibling:
            sp[c.prev] = max(sp[c.prev], c.latency)
    return sp


def run_fast(spec: DramSpec, arrive: np.ndarray, is_write: np.ndarray, coords: np.ndarray, queue_depth: int = 32,
             page_policy: str = "open", refresh: str = "all_bank") -> FastResult:
    """Row-visit approximation of :func:`sim.memory.engine.run` (same arguments, no command log).

    ``done_cycle`` holds, per request, the model's cycle its data transfer ends (its column
    command's time plus CL/CWL and nBL); ``cycles`` is their maximum.
    """
    tab = build_tables(spec)
    arrive = np.asarray(arrive, np.int64)
    is_write = np.asarray(is_write, np.bool_)
    coords = np.asarray(coords, np.int64)
    n = arrive.shape[0]
    if n and np.any(arrive[1:] < arrive[:-1]):
        raise ValueError("requests must be sorted by arrival cycle")
    if page_policy not in ("open", "closed"):
        raise ValueError(f"unknown page policy {page_policy!r}")
    refresh_mode = {"none": 0, "all_bank": 1, "per_bank": 2}[refresh]
    done = np.full(n, -1, np.int64)
    if n == 0:
        return FastResult(0, done, 0)
    order, bounds = _split_channels(coords[:, 0], int(spec.counts[0]))
    r = tab.roles
    if refresh_mode == 1 and (r[1] < 0 or r[2] < 0 or r[7] < 0):
        raise ValueError("standard has no all-bank refresh")
    end, visits = _run_fast(arrive, is_write, coords, order, bounds, tab.counts, tab.level_offset, tab.c_level,
                            tab.c_next, tab.c_lat, tab.c_window, tab.c_sibling, tab.by_prev_ptr, tab.by_prev_idx,
                            tab.scope, tab.roles, tab.ref_level, tab.timing, _run_spacing(spec, tab),
                            int(spec.t("nRP")), int(spec.t("nRFCpb")), int(queue_depth), page_policy == "closed", refresh_mode, done,
                            int(max(spec.t("nRTW"), spec.t("nCWL") + spec.t("nBL") + spec.t("nWTRS"))))
    return FastResult(cycles=int(end), done_cycle=done, row_visits=int(visits))
