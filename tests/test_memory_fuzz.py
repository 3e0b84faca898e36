"""The engine never breaks a rule: its command logs, read by the independent checker, are clean
on every preset, for many request shapes, page policies and refresh modes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config import load_hw
from sim.memory.checker import check
from sim.memory.engine import run
from sim.memory.workloads import PATTERNS, requests

PRESETS = ["hbm2-neupims", "hbm2-2gbps", "hbm3-6400", "hbm-pim-samsung", "attacc-hbm3-pim"]
_CACHE: dict[str, tuple] = {}


def preset(name: str):
    if name not in _CACHE:
        m = load_hw(name)
        _CACHE[name] = (m, m.spec(), m.mapping())
    return _CACHE[name]


def engine_log(name, pattern, n, seed, writes, gap, page, refresh, queue):
    m, spec, mp = preset(name)
    arrive, is_write, addrs = requests(mp, pattern, n, seed, writes, m.burst_bytes, mean_gap=gap)
    res = run(spec, arrive, is_write, mp.decode_many(addrs), queue_depth=queue, page_policy=page, refresh=refresh)
    assert (res.done_cycle >= 0).all(), "every request is served"
    return spec, res


@given(
    name=st.sampled_from(PRESETS),
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**16),
    writes=st.sampled_from([0.0, 0.3, 1.0]),
    gap=st.sampled_from([0.0, 2.0, 20.0]),
    page=st.sampled_from(["open", "closed"]),
    refresh=st.sampled_from(["none", "all_bank", "per_bank"]),
    queue=st.sampled_from([1, 8, 32]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_streams_have_no_violations(name, pattern, seed, writes, gap, page, refresh, queue):
    spec, res = engine_log(name, pattern, 3000, seed, writes, gap, page, refresh, queue)
    bad = check(spec, res.log)
    assert not bad, bad[0]


@pytest.mark.parametrize("name", PRESETS)
def test_long_mixed_run_is_clean_and_refreshes(name):
    spec, res = engine_log(name, "random", 20000, 1, 0.25, 1.0, "open", "per_bank", 32)
    assert not check(spec, res.log)
    names = {spec.standard.commands[int(c)].name for c in np.unique(res.log.cmd)}
    assert {"ACT", "PRE", "RD", "WR", "REFpb"} <= names


# ------------------------------------------------------------------ the engine's timing core
import dataclasses  # noqa: E402

from sim.memory.engine import fuzz_commands  # noqa: E402
from sim.memory.standard import dominated_rules  # noqa: E402


def pim_spec(dual: bool):
    m, _, _ = preset("hbm2-neupims")
    return m.with_pim(dual_row_buffer=dual).spec(pim=True)


SPECS = [*PRESETS, "pim-dual", "pim-single"]


def spec_named(name):
    if name.startswith("pim-"):
        return pim_spec(name == "pim-dual")
    return preset(name)[1]


@pytest.mark.parametrize("name", SPECS)
def test_fuzzed_commands_have_no_violations(name):
    """Random state-legal commands (PIM ones too, on the PIM standard), each issued as early as the
    engine allows: never a violation."""
    spec = spec_named(name)
    for seed in range(3):
        log = fuzz_commands(spec, 50_000, seed=seed)
        assert not check(spec, log)


@pytest.mark.parametrize("name", SPECS)
def test_every_shortened_constraint_is_caught(name):
    """Mutation test: an engine whose table has any one rule shortened by a cycle is caught by the
    fuzzer and the checker, naming that rule -- except rules another rule always covers."""
    spec = spec_named(name)
    skip = dominated_rules(spec)
    for r in range(len(spec.standard.rules)):
        if r in skip:
            continue
        mutant = dataclasses.replace(spec, constraints=tuple(
            dataclasses.replace(c, latency=c.latency - 1) if c.rule == r else c for c in spec.constraints))
        caught = any(
            any(v.constraint is not None and v.constraint.rule == r for v in check(spec, fuzz_commands(mutant, 20_000, seed)))
            for seed in range(4)
        )
        assert caught, f"rule {r} ({spec.standard.rules[r].latency}) shortened by one cycle went unnoticed"


def test_dominated_rules_are_few_and_explained():
    for name in PRESETS:
        m, spec, _ = preset(name)
        dom = dominated_rules(spec)
        assert len(dom) <= 6, (name, dom)
        assert all(why.startswith("covered by") for why in dom.values())
