"""Command-level engine: exact idle latency, streaming bandwidth, policies, refresh."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_hw
from sim.memory.engine import run


@pytest.fixture(scope="module")
def neupims():
    m = load_hw("hbm2-neupims")
    return m, m.spec(), m.mapping()


def names(spec, log):
    return [spec.standard.commands[int(c)].name for c in log.cmd]


def test_idle_read_latency_is_rcd_plus_cl_plus_burst(neupims):
    m, spec, mp = neupims
    res = run(spec, np.zeros(1, np.int64), np.zeros(1, bool), mp.decode_many(np.array([0])), refresh="none")
    assert names(spec, res.log) == ["ACT", "RD"]
    assert list(res.log.cycle) == [0, spec.t("nRCDRD")]
    assert res.done_cycle[0] == spec.t("nRCDRD") + spec.t("nCL") + spec.t("nBL") == 30


def test_streaming_read_reaches_peak(neupims):
    m, spec, mp = neupims
    n = 64 * 1024
    coords = mp.decode_many(np.arange(n, dtype=np.int64) * m.burst_bytes)
    res = run(spec, np.zeros(n, np.int64), np.zeros(n, bool), coords, refresh="per_bank")
    bytes_per_cycle = n * m.burst_bytes / res.cycles
    peak = m.peak_bw_bytes_per_s / m.freq_hz
    assert bytes_per_cycle >= 0.95 * peak
    assert bytes_per_cycle <= peak
    assert (res.done_cycle > 0).all()


def test_closed_page_uses_auto_precharge(neupims):
    m, spec, mp = neupims
    coords = mp.decode_many(np.array([0, 1 << 20], dtype=np.int64) * 64)
    res = run(spec, np.zeros(2, np.int64), np.zeros(2, bool), coords, page_policy="closed", refresh="none")
    assert "RDA" in names(spec, res.log) and "PRE" not in names(spec, res.log)
    res = run(spec, np.zeros(2, np.int64), np.zeros(2, bool), coords, page_policy="open", refresh="none")
    assert "RDA" not in names(spec, res.log)


def test_row_conflict_precharges(neupims):
    m, spec, mp = neupims
    a = mp.encode((0, 0, 0, 0, 5, 0))
    b = mp.encode((0, 0, 0, 0, 9, 0))
    res = run(spec, np.array([0, 100], np.int64), np.zeros(2, bool), mp.decode_many(np.array([a, b])), refresh="none")
    assert names(spec, res.log) == ["ACT", "RD", "PRE", "ACT", "RD"]
    t = list(res.log.cycle)
    assert t[2] == 100 and t[3] - t[2] == spec.t("nRP")


@pytest.mark.parametrize("mode,cmd", [("all_bank", "REFab"), ("per_bank", "REFpb")])
def test_refresh_is_issued(neupims, mode, cmd):
    m, spec, mp = neupims
    n = 4000
    coords = mp.decode_many(np.arange(n, dtype=np.int64) * 64 * 32)  # one channel's worth of streaming
    arrive = np.arange(n, dtype=np.int64) * 4
    res = run(spec, arrive, np.zeros(n, bool), coords, refresh=mode)
    assert cmd in names(spec, res.log)


def test_writes_complete(neupims):
    m, spec, mp = neupims
    n = 256
    coords = mp.decode_many(np.arange(n, dtype=np.int64) * 64)
    writes = np.arange(n) % 2 == 0
    res = run(spec, np.zeros(n, np.int64), writes, coords, refresh="none")
    assert "WR" in names(spec, res.log) and (res.done_cycle > 0).all()


@pytest.mark.parametrize("mode,cmd,interval", [("all_bank", "REFab", "nREFI"), ("per_bank", "REFpb", "nREFIpb")])
def test_row_hits_cannot_put_off_refresh(neupims, mode, cmd, interval):
    """A stream of hits to one open row must not hold back a due refresh (a reviewer's case)."""
    m, spec, mp = neupims
    n = 40_000
    coords = mp.decode_many(np.full(n, mp.encode((0, 0, 0, 0, 7, 0)), np.int64))
    res = run(spec, np.arange(n, dtype=np.int64), np.zeros(n, bool), coords, refresh=mode)
    names = np.array([c.name for c in spec.standard.commands])[res.log.cmd]
    ranks = res.log.coords[:, 1]
    t = res.log.cycle[(names == cmd) & (ranks == 0)]
    if mode == "per_bank":  # bank (0, 0, 0) of rank 0 itself
        xy = res.log.coords
        t = res.log.cycle[(names == cmd) & (ranks == 0) & (xy[:, 2] == 0) & (xy[:, 3] == 0)]
        period = spec.t(interval) * 16
    else:
        period = spec.t(interval)
    assert len(t) >= res.cycles // period - 1
    assert np.diff(np.concatenate([[0], t])).max() <= 2 * period


@pytest.mark.parametrize("mode", ["all_bank", "per_bank"])
def test_refresh_deadlines_hold_under_load(neupims, mode):
    from sim.memory.checker import refresh_violations
    from sim.memory.workloads import requests

    m, spec, mp = neupims
    arrive, is_write, addrs = requests(mp, "random", 80_000, 2, 0.3, 64, mean_gap=1.0)
    res = run(spec, arrive, is_write, mp.decode_many(addrs), refresh=mode)
    assert res.cycles > 9 * spec.t("nREFI")  # long enough for a deadline to bite
    assert refresh_violations(spec, res.log, mode) == []
    unrefreshed = run(spec, arrive, is_write, mp.decode_many(addrs), refresh="none")
    assert len(refresh_violations(spec, unrefreshed.log, mode)) > 0  # the rule can fail


# dense traffic: the counting merge; sparse arrivals without refresh: the sort merge
@pytest.mark.parametrize("gap,refresh", [(0, "per_bank"), (997, "none")])
def test_log_is_each_channels_log_merged_by_cycle(neupims, gap, refresh):
    # the channels' logs are merged by cycle, ties in channel order: the same log as a stable sort of
    # the channels' logs run one channel at a time and concatenated
    from sim.memory.workloads import requests

    m, spec, mp = neupims
    arrive, is_write, addrs = requests(mp, "random", 3_000, seed=5, write_fraction=0.2, burst_bytes=m.burst_bytes)
    arrive = arrive + gap * np.arange(len(arrive))
    xy = mp.decode_many(addrs)
    res = run(spec, arrive, is_write, xy, refresh=refresh)
    parts = []
    for ch in np.unique(xy[:, 0]):
        sel = xy[:, 0] == ch
        alone = run(spec, arrive[sel], is_write[sel], xy[sel], refresh=refresh)
        parts.append(alone.log)
        assert np.array_equal(res.done_cycle[sel], alone.done_cycle)
    t = np.concatenate([p.cycle for p in parts])
    order = np.argsort(t, kind="stable")
    assert np.array_equal(res.log.cycle, t[order])
    assert np.array_equal(res.log.cmd, np.concatenate([p.cmd for p in parts])[order])
    assert np.array_equal(res.log.coords, np.concatenate([p.coords for p in parts])[order])
    assert res.log.cmd.dtype == np.int16 and res.log.coords.dtype == np.int32
    span = int(res.log.cycle[-1] - res.log.cycle[0])
    assert (span <= 8 * len(res.log) + 1024) == (gap == 0)   # both merge paths are taken


def test_a_channel_that_outgrows_its_log_slice(neupims):
    # sparse arrivals with per-bank refresh: hundreds of refresh commands per request, far past the
    # 4 a request a channel's slice of the log buffer holds; such a channel runs again in a buffer of
    # its own, and the merged log is the same as each channel's log alone
    m, spec, mp = neupims
    addrs = np.arange(0, 64 * 40, 64)
    xy = mp.decode_many(addrs)
    arrive = 5_000 * np.arange(len(addrs))
    res = run(spec, arrive, np.zeros(len(addrs), bool), xy, refresh="per_bank")
    assert len(res.log) > 4 * len(addrs) + 1024
    assert np.all(np.diff(res.log.cycle) >= 0)
    for ch in np.unique(xy[:, 0]):
        sel = xy[:, 0] == ch
        alone = run(spec, arrive[sel], np.zeros(int(sel.sum()), bool), xy[sel], refresh="per_bank")
        mine = res.log.coords[:, 0] == ch
        assert np.array_equal(res.log.cycle[mine], alone.log.cycle)
        assert np.array_equal(res.log.cmd[mine], alone.log.cmd)
    assert run(spec, arrive[:0], np.zeros(0, bool), xy[:0]).log.cycle.shape == (0,)
