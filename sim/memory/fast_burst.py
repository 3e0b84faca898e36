"""Fast mode, one-burst channels: a smaller kernel for channels in which every row visit is one
request and every request goes in one direction (strided and random reads, or writes), where the
general loop's (:func:`sim.memory.fast._run_fast`) row visits have nothing to aggregate.

Per request, one step: the waiting head (each bank's oldest queued request) whose row event can go
first (a row hit: its admission; a closed row: its ACT; a conflict: its PRE + nRP and its ACT;
ties: the oldest) is picked exactly as in the general loop, with the same per-bank keys and the
same vectorized pass; then its PRE and ACT are issued at the row event and its column command at
the first cycle the ready table allows, in the same step. The general loop instead keeps an opened
row active while another candidate could take the column bus first; with one burst per visit in
one direction the column commands follow the ACTs (same tRCD), so the two agree: bit for bit on
most of 576 validation cases, within 0.8% on cycles on the rest but hbm3-6400 random traffic with
per-bank refresh (1.5%; docs/memory.md). A refresh goes first when it is due before the row
event, or before the column command if it takes the head's bank: as in the general loop (and the
engine) the ACT stays issued and the refresh's PRE waits for it, and the head opens its row again.

What makes it cheaper (about 55 ns a request instead of 100 on the benchmark's VM): no active
visits, column candidates or column runs; no per-class head counts; the visit index equal to the
request's position in its channel; the refresh deadline a scalar; the keys brought up to date for
the two banks each step changes (the one served, the one a request entered: exactly one enters
per service once the queue is full) in code written once in the loop body (as an inlined helper
with array arguments numba counted references on every call: 3x slower); the PRE / column ready
cells read from per-bank cell lists; each head's class kept as two masks (closed, conflict), so
the vector pass ANDs them with the parent's bounds (about 1%); the requests' banks and rows read
from the split's packed word (:func:`sim.memory.fast._split_channels`), unpacked per channel into
small buffers, so the split writes no row visits for these channels; and the done cycles written
in channel order and scattered into request order after each channel (from inside the loop each
store went to a new cache line in strided traffic: -15 to -19% on the kernel). Tried and dropped
(no gain, side by side): the refresh out of line; the pick's fresh keys and group raises kept out
of the key array until after the vector pass (store forwarding: 8 ns a request in a
micro-benchmark, nothing here); 16-bank parent loops with a constant trip count; the timings as
compile-time constants (``numba.literally`` re-dispatches on every call through the dispatcher);
the parents' bounds in scalars rather than a small array (+0.3 ms on 200k); skipping the key of
the bank a request entered when its head did not change (strided -0.3 ms, random +0.2 ms: about
half the steps skip, so the branch mispredicts). Marginal costs, measured by doing a part twice
(idempotent, same results): the vector pass about 8 ns a request, each bank's key update about
4.5 ns.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sim.memory.engine import _earliest

# fast.py imports this module lazily, inside run_fast
from sim.memory.fast import _KEY_SHIFT, _all_bank_refresh_now, _issue_at, _node_coords

_BIG = np.int64(1) << 60
_VMASK = (np.int64(1) << 24) - 1       # the head's visit index in a key (cycle << 24 | visit)
_NONE = (np.int64(1) << 62) - 1        # the key of a bank with no waiting head


@njit(cache=True)
def one_burst_channels(key, bounds, has_writes, counts, last_arrival, closed_page, vnum):
    """Per channel, whether the one-burst kernel applies: every request goes in one direction (all
    reads or, in a run with writes, all writes) and every row visit is one request -- or, with open
    pages, at least 7 in 8 of them are (random traffic: a few consecutive requests to one row); the
    kernel then takes each request as its own visit, and a request to the row its predecessor
    opened is a row hit there. Reads each channel's packed bank, row and direction (``key``, channel order, see
    :func:`sim.memory.fast._split_channels`) once, sequentially, and sets ``vnum`` (row visits) for
    the channels it takes. The pick's key (cycle << 24 | request) needs fewer than 2^24 requests in
    the channel and cycles below 2^37 (arrivals below 2^36), and its select at most 4 parents of
    bank groups. int8 [channels]: 1 where it applies."""
    n_ch = bounds.shape[0] - 1
    ok = np.zeros(n_ch, np.int8)
    B = counts.shape[0] - 1
    if B < 2 or last_arrival >= (np.int64(1) << 36):
        return ok
    n_par = 1
    for lv in range(1, B - 1):
        n_par *= counts[lv]
    if n_par > 4:
        return ok
    for ch in range(n_ch):
        lo = bounds[ch]
        hi = bounds[ch + 1]
        n = hi - lo
        if n == 0 or n >= (1 << 24):
            continue
        # row visits; stop once too many requests repeat their predecessor's bank and row (stream
        # traffic: after a few requests, not the whole channel)
        rep_max = 0 if closed_page else n // 8
        rep = 0
        last = key[lo] >> 1
        for k in range(lo + 1, hi):
            kk = key[k] >> 1     # bank and row
            rep += kk == last
            last = kk
            if rep > rep_max:
                break
        if rep > rep_max:
            continue
        nv = n - rep
        nw = 0
        if has_writes:   # a read-only run: no write to count
            for k in range(lo, hi):
                nw += key[k] & 1
        if not (nw == 0 or nw == n):
            continue
        ok[ch] = 1
        vnum[ch] = nv
    return ok


@njit(cache=True, inline="always")
def _raise_groups(kt, tg_ptr, tg_idx, grp_row0, bpg, act, pre, n_rp, ready, kk, km1, km2):
    """After an issue (``kt`` = command * banks + bank): raise the keys of the closed / conflict
    heads in every group whose ACT / PRE cells it raised (the table only grows: exact)."""
    U = np.uint64
    for j in range(tg_ptr[U(kt)], tg_ptr[U(kt + 1)]):
        g = tg_idx[U(j)]
        gr = U(grp_row0 + g)
        ga = ready[gr, U(act)] << 24
        gp = max(ready[gr, U(pre)] + n_rp, ready[gr, U(act)]) << 24
        for bb in range(g * bpg, g * bpg + bpg):
            ub = U(bb)
            k = kk[ub]
            bnd = (ga & km1[ub]) | (gp & km2[ub])   # branch-free: the classes mispredict
            kk[ub] = max(k, bnd | (k & _VMASK))


@njit(cache=True, nogil=True)
def run_one_burst(arrive, is_write, key, order, bounds, use, counts, level_offset, scope, roles,
                  ref_level, timing, bank_nodes, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
                  hring0, tg_ptr, tg_idx, n_rp, n_rfcpb, queue_depth, closed_page, refresh_mode, done):
    """The channels with ``use[ch]`` set (see :func:`one_burst_channels`), one after the other.
    ``key`` holds each request's flat bank, row and direction, packed, in channel order (see
    :func:`sim.memory.fast._split_channels`); they are unpacked per channel into small buffers the
    loop reads. Fills ``done`` (cycle each request's data transfer ends) for their requests; returns
    the last data end (cycles) over them."""
    act, pre, prea, rd, wr, rda, wra, refab, refpb = (roles[0], roles[1], roles[2], roles[3], roles[4], roles[5],
                                                      roles[6], roles[7], roles[8])
    n_cl, n_cwl, n_bl, n_refi, n_refipb = timing[0], timing[1], timing[2], timing[3], timing[4]
    B = counts.shape[0] - 1
    n_cmds = scope.shape[0]
    n_banks = bank_nodes.shape[0]
    U = np.uint64
    uact = U(act)
    upre = U(pre)
    ref_nodes = level_offset[ref_level + 1] - level_offset[ref_level]
    banks_per_ref = n_banks // ref_nodes
    Q = queue_depth
    a0 = arrive[0]
    same_arrival = arrive[arrive.shape[0] - 1] == a0
    ready = np.zeros((level_offset[B + 1], n_cmds), np.int64)
    readyf = ready.reshape(ready.size)
    hring = hring0.copy()
    open_row = np.full(n_banks, -1, np.int64)
    head = np.full(n_banks, -1, np.int64)
    last_v = np.full(n_banks, -1, np.int64)
    bpg = counts[B]
    n_grp = n_banks // bpg
    gpp = counts[B - 1] if B >= 2 else n_grp
    n_par = n_grp // gpp
    n_plv = B - 1 if B >= 2 else 0
    bank_row0 = level_offset[B]
    grp_row0 = level_offset[B - 1] if B >= 1 else 0
    par_row = np.zeros((n_par, max(n_plv, 1)), np.int64)
    for p_ in range(n_par):
        for lv in range(n_plv):
            par_row[p_, lv] = level_offset[lv] + bank_nodes[p_ * gpp * bpg, lv]
    b_grp = bank_nodes[:, B - 1].copy() if B >= 1 else np.zeros(n_banks, np.int64)
    kk = np.full(n_banks, _NONE, np.int64)        # per bank, its head's row event below the parent's bounds
    km1 = np.zeros(n_banks, np.int64)             # and its class as masks: -1 closed, else 0
    km2 = np.zeros(n_banks, np.int64)             # -1 conflict, else 0 (see the key update)
    bpp = gpp * bpg
    bpp2 = 2 * bpp
    bpp3 = 3 * bpp
    p_a = np.zeros(max(n_par, 4), np.int64)
    p_p = np.zeros(max(n_par, 4), np.int64)
    next_ref = np.zeros(ref_nodes, np.int64)     # per refresh node: the next refresh's due cycle
    b_ref = np.arange(n_banks) // banks_per_ref  # each bank's refresh node
    ref_bank = np.zeros(ref_nodes, np.int64)
    tmp = np.zeros(B + 1, np.int64)
    bank_xy = np.zeros(B + 1, np.int64)
    n_ch = bounds.shape[0] - 1
    n_max = 0
    for ch in range(n_ch):
        n_max = max(n_max, bounds[ch + 1] - bounds[ch])
    vnextb = np.empty(n_max, np.int64)
    vbank = np.empty(n_max, np.int64)       # the channel's requests' flat banks and rows (from key)
    vrow = np.empty(n_max, np.int64)
    kmask = (np.int64(1) << 32) - 1
    # the ready-table cells (flat) a PRE / a column command to each bank reads, per bank
    n_rp_cells = scope[pre] + 1
    n_rc_cells = max(scope[rd], scope[wr] if wr >= 0 else 0) + 1
    cells_pre = np.empty(n_banks * n_rp_cells, np.int64)
    cells_col = np.empty((2, n_banks * n_rc_cells), np.int64)
    for bb in range(n_banks):
        for lv in range(n_rp_cells):
            cells_pre[bb * n_rp_cells + lv] = (level_offset[lv] + bank_nodes[bb, lv]) * n_cmds + pre
        for d in range(2):
            cc_ = wr if d == 1 else rd
            if cc_ < 0:                     # a standard without writes: no write channels either
                continue
            for lv in range(n_rc_cells):
                lvc = min(lv, scope[cc_])   # a level past the command's scope: repeat its last cell
                cells_col[d, bb * n_rc_cells + lv] = (level_offset[lvc] + bank_nodes[bb, lvc]) * n_cmds + cc_
    served_t = np.empty(n_max, np.int64)
    dbuf = np.empty(n_max, np.int64)   # done cycles in channel order (see the end of the channel loop)
    end = np.int64(0)
    for ch in range(n_ch):
        if use[ch] == 0:
            continue
        lo_r = bounds[ch]
        n = bounds[ch + 1] - lo_r
        ready[:, :] = 0
        hring[:] = hring0
        open_row[:] = -1
        head[:] = -1
        last_v[:] = -1
        kk[:] = _NONE
        km1[:] = 0
        km2[:] = 0
        next_ref[:] = n_refi if refresh_mode == 1 else (n_refipb if refresh_mode == 2 else _BIG)
        ref_bank[:] = 0
        tref = next_ref[0] if refresh_mode != 0 else _BIG
        rn = 0
        ordc = order[lo_r:lo_r + n]
        w = is_write[ordc[0]]           # one direction per channel
        ccol = cells_col[1] if w else cells_col[0]
        cmd = wr if w else rd
        ccmd = (wra if w else rda) if closed_page else cmd
        lat = (n_cwl if w else n_cl) + n_bl
        for v in range(n - 1, -1, -1):
            kv = key[lo_r + v]
            b = kv >> _KEY_SHIFT
            vbank[v] = b
            vrow[v] = (kv >> 1) & kmask
            vnextb[v] = last_v[b] if last_v[b] != -1 else n
            last_v[b] = v
        served = 0
        wend = 0          # first request not yet in the queue
        kstale = True     # every key afresh (the first fill, after a refresh or an out-of-order service)
        pb = -1           # the bank served last: its key afresh
        while served < n:
            # ---- requests enter the queue (one per service after the first fill): a bank's first
            # queued request is its head
            ab = -1
            n_in = 0
            while wend < n and wend < served + Q:
                ab = vbank[wend]
                h = head[ab]
                head[ab] = wend if h == -1 else h
                wend += 1
                n_in += 1
            # ---- keys: the bank served last and the bank a request entered (or all of them), each its
            # head's row event below the parent's bounds as cycle << 24 | head (the head's position:
            # its age), and its class (0 row hit or no head, 1 closed, 2 conflict). A row hit's event
            # is its admission; a closed row's its ACT (the bank's and its group's ACT cells); a
            # conflict's its PRE + nRP and ACT. Written once, branch-free (the classes mispredict):
            # as a helper with array arguments numba would count references on every call
            full = kstale or n_in > 1
            kstale = False
            for q in range(n_banks if full else 2):
                bq = q if full else (pb if q == 0 else ab)
                if bq < 0:
                    continue
                ub = U(bq)
                v = head[ub]
                valid = v != -1
                uv = U(v if valid else 0)
                g = U(grp_row0 + b_grp[ub])
                adm = a0 if same_arrival else arrive[U(ordc[uv])]
                qi = v - Q
                tq = served_t[U(qi)] + 1 if qi >= 0 else np.int64(0)
                adm = max(adm, tq)
                rb = U(bank_row0 + bq)
                orow = open_row[ub]
                hit = orow == vrow[uv]
                closed = orow == -1
                ra = ready[rb, uact]
                k1 = max(max(ra, adm), ready[g, uact])
                k2 = max(max(max(ready[rb, upre], adm) + n_rp, ra), max(ready[g, upre] + n_rp, ready[g, uact]))
                cl = np.int64(valid and not hit and closed) | (np.int64(valid and not hit and not closed) << 1)
                kt = (adm & -np.int64(hit)) | (k1 & -(cl & 1)) | (k2 & -(cl >> 1))
                kk[ub] = (kt << 24) | v if valid else _NONE
                km1[ub] = -(cl & 1)
                km2[ub] = -(cl >> 1)
            pb = -1
            # ---- the earliest row event (ties: the oldest head): per parent its ACT bound above the
            # groups (closed rows) and PRE + nRP bound (conflicts), then one vectorized pass
            for p_ in range(n_par):
                ua = np.int64(0)
                up = np.int64(0)
                for lv in range(n_plv):
                    r_ = par_row[p_, lv]
                    ua = max(ua, ready[r_, act])
                    up = max(up, ready[r_, pre])
                p_a[p_] = ua << 24
                p_p[p_] = max(up + n_rp, ua) << 24
            u0, u1, u2, u3 = p_a[0], p_a[1], p_a[2], p_a[3]
            q0, q1, q2, q3 = p_p[0], p_p[1], p_p[2], p_p[3]
            kmin = _NONE
            for bb in range(n_banks):
                ua = u0 if bb < bpp else (u1 if bb < bpp2 else (u2 if bb < bpp3 else u3))
                up = q0 if bb < bpp else (q1 if bb < bpp2 else (q2 if bb < bpp3 else q3))
                k = kk[bb]
                bnd = (ua & km1[bb]) | (up & km2[bb])
                kmin = min(kmin, max(k, bnd | (k & _VMASK)))
            re = kmin >> 24
            rv = kmin & _VMASK
            # ---- the picked head: PRE (conflict) and ACT (not a hit) at the row event, unless a refresh
            # is due first; then its column command, unless the refresh takes its bank before that
            # (as in the general loop and the engine, the opened row is then lost: the ACT stays
            # issued, the refresh's PRE waits for it, and the head opens its row again later)
            v = rv
            b = vbank[v]
            adm = a0 if same_arrival else arrive[ordc[v]]
            if v >= Q and served_t[v - Q] + 1 > adm:
                adm = served_t[v - Q] + 1
            c = _BIG
            if tref > re:
                if open_row[b] != vrow[v]:
                    if open_row[b] != -1:
                        tp = adm
                        for j in range(b * n_rp_cells, b * n_rp_cells + n_rp_cells):
                            tp = max(tp, readyf[U(cells_pre[U(j)])])
                        _issue_at(pre, b, tp, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell,
                                  w_lat, readyf, hring)
                        _raise_groups(pre * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, act, pre, n_rp, ready, kk,
                                      km1, km2)
                    _issue_at(act, b, re, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
                              readyf, hring)
                    _raise_groups(act * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, act, pre, n_rp, ready, kk, km1, km2)
                    open_row[b] = vrow[v]
                c = adm
                for j in range(b * n_rc_cells, b * n_rc_cells + n_rc_cells):
                    c = max(c, readyf[U(ccol[U(j)])])
            rb_ = b_ref[b]      # the refresh node of the head's bank: is a refresh of its bank due by c?
            takes = next_ref[rb_] <= c and (refresh_mode == 1 or b == rb_ * banks_per_ref + ref_bank[rb_])
            if tref <= re or takes:
                first_bank = rn * banks_per_ref
                if refresh_mode == 1:
                    _node_coords(rn, ref_level, counts, tmp)
                    any_open = False
                    for bb in range(first_bank, first_bank + banks_per_ref):
                        if open_row[bb] != -1:
                            any_open = True
                            open_row[bb] = -1
                    _all_bank_refresh_now(any_open, tref, first_bank, tmp, prea, refab, counts, level_offset, scope,
                                          ready, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell,
                                          w_lat, readyf, hring)
                    next_ref[rn] += n_refi
                else:
                    # PRE if open, then REFpb charged to its own bank only, as in fast.py's one-step
                    # per-bank refresh (written out in both: see there)
                    bb = first_bank + ref_bank[rn]
                    tr = tref
                    _node_coords(bb, B, counts, bank_xy)
                    if open_row[bb] != -1:
                        e = max(tr, _earliest(pre, bank_xy, counts, level_offset, scope, ready))
                        _issue_at(pre, bb, e, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell,
                                  w_lat, readyf, hring)
                        open_row[bb] = -1
                        tr = e + 1
                    rowb = level_offset[B] + bb
                    e = max(tr, ready[rowb, refpb])
                    if e + n_rfcpb > ready[rowb, act]:
                        ready[rowb, act] = e + n_rfcpb
                    next_ref[rn] += n_refipb
                    ref_bank[rn] = (ref_bank[rn] + 1) % banks_per_ref
                tref = _BIG
                for r in range(ref_nodes):
                    if next_ref[r] < tref:
                        tref = next_ref[r]
                        rn = r
                kstale = True     # the refresh may have raised any cell: every key afresh
                continue
            dbuf[v] = c + lat
            if c + lat > end:
                end = c + lat
            k = served
            while k > 0 and served_t[k - 1] > c:
                served_t[k] = served_t[k - 1]
                k -= 1
            served_t[k] = c
            if k < served:
                kstale = True
            served += 1
            _issue_at(ccmd, b, c, n_banks, iss_ptr, iss_idx, iss_lat, w_ptr, w_base, w_len, w_cell, w_lat,
                      readyf, hring)
            _raise_groups(ccmd * n_banks + b, tg_ptr, tg_idx, grp_row0, bpg, act, pre, n_rp, ready, kk, km1, km2)
            if closed_page:
                open_row[b] = -1
            nb = vnextb[v]
            head[b] = nb if nb < wend else -1
            pb = b
        # done cycles into request order after the channel, not from inside its loop: there each store
        # went to a scattered cache line (strided traffic: a new line every request) and the loop
        # ran about a sixth slower
        for v in range(n):
            done[ordc[v]] = dbuf[v]
    return end
