"""`llmsim validate neupims`: the layer-level reference run (needs ../shared/data; under CI it must run)."""

from __future__ import annotations

import os

import pytest

from sim.validate.neupims import data_path

if not data_path().exists() and os.environ.get("CI") != "true":
    pytest.skip(f"{data_path()} not found (the NeuPIMs reference batch); CI runs this", allow_module_level=True)


@pytest.fixture(scope="module")
def cases():
    from sim.validate.neupims import run

    return {c.name.rsplit(": ", 1)[-1]: c for c in run(quick=True)["cases"]}


def test_neupims_layer_within_25_percent_and_order(cases):
    c = cases["neupims"]
    assert c.passed and c.simulated == pytest.approx(539_152, rel=0.01)   # -12.9% against 619,227
    assert cases["neupims <= naive NPU+PIM <= NPU-only"].passed


def test_npu_only_layer_with_the_reference_schedule(cases):
    """NPU-only under the C++ simulator's own attention schedule (serial_gemv) is within 25%;
    llmsim's tiled mapping of the same hardware is reported, far below it."""
    c = cases["npu-only"]
    assert c.passed and c.simulated == pytest.approx(4_644_920, rel=0.01)   # -21.8% against 5,937,042
    tiled = cases["npu-only, llmsim's tiled attention mapping"]
    assert tiled.passed is None and tiled.reference is None
    assert tiled.simulated == pytest.approx(1_717_868, rel=0.01)


# OPEN (docs/neupims-reference-notes.md): the C++ simulator's naive stage B is 3.7x its dual one with
# no normal traffic to block (not explained by its stored code); ours is 59% below.
@pytest.mark.xfail(reason="naive NPU+PIM layer run not yet within 25% of the C++ simulator", strict=True)
def test_naive_within_25_percent(cases):
    c = cases["npu-pim-naive"]
    assert c.passed, (c.simulated, c.reference)


def test_end_to_end_ratios_are_reported(cases):
    e2e = {n: c for n, c in cases.items() if "throughput" in n}
    assert len(e2e) == 5 and all(c.passed is None and c.reference is None for c in e2e.values())
    # NeuPIMs beats the paper's baselines at batch 256 (the paper's direction); against the H200,
    # whose HBM3e alone has 4.7x the NeuPIMs device's bandwidth, it need not
    for base in ("npu-only", "npu-pim-naive", "gpu-only:a100"):
        assert e2e[f"NeuPIMs / {base} throughput"].simulated > 1.0, base
