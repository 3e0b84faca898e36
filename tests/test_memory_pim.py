"""PIM: the NeuPIMs command set as standard data, kernels as command programs, checked."""

from __future__ import annotations

import dataclasses

import pytest

from sim.config import load_hw
from sim.memory.checker import check
from sim.memory.commands import CommandLog
from sim.memory.engine import run_program
from sim.memory.pim import attention_program, run_attention
from sim.memory.standard import dominated_rules


@pytest.fixture(scope="module")
def neupims():
    return load_hw("hbm2-neupims")


def test_pim_operation_follows_neupims_latency_model(neupims):
    """tFAW x (num_gact/2 - 1) + tRCDRD to the first COMP, COMPs max(BL/2, tCCD_S) apart."""
    spec = neupims.spec(pim=True)
    r = run_attention(neupims, 512, 128, "score")
    rows = r.log.rows(spec.standard)
    gacts = [t for t, c, _ in rows if c == "G_ACT"][:8]  # the first tile's eight bank groups
    comps = [t for t, c, _ in rows if c == "COMP"][:32]  # the first (full) tile: 32 columns of 32 B
    assert rows[0][1] == "GWRITE" and gacts[0] - rows[0][0] == 96  # (tCCD_S + tCCD_L) x 32
    assert gacts[-1] - gacts[0] == spec.t("nFAW") * (len(gacts) // 2 - 1) + 1  # pairs on consecutive cycles
    assert comps[0] - gacts[-1] == spec.t("nRCDRD")
    assert all(b - a == max(spec.t("nBL"), spec.t("nCCDS")) for a, b in zip(comps, comps[1:]))
    assert not check(spec, r.log)


@pytest.mark.parametrize("phase", ["score", "context"])
def test_internal_bandwidth_is_sixteen_times_the_bus(neupims, phase):
    r = run_attention(neupims, 1024, 128, phase, heads=2)
    bus = neupims.channel_bw_bytes_per_s / neupims.freq_hz
    assert r.bytes_computed / r.comp_phase_cycles / bus == pytest.approx(16.0)
    assert r.bytes_computed == 2 * 1024 * 128 * 2  # every K byte of both heads is read once in the banks
    assert 3 < r.bytes_computed / r.cycles / bus < 16


def test_checker_knows_pim_state(neupims):
    spec = neupims.spec(pim=True)
    comp_first = run_program(spec, [("COMP", {})])
    assert [v.kind for v in check(spec, comp_first)] == ["state"]
    twice = run_program(spec, [("G_ACT", {"rank": 0, "bankgroup": 0, "row": 1}),
                               ("G_ACT", {"rank": 0, "bankgroup": 0, "row": 2})])
    assert any("already open" in v.what for v in check(spec, twice))


def test_single_row_buffer_blocks_normal_activation(neupims, tmp_path):
    single = neupims.with_pim(dual_row_buffer=False)
    prog = [("G_ACT", {"rank": 0, "bankgroup": 0, "row": 1}),
            ("ACT", {"rank": 0, "bankgroup": 0, "bank": 0, "row": 7})]
    s_spec, d_spec = single.spec(pim=True), neupims.spec(pim=True)
    assert s_spec.mode == "single" and d_spec.mode == "dual"
    assert any("single row buffer" in v.what for v in check(s_spec, run_program(s_spec, prog)))
    assert not check(d_spec, run_program(d_spec, prog))  # dual: both rows open at once
    t = run_program(d_spec, prog).cycle
    assert t[1] - t[0] == d_spec.t("nRRDL")  # PIM ACT to ACT in a bank group: tRRD_L, not tRC


def test_shortened_pim_rules_are_caught(neupims):
    """Mutation test over the PIM operation's rules that a kernel exercises."""
    spec = neupims.spec(pim=True)
    program, _, _ = attention_program(neupims, 1024, 128, "score", heads=2)
    names = {"G_ACT", "COMP", "READRES", "PIM_PRE", "GWRITE"}
    std = spec.standard
    dominated = dominated_rules(spec)
    for r, rule in enumerate(std.rules):
        if r in dominated:
            continue
        cmds = {std.commands[c].name for c in (*rule.prev, *rule.next)}
        if not cmds <= names | {"P_HEADER"} or "P_HEADER" in cmds:
            continue
        mutant = dataclasses.replace(spec, constraints=tuple(
            dataclasses.replace(c, latency=c.latency - 1) if c.rule == r else c for c in spec.constraints))
        log = run_program(mutant, program)
        found = [v for v in check(spec, log) if v.constraint is not None and v.constraint.rule == r]
        pair = (std.commands[rule.prev[0]].name, std.commands[rule.next[0]].name)
        # a kernel never issues READRES then COMP, and PIM_PRE is bound by the READRES spacing, not
        # by nRAS / nRTP: those rules cannot bind in this program
        binding = pair not in {("READRES", "COMP"), ("G_ACT", "PIM_PRE"), ("COMP", "PIM_PRE"), ("READRES", "PIM_PRE")}
        if binding:
            assert found, f"PIM rule {r} ({rule.latency}) shortened went unnoticed"


def test_program_log_is_a_command_log(neupims):
    spec = neupims.spec(pim=True)
    log = run_program(spec, [("GWRITE", {})])
    assert isinstance(log, CommandLog) and len(log) == 1


def test_mixed_run_is_clean_and_dual_keeps_npu_traffic(neupims):
    import numpy as np

    from sim.memory.engine import run_mixed

    mp = neupims.mapping()
    program, _, _ = attention_program(neupims, 2048, 128, "score", heads=1, row0=10000)
    stream = mp.decode_many(np.arange(4000 * 32, dtype=np.int64) * 64)
    coords = stream[stream[:, 0] == 0][:4000]
    kept = {}
    for dual in (True, False):
        mem = neupims.with_pim(dual_row_buffer=dual)
        spec = mem.spec(pim=True)
        res = run_mixed(spec, program, np.zeros(4000, np.int64), np.zeros(4000, bool), coords)
        assert not check(spec, res.result.log)
        assert (res.pim_issue >= 0).all() and (res.result.done_cycle >= 0).all()
        kept[dual] = int(np.sum(res.result.done_cycle <= res.pim_cycles))
    assert kept[True] > 10 * max(kept[False], 1)


@pytest.mark.parametrize("placement,units,ratio", [("bank", 32, 16.0), ("bank_pair", 16, 8.0), ("bank_group", 8, 4.0)])
def test_pim_placement_sets_the_internal_bandwidth(neupims, placement, units, ratio):
    mem = neupims.with_pim(placement=placement)
    r = run_attention(mem, 1024, 128, "score", heads=1)
    bus = mem.channel_bw_bytes_per_s / mem.freq_hz
    assert r.units == units
    assert r.bytes_computed == 1024 * 128 * 2  # the same K bytes, fewer units
    assert r.bytes_computed / r.comp_phase_cycles / bus == pytest.approx(ratio)


def test_attention_batch_runs_channels_in_parallel(neupims):
    from sim.memory.pim import run_attention_batch

    one = run_attention_batch(neupims, [300], [0], 128, 2)
    two_channels = run_attention_batch(neupims, [300, 300], [0, 1], 128, 2)
    same_channel = run_attention_batch(neupims, [300, 300], [0, 0], 128, 2)
    assert two_channels.cycles == one.cycles
    assert same_channel.cycles > 1.9 * one.cycles
    assert two_channels.commands == 2 * one.commands


def test_single_row_buffer_refresh_waits_for_pim_and_program_must_close(neupims):
    """Reviewer's cases: a PREA must not close a single-buffer PIM row under running COMPs, and a
    program that leaves PIM rows open is refused instead of looping forever."""
    import numpy as np

    from sim.memory.engine import run_mixed

    single = neupims.with_pim(dual_row_buffer=False)
    spec = single.spec(pim=True)
    mp = single.mapping()
    program = [("G_ACT", {"rank": 0, "bankgroup": 0, "row": 3})] + [("COMP", {})] * 3000 + [("PIM_PRE", {})]
    coords = mp.decode_many(np.array([mp.encode((0, 0, 3, 0, 5, c % 16)) for c in range(200)], np.int64))
    res = run_mixed(spec, program, np.arange(200, dtype=np.int64) * 20, np.zeros(200, bool), coords,
                    refresh="all_bank")
    assert not check(spec, res.result.log)
    with pytest.raises(ValueError, match="close its rows"):
        run_mixed(spec, program[:-1], np.zeros(1, np.int64), np.zeros(1, bool), coords[:1])


@pytest.mark.parametrize("dual,placement", [(True, "bank"), (False, "bank"), (True, "bank_group")])
def test_runs_fast_path_issues_exactly_the_expanded_program(dual, placement):
    """One event per run of COMPs / READRESs gives every command's cycle of the command-level
    path: the runs' first and last issues match the expanded log, and the expanded runs pass the
    checker."""
    import numpy as np

    from sim.memory.engine import run_program_runs
    from sim.memory.pim import attention_runs

    mem = load_hw("hbm2-neupims").with_pim(dual_row_buffer=dual, placement=placement)
    spec = mem.spec(pim=True)
    runs = []
    for length, phase in ((37, "score"), (700, "context"), (1500, "score")):
        runs += attention_runs(mem, length, 128, phase, heads=2, row0=len(runs))[0]
    fast = run_program_runs(spec, runs)
    log = run_program(spec, [(c, w) for c, w, k in runs for _ in range(k)])
    refab = spec.standard.command_index("REFab")
    is_ref = log.cmd == refab
    assert len(fast.refresh_t) == int(is_ref.sum()) > 0          # the kernels are long enough to refresh
    assert np.array_equal(fast.refresh_t, log.cycle[is_ref])
    prog = log.cycle[~is_ref]
    ends = np.cumsum([k for _, _, k in runs])
    assert fast.commands == len(prog)
    assert np.array_equal(fast.last, prog[ends - 1])
    assert np.array_equal(fast.first, prog[ends - np.array([k for _, _, k in runs])])
    assert fast.cycles == int(log.cycle[-1]) + 1
    assert not check(spec, log)


def test_runs_refuse_windowed_commands_and_empty_runs(neupims):
    from sim.memory.engine import run_program_runs

    spec = neupims.spec(pim=True)
    with pytest.raises(ValueError, match="window rule"):
        run_program_runs(spec, [("G_ACT", {"rank": 0, "bankgroup": 0, "row": 1}, 3)])
    with pytest.raises(ValueError, match="at least once"):
        run_program_runs(spec, [("COMP", {}, 0)])


def test_attention_batch_fast_equals_command_level(neupims):
    lengths, channels = [1, 90, 513, 2048, 300, 300], [0, 0, 3, 3, 3, 7]
    fast = run_attention_batch_(neupims, lengths, channels, True)
    slow = run_attention_batch_(neupims, lengths, channels, False)
    assert fast == slow


def run_attention_batch_(mem, lengths, channels, fast):
    from sim.memory.pim import run_attention_batch

    return run_attention_batch(mem, lengths, channels, 128, 2, fast=fast)
