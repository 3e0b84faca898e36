"""`llmsim validate npu --quick` holds its numbers: drift here fails CI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from sim.cli import cli


def test_validate_npu_quick_passes_and_keeps_its_numbers():
    res = CliRunner().invoke(cli, ["validate", "npu", "--quick", "--json"])
    assert res.exit_code == 0, res.output
    cases = {c["name"]: c for c in json.loads(res.stdout)}
    scalesim = [c for n, c in cases.items() if n.startswith("SCALE-Sim")]
    assert len(scalesim) == 18   # 6 shapes x 3 dataflows on 128x128
    for c in scalesim:
        assert c["passed"] and c["rel_error"] == 0.0   # exact today
    gemm = cases["2048^3 GEMM on neupims-npu: simulated / roofline time"]
    assert gemm["passed"] and gemm["simulated"] == pytest.approx(1.163, abs=0.01)
