"""`llmsim validate bitmod --quick`: the reproduced BitMoD ratios are pinned, so a drift fails CI."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli

# the quick suite's numbers (analytic model, six models): a change here is a change of the model
PINNED = {
    "BitMoD speed-up over ant, prefill": 1.8064, "BitMoD speed-up over ant, generative": 1.6761,
    "BitMoD speed-up over olive, prefill": 1.6042, "BitMoD speed-up over olive, generative": 1.4419,
    "BitMoD speed-up over fp16-accel, prefill": 3.0691, "BitMoD speed-up over fp16-accel, generative": 4.3710,
    "BitMoD energy reduction over ant, prefill": 1.4551, "BitMoD energy reduction over ant, generative": 1.5988,
    "BitMoD energy reduction over olive, prefill": 1.3175, "BitMoD energy reduction over olive, generative": 1.4051,
    "bitmod total energy normalized to FP16, prefill": 0.2963,
    "bitmod total energy normalized to FP16, generative": 0.2268,
    "ant total energy normalized to FP16, prefill": 0.4313, "ant total energy normalized to FP16, generative": 0.3626,
    "olive total energy normalized to FP16, prefill": 0.3907,
    "olive total energy normalized to FP16, generative": 0.3187,
}


@pytest.fixture(scope="module")
def cases():
    r = run_cli("validate", "bitmod", "--quick", "--json")
    assert r.returncode == 0, r.stderr     # every case passes (exit 1 otherwise)
    return {c["name"].split(" (mean")[0]: c for c in json.loads(r.stdout)}


def test_every_paper_ratio_is_reproduced_within_15_percent_and_pinned(cases):
    for name, value in PINNED.items():
        c = cases[name]
        assert c["passed"] is True and abs(c["rel_error"]) <= 0.15, name
        assert c["simulated"] == pytest.approx(value, abs=6e-5), name
        assert c["suite"] == "bitmod" and c["source"] and c["reference"] > 0


def test_des_agrees_with_the_artifact_model_per_layer(cases):
    agree = next(c for n, c in cases.items() if n.startswith("discrete-event vs analytic"))
    assert agree["passed"] is True and abs(agree["simulated"]) <= 0.05
