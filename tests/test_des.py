"""Discrete-event core (sim.des): exact multi-clock time base, unit contention and stats,
Chrome trace-event timeline export."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest

from sim.des import Simulator, TimeBase, chrome_trace, write_chrome_trace
from sim.des.clock import MAX_TICK_HZ

# --- time base -----------------------------------------------------------------------------

MIXES = [
    ({"npu": 1000e6, "dram": 1000e6, "icnt": 2000e6}, 2 * 10**9, {"npu": 2, "dram": 2, "icnt": 1}),
    ({"npu": 1e9, "icnt": 1.6e9}, 8 * 10**9, {"npu": 8, "icnt": 5}),
    ({"npu": 1e9, "icnt": 1.6e9, "hbm": 3.2e9, "vec": 2e9}, 16 * 10**9,
     {"npu": 16, "icnt": 10, "hbm": 5, "vec": 8}),
    ({"core": 940e6, "hbm": 1.2e9}, 56_400 * 10**6, {"core": 60, "hbm": 47}),
    ({"a": Fraction(10**9, 3), "b": 10**9}, 10**9, {"a": 3, "b": 1}),
    ({"a": "1000000000/3", "b": "1.6e9"}, 8 * 10**9, {"a": 24, "b": 5}),
    ({"slow": 0.5, "x": Fraction(3, 4)}, Fraction(3, 2), {"slow": 3, "x": 2}),
    ({"np": np.float64(1.6e9), "ni": np.int64(10**9)}, 8 * 10**9, {"np": 5, "ni": 8}),
]


@pytest.mark.parametrize("freqs, tick_hz, periods", MIXES)
def test_timebase_exact(freqs, tick_hz, periods):
    tb = TimeBase.from_freqs(freqs)
    assert tb.tick_hz == tick_hz
    assert dict(tb.periods) == periods
    for d in freqs:
        p = tb.period(d)
        assert isinstance(p, int) and p >= 1
        assert p * tb.freqs[d] == tb.tick_hz  # the period is exact, not rounded
        # one second of cycles is exactly one second of ticks
        if tb.freqs[d].denominator == 1:
            assert tb.seconds_exact(tb.ticks(d, int(tb.freqs[d]))) == 1
    # the tick is the coarsest that works: no common factor left in the periods
    assert math.gcd(*tb.periods.values()) == 1


def test_timebase_float_read_as_decimal():
    tb = TimeBase.from_freqs({"core": 933.33e6, "x": 1e9})
    assert tb.freqs["core"] == 933_330_000
    assert tb.tick_hz == math.lcm(933_330_000, 10**9)


def test_timebase_round_trips_and_edges():
    tb = TimeBase.from_freqs({"npu": 1e9, "icnt": 1.6e9, "hbm": 3.2e9})
    rng = random.Random(0)
    for d in tb.periods:
        p = tb.period(d)
        for n in [0, 1, 2, 7, 10**6, 10**12, -3]:
            t = tb.ticks(d, n)
            assert tb.cycles(d, t) == n and tb.cycles_ceil(d, t) == n
            assert tb.next_edge(d, t) == t  # an edge is its own next edge
        for _ in range(300):
            t = rng.randrange(-10**6, 10**15)
            lo, hi, e = tb.cycles(d, t), tb.cycles_ceil(d, t), tb.next_edge(d, t)
            assert lo * p <= t < (lo + 1) * p
            assert (hi - 1) * p < t <= hi * p
            assert hi - lo == (0 if t % p == 0 else 1)
            assert e >= t and e % p == 0 and e - t < p and e == hi * p
    # domains share edges where they should: 1.6 GHz and 1 GHz coincide every 5 ns
    assert tb.ticks("npu", 5) == tb.ticks("icnt", 8) == tb.ticks("hbm", 16)
    assert tb.next_edge("icnt", tb.ticks("npu", 1)) == tb.ticks("icnt", 2)
    # seconds / microseconds are the nearest floats to the exact values
    assert tb.seconds(tb.ticks("npu", 10**9)) == 1.0
    for t in [0, 1, 3, 12345, 10**13 + 7]:
        assert tb.microseconds(t) == float(Fraction(t * 10**6) / tb.tick_hz)
        assert tb.seconds(t) == float(Fraction(t) / tb.tick_hz)
    assert tb.tick_seconds() == Fraction(1, 16 * 10**9)


def test_timebase_refusals():
    with pytest.raises(ValueError, match="lcm"):
        TimeBase.from_freqs({"a": 1e9 / 3, "b": 1e9})  # float 333333333.3333333: lcm ~1e25
    with pytest.raises(ValueError, match="lcm"):
        TimeBase.from_freqs({"a": 10**9 + 7, "b": 10**9 + 9})  # coprime GHz-ish: lcm ~1e18
    assert TimeBase.from_freqs({"a": 10**6 + 3, "b": 10**6}, max_tick_hz=MAX_TICK_HZ)
    for bad in [0, -1e9, float("nan"), float("inf"), "fast", None]:
        with pytest.raises((ValueError, TypeError)):
            TimeBase.from_freqs({"a": bad})
    with pytest.raises(TypeError):
        TimeBase.from_freqs({"a": True})
    with pytest.raises(ValueError):
        TimeBase.from_freqs({})
    tb = TimeBase.from_freqs({"npu": 1e9})
    with pytest.raises(KeyError, match="unknown clock domain 'dram'"):
        tb.ticks("dram", 1)
    with pytest.raises(TypeError):
        tb.ticks("npu", 1.5)  # cycles are integers; no silent float time
    with pytest.raises(TypeError):
        tb.next_edge("npu", 2.0)


# --- simulator and units -------------------------------------------------------------------


def _run_jobs(sim, jobs):
    """jobs: list of (unit, duration, label); all start at t=0. Returns each job's finish tick."""
    done = {}

    def job(i, unit, dur, label):
        yield from unit.busy(dur, label)
        done[i] = sim.now

    for i, (u, d, lab) in enumerate(jobs):
        sim.process(job(i, u, d, lab))
    sim.run()
    return done


