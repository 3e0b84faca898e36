"""Row-granularity fast mode of the DRAM engine: events per *row visit* and per run of bursts,
not per command and cycle.

Per channel, consecutive requests (in arrival order) to the same bank and row form a visit. A
small FR-FCFS-like scheduler, in numba, moves through three kinds of event in time order:

* **row event** -- open the row of one visit. A visit is eligible once its first request is in the
  controller's queue (``queue_depth`` requests: request j enters the cycle after the (j -
  queue_depth + 1)-th service) and it is the oldest unfinished visit to its bank. Among the
  eligible visits the one whose row can open earliest goes first (ties: the oldest), so
  activations of younger visits overlap the data transfers of older ones, as the command engine's
  row bus does. Its PRE (row conflict) and ACT go at the first cycle the standard's constraint
  table allows (the same ready table and issue rule as :mod:`sim.memory.engine`: tRP, tRC,
  tRRD_S/L, tFAW windows, refresh); a visit to the bank's open row needs neither. The visit is
  then *active*: its row is open and its bursts are row hits;
* **column run** -- the column bus serves, among the active visits' oldest unserved read and
  oldest unserved write, the one the table lets go first (ties: the oldest request), like the
  engine's "oldest ready hit". It keeps sending that visit's same-direction bursts, at the bank's
  back-to-back spacing (nBL, nCCD_L ...), for as long as no other candidate could go earlier
  (each other candidate's earliest cycle, raised by the run's own last burst through the
  cross-bank rules: nCCD_S / nCCD_L / nCCDR / nRTW / tWTR / the data bus; a visit whose row is
  about to open, or that enters the queue during the run, counts from its ACT plus tRCD, or its
  admission for a row hit) and no refresh is due. So two bank groups' rows interleave
  their bursts when nCCD_L > nBL, and reads and writes batch by direction across open rows,
  while a lone stream costs one event per run, not per burst. Only a run's last command updates
  the table (later issues dominate window-1 rules);
* **refresh** at its due cycle, as in the engine: all-bank (PREA if a row is open, then REFab,
  every nREFI per refresh node) or per-bank (PRE if open, then REFpb, every nREFIpb, round robin
  over the node's banks). Active visits in the refreshed banks lose their row and open it again
  later, as the engine holds back hits to a bank whose refresh is due.

The queue is modelled per request: request j can be served (and its visit's row opened) from the
cycle after the (j - queue_depth + 1)-th service, with services kept sorted by cycle.

Cost: the row event is picked over the banks, not the waiting visits. Each bank keeps its waiting
head's key in one of three arrays, one per class (row hit: its admission; closed: its admission and
the bank's ACT cell, raised by its group's ACT cell; conflict: its admission and the bank's PRE +
nRP and ACT cells, raised by its group's PRE + nRP and ACT cells -- bus-exact, its PRE's cycle:
admission, the bank's and group's PRE cells; ``_BIG`` in the other two),
brought up to date only for the banks whose state changed since the last pick (a head entered the
queue, opened its row, finished, lost its row to a refresh; all of them when a service went in
before others, which moves admissions), and raised in place when an issue raises a group's ACT /
PRE cell (the groups each command and bank raises are precomputed; the table only grows, so
raising a key is exact). The pick is then two branch-free passes over the banks that the compiler
vectorizes: each bank's row event, ``min(hit, max(closed, A), max(conflict, P))`` with its
parent's bounds above the groups (A: the ACT cells; P: PRE + nRP and ACT), chosen per bank by
selects for up to 4 parents, folded with the head's visit index into one key (cycle << 24 | visit),
so one minimum gives the earliest row event and, among ties, the oldest head (a second pass over
the banks at that minimum only where the key does not fit: more than 2^24 visits in a channel). The choice is the same as a scan of every waiting head. A
one-burst visit whose row opens while no other visit is active sends its column command in the
same step, when nothing can take the column bus first:
the other waiting heads open their rows at the pick or later (their column commands: tRCD after
that, and not before the read / write ready cells above the bank groups; a row hit's: its key),
visits entering the queue do so after this service, and no refresh is due before it. That is the
order the event loop would take, so random and strided reads cost one event per request, not a
row event plus a column run (ties between equal cycles aside, the same results). The helpers are inlined (numba would otherwise count references to
their array arguments on every call, atomically: the key update is written once in the loop body
for that reason, with the banks to update queued); a counting sort splits the requests by
channel (each request's bank, row and direction packed in one word), then one sequential pass per
channel forms the visits, into scratch arrays kept between calls (arrivals are read through the
channel order, not copied; equal arrivals are not read again). Within a column
run, a stretch of bursts that every per-burst check would let go on (bursts left, no visit
entering the queue, no refresh due, no other candidate able to go first -- a bound ``lim`` per run
-- and no admission later than its slot) is sent in one step: done cycles and service cycles
only. Issuing a command applies a precomputed list of (ready-table cell, latency) for that
command and bank, not the constraint table's rules one by one, reduced to the cells this run's
decisions read (no RDA / WRA cells; WR, PREA / REFab, REFpb cells only with writes, all-bank or
per-bank refresh). The hot paths index with unsigned integers (numba then leaves out its
negative-index wrap-around).

Channels whose row visits are all one request in one direction (strided and random traffic; with
open pages, also those where at least 7 in 8 are, each request then its own visit) go through a
smaller kernel, :mod:`sim.memory.fast_burst`: the same pick, the column command issued with the
row event (1.5-1.7x faster on them; within 0.8% of this loop's cycles but in one corner, see there).

Channels with both reads and writes run *bus-exact* in this loop: the command buses as ready-table
rules (one command per bus and cycle, :func:`_with_command_buses`), each row conflict's PRE as a
row event of its own (so the row bus's commands issue in cycle order, oldest first on a tie, as the
engine's), and refreshes in stages (due: the banks take no new ACT and lose their rows; then PRE /
PREA, then REFpb / REFab, each at the first cycle it can go). There one bus cycle decides whether a
read or a write goes first and the turnaround moves every later command; without these, strided /
random traffic with 10-70% writes came out 2-15% fast. With open pages these channels reproduce the
engine's done cycles exactly (every request, on all 360 write-mix cases tried; see docs/memory.md).

Channels share nothing (each its own buses, banks and timing state), so :func:`run_fast` shares
them out over threads, each channel whole to one thread (the kernels release the GIL and write
only their channels' outputs): the same results for every thread count, bit for bit. The split by
channel stays on one thread (split in halves it ran faster, but the kernels then read the other
core's freshly written half and lost more than it gained).

What is approximate (against :func:`sim.memory.engine.run`): requests to a row that are not
consecutive in a channel's arrival order form separate visits (a later one is a row hit if the
row is still open), and a younger visit to a bank waits for the older ones (the engine lets a
younger row hit pass an older conflict, and holds back a PRE while a queued request hits the open
row); closed page closes a row when its visit ends (the engine's RDA / WRA close it when no queued
request hits it, earlier when a visit's requests are not all in the queue yet). In channels of one
direction (and in the one-burst kernel) the command buses are not modelled (two commands of one kind
may share a cycle where the table allows it), a conflict's PRE is issued with its ACT, a refresh is
placed at its due cycle in one step (the engine retries each cycle and may be later when the row
bus is busy), and a per-bank refresh is charged to its own bank only (nRFCpb before its next ACT;
its nRREFD / tRRD spacing to other banks' ACTs is left out, as the engine slots REFpb into gaps
between them); a run's bursts and a row event that cannot affect them may be handled out of cycle
order.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
from numba import njit

from sim.threads import thread_count
from sim.memory.engine import _earliest, build_tables, command_roles
from sim.memory.standard import Constraint, DramSpec

_BIG = np.int64(1) << 60
_KCAP = np.int64(1) << 38     # row-event cycles above this (none before _BIG) are "none" in the one-pass pick


@dataclass
class FastResult:
    cycles: int                     # last data-transfer end over all channels
    done_cycle: np.ndarray | None   # per request: cycle its data transfer ends (model estimate)
    row_visits: int                 # row visits (events) simulated


_KEY_SHIFT = 33   # a request's packed bank, row and direction: bank << 33 | row << 1 | is_write (rows below 2^32)
# (the split's ``key``; one word, so the passes after the scatter read one array, not four)


@njit(cache=True)
def _split_channels(is_write, coords, counts, cnt, order, key):
    """Stable counting sort of the requests by channel. Fills the channel start offsets ``cnt``
    [channels + 1], each request's index in channel order (``order``: arrivals and directions are
    read through it, not copied) and its flat bank, row and direction packed in one word (``key``,
    bank << ``_KEY_SHIFT`` | row << 1 | is_write: the later passes then read no other array).
    Returns False if a row does not fit (negative or 2^32 and above).

    Only two output streams per channel: the scatter's stores go to a new cache line of every
    channel's stream in turn (strided traffic: 32 streams in lock step), and writing the row visits
    here as well (five streams) made this pass 2-2.5 ms of a 14 ms strided run, most of it waiting
    on those stores; the visits are formed afterwards per channel, from contiguous data, and only
    for the channels that need them (:func:`_form_visits`). Reading ``coords`` once into packed
    request-order scratch before the scatter was no faster (stream 400k: +0.5 ms). The caller
    allocates the outputs: numpy reuses freed memory, where fresh numba arrays of this size cost
    page faults on every call."""
    n = coords.shape[0]
    B = counts.shape[0] - 1
    n_ch = cnt.shape[0] - 1
    U = np.uint64
    for i in range(n):
        cnt[U(coords[i, 0] + 1)] += 1
    for c in range(n_ch):
        cnt[c + 1] += cnt[c]
    pos = cnt[:-1].copy()        # each channel's next slot
    bad = np.int64(0)
    for i in range(n):
        c = U(coords[i, 0])
        b = np.int64(0)
        for lv in range(1, B + 1):
            b = b * counts[lv] + coords[i, lv]
        r = coords[i, B + 1]
        bad |= r
        k = U(pos[c])
        pos[c] = k + 1
        order[k] = i
        key[k] = (b << _KEY_SHIFT) | (r << 1) | np.int64(is_write[i])
    return (bad >> 32) == 0


@njit(cache=True, nogil=True)
def _form_visits(key, cnt, skip, vs, vb, vr, vw, vnum):
    """Each channel's row visits (runs of consecutive requests to one bank and row), from its start
    offset in ``cnt``: first request (channel-relative), flat bank, row, writes; and their number
    ``vnum``. Channels with ``skip`` set (the one-burst kernel's: it reads ``key`` itself) are left
    out. Sequential per channel, so cheap next to the scatter of :func:`_split_channels`."""
    n_ch = cnt.shape[0] - 1
    mask = (np.int64(1) << 32) - 1
    for c in range(n_ch):
        if skip[c]:
            continue
        lo = cnt[c]
        x = lo - 1
        last = np.int64(-1)
        for k in range(lo, cnt[c + 1]):
            kk = key[k] >> 1     # bank and row
            if kk != last:
                x += 1
                vs[x] = k - lo
                vb[x] = kk >> (_KEY_SHIFT - 1)
                vr[x] = kk & mask
                vw[x] = 0
                last = kk
            vw[x] += key[k] & 1
        vnum[c] = x + 1 - lo


@njit(cache=True, inline="always")
def _ready_at(cmd, b, bank_nodes, level_offset, scope, ready):
    """First cycle ``cmd`` to flat bank ``b`` satisfies every recorded constraint."""
    U = np.uint64
    t = np.int64(0)
    for lv in range(scope[U(cmd)] + 1):
        r = ready[U(level_offset[U(lv)] + bank_nodes[U(b), U(lv)]), U(cmd)]
        if r > t:
            t = r
    return t


@njit(cache=True, inline="always")
def _issue_at(cmd, b, t, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat, readyf, hring):
    """:func:`sim.memory.engine._issue` for a command to flat bank ``b``: the window-1 rules as a
    precomputed list of (ready-table cell, latency) for this command and bank (one entry per cell,
    its largest latency; see :func:`_prepare`), then the window rules (tFAW ...) as a list of
    (history ring, window, cell, latency): each ring in ``hring`` holds its position, then the last
    ``window`` issue times, which start at ``-_BIG`` (so the rule raises nothing before the window
    has filled, as the engine's count of issues does)."""
    U = np.uint64
    key = U(cmd * n_banks + b)
    for j in range(iss_ptr[key], iss_ptr[key + U(1)]):
        f = U(iss_idx[U(j)])
        readyf[f] = max(readyf[f], t + iss_lat[U(j)])
    for j in range(w_ptr[key], w_ptr[key + U(1)]):
        uj = U(j)
        hb = U(w_base[uj])
        pos = hring[hb]
        hring[hb + U(1) + U(pos)] = t
        pos += 1
        if pos == w_len[uj]:
            pos = 0
        hring[hb] = pos
        f = U(w_cell[uj])
        readyf[f] = max(readyf[f], hring[hb + U(1) + U(pos)] + w_lat[uj])


@njit(cache=True, inline="always")
def _next_of(pos, vend, want_write, is_write, ordc):
    while pos < vend and is_write[ordc[pos]] != want_write:
        pos += 1
    return pos


@njit(cache=True, inline="always")
def _unfinished(v, skip):
    """The first unfinished visit at or after ``v`` (``skip`` links finished visits onward; path halving)."""
    while skip[v] != v:
        skip[v] = skip[skip[v]]
        v = skip[v]
    return v


@njit(cache=True, inline="always")
def _drop_active(v, act_list, n_act):
    for a in range(n_act):
        if act_list[a] == v:
            act_list[a] = act_list[n_act - 1]
            return n_act - 1
    return n_act


@njit(cache=True, inline="always")
def _node_coords(idx, top, counts, out):
    """Coordinates (levels 1 .. ``top``) of node ``idx`` of level ``top`` within a channel, into
    ``out``; level 0 (the channel) 0, as the ready table's channel-relative rows take it."""
    for lv in range(top, 0, -1):
        out[lv] = idx % counts[lv]
        idx //= counts[lv]
    out[0] = 0


@njit(cache=True, inline="always")
def _all_bank_refresh_now(any_open, tr, first_bank, node_xy, prea, refab, counts, level_offset, scope, ready,
                          n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat, readyf, hring):
    """An all-bank refresh in one step from cycle ``tr`` (channels of one direction): PREA if a row
    of the node (``node_xy``, its first bank ``first_bank``) was open, then REFab, each at the first
    cycle the table allows."""
    if any_open:
        e = max(tr, _earliest(prea, node_xy, counts, level_offset, scope, ready))
        _issue_at(prea, first_bank, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
                  readyf, hring)
        tr = e + 1
    e = max(tr, _earliest(refab, node_xy, counts, level_offset, scope, ready))
    _issue_at(refab, first_bank, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
              readyf, hring)


@njit(cache=True, inline="always")
def _raise_group_bounds(kt, tg_ptr, tg_idx, grp_row0, bpg, uact, upre, exact, n_rp, ready, kx1, kx2):
    """After an issue (``kt`` = command * banks + bank): raise the ACT bound (``kx1``) and the
    conflict bound (``kx2``: PRE + nRP, or the PRE cell alone when PREs are events of their own,
    ``exact``) of every bank in the groups whose ACT / PRE cells it raised (the table only grows)."""
    U = np.uint64
    for j in range(tg_ptr[U(kt)], tg_ptr[U(kt + 1)]):
        g = tg_idx[U(j)]
        gr = U(grp_row0 + g)
        ga = ready[gr, uact]
        gp = ready[gr, upre] if exact else max(ready[gr, upre] + n_rp, ga)
        for bb in range(g * bpg, g * bpg + bpg):
            ub = U(bb)
            kx1[ub] = max(kx1[ub], ga)
            kx2[ub] = max(kx2[ub], gp)


@njit(cache=True, nogil=True)
def _run_fast(arrive, is_write, v_first, v_bank, v_row, v_writes, vnum, order, bounds, counts, level_offset, c_level, c_next, c_lat, c_window,
              c_sibling, by_prev_ptr, by_prev_idx, scope, roles, ref_level, timing, bank_nodes, common,
              cross0, iss_ptr0, iss_idx0, iss_lat0, w_ptr, w_base, w_len, w_cell, w_lat, hring0, tg_ptr, tg_idx,
              cross1, iss_ptr1, iss_idx1, iss_lat1, n_rp, n_rfcpb, n_rcd, queue_depth, closed_page,
              refresh_mode, has_writes, skip_ch, done):
    """All channels but those with ``skip_ch`` set (the one-burst kernel's, see
    :mod:`sim.memory.fast_burst`), one after the other. Returns (last data end, row visits).

    A channel with both reads and writes runs *bus-exact*: with the command buses in its tables
    (``cross1``, ``iss_*1``; see :func:`_with_command_buses`), each row conflict's PRE as a row event
    of its own, and refreshes in stages, each command at the first cycle it can go. In such mixes one
    cycle on a command bus decides whether a read or a write goes first, and the turnaround that
    follows moves every later command (left out, strided / random traffic with 10-70% writes came
    out 2-15% fast). A channel in one direction keeps the cheaper model (``cross0``, ``iss_*0``: the
    PRE issued with its ACT, a refresh placed at its due cycle in one step): there the buses move no
    turnaround, and the PRE events would cost the stream about 9% of its time."""
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (roles[0], roles[1], roles[2], roles[3], roles[4], roles[5],
                                                      roles[6], roles[7], roles[8])
    n_cl, n_cwl, n_bl, n_refi, n_refipb = timing[0], timing[1], timing[2], timing[3], timing[4]
    B = counts.shape[0] - 1
    n_cmds = scope.shape[0]
    n_banks = bank_nodes.shape[0]
    U = np.uint64     # unsigned indices: no negative-index wrap-around on the hot paths
    uact = U(act)
    upre = U(pre)
    ref_nodes = level_offset[ref_level + 1] - level_offset[ref_level]
    banks_per_ref = n_banks // ref_nodes
    Q = queue_depth
    a0 = arrive[0]
    same_arrival = arrive[arrive.shape[0] - 1] == a0   # sorted: every request arrives at a0 (not read again)
    ready = np.zeros((level_offset[B + 1], n_cmds), np.int64)
    hring = hring0.copy()                       # the window rules' issue histories (see _issue_at)
    readyf = ready.reshape(ready.size)          # the same table, flat (cell = row * commands + command)
    open_row = np.full(n_banks, -1, np.int64)
    bank_act = np.full(n_banks, -1, np.int64)   # the active visit on each bank
    head = np.full(n_banks, -1, np.int64)       # each bank's oldest unfinished visit in the queue
    last_v = np.full(n_banks, -1, np.int64)
    # row-event keys: per bank, per bank group (level B - 1), per parent of bank groups
    bpg = counts[B]                             # banks per group
    n_grp = n_banks // bpg
    gpp = counts[B - 1] if B >= 2 else n_grp    # groups per parent
    n_par = n_grp // gpp
    n_plv = B - 1 if B >= 2 else 0              # levels above the bank group
    bank_row0 = level_offset[B]
    grp_row0 = level_offset[B - 1] if B >= 1 else 0
    par_row = np.zeros((n_par, max(n_plv, 1)), np.int64)
    for p_ in range(n_par):
        for lv in range(n_plv):
            par_row[p_, lv] = level_offset[lv] + bank_nodes[p_ * gpp * bpg, lv]
    kc = np.full(n_banks, -1, np.int8)
    kd = np.zeros(n_banks, np.int8)
    pend = np.empty(n_banks, np.int64)          # banks whose key is to be brought up to date
    inpend = np.zeros(n_banks, np.bool_)
    # per bank, its waiting head's row event below the parent's bound, one array per class (_BIG: not of
    # that class): a row hit's key; a closed row's key raised by its group's ACT cell; a conflict's key
    # raised by its group's PRE cell + nRP and ACT cell (bus-exact: the PRE's own cycle, raised by the
    # group's PRE cell). Contiguous per parent, so the pick is two
    # vectorizable passes over the banks with the parent's bounds as scalars
    kh = np.full(n_banks, _BIG, np.int64)
    kx1 = np.full(n_banks, _BIG, np.int64)
    kx2 = np.full(n_banks, _BIG, np.int64)
    hv = np.zeros(n_banks, np.int64)            # each bank's waiting head (visit index: its age)
    ke = np.empty(n_banks, np.int64)            # per bank at the pick: earliest row event
    b_grp = bank_nodes[:, B - 1].copy() if B >= 1 else np.zeros(n_banks, np.int64)   # each bank's group
    bpp = gpp * bpg                             # banks per parent
    bpp2 = 2 * bpp
    bpp3 = 3 * bpp
    p_a = np.zeros(max(n_par, 4), np.int64)     # per parent of groups: ACT bound above the groups, PRE + nRP bound
                                                # (bus-exact: the PRE bound)
    p_p = np.zeros(max(n_par, 4), np.int64)
    rcd_rd = cross0[act, rd, B]
    rcd_wr = cross0[act, wr, B]
    next_ref = np.zeros(ref_nodes, np.int64)
    ref_bank = np.zeros(ref_nodes, np.int64)
    # bus-exact refresh in stages, per refresh node: 0 not due, 1 its PRE / PREA next, 2 its REFpb / REFab
    # next; next_ref is then the stage's cycle (no earlier) and ref_due the refresh's due cycle
    rstage = np.zeros(ref_nodes, np.int64)
    ref_due = np.zeros(ref_nodes, np.int64)
    rsave = np.zeros(ref_nodes, np.int64)       # per-bank: the refreshed bank's ACT cell while it is parked
    bsave = np.zeros(n_banks, np.int64)         # all-bank: each bank's ACT cell while it is parked
    tmp = np.zeros(B + 1, np.int64)
    bank_xy = np.zeros(B + 1, np.int64)
    act_list = np.empty(n_banks, np.int64)
    n_cand = 2 * n_banks + queue_depth + 1   # active visits' reads and writes, visits about to open
    cand_v = np.empty(n_cand, np.int64)    # column candidates: visit, direction, cycle, request
    cand_w = np.empty(n_cand, np.bool_)
    cand_t = np.empty(n_cand, np.int64)
    cand_p = np.empty(n_cand, np.int64)
    cand_x = np.empty(n_cand, np.int64)    # spacing from the running command to each candidate
    n_ch = bounds.shape[0] - 1
    n_max = 0
    for ch in range(n_ch):
        if bounds[ch + 1] - bounds[ch] > n_max:
            n_max = bounds[ch + 1] - bounds[ch]
    small_v = n_max < (1 << 24)                 # visit indices fit the pick's one-pass key
    # per channel, reused: visits and requests in the channel's arrival order
    vstart = np.empty(n_max + 1, np.int64)
    vleft = np.empty(n_max, np.int64)
    vstate = np.empty(n_max, np.int8)           # 0 waiting, 1 active (row open), 2 finished
    skip = np.empty(n_max + 1, np.int64)        # finished visits point onward (see _unfinished)
    vnextb = np.empty(n_max, np.int64)          # the next visit to the same bank (nv: none)
    rcur = np.empty(n_max, np.int64)            # next unserved read / write of each visit
    wcur = np.empty(n_max, np.int64)
    served_t = np.empty(n_max, np.int64)        # service cycles so far, sorted
    end = np.int64(0)
    visits_total = 0
    for ch in range(n_ch):
        lo_r = bounds[ch]
        n = bounds[ch + 1] - lo_r
        if n == 0 or skip_ch[ch]:
            continue
        # ---- reset per-channel state
        ready[:, :] = 0
        hring[:] = hring0
        open_row[:] = -1
        bank_act[:] = -1
        head[:] = -1
        last_v[:] = -1
        kc[:] = -1
        c0 = 0            # waiting heads: row hits, others with reads, with writes
        c1 = 0
        c2 = 0
        inpend[:] = False
        n_pend = 0
        kh[:] = _BIG
        kx1[:] = _BIG
        kx2[:] = _BIG
        kstale = False    # a service went in before others: the heads' admissions moved (re-key all)
        next_ref[:] = n_refi if refresh_mode == 1 else n_refipb
        ref_due[:] = next_ref
        ref_bank[:] = 0
        rstage[:] = 0
        # ---- visits: runs of consecutive requests to one bank and row
        nv = vnum[ch]
        ordc = order[lo_r:lo_r + n]   # channel position -> request
        vbank = v_bank[lo_r:lo_r + nv]
        vrow = v_row[lo_r:lo_r + nv]
        vwrites = v_writes[lo_r:lo_r + nv]
        vstart[:nv] = v_first[lo_r:lo_r + nv]
        vstart[nv] = n
        visits_total += nv
        for v in range(nv + 1):
            skip[v] = v
        for v in range(nv - 1, -1, -1):
            b = vbank[v]
            vnextb[v] = last_v[b] if last_v[b] != -1 else nv
            last_v[b] = v
        ch_w = 0          # the channel's writes (bus-exact or not, below)
        for v in range(nv):
            vs = vstart[v]
            ve = vstart[v + 1]
            vleft[v] = ve - vs
            vstate[v] = 0
            if vwrites[v] == 0:
                rcur[v] = vs
                wcur[v] = ve
            elif vwrites[v] == ve - vs:
                rcur[v] = ve
                wcur[v] = vs
            else:
                rcur[v] = _next_of(vs, ve, False, is_write, ordc)
                wcur[v] = _next_of(vs, ve, True, is_write, ordc)
            ch_w += vwrites[v]
        exact = ch_w != 0 and ch_w != n   # both directions: bus-exact (see above)
        if exact:
            cross, iss_ptr, iss_idx, iss_lat = cross1, iss_ptr1, iss_idx1, iss_lat1
        else:
            cross, iss_ptr, iss_idx, iss_lat = cross0, iss_ptr0, iss_idx0, iss_lat0
        xrp = 0 if exact else n_rp        # a conflict's key: its PRE (exact) or its ACT (PRE + nRP)
        served = 0
        lo = 0            # oldest unfinished visit
        n_act = 0
        dirty = True      # the row event must be picked again
        rv = -1           # the row event: visit, ACT cycle, PRE cycle (-1: none)
        re = _BIG
        rp = np.int64(-1)
        rcol = _BIG       # no column command of the row event's visit before this cycle
        wend = 0          # first visit not yet in the queue
        gate = -Q         # services after which the queue admits a new visit
        while lo < nv:
            if served >= gate:  # visits enter the queue: a bank's first queued visit is its head
                dirty = True
                while wend < nv and vstart[wend] < served + Q:
                    b = vbank[wend]
                    if head[b] == -1:
                        head[b] = wend
                        if not inpend[b]:  # its row-event key is brought up to date at the next pick
                            inpend[b] = True
                            pend[n_pend] = b
                            n_pend += 1
                    wend += 1
                gate = vstart[wend] - Q + 1 if wend < nv else _BIG
            # -------- row event: the waiting head whose row opens earliest (ties: the oldest)
            if dirty:
                dirty = False
                if kstale:
                    kstale = False
                    for bb in range(n_banks):
                        if not inpend[bb]:
                            inpend[bb] = True
                            pend[n_pend] = bb
                            n_pend += 1
                # the banks whose key changed: their key (the bank's own part of its head's row event:
                # admission, the bank's ACT / PRE ready cells; the shared cells are read below), class
                # (-1 not waiting, 0 row hit, 1 row closed, 2 row conflict), directions and class keys
                for q in range(n_pend):
                    # branch-free (the classes of random traffic's heads mispredict): every cell is
                    # read, the class keys and counts chosen by selects
                    ub = U(pend[q])
                    inpend[ub] = False
                    oc = kc[ub]
                    od = kd[ub]
                    c0 -= 1 if oc == 0 else 0
                    c1 -= 1 if oc > 0 and (od & 1) != 0 else 0
                    c2 -= 1 if oc > 0 and (od & 2) != 0 else 0
                    v = head[ub]
                    valid = (v != -1) & (bank_act[ub] == -1)
                    uv = U(v if valid else 0)
                    g = U(grp_row0 + b_grp[ub])
                    first = vstart[uv]
                    adm = a0 if same_arrival else arrive[U(ordc[U(first)])]
                    qi = first - Q
                    tq = served_t[U(qi)] + 1 if qi >= 0 else np.int64(0)
                    adm = max(adm, tq)
                    rb = U(bank_row0 + pend[q])
                    orow = open_row[ub]
                    hit = orow == vrow[uv]
                    closed = orow == -1
                    ra = ready[rb, uact]
                    k1 = max(max(ra, adm), ready[g, uact])
                    k2 = max(max(ready[rb, upre], adm), ready[g, upre]) + xrp   # a conflict's event: its PRE
                    if not exact:                                                 # (exact) or ACT
                        k2 = max(k2, max(ra, ready[g, uact]))
                    kh[ub] = adm if valid and hit else _BIG
                    kx1[ub] = k1 if valid and not hit and closed else _BIG
                    kx2[ub] = k2 if valid and not hit and not closed else _BIG
                    hv[ub] = v if valid else 0
                    kc[ub] = np.int8(-1 if not valid else (0 if hit else (1 if closed else 2)))
                    nw = vwrites[uv]
                    d1 = 1 if nw != vstart[uv + U(1)] - first else 0
                    d2 = 2 if nw != 0 else 0
                    kd[ub] = np.int8(d1 | d2)
                    x = valid and not hit
                    c0 += 1 if valid and hit else 0
                    c1 += d1 if x else 0
                    c2 += d2 >> 1 if x else 0
                n_pend = 0
                # the earliest row event: per parent, its ACT / PRE bounds above the groups, then each
                # bank's class key raised by its parent's (min / max and selects only: vectorized, one
                # loop over the banks for up to 4 parents)
                for p_ in range(n_par):
                    ua = np.int64(0)
                    up = np.int64(0)
                    for lv in range(n_plv):
                        r_ = par_row[p_, lv]
                        ua = max(ua, ready[r_, act])
                        up = max(up, ready[r_, pre])
                    p_a[p_] = ua
                    p_p[p_] = up if exact else max(up + n_rp, ua)
                re = _BIG
                rv = -1
                if n_par <= 4 and small_v:
                    # one pass: each bank's row event and its head's age in one key (cycle << 24 | visit),
                    # so the smallest key is the earliest row event and, among ties, the oldest head
                    u0, u1, u2, u3 = p_a[0], p_a[1], p_a[2], p_a[3]
                    q0, q1, q2, q3 = p_p[0], p_p[1], p_p[2], p_p[3]
                    kmin = _KCAP << 24
                    emin = _BIG
                    for bb in range(n_banks):
                        ua = u0 if bb < bpp else (u1 if bb < bpp2 else (u2 if bb < bpp3 else u3))
                        up = q0 if bb < bpp else (q1 if bb < bpp2 else (q2 if bb < bpp3 else q3))
                        e = min(kh[bb], min(max(kx1[bb], ua), max(kx2[bb], up)))
                        ke[bb] = e
                        emin = min(emin, e)
                        kmin = min(kmin, (min(e, _KCAP) << 24) | hv[bb])
                    if kmin < _KCAP << 24:
                        re = kmin >> 24
                        rv = kmin & 0xFFFFFF
                    else:      # no row event, or only at cycles past _KCAP: the ties below (never in practice)
                        re = emin
                elif n_par <= 4:
                    u0, u1, u2, u3 = p_a[0], p_a[1], p_a[2], p_a[3]
                    q0, q1, q2, q3 = p_p[0], p_p[1], p_p[2], p_p[3]
                    for bb in range(n_banks):
                        ua = u0 if bb < bpp else (u1 if bb < bpp2 else (u2 if bb < bpp3 else u3))
                        up = q0 if bb < bpp else (q1 if bb < bpp2 else (q2 if bb < bpp3 else q3))
                        e = min(kh[bb], min(max(kx1[bb], ua), max(kx2[bb], up)))
                        ke[bb] = e
                        re = min(re, e)
                else:
                    for p_ in range(n_par):
                        ua = p_a[p_]
                        up = p_p[p_]
                        for bb in range(p_ * bpp, p_ * bpp + bpp):
                            e = min(kh[bb], min(max(kx1[bb], ua), max(kx2[bb], up)))
                            ke[bb] = e
                            re = min(re, e)
                rcol = _BIG
                if re < _BIG:
                    if rv == -1:
                        # ties: the oldest head (the smallest visit index)
                        best = _BIG
                        for bb in range(n_banks):
                            best = min(best, hv[bb] if ke[bb] == re else _BIG)
                        rv = best
                    b = vbank[rv]
                    rp = np.int64(-1)
                    if kc[b] == 0:
                        rcol = re
                    elif kc[b] == 1:
                        rcol = re + n_rcd
                    elif exact:  # the event is its PRE: the ACT nRP later at the earliest
                        rcol = re + n_rp + n_rcd
                    else:        # the event is its ACT, the PRE goes first
                        rcol = re + n_rcd
                        first = vstart[rv]
                        adm = a0 if same_arrival else arrive[ordc[first]]
                        if first >= Q and served_t[first - Q] + 1 > adm:
                            adm = served_t[first - Q] + 1
                        rp = _ready_at(pre, b, bank_nodes, level_offset, scope, ready)
                        if adm > rp:
                            rp = adm
            # -------- column candidates: each active visit's next read and next write
            nc = 0
            ci = -1
            cc = _BIG
            cgate = _BIG
            for a in range(n_act):
                v = act_list[a]
                b = vbank[v]
                ve = vstart[v + 1]
                for d in range(2):
                    w = d == 1
                    pos = wcur[v] if w else rcur[v]
                    if pos >= ve:
                        continue
                    if pos >= served + Q:          # not in the queue yet
                        if pos - Q + 1 < cgate:
                            cgate = pos - Q + 1
                        continue
                    t = _ready_at(wr if w else rd, b, bank_nodes, level_offset, scope, ready)
                    adm = a0 if same_arrival else arrive[ordc[pos]]
                    if pos >= Q and served_t[pos - Q] + 1 > adm:
                        adm = served_t[pos - Q] + 1
                    if adm > t:
                        t = adm
                    cand_v[nc] = v
                    cand_w[nc] = w
                    cand_t[nc] = t
                    cand_p[nc] = pos
                    if t < cc or (t == cc and pos < cand_p[ci]):
                        cc = t
                        ci = nc
                    nc += 1
            # -------- refresh due before anything else
            tref = _BIG
            rn = -1
            if refresh_mode != 0:
                for r in range(ref_nodes):
                    if next_ref[r] < tref:
                        tref = next_ref[r]
                        rn = r
            if tref <= re and tref <= cc:
                _node_coords(rn, ref_level, counts, tmp)
                first_bank = rn * banks_per_ref
                tr = tref
                if refresh_mode == 1 and (not exact or rstage[rn] == 0):
                    # all-bank, due: the node's banks lose their rows to their visits. In one step
                    # (one direction): PREA if a row was open, then REFab, at its due cycle. Bus-exact,
                    # in stages, as per-bank below: the banks take no new ACT (their ACT cells parked
                    # at _BIG); then PREA if a row was open, then REFab, which restores the ACT cells
                    # (and raises them: nRFC). Placed at the due cycle in one step, they raised the
                    # rank's cells (and the row bus's) ahead of ACTs not yet issued
                    any_open = False
                    for bb in range(first_bank, first_bank + banks_per_ref):
                        if bank_act[bb] != -1:
                            vstate[bank_act[bb]] = 0
                            n_act = _drop_active(bank_act[bb], act_list, n_act)
                            bank_act[bb] = -1
                        if open_row[bb] != -1:
                            any_open = True
                            open_row[bb] = -1
                        if exact:
                            rowb = level_offset[B] + bb
                            bsave[bb] = ready[rowb, act]
                            ready[rowb, act] = _BIG
                        if not inpend[bb]:  # its row-event key is brought up to date at the next pick
                            inpend[bb] = True
                            pend[n_pend] = bb
                            n_pend += 1
                    if exact:
                        rstage[rn] = 1 if any_open else 2
                        dirty = True
                        continue
                    _all_bank_refresh_now(any_open, tr, first_bank, tmp, prea, refab, counts, level_offset, scope,
                                          ready, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell,
                                          w_lat, readyf, hring)
                    next_ref[rn] += n_refi
                elif refresh_mode == 1:
                    # bus-exact, its PREA / REFab stage (see above)
                    cmd = prea if rstage[rn] == 1 else refab
                    e = max(tref, _earliest(cmd, tmp, counts, level_offset, scope, ready))
                    if e > tref:       # pushed back by commands issued since: wait for its turn
                        next_ref[rn] = e
                        continue
                    if cmd == refab:
                        for bb in range(first_bank, first_bank + banks_per_ref):
                            ready[level_offset[B] + bb, act] = bsave[bb]
                            if not inpend[bb]:
                                inpend[bb] = True
                                pend[n_pend] = bb
                                n_pend += 1
                        ref_due[rn] += n_refi
                        next_ref[rn] = ref_due[rn]
                        rstage[rn] = 0
                    else:
                        rstage[rn] = 2
                        next_ref[rn] = e + 1
                    _issue_at(cmd, first_bank, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len,
                              w_cell, w_lat, readyf, hring)
                elif not exact:
                    # per-bank in one step at its due cycle, charged to its own bank only: the
                    # engine slots REFpb into gaps between the other banks' ACTs, so its spacing to
                    # them (nRREFD, tRRD) rarely costs a cycle in one direction
                    bb = first_bank + ref_bank[rn]
                    if bank_act[bb] != -1:
                        vstate[bank_act[bb]] = 0
                        n_act = _drop_active(bank_act[bb], act_list, n_act)
                        bank_act[bb] = -1
                    # written out here and in fast_burst.py: as an inlined helper with these array
                    # arguments it made per-bank runs 10-35% slower (numba's reference counting)
                    _node_coords(bb, B, counts, bank_xy)
                    if open_row[bb] != -1:
                        e = max(tr, _earliest(pre, bank_xy, counts, level_offset, scope, ready))
                        _issue_at(pre, bb, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
                                  readyf, hring)
                        open_row[bb] = -1
                        tr = e + 1
                    rowb = level_offset[B] + bb
                    e = max(tr, ready[rowb, refpb])
                    if e + n_rfcpb > ready[rowb, act]:
                        ready[rowb, act] = e + n_rfcpb
                    next_ref[rn] += n_refipb
                    ref_bank[rn] = (ref_bank[rn] + 1) % banks_per_ref
                    if not inpend[bb]:  # its row-event key is brought up to date at the next pick
                        inpend[bb] = True
                        pend[n_pend] = bb
                        n_pend += 1
                else:
                    # per-bank, bus-exact: in stages, each at the first cycle its command can go (the
                    # engine retries every cycle, with priority on the row bus): when due, the bank
                    # takes no new ACT (its ACT cell parked at _BIG) and its row is lost to its visits;
                    # then its PRE if the row was open, then REFpb, which restores the ACT cell and
                    # raises it (nRFCpb; nRREFD on the rank's other banks). Placing the PRE and REFpb
                    # at the due cycle in one step raised the rank's ACT cells ahead of ACTs not yet
                    # issued (6-12% slow)
                    bb = first_bank + ref_bank[rn]
                    _node_coords(bb, B, counts, bank_xy)
                    rowb = level_offset[B] + bb
                    if rstage[rn] == 0:
                        if bank_act[bb] != -1:
                            vstate[bank_act[bb]] = 0
                            n_act = _drop_active(bank_act[bb], act_list, n_act)
                            bank_act[bb] = -1
                        rstage[rn] = 1 if open_row[bb] != -1 else 2
                        open_row[bb] = -1   # no visit uses the row again (its PRE is the next stage)
                        rsave[rn] = ready[rowb, act]
                        ready[rowb, act] = _BIG
                    else:
                        cmd = pre if rstage[rn] == 1 else refpb
                        e = max(tref, _earliest(cmd, bank_xy, counts, level_offset, scope, ready))
                        if e > tref:       # pushed back by commands issued since: wait for its turn
                            next_ref[rn] = e
                            continue
                        if cmd == refpb:
                            ready[rowb, act] = rsave[rn]
                            ref_due[rn] += n_refipb
                            next_ref[rn] = ref_due[rn]
                            ref_bank[rn] = (ref_bank[rn] + 1) % banks_per_ref
                            rstage[rn] = 0
                        else:
                            rstage[rn] = 2
                            next_ref[rn] = e + 1
                        _issue_at(cmd, bb, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell,
                                  w_lat, readyf, hring)
                    if not inpend[bb]:  # its row-event key is brought up to date at the next pick
                        inpend[bb] = True
                        pend[n_pend] = bb
                        n_pend += 1
                for bb in range(n_banks):  # the refresh may have raised any group's ACT / PRE cells
                    g = grp_row0 + b_grp[bb]
                    kx1[bb] = max(kx1[bb], ready[g, act])
                    kx2[bb] = max(kx2[bb], ready[g, pre] if exact else max(ready[g, pre] + n_rp, ready[g, act]))
                dirty = True
                continue
            # -------- open a row
            if rv != -1 and re <= cc:
                v = rv
                b = vbank[v]
                if open_row[b] != vrow[v] and open_row[b] != -1:
                    # a row conflict: its PRE; bus-exact, an event of its own at the first cycle it
                    # can go (the engine's row bus sends a PRE as soon as no queued request hits the
                    # open row, oldest request first), the head's ACT a later row event; else at rp,
                    # the ACT next
                    tp = re if exact else rp
                    _issue_at(pre, b, tp, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len,
                              w_cell, w_lat, readyf, hring)
                    _raise_group_bounds(pre * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, uact, upre, exact, n_rp,
                                        ready, kx1, kx2)
                    open_row[b] = -1
                    if exact:
                        if not inpend[b]:  # its row-event key is brought up to date at the next pick
                            inpend[b] = True
                            pend[n_pend] = b
                            n_pend += 1
                        dirty = True
                        continue
                if open_row[b] != vrow[v]:
                    _issue_at(act, b, re, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len,
                              w_cell, w_lat, readyf, hring)
                    _raise_group_bounds(act * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, uact, upre, exact, n_rp,
                                        ready, kx1, kx2)
                    open_row[b] = vrow[v]
                vstate[v] = 1
                bank_act[b] = v
                if not inpend[b]:  # its row-event key is brought up to date at the next pick
                    inpend[b] = True
                    pend[n_pend] = b
                    n_pend += 1
                dirty = True
                pos = vstart[v]
                if n_act == 0 and vstart[v + 1] == pos + 1:
                    # a one-burst visit with no other visit active: its column command goes at once
                    # if nothing else can take the column bus first -- other waiting heads open their
                    # rows at re or later (a row hit: at its key), and visits that enter the queue
                    # do so after this service -- and no refresh is due before it
                    i = ordc[pos]
                    w = is_write[i]
                    cmd = wr if w else rd
                    c = _ready_at(cmd, b, bank_nodes, level_offset, scope, ready)
                    adm = a0 if same_arrival else arrive[i]
                    if pos >= Q and served_t[pos - Q] + 1 > adm:
                        adm = served_t[pos - Q] + 1
                    if adm > c:
                        c = adm
                    # the column bus above the bank groups: no read / write anywhere before lr / lw
                    lr = _BIG
                    lw = _BIG
                    for p_ in range(n_par):
                        ur = np.int64(0)
                        uw = np.int64(0)
                        for lv in range(n_plv):
                            r_ = par_row[p_, lv]
                            if ready[r_, rd] > ur:
                                ur = ready[r_, rd]
                            if ready[r_, wr] > uw:
                                uw = ready[r_, wr]
                        if ur < lr:
                            lr = ur
                        if uw < lw and has_writes:  # a read-only run keeps no WR cells: no write waits
                            lw = uw
                    # the waiting heads but this one (its bank's key is not yet brought up to date)
                    oc = kc[b]
                    n_hit = c0 - (1 if oc == 0 else 0)
                    n_r = c1 - (1 if oc > 0 and kd[b] & 1 else 0)
                    n_w = c2 - (1 if oc > 0 and kd[b] & 2 else 0)
                    lb = _BIG
                    if n_r > 0:
                        lb = max(re + rcd_rd, lr)
                    if n_w > 0:
                        lb = min(lb, max(re + rcd_wr, lw))
                    if n_hit > 0:
                        if oc == 0:  # its group's minimum may be this head's own key
                            lb = -1
                        hmin = _BIG
                        for bb in range(n_banks):
                            hmin = min(hmin, kh[bb])
                        lb = min(lb, max(hmin, min(lr, lw)) - 1)
                    # bus-exact: not on a tie either (an older head may go at lb; the column
                    # candidates below break the tie by age)
                    if (c < lb or c == lb and not exact) and c < tref:
                        lat = (n_cwl if w else n_cl) + n_bl
                        done[i] = c + lat
                        k = served
                        while k > 0 and served_t[k - 1] > c:
                            served_t[k] = served_t[k - 1]
                            k -= 1
                        served_t[k] = c
                        if k < served:
                            kstale = True
                        served += 1
                        if w:
                            wcur[v] = pos + 1
                        else:
                            rcur[v] = pos + 1
                        vleft[v] = 0
                        if c + lat > end:
                            end = c + lat
                        issue_cmd = cmd
                        if closed_page:
                            issue_cmd = wra if w else rda
                        _issue_at(issue_cmd, b, c, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len,
                                  w_cell, w_lat, readyf, hring)
                        _raise_group_bounds(issue_cmd * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, uact, upre, exact, n_rp,
                                            ready, kx1, kx2)
                        vstate[v] = 2
                        skip[v] = v + 1
                        bank_act[b] = -1
                        if closed_page:
                            open_row[b] = -1
                        nb = vnextb[v]
                        head[b] = nb if nb < wend else -1
                        if not inpend[b]:  # its row-event key is brought up to date at the next pick
                            inpend[b] = True
                            pend[n_pend] = b
                            n_pend += 1
                        lo = _unfinished(lo, skip)
                        continue
                act_list[n_act] = v
                n_act += 1
                continue
            # -------- a run of one visit's same-direction bursts
            v = cand_v[ci]
            w = cand_w[ci]
            b = vbank[v]
            ve = vstart[v + 1]
            cmd = wr if w else rd
            for k in range(nc):
                cand_x[k] = cross[cmd, wr if cand_w[k] else rd, common[b, vbank[cand_v[k]]]]
            s = cand_x[ci]
            m = nc
            if rv != -1:  # the row event's visit: no column command before rcol
                cand_t[m] = rcol
                cand_p[m] = vstart[rv]
                L = common[b, vbank[rv]]
                cand_x[m] = min(cross[cmd, rd, L], cross[cmd, wr, L])
                m += 1
            lat = (n_cwl if w else n_cl) + n_bl
            mixed = vwrites[v] != 0 and vwrites[v] != ve - vstart[v]
            # lim: while the next burst goes s after the last and no later than lim, no other candidate
            # can go first (exact: those that could are checked one by one past it)
            lim = _BIG
            for k in range(m):
                if k != ci:
                    y = 1 if cand_p[k] >= ve else 0   # younger than every burst of this run
                    if cand_x[k] - 1 + y < s and cand_t[k] - 1 + y < lim:
                        lim = cand_t[k] - 1 + y
            c = cc
            pos = cand_p[ci]
            n_run = 0
            i = ordc[pos]
            while True:
                if not mixed and (served == 0 or served_t[served - 1] <= c):
                    # a stretch of K bursts, each s after the last, that the checks below would all
                    # let go on, in one step: the visit has bursts left, no visit enters the queue
                    # (gate, cgate), no refresh or other candidate comes first (tref, lim), and no
                    # request's admission is later than its slot (the queue's: its service lies
                    # among the sorted ones, all <= c, as c appends; the arrival: checked)
                    K = ve - pos - 1
                    if gate - served - 1 < K:
                        K = gate - served - 1
                    if cgate - served - 1 < K:
                        K = cgate - served - 1
                    cap = min(tref - 1, lim) - c
                    if cap < K * s:
                        K = cap // s
                    if not same_arrival:
                        for j in range(1, K + 1):
                            if arrive[ordc[pos + j]] > c + j * s:
                                K = j - 1
                                break
                    if K > 0:
                        for j in range(K):
                            done[ordc[pos + j]] = c + lat
                            served_t[served + j] = c
                            c += s
                        served += K
                        n_run += K
                        pos += K
                        i = ordc[pos]
                done[i] = c + lat
                k = served
                while k > 0 and served_t[k - 1] > c:
                    served_t[k] = served_t[k - 1]
                    k -= 1
                served_t[k] = c
                if k < served:
                    kstale = True
                served += 1
                n_run += 1
                pos += 1
                if mixed:
                    pos = _next_of(pos, ve, w, is_write, ordc)
                if pos >= ve or pos >= served + Q or served >= cgate:
                    break
                if served >= gate:  # visits enter the queue: none can use the column bus before
                    dirty = True    # its admission (a row hit) or its ACT plus tRCD
                    while wend < nv and vstart[wend] < served + Q and m < n_cand:
                        a_n = a0 if same_arrival else arrive[ordc[vstart[wend]]]
                        if vstart[wend] >= Q and served_t[vstart[wend] - Q] + 1 > a_n:
                            a_n = served_t[vstart[wend] - Q] + 1
                        if open_row[vbank[wend]] != vrow[wend]:
                            a_n += n_rcd
                        cand_t[m] = a_n
                        cand_p[m] = vstart[wend]
                        L = common[b, vbank[wend]]
                        cand_x[m] = min(cross[cmd, rd, L], cross[cmd, wr, L])
                        y = 1 if cand_p[m] >= ve else 0
                        if cand_x[m] - 1 + y < s and cand_t[m] - 1 + y < lim:
                            lim = cand_t[m] - 1 + y
                        m += 1
                        if head[vbank[wend]] == -1:
                            head[vbank[wend]] = wend
                            if not inpend[vbank[wend]]:  # its row-event key is brought up to date at the next pick
                                inpend[vbank[wend]] = True
                                pend[n_pend] = vbank[wend]
                                n_pend += 1
                        wend += 1
                    if wend < nv and vstart[wend] < served + Q:
                        break
                    gate = vstart[wend] - Q + 1 if wend < nv else _BIG
                i = ordc[pos]
                cn = c + s
                adm = a0 if same_arrival else arrive[i]
                if pos >= Q and served_t[pos - Q] + 1 > adm:
                    adm = served_t[pos - Q] + 1
                if adm > cn:
                    cn = adm
                if cn >= tref:
                    break
                if cn != c + s or cn > lim:
                    go = True
                    for k in range(m):
                        if k != ci:
                            tk = c + cand_x[k]
                            if cand_t[k] > tk:
                                tk = cand_t[k]
                            if cn > tk or (cn == tk and cand_p[k] < pos):
                                go = False
                                break
                    if not go:
                        break
                c = cn
            if w:
                wcur[v] = pos
            else:
                rcur[v] = pos
            vleft[v] -= n_run
            finished = vleft[v] == 0
            if c + lat > end:
                end = c + lat
            issue_cmd = cmd
            if closed_page and finished:
                issue_cmd = wra if w else rda
            _issue_at(issue_cmd, b, c, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len,
                      w_cell, w_lat, readyf, hring)
            _raise_group_bounds(issue_cmd * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, uact, upre, exact, n_rp,
                                ready, kx1, kx2)
            if finished:
                vstate[v] = 2
                skip[v] = v + 1
                bank_act[b] = -1
                n_act = _drop_active(v, act_list, n_act)
                if closed_page:
                    open_row[b] = -1
                nb = vnextb[v]
                head[b] = nb if nb < wend else -1
                if not inpend[b]:  # its row-event key is brought up to date at the next pick
                    inpend[b] = True
                    pend[n_pend] = b
                    n_pend += 1
                lo = _unfinished(lo, skip)
                dirty = True
    return end, visits_total


def _with_command_buses(spec: DramSpec) -> DramSpec:
    """``spec`` plus, for every two of the commands the fast mode issues (ACT, PRE, PREA, REFab,
    REFpb, RD, WR, RDA, WRA) that share a command bus, a rule that keeps them a cycle apart in the
    channel. The engine sends at most one command per bus and cycle (the oldest ready one); in
    write mixes that one cycle decides whether a read or a write takes the column bus first (a read
    becoming ready a cycle later lets a write go, then the turnaround keeps the next reads back), and
    leaving it out made strided / random traffic with 10-70% writes 2-15% fast. As a ready-table rule
    it is exact only while the bus's commands are issued in cycle order: the general loop issues
    each PRE as a row event of its own for that reason (see :func:`_run_fast`)."""
    roles = command_roles(spec)
    cmds = [c for c in (roles.act, roles.pre, roles.prea, roles.refab, roles.refpb, roles.rd, roles.wr,
                        roles.rda, roles.wra) if c >= 0]
    bus = spec.standard.command_bus
    extra = tuple(Constraint(0, a, b, 1, 1, False, -1) for a in cmds for b in cmds if bus[a] == bus[b])
    return dataclasses.replace(spec, constraints=spec.constraints + extra)


def _prepare(spec: DramSpec, buses: bool = False):
    """Tables for :func:`_run_fast`, built once per spec: the engine's, plus each bank's node per
    level, the deepest level two banks share, and ``cross[prev, next, level]``, the spacing the
    window-1 rules put between two commands whose banks share nodes down to ``level``. ``buses``:
    with the command buses as rules (:func:`_with_command_buses`; the general loop's tables)."""
    if buses:
        spec = _with_command_buses(spec)
    tab = build_tables(spec)
    counts = tab.counts
    B = counts.shape[0] - 1
    n_banks = int(np.prod(counts))
    bank_nodes = np.zeros((n_banks, B + 1), np.int64)
    for lv in range(1, B + 1):
        bank_nodes[:, lv] = np.arange(n_banks) // int(np.prod(counts[lv + 1:]))
    bank_coord = np.zeros((n_banks, B + 1), np.int64)  # each bank's coordinate at each level
    for lv in range(1, B + 1):
        bank_coord[:, lv] = bank_nodes[:, lv] % counts[lv]
    common = np.zeros((n_banks, n_banks), np.int64)
    for lv in range(1, B + 1):
        same = bank_nodes[:, lv][:, None] == bank_nodes[:, lv][None, :]
        common[same] = lv
    n_cmds = len(spec.standard.commands)
    cross = np.zeros((n_cmds, n_cmds, B + 1), np.int64)
    for c in spec.constraints:
        if c.window != 1:
            continue
        lv = min(c.level, B)
        if c.sibling:  # different nodes under one parent: the banks share down to lv - 1 only
            cross[c.prev, c.next, lv - 1] = max(cross[c.prev, c.next, lv - 1], c.latency)
        else:          # the banks share the node at lv: every deeper common level too
            cross[c.prev, c.next, lv:] = np.maximum(cross[c.prev, c.next, lv:], c.latency)
    r = tab.roles
    for cmd in (r[3], r[4]):  # back to back to one bank: at least a cycle (command bus)
        cross[cmd, cmd, B] = max(cross[cmd, cmd, B], 1)
    n_rcd = min(cross[r[0], r[3], B], cross[r[0], r[4], B])  # ACT to a column command, same bank
    # what issuing each command to each bank does to the ready table, for _issue_at: the window-1
    # rules as (flat cell, latency), siblings spread to their cells, one entry per cell with its
    # largest latency (the table only keeps maxima); the window rules listed per command
    iss_ptr = np.zeros(n_cmds * n_banks + 1, np.int64)
    iss_idx: list[int] = []
    iss_lat: list[int] = []
    for cmd in range(n_cmds):
        ks = tab.by_prev_idx[tab.by_prev_ptr[cmd]:tab.by_prev_ptr[cmd + 1]]
        for b in range(n_banks):
            cells: dict[int, int] = {}
            for k in ks:
                if tab.c_window[k] > 1:
                    continue
                lv = int(tab.c_level[k])
                node = int(bank_nodes[b, lv])
                if tab.c_sibling[k] == 1:
                    x = int(bank_coord[b, lv])
                    rows = [int(tab.level_offset[lv]) + node - x + s for s in range(int(counts[lv])) if s != x]
                else:
                    rows = [int(tab.level_offset[lv]) + node]
                for row in rows:
                    f = row * n_cmds + int(tab.c_next[k])
                    cells[f] = max(cells.get(f, int(tab.c_lat[k])), int(tab.c_lat[k]))
            iss_idx += list(cells)
            iss_lat += list(cells.values())
            iss_ptr[cmd * n_banks + b + 1] = len(iss_idx)
    win_ptr = np.zeros(n_cmds + 1, np.int64)
    win_idx: list[int] = []
    for cmd in range(n_cmds):
        ks = tab.by_prev_idx[tab.by_prev_ptr[cmd]:tab.by_prev_ptr[cmd + 1]]
        win_idx += [int(k) for k in ks if tab.c_window[k] > 1]
        win_ptr[cmd + 1] = len(win_idx)
    # the window rules per command and bank: a history ring per (rule, node) in one flat array (its
    # position, then the last `window` issue times, from -_BIG), the ring, window, cell and latency
    ring_of: dict[tuple[int, int], int] = {}
    hring0: list[int] = []
    w_ptr = np.zeros(n_cmds * n_banks + 1, np.int64)
    w_rows: list[tuple[int, int, int, int]] = []
    for cmd in range(n_cmds):
        for b in range(n_banks):
            for k in win_idx[win_ptr[cmd]:win_ptr[cmd + 1]]:
                lv = int(tab.c_level[k])
                node = int(bank_nodes[b, lv])
                w = int(tab.c_window[k])
                if (k, node) not in ring_of:
                    ring_of[(k, node)] = len(hring0)
                    hring0 += [0] + [-int(_BIG)] * w
                cell = (int(tab.level_offset[lv]) + node) * n_cmds + int(tab.c_next[k])
                w_rows.append((ring_of[(k, node)], w, cell, int(tab.c_lat[k])))
            w_ptr[cmd * n_banks + b + 1] = len(w_rows)
    wa = np.array(w_rows, np.int64).reshape(-1, 4)
    windows = (w_ptr, wa[:, 0].copy(), wa[:, 1].copy(), wa[:, 2].copy(), wa[:, 3].copy(), np.array(hring0 + [0], np.int64))
    issue = (iss_ptr, np.array(iss_idx, np.int64), np.array(iss_lat, np.int64), win_ptr, np.array(win_idx, np.int64))
    # the bank groups whose ACT / PRE cells issuing each command to each bank raises (window-1 rules
    # and window rules at the bank-group level), for the pick's per-bank keys (see _run_fast)
    g_lv = max(B - 1, 0)
    g_lo, g_hi = int(tab.level_offset[g_lv]), int(tab.level_offset[g_lv + 1])
    tg_ptr = np.zeros(n_cmds * n_banks + 1, np.int64)
    tg_idx: list[int] = []
    for cmd in range(n_cmds):
        for b in range(n_banks):
            key = cmd * n_banks + b
            groups: set[int] = set()
            for f in issue[1][iss_ptr[key]:iss_ptr[key + 1]]:
                row, col = divmod(int(f), n_cmds)
                if col in (int(r[0]), int(r[1])) and g_lo <= row < g_hi:
                    groups.add(row - g_lo)
            for k in issue[4][win_ptr[cmd]:win_ptr[cmd + 1]]:
                if int(tab.c_level[k]) == g_lv and int(tab.c_next[k]) in (int(r[0]), int(r[1])):
                    groups.add(int(bank_nodes[b, g_lv]))
            tg_idx += sorted(groups)
            tg_ptr[key + 1] = len(tg_idx)
    touched = (tg_ptr, np.array(tg_idx, np.int64))
    issue = issue[:3] + windows
    return tab, bank_nodes, common, cross, issue, touched, int(spec.t("nRP")), int(spec.t("nRFCpb")), int(n_rcd)


_CACHE: dict[tuple[int, bool], tuple] = {}


def _tables(spec: DramSpec, buses: bool = False):
    key = (id(spec), buses)
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    prepared = _prepare(spec, buses)
    _CACHE[key] = (weakref.ref(spec, lambda _, k=key: _CACHE.pop(k, None)), prepared)
    return prepared


def _issue_lists(spec: DramSpec, issue, n_cmds: int, roles, refresh_mode: int, has_writes: bool, buses: bool):
    """The issue lists reduced to the ready-table cells this run's decisions read: the fast mode
    consults the ACT / PRE / RD cells always, WR cells only when the run has writes, PREA / REFab
    cells only under all-bank refresh and REFpb cells only under per-bank refresh, and never the
    RDA / WRA cells (closed page checks a column command by its RD / WR cells, which the same rules
    raise). The other cells would be raised on every issue and never read: dropping them leaves the
    results unchanged and saves about half of the per-request table updates (ACT 12 cells to 7, RD
    10 to 5 on HBM2). Cached per spec and mode; ``buses``: ``issue`` comes from the tables with the
    command buses (:func:`_with_command_buses`), a cache entry of its own."""
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (int(x) for x in roles)
    read = [act, pre, rd] + ([wr] if has_writes else []) + ([prea, refab] if refresh_mode == 1 else []) + (
        [refpb] if refresh_mode == 2 else [])
    keep = np.zeros(n_cmds, np.bool_)
    keep[[c for c in read if c >= 0]] = True   # a standard may lack a command (role -1)
    key = (id(spec), keep.tobytes(), buses)
    hit = _REDUCED.get(key)
    if hit is not None and hit[0]() is spec:
        return hit[1]
    iss_ptr, iss_idx, iss_lat = issue[:3]
    m = keep[iss_idx % n_cmds]
    ptr = np.concatenate([[0], np.cumsum(m)])[iss_ptr].astype(np.int64)
    reduced = (ptr, iss_idx[m].copy(), iss_lat[m].copy()) + tuple(issue[3:])
    _REDUCED[key] = (weakref.ref(spec, lambda _, k=key: _REDUCED.pop(k, None)), reduced)
    return reduced


_REDUCED: dict[tuple, tuple] = {}
_SCRATCH = threading.local()
_SCRATCH_MAX = 1 << 22  # requests: larger runs allocate their scratch afresh rather than keep it


def _scratch(n: int):
    """Per-request scratch arrays for :func:`_split_channels` and :func:`_form_visits`, kept between
    calls (per thread) so a repeated run does not pay page faults on fresh memory: int64 x 6, each of
    length n."""
    if n > _SCRATCH_MAX:
        return [np.empty(n, np.int64) for _ in range(6)]
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf[0].shape[0] < n:
        size = max(n, 1024)
        buf = [np.empty(size, np.int64) for _ in range(6)]
        _SCRATCH.buf = buf
    return [b[:n] for b in buf]


_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _pool(size: int) -> ThreadPoolExecutor:
    """A thread pool kept between calls (starting threads costs more than a small run)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < size:
            # a bigger pool replaces the old one without shutting it down: another caller may be
            # about to submit to it (its idle threads end once it is garbage-collected)
            _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="llmsim-fast")
            _POOL_SIZE = size
        return _POOL


def _share_channels(work: np.ndarray, parts: int) -> list[np.ndarray]:
    """Channels (those with ``work`` > 0) in ``parts`` sets of about equal work: longest first, each
    to the least-loaded set (ties: the lowest set). Returns int8 masks [channels], one per
    non-empty set."""
    load = [0] * parts
    masks = [np.zeros(len(work), np.int8) for _ in range(parts)]
    for ch in sorted(np.flatnonzero(work > 0).tolist(), key=lambda c: (-int(work[c]), c)):
        i = min(range(parts), key=lambda k: (load[k], k))
        masks[i][ch] = 1
        load[i] += int(work[ch])
    return [m for m, w in zip(masks, load) if w > 0]


def _in_threads(fn, masks: list[np.ndarray]) -> list:
    """``fn(mask)`` for every mask: the first in this thread, the rest in the pool (the kernels
    release the GIL; channels are independent and each call writes only its channels' outputs)."""
    if len(masks) == 1:
        return [fn(masks[0])]
    pool = _pool(len(masks) - 1)
    futures = [pool.submit(fn, m) for m in masks[1:]]
    try:
        first = fn(masks[0])
    finally:
        # every job has ended before this returns or raises: none still writes into the caller's
        # outputs or its reusable scratch
        wait(futures)
    return [first] + [f.result() for f in futures]


def run_fast(spec: DramSpec, arrive: np.ndarray, is_write: np.ndarray, coords: np.ndarray, queue_depth: int = 32,
             page_policy: str = "open", refresh: str = "all_bank", one_burst: bool = True,
             threads: int | None = None) -> FastResult:
    """Row-visit approximation of :func:`sim.memory.engine.run` (same arguments, no command log).

    ``done_cycle`` holds, per request, the model's cycle its data transfer ends (its column
    command's time plus CL/CWL and nBL); ``cycles`` is their maximum. ``one_burst`` (default) runs
    the channels whose visits are all one request in one direction through the smaller kernel of
    :mod:`sim.memory.fast_burst`; False sends every channel through the general loop.

    ``threads``: channels are independent (each has its own command and data buses, banks and
    timing state), so they are shared out over this many threads, each channel whole in one
    thread; None takes ``LLMSIM_THREADS`` if set, else the cores this process may use. The results
    are the same for every thread count, bit for bit (each channel's schedule is computed by the
    same code from the same inputs; a test holds it). Use 1 inside a process pool that already
    fills the cores.
    """
    n_threads = thread_count(threads)
    tab, bank_nodes, common, cross, issue, touched, n_rp, n_rfcpb, n_rcd = _tables(spec)
    arrive = np.asarray(arrive, np.int64)
    is_write = np.asarray(is_write, np.bool_)
    coords = np.asarray(coords, np.int64)
    n = arrive.shape[0]
    has_writes = bool(is_write.any())
    if n and np.any(arrive[1:] < arrive[:-1]):
        raise ValueError("requests must be sorted by arrival cycle")
    if page_policy not in ("open", "closed"):
        raise ValueError(f"unknown page policy {page_policy!r}")
    refresh_mode = {"none": 0, "all_bank": 1, "per_bank": 2}[refresh]
    if n == 0:
        return FastResult(0, np.zeros(0, np.int64), 0)
    done = np.empty(n, np.int64)  # every request is served: the kernels fill it
    r = tab.roles
    if refresh_mode == 1 and (r[1] < 0 or r[2] < 0 or r[7] < 0):
        raise ValueError("standard has no all-bank refresh")
    n_cmds = len(spec.standard.commands)
    issue = _issue_lists(spec, issue, n_cmds, r, refresh_mode, has_writes, False)
    bounds = np.zeros(int(spec.counts[0]) + 1, np.int64)
    order, key, vs, vb, vr, vw = _scratch(n)
    vnum = np.zeros(bounds.shape[0] - 1, np.int64)
    if not _split_channels(is_write, coords, tab.counts, bounds, order, key):
        raise ValueError("row coordinates must lie in [0, 2^32)")
    from sim.memory import fast_burst  # it imports _issue_at from this module: here, not at the top

    if one_burst:
        use = fast_burst.one_burst_channels(key, bounds, has_writes, tab.counts, int(arrive[-1]),
                                            page_policy == "closed", vnum)
    else:
        use = np.zeros(len(vnum), np.int8)
    per_ch = np.diff(bounds)
    end1 = 0
    if use.any():
        def burst(mask):
            return fast_burst.run_one_burst(arrive, is_write, key, order, bounds, mask, tab.counts, tab.level_offset,
                                            tab.scope, tab.roles, tab.ref_level, tab.timing, bank_nodes, *issue,
                                            *touched, n_rp, n_rfcpb, int(queue_depth),
                                            page_policy == "closed", refresh_mode, done)
        end1 = max(_in_threads(burst, _share_channels(per_ch * (use != 0), n_threads)))
    end, visits = 0, 0
    if not use.all():
        # channels with both directions run bus-exact (see _run_fast): the tables with the command buses
        cross1, issue1 = cross, issue[:3]
        if has_writes and not is_write.all():
            _, _, _, cross1, issue1, _, _, _, _ = _tables(spec, True)
            issue1 = _issue_lists(spec, issue1, n_cmds, r, refresh_mode, has_writes, True)[:3]

        def general(mask):
            # each thread forms its own channels' row visits (their slots of vs .. vw, vnum), then runs them
            skip = np.int8(1) - mask
            _form_visits(key, bounds, skip, vs, vb, vr, vw, vnum)
            return _run_fast(arrive, is_write, vs, vb, vr, vw, vnum, order, bounds, tab.counts, tab.level_offset,
                             tab.c_level, tab.c_next, tab.c_lat, tab.c_window, tab.c_sibling, tab.by_prev_ptr,
                             tab.by_prev_idx, tab.scope, tab.roles, tab.ref_level, tab.timing, bank_nodes, common,
                             cross, *issue, *touched, cross1, *issue1, n_rp, n_rfcpb, n_rcd, int(queue_depth),
                             page_policy == "closed", refresh_mode, has_writes, skip, done)
        parts = _share_channels(per_ch * (use == 0), n_threads)   # work: about the channel's requests
        outs = _in_threads(general, parts) if parts else [(0, 0)]
        end = max(o[0] for o in outs)
        visits = sum(int(o[1]) for o in outs)
    visits += int(vnum[use != 0].sum())
    return FastResult(cycles=int(max(end, end1)), done_cycle=done, row_visits=int(visits))
