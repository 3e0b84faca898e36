"""DRAM energy from IDD currents: the per-command formulas on the NeuPIMs HBM2 preset."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import load_hw
from sim.memory.energy import log_energy, per_command_pj
from sim.memory.engine import run


def test_per_command_energy_formulas():
    m = load_hw("hbm2-neupims")
    e = per_command_pj(m)
    vdd, tck = 1.2, 1.0  # V, ns
    # IDD0 65, IDD3N 55, IDD2N 40, IDD4R 390, IDD4W 500, IDD5AB 250 mA; nRC 48, nRAS 34, nBL 2, nRFC 260
    assert e["act_pre"] == pytest.approx((65 * 48 - (55 * 34 + 40 * 14)) * vdd * tck)
    assert e["read"] == pytest.approx((390 - 55) * 2 * vdd * tck)
    assert e["write"] == pytest.approx((500 - 55) * 2 * vdd * tck)
    assert e["refab"] == pytest.approx((250 - 55) * 260 * vdd * tck)


def test_log_energy_counts_commands():
    m = load_hw("hbm2-neupims")
    spec, mp = m.spec(), m.mapping()
    n = 1000
    res = run(spec, np.zeros(n, np.int64), np.arange(n) % 4 == 0, mp.decode_many(np.arange(n) * 64 * 4096),
              refresh="none")
    e = per_command_pj(m)
    out = log_energy(m, res.log, res.cycles)
    names = [spec.standard.commands[int(c)].name for c in res.log.cmd]
    assert out.act_pre_pj == pytest.approx(names.count("ACT") * e["act_pre"])
    assert out.read_pj == pytest.approx(names.count("RD") * e["read"])
    assert out.write_pj == pytest.approx(names.count("WR") * e["write"])
    assert out.total_pj > out.background_pj > 0


def test_pim_kernel_energy():
    from sim.memory.pim import run_attention

    m = load_hw("hbm2-neupims")
    e = per_command_pj(m)
    assert e["g_act"] == pytest.approx(4 * e["act_pre"])      # a bank group's four banks
    # one column access and 16 fp16 MACs (1.5 pJ each, Horowitz 2014) in each of 32 units
    assert e["comp"] == pytest.approx(32 * (e["read"] + 16 * 1.5))
    assert per_command_pj(m.with_pim(mac_energy_pj=None))["comp"] == pytest.approx(32 * e["read"])
    r = run_attention(m, 1024, 128, "score")
    out = log_energy(m, r.log, r.cycles)
    assert out.pim_pj == pytest.approx(8 * 8 * e["g_act"] + r.comps * e["comp"] + 8 * 4 * e["readres"] + e["gwrite"])