def test_contention_serializes_on_one_unit():
    sim = Simulator()
    u = sim.unit("array0", "core0/arrays")
    done = _run_jobs(sim, [(u, 10, "a"), (u, 20, "b"), (u, 5, "c")])
    assert done == {0: 10, 1: 30, 2: 35}  # FIFO, back to back
    assert [(s.start, s.end, s.label) for s in u.slices] == [(0, 10, "a"), (10, 30, "b"), (30, 35, "c")]
    assert sim.now == 35 and isinstance(sim.now, int)


def test_two_units_overlap():
    sim = Simulator()
    a, b = sim.unit("array0", "core0/arrays"), sim.unit("array1", "core0/arrays")
    done = _run_jobs(sim, [(a, 10, "x"), (b, 20, "y")])
    assert done == {0: 10, 1: 20}
    assert a.slices[0][:2] == (0, 10) and b.slices[0][:2] == (0, 20)


def test_capacity_two_uses_lanes():
    sim = Simulator()
    u = sim.unit("dma", "core0/dma", capacity=2)
    done = _run_jobs(sim, [(u, 10, "a"), (u, 10, "b"), (u, 10, "c")])
    assert done == {0: 10, 1: 10, 2: 20}
    assert [(s.start, s.lane) for s in u.slices] == [(0, 0), (0, 1), (10, 0)]
    st = u.stats()
    assert (st.busy_ticks, st.idle_ticks, st.utilization) == (30, 10, 0.75)


def test_stats():
    sim = Simulator()
    u, idle = sim.unit("vec", "core0"), sim.unit("idle", "core0")

    def p():
        yield from u.busy(30, "op1")
        yield sim.timeout(20)
        yield from u.busy(50, "op2", {"rows": 4})

    sim.process(p())
    sim.run()
    st = u.stats()
    assert (st.busy_ticks, st.idle_ticks, st.window_end, st.slices) == (80, 20, 100, 2)
    assert st.utilization == pytest.approx(0.8)
    w = u.stats((20, 60))  # clips op1 to [20,30), op2 to [50,60)
    assert (w.busy_ticks, w.idle_ticks, w.slices, w.utilization) == (20, 20, 2, 0.5)
    assert u.stats((30, 50)).busy_ticks == 0
    assert u.stats((0, 0)).utilization == 0.0
    assert idle.stats().busy_ticks == 0 and idle.stats().idle_ticks == 100
    with pytest.raises(ValueError):
        u.stats((10, 5))


