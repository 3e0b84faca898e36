"""Continuous (Orca-style) serving: the event loop, its metrics and the memoised cost model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim.errors import LlmsimError
from sim.systems.config import load_system
from sim.systems.requests import sample_batch
from sim.systems.serving import CostModel, ServeConfig, check_memo, make_requests, serve

MODEL, TP, LAYERS = "gpt3-7b", 4, 1


def _cfg(system: str, **kw) -> ServeConfig:
    return ServeConfig(load_system(system), MODEL, **{"tp": TP, "layers": LAYERS, "n_requests": 40, "seed": 0, **kw})


@pytest.fixture(scope="module")
def costs():
    return {s: CostModel(_cfg(s)) for s in ("neupims", "npu-only", "gpu-only")}


@pytest.fixture(scope="module")
def runs(costs):
    return {s: serve(_cfg(s), costs[s]) for s in costs}


def _json(r):
    j = r.to_json()
    j["meta"].pop("wall_s")
    return j


@pytest.mark.parametrize("system", ["neupims", "npu-only", "gpu-only"])
def test_small_run_metrics_are_sane(runs, system):
    r = runs[system]
    reqs = make_requests(_cfg(system))
    j = r.to_json()
    assert j["requests"] == 40 and np.isfinite(r.latency_s).all()             # every request finished
    assert r.generated_tokens == int(reqs.output.sum())                         # one token per output
    assert np.isclose(r.total_s, r.iteration_s.sum())                           # all at once: never idle
    assert j["throughput_tokens_per_s"] == pytest.approx(r.generated_tokens / r.total_s)
    # TTFT covers at least the prefill of the iteration that produced the first token
    assert (r.ttft_s >= r.prefill_s[r.prefill_s > 0].min() - 1e-15).all()
    assert (r.tbt_s > 0).all() and len(r.tbt_s) == int((reqs.output - 1).sum())
    for key in ("iteration_latency_s", "ttft_s", "tbt_s"):
        s = j[key]
        assert 0 < s["p50"] <= s["p99"] and s["mean"] > 0
    assert (r.latency_s >= r.ttft_s).all()
    assert 1 <= j["batch_size"]["mean_over_time"] <= j["batch_size"]["max"] <= 40
    acc = "gpu" if system == "gpu-only" else "npu"
    assert 0 < j["utilization"][acc] <= 1 + 1e-9 and 0 <= j["utilization"]["pim"] < 1
    assert j["memory_traffic"][f"{acc}_bytes"] > 0
    assert (j["memory_traffic"]["pim_bytes"] > 0) == (system == "neupims")
    if system == "npu-only":    # stages in sequence, all on the NPU
        assert j["utilization"]["npu"] == pytest.approx(1.0)


def test_deterministic_with_seed(costs, runs):
    again = serve(_cfg("neupims"), costs["neupims"])
    assert _json(again) == _json(runs["neupims"])
    other = serve(_cfg("neupims", seed=1), costs["neupims"])
    assert other.generated_tokens != runs["neupims"].generated_tokens


def test_max_batch_respected(costs):
    r = serve(_cfg("npu-only", max_batch=8), costs["npu-only"])
    assert r.batch_sizes.max() == 8 and np.isfinite(r.latency_s).all()
    # the queue waits: later requests' TTFT grows, and the run is longer than with room for all
    assert r.ttft_s.max() > 10 * r.ttft_s.min()
    assert r.total_s > serve(_cfg("npu-only"), costs["npu-only"]).total_s


def test_poisson_arrivals_and_idle_gaps(costs):
    cfg = _cfg("gpu-only", arrival="poisson", rate=5.0)
    reqs = make_requests(cfg)
    assert (np.diff(reqs.arrival) >= 0).all() and reqs.arrival[-1] > 1.0
    r = serve(cfg, costs["gpu-only"])
    assert r.total_s >= reqs.arrival[-1] and r.total_s > r.iteration_s.sum()   # idle between arrivals
    assert (r.ttft_s > 0).all() and r.batch_sizes.max() < 40


def test_explicit_requests_by_hand(costs):
    """Two requests at t=0 (3 and 1 output tokens): iteration 1 prefills both (first tokens),
    iterations 2 and 3 decode the first one alone."""
    cm = costs["npu-only"]
    r = serve(_cfg("npu-only", requests=[(0.0, 10, 3), (0.0, 20, 1)]), cm)
    assert len(r.iteration_s) == 3 and r.batch_sizes.tolist() == [2, 1, 1] and r.generated_tokens == 4
    pre = cm.prefill(np.array([10, 20]))
    d1 = cm.decode(np.array([11]), np.zeros(1, np.int64)).time_s
    d2 = cm.decode(np.array([12]), np.zeros(1, np.int64)).time_s
    assert r.ttft_s.tolist() == pytest.approx([pre.time_s, pre.time_s])
    assert r.tbt_s.tolist() == pytest.approx([d1, d2])
    assert r.total_s == pytest.approx(pre.time_s + d1 + d2)


def test_request_stream_caps_and_errors():
    cfg = _cfg("npu-only", n_requests=500, max_seq_len=256)
    reqs = make_requests(cfg)
    assert (reqs.input < 256).all() and (reqs.input + reqs.output <= 256).all() and (reqs.output >= 1).all()
    for bad in (dict(arrival="poisson"), dict(max_batch=0), dict(arrival="bursty"), dict(tp=0)):
        with pytest.raises(LlmsimError):
            serve(_cfg("npu-only", **bad))
    with pytest.raises(LlmsimError):
        make_requests(_cfg("npu-only", requests=[(0.0, 2000, 100)]))


def test_memoised_pim_mha_and_iteration_match_direct(costs):
    """Per-channel sums of per-length PIM cycles against run_attention_batch (pim_mha_seconds), and
    the whole memoised iteration against decode_iteration, on steady-state batches."""
    cm = costs["neupims"]
    for size, seed in ((64, 1), (29, 2)):
        err = check_memo(cm.cfg, sample_batch("sharegpt", size, seed=seed).lengths, cm)
        assert abs(err["pim_mha"]) < 0.02 and abs(err["pim_part"]) < 0.02
        assert abs(err["iteration"]) < 0.02
    cm = costs["npu-only"]
    assert abs(check_memo(cm.cfg, sample_batch("sharegpt", 45, seed=3).lengths, cm)["iteration"]) < 0.02


def test_cost_model_must_match_config(costs):
    with pytest.raises(LlmsimError):
        serve(dataclasses.replace(_cfg("npu-only"), layers=2), costs["npu-only"])
