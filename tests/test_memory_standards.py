"""The memory presets against the reference numbers, their address mappings, bandwidths and errors.

The expected values are typed in by hand from ../shared/reference/dram.md and neupims.md (not read
from the presets), so a preset that drifts from its source fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config import load_hw
from sim.errors import LlmsimError

REPO = Path(__file__).resolve().parent.parent
PRESETS = ("hbm2-neupims", "hbm2-2gbps", "hbm3-6400", "hbm-pim-samsung", "attacc-hbm3-pim")


# ------------------------------------------------------------------------------- reference values
# timing name -> cycles, as the reference gives them (tCK 1 ns for the HBM2 parts)
REFERENCE = {
    # neupims.md "Memory" (and dram.md, DRAMsim3 HBM2_8Gb_x128.ini); nBL = BL 4 / 2
    "hbm2-neupims": dict(nBL=2, nCL=14, nCWL=4, nRCDRD=14, nRCDWR=14, nRP=14, nRAS=34, nRFC=260, nREFI=3900,
                         nREFIpb=128, nRRDS=4, nRRDL=6, nWTRS=6, nWTRL=8, nFAW=30, nWR=16, nCCDS=1, nCCDL=2,
                         nRTP=5),
    # dram.md, Ramulator 2.1 HBM2 2 Gbps; ns at tCK 1 ns: tRRD 4, tFAW 15, tRFC 350, tRFCSB 160, tREFI 3.9 us
    "hbm2-2gbps": dict(nBL=2, nCL=14, nRCDRD=14, nRCDWR=12, nRP=14, nRAS=34, nRC=48, nWR=16, nRTP=5, nCWL=5,
                       nCCDS=2, nCCDL=4, nWTRS=6, nWTRL=8, nRRDS=4, nRRDL=4, nFAW=15, nRFC=350, nRFCpb=160,
                       nREFI=3900),
    # dram.md, Ramulator 2.1 HBM3 6.4 Gbps; tRFC 450 ns (16Gb) at tCK 0.625 ns = 720
    "hbm3-6400": dict(nBL=2, nCL=20, nRCDRD=31, nRCDWR=15, nRP=26, nRAS=45, nRC=72, nWR=33, nRTP=9, nCWL=10,
                      nCCDS=2, nCCDL=4, nCCDR=3, nRRDS=4, nRRDL=5, nFAW=24, nWTRS=7, nWTRL=10, nRTW=20,
                      nRFCpb=320, nRREFD=8, nREFI=6240, nPPD=2, nRFC=720),
    # dram.md, Samsung PIMSimulator HBM2_samsung_2M_16B_x64.ini: RL, WL, tRTPL, tXAW, tREFISB, tRFCSB
    "hbm-pim-samsung": dict(nBL=2, nCL=20, nCWL=8, nCCDS=2, nCCDL=4, nRCDRD=14, nRCDWR=10, nRAS=33, nRRDS=4,
                            nRRDL=6, nRC=47, nRP=14, nRTP=5, nWR=16, nWTRS=4, nWTRL=9, nFAW=16, nREFI=3900,
                            nREFIpb=121, nRFC=350, nRFCpb=160),
    # dram.md, AttAcc
    "attacc-hbm3-pim": dict(nBL=2, nCL=19, nRCDRD=19, nRP=19, nRAS=45, nRC=63, nWR=21, nCCDS=2, nCCDL=4,
                            nRRDS=2, nRRDL=4, nFAW=39, nREFI=5070),
}

# the organisation each reference gives: tCK (ps), counts per level, bus bits, burst length
ORGANISATION = {
    "hbm2-neupims": (1000, dict(channel=32, rank=2, bankgroup=4, bank=4, row=32768, column=64), 128, 4),
    "hbm2-2gbps": (1000, dict(channel=16, rank=1, bankgroup=4, bank=4, row=65536, column=128), 64, 4),
    "hbm3-6400": (625, dict(channel=16, pseudochannel=2, stackid=2, bankgroup=4, bank=4, row=16384, column=256), 32, 8),
    "hbm-pim-samsung": (1000, dict(channel=16, rank=1, bankgroup=4, bank=4, row=16384, column=128), 64, 4),
    # AttAcc's 32 columns are bursts of 8: 256 device columns
    "attacc-hbm3-pim": (769, dict(channel=16, pseudochannel=2, stackid=2, bankgroup=4, bank=4, row=16384,
                                  column=256), 32, 8),
}

# timings the reference leaves to the standard's formulas: name -> value
DERIVED = {
    "hbm2-neupims": dict(nRC=34 + 14, nRTW=14 + 2 + 2 - 4),
    "hbm2-2gbps": dict(nRTW=14 + 2 + 2 - 5, nREFIpb=3900 // 16, nRREFD=4),
    "hbm3-6400": dict(nREFIpb=6240 // 32),
    "hbm-pim-samsung": dict(nRTW=20 + 2 + 2 - 8, nRREFD=4),
    "attacc-hbm3-pim": dict(nREFIpb=5070 // 32),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_timings_match_the_reference(preset):
    spec = load_hw(preset).spec()
    for name, value in REFERENCE[preset].items():
        assert (name, spec.timing[name]) == (name, value)
        assert spec.timing_origin[name] == "given", name
    for name, value in DERIVED[preset].items():
        assert (name, spec.timing[name]) == (name, value)
        assert spec.timing_origin[name].startswith("derived: "), name
    assert set(spec.timing) == set(spec.standard.timings)


def test_nrc_derived_on_neupims_given_on_hbm3():
    neupims, hbm3 = load_hw("hbm2-neupims").spec(), load_hw("hbm3-6400").spec()
    assert neupims.timing["nRC"] == 48 and neupims.timing_origin["nRC"] == "derived: nRAS + nRP"
    assert hbm3.timing["nRC"] == 72 != hbm3.timing["nRAS"] + hbm3.timing["nRP"]
    assert hbm3.timing_origin["nRC"] == "given"


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_organisation_matches_the_reference(preset):
    m = load_hw(preset)
    tck, org, bits, bl = ORGANISATION[preset]
    assert (m.tck_ps, m.organization, m.bus_width_bits, m.burst_length) == (tck, org, bits, bl)
    assert m.mapping().capacity_bytes == m.capacity_gb * 2**30


def test_attacc_unlisted_timings_are_hbm3_6400_through_nanoseconds():
    """AttAcc lists some timings; the rest are hbm3-6400's, converted at tCK 0.769 ns, rounded up."""
    attacc, hbm3 = load_hw("attacc-hbm3-pim").spec(), load_hw("hbm3-6400").spec()
    for name in ("nRCDWR", "nCWL", "nRTP", "nWTRS", "nWTRL", "nRTW", "nRFC", "nRFCpb", "nRREFD", "nCCDR", "nPPD"):
        assert attacc.timing[name] == -(-hbm3.timing[name] * 625 // 769), name
    assert load_hw("attacc-hbm3-pim").pim.all_bank_mac_interval_cycles == 6


# ------------------------------------------------------------------------------- address mapping
@pytest.mark.parametrize("preset", PRESETS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mapping_is_a_bijection(preset, data):
    amap = load_hw(preset).mapping()
    coords = tuple(data.draw(st.integers(0, (1 << b) - 1), label=f"level {i}") for i, b in enumerate(amap.bits))
    byte = data.draw(st.integers(0, (1 << amap.offset_bits) - 1), label="byte")
    assert amap.decode(amap.encode(coords, byte)) == coords
    addr = data.draw(st.integers(0, amap.capacity_bytes - 1), label="address")
    assert amap.encode(amap.decode(addr)) == addr & ~((1 << amap.offset_bits) - 1)
    addrs = data.draw(st.lists(st.integers(0, amap.capacity_bytes - 1), min_size=1, max_size=20), label="addresses")
    many = amap.decode_many(np.array(addrs, np.int64))
    assert [tuple(int(x) for x in row) for row in many] == [amap.decode(a) for a in addrs]


@pytest.mark.parametrize("preset", PRESETS)
def test_mapping_rejects_out_of_range(preset):
    amap = load_hw(preset).mapping()
    with pytest.raises(ValueError):
        amap.decode(amap.capacity_bytes)
    with pytest.raises(ValueError):
        amap.encode(tuple(1 << b for b in amap.bits))


def test_neupims_mapping_bit_layout():
    """rorabgbachco, from the low bits up: offset 6 | column 4 | channel 5 | bank 2 | bank group 2 |
    rank 1 | row 15 (35 bits: 32 GiB). Coordinates are (channel, rank, bankgroup, bank, row, column)."""
    amap = load_hw("hbm2-neupims").mapping()
    assert amap.offset_bits == 6 and amap.address_bits == 35
    assert amap.decode(63) == (0, 0, 0, 0, 0, 0)
    assert amap.decode(1 << 6) == (0, 0, 0, 0, 0, 1)
    assert amap.decode(1 << 10) == (1, 0, 0, 0, 0, 0)
    assert amap.decode(1 << 15) == (0, 0, 0, 1, 0, 0)
    assert amap.decode(1 << 17) == (0, 0, 1, 0, 0, 0)
    assert amap.decode(1 << 19) == (0, 1, 0, 0, 0, 0)
    assert amap.decode(1 << 20) == (0, 0, 0, 0, 1, 0)
    assert amap.decode(1 << 34) == (0, 0, 0, 0, 1 << 14, 0)
    # row 3, rank 1, bank group 2, bank 1, channel 17, column 5, byte 9
    addr = (3 << 20) | (1 << 19) | (2 << 17) | (1 << 15) | (17 << 10) | (5 << 6) | 9
    assert addr == 0x3CC549
    assert amap.decode(addr) == (17, 1, 2, 1, 3, 5)
    assert amap.encode((17, 1, 2, 1, 3, 5), 9) == addr
    # consecutive 64 B bursts walk the 16 columns of a row, then the next channel
    assert [amap.decode(a)[5] for a in range(0, 1024, 64)] == list(range(16))
    assert amap.decode(1024)[0] == 1


# ------------------------------------------------------------------------------- peak bandwidth
@pytest.mark.parametrize("preset,gb_per_s", [
    ("hbm2-neupims", 1024.0),    # 32 channels x 64 B per 2 cycles at 1 GHz = 32 x 32 GB/s
    ("hbm3-6400", 819.2),        # 32 pseudo channels x 32 B per 2 cycles at 1.6 GHz = 6.4 Gb/s x 1024 pins
    ("hbm2-2gbps", 256.0),       # 16 pseudo channels x 32 B per 2 cycles at 1 GHz = 2 Gb/s x 1024 pins
])
def test_peak_bandwidth(preset, gb_per_s):
    assert load_hw(preset).peak_bw_bytes_per_s == pytest.approx(gb_per_s * 1e9, rel=1e-12)


def test_neupims_channel_bandwidth():
    assert load_hw("hbm2-neupims").channel_bw_bytes_per_s == pytest.approx(32e9, rel=1e-12)


# ------------------------------------------------------------------------------- bad presets
def bad_copy(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((REPO / "hw_configs/memory/hbm2-neupims.yaml").read_text())
    edit(data)
    path = tmp_path / "bad-memory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(**kw):
    def edit(d):
        for key, value in kw.items():
            section, _, name = key.partition("__")
            if name:
                if value is None:
                    del d[section][name]
                else:
                    d[section][name] = value
            else:
                d[section] = value
    return edit


@pytest.mark.parametrize("edit,needles", [
    (_set(address_mapping="rorabgbach"), ["address_mapping", "misses the field 'co'"]),
    (_set(address_mapping="rorabgbachcoro"), ["address_mapping", "repeats the field 'ro'"]),
    (_set(organization__bank=3, capacity_gb=24), ["'ba' field cannot address 3 units", "power of two"]),
    (_set(timing_cycles__nFOO=3), ["timing_cycles", "unknown timing 'nFOO'"]),
    (_set(timing_cycles__nRAS=10), ["timing_cycles", "nRAS (10) must be >= nRCDRD (14)"]),
    (_set(timing_cycles__nCL=None), ["timing_cycles", "nCL is neither given nor derivable"]),
], ids=["mapping-misses", "mapping-repeats", "count-not-power-of-two", "unknown-timing", "nRAS-below-nRCDRD",
        "missing-timing"])
def test_bad_preset_is_a_one_line_error(tmp_path, edit, needles):
    path = bad_copy(tmp_path, edit)
    with pytest.raises(LlmsimError) as exc:
        load_hw(path)
    msg = str(exc.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg


def test_unmodified_copy_loads(tmp_path):
    path = bad_copy(tmp_path, lambda d: None)
    assert load_hw(path).spec().timing == load_hw("hbm2-neupims").spec().timing