def test_record_refuses_overlap():
    sim = Simulator()
    ch = sim.unit("ch0", "hbm")
    ch.record(10, 20, "rd")
    ch.record(30, 40, "wr")
    ch.record(20, 30, "rd")  # fills the gap exactly: touching is not overlapping
    ch.record(0, 5, "rd")  # out of order is fine
    assert ch.record(7, 7, "empty") is None  # empty slice ignored
    for s, e in [(15, 25), (5, 11), (39, 41), (0, 100), (2, 3), (19, 21)]:
        with pytest.raises(ValueError, match="overlaps"):
            ch.record(s, e, "bad")
    with pytest.raises(ValueError, match="before it starts"):
        ch.record(50, 45, "bad")
    assert [(s.start, s.end) for s in ch.slices] == [(0, 5), (10, 20), (20, 30), (30, 40)]
    assert ch.stats().busy_ticks == 35 and ch.stats().slices == 4


def test_record_and_busy_share_the_overlap_check():
    sim = Simulator()
    u = sim.unit("u")
    u.record(5, 8, "future")  # occupancy computed ahead of time

    def p():
        yield from u.busy(10, "clash")  # [0,10) overlaps [5,8)

    sim.process(p())
    with pytest.raises(ValueError, match="overlaps"):
        sim.run()


def test_interrupt_records_partial_slice_and_releases():
    import simpy

    sim = Simulator()
    u = sim.unit("u")

    def victim():
        try:
            yield from u.busy(100, "long")
        except simpy.Interrupt:
            pass

    def other():
        yield from u.busy(5, "next")

    v = sim.process(victim())
    sim.process(other())

    def killer():
        yield sim.timeout(40)
        v.interrupt()

    sim.process(killer())
    sim.run()
    assert [(s.start, s.end, s.label) for s in u.slices] == [(0, 40, "long"), (40, 45, "next")]


def test_events_counter_time_checks_and_clock_helpers():
    tb = TimeBase.from_freqs({"npu": 1e9, "icnt": 1.6e9})
    sim = Simulator(tb)
    seen = []

    def p():
        for _ in range(10):
            yield sim.timeout(3)
        yield sim.wait_cycles("npu", 2)  # 16 ticks
        seen.append(sim.now)
        yield sim.wait_edge("icnt")  # 46 -> 50
        seen.append(sim.now)
        yield sim.wait_edge("icnt")  # on an edge: zero wait
        seen.append(sim.now)

    sim.process(p())
    sim.run()
    assert seen == [46, 50, 50]
    assert sim.events == 15  # the process's Initialize + 13 timeouts + the process's end
    n0 = sim.events
    sim.timeout(1)  # manual steps count too
    sim.step()
    assert sim.events == n0 + 1
    with pytest.raises(TypeError):
        sim.timeout(1.5)
    with pytest.raises(TypeError):
        sim.run(until=100.5)
    sim.run(until=100)
    assert sim.now == 100 and isinstance(sim.now, int)
    with pytest.raises(ValueError):
        sim.unit("a"), sim.unit("a")
    with pytest.raises(ValueError):
        Simulator().wait_cycles("npu", 1)


# --- timeline ------------------------------------------------------------------------------

REQUIRED = {  # fields the Trace Event Format needs per phase, with their JSON types
    "X": {"name": str, "cat": str, "ph": str, "ts": (int, float), "dur": (int, float),
          "pid": int, "tid": int},
    "M": {"name": str, "ph": str, "pid": int, "args": dict},
}


def _model(tb):
    """A small model: two cores, back-to-back and contended ops, a 2-lane DMA, a memory
    channel with recorded (not held) occupancy at odd tick counts."""
    sim = Simulator(tb)
    arrays = [sim.unit(f"core{c}/array{i}", f"core{c}/arrays") for c in range(2) for i in range(2)]
    vec = sim.unit("core0/vector", "core0/vector")
    dma = sim.unit("dma", "dma", capacity=2)
    ch = sim.unit("hbm/ch0", "hbm")
    rng = random.Random(1)

    def worker(k):
        for j in range(40):
            yield from arrays[(k + j) % 4].busy(tb.ticks("npu", rng.randint(1, 9)), "matmul",
                                                {"m": np.int64(128), "k": j})
            yield from vec.busy(rng.randint(1, 7), "softmax")
            yield from dma.busy(rng.randint(3, 30), "load", {"bytes": 4096})

    for k in range(6):
        sim.process(worker(k))
    sim.run()
    t = 0
    for _ in range(500):  # back-to-back slices of odd lengths: float ts/dur must not overlap
        d = rng.randint(1, 11)
        ch.record(t, t + d, "burst")
        t += d + (rng.random() < 0.3)
    return sim


