"""Numba kernels for the per-group data-type search (one core, no temporaries).

Both kernels take the per-group, per-candidate scales already computed (numpy, in
:mod:`sim.quant.quantize`) and do the element work in one pass per candidate: divide by the scale,
find the nearest grid level, accumulate the squared error, keep the best candidate (strict ``<``, so
a tie keeps the earlier one), then write the dequantized group for the winner.

Nearest level: ``idx`` = the number of midpoints strictly below ``x / scale``. A value exactly on a
midpoint therefore goes to the lower level (bitmod.md: "ties to the lower level"). The result is
identical to ``np.searchsorted(mids, v, side="left")`` used by the numpy reference path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LINEAR_MAX_MIDS = 16  # up to this many midpoints a branch-free count beats a binary search
MIN_UNIFORM = 5  # a uniform run of at least this many levels gets the arithmetic fast path


def uniform_segment(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The longest run of equally spaced levels with a power-of-two step (ties: the first run).

    Returns ``(ints, floats)``: ``[first index, length]`` and ``[g0, 1/step, lo, hi]`` where
    ``lo``/``hi`` are the midpoints just outside the run (-inf/+inf at the grid's ends). Length 0
    when no run of ``MIN_UNIFORM`` levels exists, or when the grid has at most
    ``LINEAR_MAX_MIDS + 1`` levels and the run does not cover it all (then the branch-free count
    is faster). ``grid`` is float32 and sorted.
    """
    g = np.asarray(grid, dtype=np.float64)
    best = (0, 0)
    i = 0
    while i < g.size - 1:
        step = g[i + 1] - g[i]
        j = i + 1
        while j + 1 < g.size and g[j + 1] - g[j] == step:
            j += 1
        m, e = np.frexp(step)
        if m == 0.5 and j - i + 1 > best[1]:
            best = (i, j - i + 1)
        i = j
    first, n = best
    if n < g.size and g.size - 1 <= LINEAR_MAX_MIDS:
        n = 0  # a small grid that is not uniform throughout: the branch-free count is faster
    if n < MIN_UNIFORM:
        return np.zeros(2, np.int64), np.array([0.0, 0.0, 0.0, 0.0])
    mids = (g[:-1].astype(np.float32) + g[1:].astype(np.float32)) / np.float32(2)
    lo = float(mids[first - 1]) if first > 0 else -np.inf
    hi = float(mids[first + n - 1]) if first + n - 1 < mids.size else np.inf
    step = g[first + 1] - g[first]
    return np.array([first, n], np.int64), np.array([g[first], 1.0 / step, lo, hi])


@njit(cache=True, inline="always")
def _nearest(v, mids, n_mids):
    if n_mids <= LINEAR_MAX_MIDS:
        idx = 0
        for m in range(n_mids):
            idx += v > mids[m]
        return idx
    lo = 0
    hi = n_mids
    while lo < hi:
        mid = (lo + hi) >> 1
        if v > mids[mid]:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def _level(v, mids, n_mids, u_first, u_len, u_g0, u_inv, u_lo, u_hi):
    """``_nearest`` with a fast path for the grid's uniform segment (see ``uniform_segment``).

    Inside ``(u_lo, u_hi]`` (the midpoints just outside the segment) the answer is in the segment:
    ``ceil((v - g0) / step - 0.5)``, exact in float64 because ``step`` is a power of two, so it
    equals the midpoint count (a value on a midpoint still goes to the lower level).
    """
    if u_len > 0 and v > u_lo and v <= u_hi:
        t = (np.float64(v) - u_g0) * u_inv - 0.5
        i = np.int64(np.ceil(t))
        if i < 0:
            i = 0
        elif i > u_len - 1:
            i = u_len - 1
        return u_first + i
    return _nearest(v, mids, n_mids)


