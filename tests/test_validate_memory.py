"""`llmsim validate memory --quick` holds its numbers: drift here fails CI."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sim.cli import cli


def test_validate_memory_quick_passes_and_keeps_its_numbers():
    res = CliRunner().invoke(cli, ["validate", "memory", "--quick", "--json"])
    assert res.exit_code == 0, res.output
    cases = {c["name"]: c for c in json.loads(res.stdout)}
    for c in cases.values():
        assert {"name", "reference", "simulated", "unit", "rel_error", "tolerance", "passed"} <= set(c)
    assert cases["idle read latency (ACT at 0, last data beat)"]["simulated"] == 30
    stream = cases["streaming-read bandwidth"]
    assert stream["passed"] and stream["simulated"] >= 0.95 * stream["reference"]
    rnd = cases["random-access bandwidth"]
    assert rnd["reference"] is None and rnd["passed"] is None and rnd["rel_error"] is None
    assert 0.4 * 1024 < rnd["simulated"] < 546  # below the tFAW bound (4 ACTs / nFAW / rank)
    pim = cases["PIM GEMV internal vs external bandwidth (COMP phase)"]
    assert pim["passed"] and pim["reference"] == 16
    assert cases["checker violations over fuzzed commands"]["simulated"] == 0
    dual = cases["NPU read bandwidth kept beside a PIM GEMV, dual row buffer"]
    single = cases["NPU read bandwidth kept beside a PIM GEMV, single (blocked) row buffer"]
    assert dual["passed"] and dual["simulated"] > 0.9  # the data bus loses only READRES / GWRITE slots
    assert single["passed"] and single["simulated"] < 0.05
    fast = [c for n, c in cases.items() if n.startswith("fast mode vs engine")]
    assert len(fast) == 4 and all(c["passed"] for c in fast)
    assert cases["fast mode vs engine: PIM attention batch (runs of COMPs / READRESs)"]["rel_error"] == 0.0