@pytest.mark.parametrize("freqs", [{"npu": 1e9, "icnt": 1.6e9, "hbm": 3.2e9},
                                   {"npu": "1000000000/3", "hbm": 2.4e9},
                                   {"npu": 1e9}])
def test_timeline_chrome_trace(tmp_path, freqs):
    tb = TimeBase.from_freqs(freqs)
    sim = _model(tb)
    path = write_chrome_trace(tmp_path / "out" / "timeline.json", sim)
    assert [p.name for p in path.parent.iterdir()] == ["timeline.json"]  # no temp file left
    data = json.loads(path.read_text())  # (d) valid JSON that loads back
    assert data == json.loads(json.dumps(chrome_trace(sim), default=lambda o: o.item()))
    assert set(data) >= {"traceEvents", "displayTimeUnit"}
    assert data["displayTimeUnit"] in ("ms", "ns")
    events = data["traceEvents"]

    # (a) every event has the fields its phase requires, with the right types
    for ev in events:
        req = REQUIRED[ev["ph"]]
        for key, typ in req.items():
            assert key in ev and isinstance(ev[key], typ) and not isinstance(ev[key], bool), (key, ev)
        if ev["ph"] == "X":
            assert ev["ts"] >= 0 and ev["dur"] > 0
            assert isinstance(ev.get("args", {}), dict)
        else:
            assert ev["name"] in ("process_name", "thread_name", "process_sort_index",
                                  "thread_sort_index")
            if ev["name"].startswith("thread_"):
                assert isinstance(ev["tid"], int)
            if ev["name"].endswith("_name"):
                assert isinstance(ev["args"]["name"], str) and ev["args"]["name"]

    # (b) slices on one track never overlap, in the exported floats
    tracks: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for ev in events:
        if ev["ph"] == "X":
            tracks.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], ev["dur"]))
    for track in tracks.values():
        track.sort()
        for (ts0, dur0), (ts1, _) in zip(track, track[1:]):
            assert ts0 + dur0 <= ts1

    # (c) every pid and tid used has a name
    pnames = {ev["pid"] for ev in events if ev.get("name") == "process_name" and ev["ph"] == "M"}
    tnames = {(ev["pid"], ev["tid"]) for ev in events if ev.get("name") == "thread_name"}
    assert {pid for pid, _ in tracks} <= pnames
    assert set(tracks) <= tnames
    assert len({tid for _, tid in tnames}) == len(tnames)  # one tid per unit lane

    # the content matches the simulation: one X event per slice, times converted exactly
    n_slices = sum(len(u.slices) for u in sim.units)
    assert len(tracks) == sum(u.capacity for u in sim.units)
    assert sum(len(t) for t in tracks.values()) == n_slices
    first = sim.get_unit("hbm/ch0").slices[0]
    x = next(ev for ev in events if ev["ph"] == "X" and ev["cat"] == "hbm")
    assert x["ts"] == tb.microseconds(first.start)
    assert x["dur"] == pytest.approx(tb.microseconds(first.end - first.start), rel=1e-12)
    m = next(ev for ev in events if ev["ph"] == "X" and ev["name"] == "matmul")
    assert m["args"]["m"] == 128 and m["cat"].endswith("/arrays")
    names = {ev["args"]["name"] for ev in events if ev.get("name") == "thread_name"}
    assert {"dma[0]", "dma[1]", "hbm/ch0", "core1/array1"} <= names


def test_timeline_needs_a_timebase():
    sim = Simulator()
    sim.unit("u").record(0, 1, "x")
    with pytest.raises(ValueError, match="TimeBase"):
        chrome_trace(sim)
    tb = TimeBase.from_freqs({"npu": 1e9})
    data = chrome_trace(sim.units, tb, display_time_unit="ms")
    assert data["displayTimeUnit"] == "ms"
    assert [e["ts"] for e in data["traceEvents"] if e["ph"] == "X"] == [0.0]
    assert [e["dur"] for e in data["traceEvents"] if e["ph"] == "X"] == [0.001]
    # the unnamed group still gets a named process
    assert any(e["name"] == "process_name" and e["args"]["name"] == "units"
               for e in data["traceEvents"])
