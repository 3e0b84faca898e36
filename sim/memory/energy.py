"""DRAM energy from IDD currents, per command and background (the Micron power-calculator method
that DRAMsim3 uses).

Per command, in one device (one HBM channel here), with VDD in volts, currents in mA and times in
cycles of tCK ns (mA x V x ns = pJ):

* ACT + PRE pair: (IDD0 x nRC - (IDD3N x nRAS + IDD2N x (nRC - nRAS))) x VDD x tCK
* RD burst: (IDD4R - IDD3N) x nBL x VDD x tCK;  WR burst: (IDD4W - IDD3N) x nBL x VDD x tCK
* REFab: (IDD5AB - IDD3N) x nRFC x VDD x tCK; REFpb: the same current over nRFCpb, shared by the
  banks of the node (charged / banks of the node)
* background: IDD3N x VDD x tCK per cycle while any bank of the channel is open, IDD2N while all
  are closed (an upper bound on idle power: no power-down modes are modelled).

PIM (assumptions; NeuPIMs gives no PIM energy numbers): a G_ACT with its PIM_PRE costs an ACT/PRE
pair in every bank of its bank group; a COMP costs one column access (a read burst's array energy)
in every PIM unit plus, when the preset gives ``pim.mac_energy_pj``, the MACs; a READRES is a read
burst; a GWRITE is its 32 write bursts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.memory.commands import CommandLog


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energies in picojoules."""

    act_pre_pj: float
    read_pj: float
    write_pj: float
    refresh_pj: float
    background_pj: float
    pim_pj: float = 0.0

    @property
    def total_pj(self) -> float:
        return self.act_pre_pj + self.read_pj + self.write_pj + self.refresh_pj + self.background_pj + self.pim_pj

    def as_dict(self) -> dict[str, float]:
        return {"act_pre_pj": self.act_pre_pj, "read_pj": self.read_pj, "write_pj": self.write_pj,
                "refresh_pj": self.refresh_pj, "background_pj": self.background_pj, "pim_pj": self.pim_pj,
                "total_pj": self.total_pj}


def per_command_pj(memory) -> dict[str, float]:
    """Energy of one ACT/PRE pair, one read or write burst, one REFab and one REFpb, in pJ."""
    p = memory.power
    if p is None:
        raise ValueError(f"{memory.name}: power: the preset gives no IDD currents")
    spec = memory.spec()
    t = spec.timing
    i = p.idd_ma
    k = p.vdd_v * memory.tck_ps / 1000.0  # mA x cycles -> pJ
    banks = memory.organization["bankgroup"] * memory.organization["bank"]
    out = {
        "act_pre": (i.idd0 * t["nRC"] - (i.idd3n * t["nRAS"] + i.idd2n * (t["nRC"] - t["nRAS"]))) * k,
        "read": (i.idd4r - i.idd3n) * t["nBL"] * k,
        "write": (i.idd4w - i.idd3n) * t["nBL"] * k,
        "refab": (i.idd5ab - i.idd3n) * t["nRFC"] * k,
        "refpb": (i.idd5ab - i.idd3n) * t["nRFCpb"] * k / banks,
    }
    if memory.pim is not None:
        from sim.memory.pim import banks_per_unit

        org = memory.organization
        units = org.get("rank", 1) * org["bankgroup"] * org["bank"] // banks_per_unit(memory)
        mac = (memory.pim.mac_energy_pj or 0.0) * memory.pim.comp_coverage_macs
        out.update({
            "g_act": out["act_pre"] * org["bank"],
            "comp": (out["read"] + mac) * units,
            "readres": out["read"],
            "gwrite": out["write"] * 32,
        })
    return out


def counts_energy(memory, counts: dict[str, int]) -> EnergyBreakdown:
    """Command energy (no background) of ``counts`` commands by name, e.g. a PIM batch's
    :attr:`~sim.memory.pim.BatchResult.command_counts`."""
    e = per_command_pj(memory)
    reads = counts.get("RD", 0) + counts.get("RDA", 0)
    writes = counts.get("WR", 0) + counts.get("WRA", 0)
    refresh = counts.get("REFab", 0) * e["refab"] + counts.get("REFpb", 0) * e["refpb"]
    pim = sum(counts.get(name, 0) * e[key] for name, key in
              (("G_ACT", "g_act"), ("COMP", "comp"), ("READRES", "readres"), ("GWRITE", "gwrite")) if key in e)
    return EnergyBreakdown(counts.get("ACT", 0) * e["act_pre"], reads * e["read"], writes * e["write"], refresh,
                           0.0, pim)


def stream_pj_per_byte(memory, write: bool = False) -> float:
    """Energy per byte of streaming reads (or writes): a burst each ``burst_bytes``, plus one ACT/PRE
    pair per page opened (a page's bursts all hit the open row, as sequential NPU traffic does)."""
    e = per_command_pj(memory)
    page_bytes = memory.organization["column"] * memory.bus_width_bits // 8
    bursts_per_page = max(1, page_bytes // memory.burst_bytes)
    return (e["write" if write else "read"] + e["act_pre"] / bursts_per_page) / memory.burst_bytes


def log_energy(memory, log: CommandLog, cycles: int, open_fraction: float = 1.0) -> EnergyBreakdown:
    """Energy of a command log over ``cycles`` cycles on every channel. ``open_fraction`` is the share
    of time some bank of a channel holds an open row (1.0: the upper bound)."""
    e = per_command_pj(memory)
    s = memory.spec(pim=memory.pim is not None and memory.pim.standard is not None).standard
    names = np.array([c.name for c in s.commands])
    counts = {name: int(np.sum(names[log.cmd] == name)) for name in names} if len(log) else {}
    act = counts.get("ACT", 0)
    reads = counts.get("RD", 0) + counts.get("RDA", 0)
    writes = counts.get("WR", 0) + counts.get("WRA", 0)
    refresh = counts.get("REFab", 0) * e["refab"] + counts.get("REFpb", 0) * e["refpb"]
    pim = sum(counts.get(name, 0) * e[key] for name, key in
              (("G_ACT", "g_act"), ("COMP", "comp"), ("READRES", "readres"), ("GWRITE", "gwrite")) if key in e)
    p = memory.power
    k = p.vdd_v * memory.tck_ps / 1000.0
    idle = p.idd_ma.idd3n * open_fraction + p.idd_ma.idd2n * (1 - open_fraction)
    background = idle * k * cycles * memory.channels
    return EnergyBreakdown(act * e["act_pre"], reads * e["read"], writes * e["write"], refresh, background, pim)