@njit(cache=True)
def _fill_levels(x, r, a, n, s, t, grids, mids, deltas, n_levels, uni_i, uni_f, use_lin, v, q):
    """q[j] = the grid level nearest to x[r, a + j] / s, for j < n (candidate grid t)."""
    nm = n_levels[t] - 1
    for j in range(n):
        v[j] = x[r, a + j] / s
    if use_lin[t]:
        # Branch-free and SIMD-friendly: start at the lowest level, add each step whose midpoint
        # lies strictly below v. The partial sums are exact (levels are short dyadic numbers).
        g0 = grids[t, 0]
        for j in range(n):
            q[j] = g0
        for m in range(nm):
            mid = mids[t, m]
            dl = deltas[t, m]
            for j in range(n):
                q[j] += dl if v[j] > mid else np.float32(0.0)
    else:
        mt = mids[t]
        gt = grids[t]
        uf, ul = uni_i[t, 0], uni_i[t, 1]
        g0, inv, lo, hi = uni_f[t, 0], uni_f[t, 1], np.float32(uni_f[t, 2]), np.float32(uni_f[t, 3])
        for j in range(n):
            q[j] = gt[_level(v[j], mt, nm, uf, ul, g0, inv, lo, hi)]


@njit(cache=True)
def _sq_err(x, r, a, n, q, s):
    """Sum of (q * s - x)**2 in float64 with 8 lane accumulators (element j adds to lane j % 8,
    in order), combined as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)): a fixed order the numpy
    reference repeats exactly, and one the compiler can vectorize."""
    acc = np.zeros(8)
    n8 = n - n % 8
    for j in range(0, n8, 8):
        for lane in range(8):
            d = np.float64(q[j + lane] * s - x[r, a + j + lane])
            acc[lane] += d * d
    for j in range(n8, n):
        d = np.float64(q[j] * s - x[r, a + j])
        acc[j - n8] += d * d
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


@njit(cache=True)
def _olive_pairs_inplace(q, n, thr):
    """OliVe's outlier-victim rule on pairs (0,1), (2,3)... of levels (see quantize.olive_pairs)."""
    for p in range(n // 2):
        q0 = q[2 * p]
        q1 = q[2 * p + 1]
        a0 = abs(q0)
        a1 = abs(q1)
        o0 = a0 > thr
        o1 = a1 > thr
        keep1 = o1 and ((not o0) or a1 > a0)
        if keep1:
            q[2 * p] = 0.0
        elif o0:
            q[2 * p + 1] = 0.0


@njit(cache=True)
def search_groups(x, group_size, scales, cand_type, grids, mids, deltas, n_levels, uni_i, uni_f, use_lin,
                  pairs, thr, out, choice, chosen_scale):
    """Per group, the candidate with the lowest squared error; returns the total squared error.

    x: (rows, cols) float32; scales: (rows, groups, K) float32; cand_type: (K,) row of the grid
    tables (grids, mids, deltas = level steps, n_levels, uni_i/uni_f = uniform segment, use_lin);
    pairs: apply OliVe's outlier-victim rule (threshold thr) before measuring the error.
    Writes out (rows, cols) dequantized, choice (rows, groups) int16, chosen_scale (rows, groups).
    A strict ``<`` keeps the earlier candidate on a tie.
    """
    rows, cols = x.shape
    n_groups = scales.shape[1]
    n_cand = scales.shape[2]
    v = np.empty(group_size, np.float32)
    q = np.empty(group_size, np.float32)
    total = 0.0
    for r in range(rows):
        for g in range(n_groups):
            a = g * group_size
            n = min(group_size, cols - a)
            best = 0
            best_err = np.inf
            for k in range(n_cand):
                s = scales[r, g, k]
                _fill_levels(x, r, a, n, s, cand_type[k], grids, mids, deltas, n_levels, uni_i, uni_f,
                             use_lin, v, q)
                if pairs:
                    _olive_pairs_inplace(q, n, thr)
                err = _sq_err(x, r, a, n, q, s)
                if err < best_err:
                    best_err = err
                    best = k
            s = scales[r, g, best]
            _fill_levels(x, r, a, n, s, cand_type[best], grids, mids, deltas, n_levels, uni_i, uni_f,
                         use_lin, v, q)
            if pairs:
                _olive_pairs_inplace(q, n, thr)
            for j in range(n):
                out[r, a + j] = q[j] * s
            choice[r, g] = best
            chosen_scale[r, g] = s
            total += best_err
    return total
