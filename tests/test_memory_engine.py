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
