"""sim.quant: grids typed by hand from shared/reference/bitmod.md, the search rule, the CLI function."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim.errors import LlmsimError
from sim.quant import formats as F
from sim.quant.api import quantize_cli
from sim.quant.quantize import get_spec, nearest_level, olive_pairs, quantize

BACKENDS = ["numba", "numpy"]


def fp(*mags):
    return sorted({0.0, *(float(m) for m in mags), *(-float(m) for m in mags)})


# Typed from bitmod.md ("Data types"), not derived from the code.
HAND = {
    "int3": [-3, -2, -1, 0, 1, 2, 3],
    "int4": list(range(-7, 8)),
    "fp3": [-4, -2, -1, 0, 1, 2, 4],
    "fp3_er_pos": [-4, -2, -1, 0, 1, 2, 3, 4],
    "fp3_er_neg": [-4, -3, -2, -1, 0, 1, 2, 4],
    "fp3_ea_pos": [-4, -2, -1, 0, 1, 2, 4, 6],
    "fp3_ea_neg": [-6, -4, -2, -1, 0, 1, 2, 4],
    "fp4": [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12],
    "fp4_er_pos": [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 10, 12],
    "fp4_er_neg": [-12, -10, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12],
    "fp4_ea_pos": [-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16],
    "fp4_ea_neg": [-16, -12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12],
    "flint4": [-16, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 16],
    # OCP MX v1.0 FP4 E2M1 in its own units
    "mxfp4_e2m1": [-6, -4, -3, -2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4, 6],
    # OliVe artifact: int4 without -8, plus abfloat outliers (int4 step = 1)
    "olive4": fp(1, 2, 3, 4, 5, 6, 7, 12, 16, 24, 32, 48, 64, 96),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_grid_matches_hand_typed(name):
    assert list(F.DATA_TYPES[name].values) == [float(v) for v in HAND[name]]


def test_int8_and_mx_grids():
    assert list(F.INT8.values) == [float(v) for v in range(-127, 128)]
    e4m3 = F.MXFP8_E4M3.dtype.values
    assert max(e4m3) == 448 and min(x for x in e4m3 if x > 0) == 2.0**-9 and len(e4m3) == 253
    assert max(F.MXFP6_E2M3.dtype.values) == 7.5 and len(F.MXFP6_E2M3.dtype.values) == 63


def test_mixture_candidates_follow_bitmod_table():
    names = lambda f, b: [c.name for c in get_spec(f, b).candidates]  # noqa: E731
    assert names("bitmod", 4) == ["fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg"]
    assert names("bitmod", 3) == ["fp3_er_pos", "fp3_er_neg", "fp3_ea_pos", "fp3_ea_neg"]
    assert names("bitmod-er", 3) == ["fp3_er_pos", "fp3_er_neg"]
    assert names("bitmod-ea", 4) == ["fp4_ea_pos", "fp4_ea_neg"]
    assert names("ant", 3) == ["int3", "fp3"] and names("ant", 4) == ["int4", "flint4"]


ROUND_TRIP = [("int", 3), ("int", 4), ("int", 8), ("fp", 3), ("fp", 4), ("flint", 4), ("ant", 3),
              ("ant", 4), ("bitmod", 3), ("bitmod", 4), ("bitmod-er", 3), ("bitmod-er", 4),
              ("bitmod-ea", 3), ("bitmod-ea", 4)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fmt,bits", ROUND_TRIP)
def test_grid_values_round_trip_at_scale_one(fmt, bits, backend):
    for cand in get_spec(fmt, bits).candidates:
        w = cand.grid[None, :]  # absmax = max|level| -> scale exactly 1
        r = quantize(w, fmt, bits, group_size=w.shape[1], backend=backend)
        assert r.mse == 0.0
        np.testing.assert_array_equal(r.dequantized, w)
        assert float(r.scales[0, 0]) == 1.0


def test_mx_grid_round_trip():
    g = F.MXFP4_E2M1.dtype.grid  # absmax 6 -> 2**(floor(log2 6) - 2) = 1
    r = quantize(np.tile(g, 2)[None, :30], "mxfp", 4, group_size=30)
    np.testing.assert_array_equal(r.dequantized[0], np.tile(g, 2)[:30])
    r = quantize(np.array([[0.75, 3.0, -1.5, 0.1]], np.float32), "mxfp", 4)  # scale 2**(1-2)
    np.testing.assert_array_equal(r.scales, [[0.5]])
    np.testing.assert_array_equal(r.dequantized, [[0.75, 3.0, -1.5, 0.0]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_the_lower_level(backend):
    w = np.array([[7, 0.5, -0.5, 2.5, -6.5, 1.5]], np.float32)
    r = quantize(w, "int", 4, backend=backend)
    np.testing.assert_array_equal(r.dequantized, [[7, 0, -1, 2, -7, 1]])
    w = np.array([[12, 5, -5, 10, -10, 2.5, 7]], np.float32)
    r = quantize(w, "fp", 4, backend=backend)
    np.testing.assert_array_equal(r.dequantized, [[12, 4, -6, 8, -12, 2, 6]])
    np.testing.assert_array_equal(nearest_level(np.array([0.5, -0.5], np.float32), F.INT3.grid), [3, 2])


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_choice_by_mse_and_tie_keeps_earlier(backend):
    rows = np.array([
        [12, 10, 10, -3, 1, 0, 0, 0],  # +10 exact only in ER_POS
        [-12, -10, -10, 3, 1, 0, 0, 0],  # -10 exact only in ER_NEG
        [16, 12, 8, -6, 3, 0, 0, 0],  # +16 exact only in EA_POS (scale 1)
        [-16, -12, -8, 6, -3, 0, 0, 0],  # largest magnitude negative -> EA_NEG
        [12, -8, 6, 1, 0, 0, 0, 0],  # plain E2M1 values: ER_POS and ER_NEG both exact -> earlier
        [0, 0, 0, 0, 0, 0, 0, 0],  # all candidates error 0 -> the first
    ], np.float32)
    r = quantize(rows, "bitmod", 4, group_size=8, backend=backend)
    assert [r.dtype_names[i] for i in r.choice[:, 0]] == [
        "fp4_er_pos", "fp4_er_neg", "fp4_ea_pos", "fp4_ea_neg", "fp4_er_pos", "fp4_er_pos"]
    assert r.mse == 0.0
    assert r.dtype_counts == {"fp4_er_pos": 3, "fp4_er_neg": 1, "fp4_ea_pos": 1, "fp4_ea_neg": 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_trailing_group_is_its_own_group(backend):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((3, 300)).astype(np.float32)
    w[:, 256:] *= 0.01  # the tail gets its own (small) scale
    r = quantize(w, "bitmod", 4, backend=backend)
    assert r.choice.shape == (3, 3) and r.groups == 9
    assert sum(r.dtype_counts.values()) == 9
    tail = quantize(w[:, 256:], "bitmod", 4, backend=backend)
    np.testing.assert_array_equal(r.dequantized[:, 256:], tail.dequantized)
    np.testing.assert_array_equal(r.scales[:, 2], tail.scales[:, 0])
    assert np.all(r.scales[:, 2] < 0.05 * r.scales[:, 0])


@pytest.mark.parametrize("fmt,bits,gs", [("bitmod", 3, 128), ("ant", 4, 64), ("olive", 4, 128),
                                         ("int", 8, 100), ("mxfp", 4, None), ("mxint", 8, 33)])
def test_counts_sum_to_groups_and_backends_agree(fmt, bits, gs):
    rng = np.random.default_rng(7)
    w = (rng.standard_t(4, (17, 333)) * 0.02).astype(np.float32)
    a = quantize(w, fmt, bits, gs)
    b = quantize(w, fmt, bits, gs, backend="numpy")
    size = a.group_size
    assert a.groups == 17 * -(-333 // size) == sum(a.dtype_counts.values())
    np.testing.assert_array_equal(a.dequantized, b.dequantized)
    np.testing.assert_array_equal(a.choice, b.choice)
    assert a.mse == pytest.approx(b.mse, rel=1e-12)
    assert a.mse == pytest.approx(float(np.mean((a.dequantized.astype(np.float64) - w) ** 2)), rel=1e-9)


def test_olive_pair_rule():
    q = np.array([[20, 3, 2, -48, 16, 32, -24, -24, 1, 2, 96]], np.float32)
    np.testing.assert_array_equal(olive_pairs(q), [[20, 0, 0, -48, 0, 32, -24, 0, 1, 2, 96]])


def test_olive_keeps_outliers_and_prunes_victims():
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((4, 128)) * 0.1).astype(np.float32)
    w[0, 10] = 3.0  # an outlier at an even slot: its neighbour (11) is the victim
    r = quantize(w, "olive", 4)
    assert r.dequantized[0, 11] == 0.0
    assert abs(r.dequantized[0, 10] - 3.0) < 0.5
    assert r.dtype_counts == {"olive4": 4}


@pytest.mark.parametrize("fmt,bits,flag", [("int", 5, "--bits"), ("fp", 8, "--bits"), ("olive", 3, "--bits"),
                                           ("flint", 3, "--bits"), ("bitmod", 8, "--bits"),
                                           ("nf4", 4, "--format")])
def test_bad_pair_names_the_flag(fmt, bits, flag):
    with pytest.raises(LlmsimError) as e:
        quantize(np.ones((2, 4), np.float32), fmt, bits)
    assert str(e.value).startswith(flag) and "\n" not in str(e.value)


@pytest.mark.parametrize("w,gs,flag", [(np.ones((2, 3, 4)), 128, "--input"), (np.ones((0, 4)), 128, "--input"),
                                       (np.array([[1.0, np.nan]]), 128, "--input"), (np.ones((2, 4)), 0, "--group-size")])
def test_bad_input_names_the_flag(w, gs, flag):
    with pytest.raises(LlmsimError, match=f"^{flag}"):
        quantize(w, "int", 4, gs)


@pytest.fixture(scope="module")
def gaussian():
    return np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)


def test_mse_ordering_on_gaussian(gaussian):
    m = {(f, b): quantize(gaussian, f, b).mse for f, b in [
        ("int", 3), ("int", 4), ("int", 8), ("fp", 3), ("fp", 4), ("ant", 3), ("ant", 4), ("bitmod", 3),
        ("bitmod", 4), ("bitmod-er", 4), ("bitmod-ea", 4), ("bitmod-er", 3), ("bitmod-ea", 3)]}
    assert m["int", 8] < m["int", 4] < m["int", 3]
    for b in (3, 4):
        for f in ("bitmod", "bitmod-er", "bitmod-ea"):
            assert m[f, b] <= m["int", b] and m[f, b] <= m["fp", b]
        assert m["bitmod", b] <= min(m["bitmod-er", b], m["bitmod-ea", b])
        assert m["ant", b] <= m["int", b]


def test_quantize_cli_npy_round_trip(tmp_path, gaussian):
    src = tmp_path / "w.npy"
    dst = tmp_path / "sub" / "q.npy"
    w = gaussian[:8, :200].astype(np.float16)
    np.save(src, w)
    out = quantize_cli("bitmod", 4, None, src, dst)
    json.dumps(out)
    q = np.load(dst)
    assert q.shape == w.shape and q.dtype == np.float32
    assert out["mse"] == pytest.approx(float(np.mean((q.astype(np.float64) - w.astype(np.float64)) ** 2)), rel=1e-9)
    assert out["groups"] == 16 == sum(out["dtype_counts"].values())
    assert out["bits_per_weight"] == 4.0625
    direct = quantize(w, "bitmod", 4)
    np.testing.assert_array_equal(q, direct.dequantized)
    assert quantize_cli("int", 8, 64, src)["dtype_counts"] == {"int8": 32}


def test_quantize_cli_errors(tmp_path):
    with pytest.raises(LlmsimError, match="^--input"):
        quantize_cli("int", 4, None, tmp_path / "missing.npy")
    bad = tmp_path / "bad.npy"
    bad.write_text("not an array")
    with pytest.raises(LlmsimError, match="^--input"):
        quantize_cli("int", 4, None, bad)
    with pytest.raises(LlmsimError, match="^--bits"):
        quantize_cli("ant", 8, None, bad)
    good = tmp_path / "g.npy"
    np.save(good, np.ones((2, 4), np.float32))
    with pytest.raises(LlmsimError, match="^--output"):
        quantize_cli("int", 4, None, good, tmp_path / "q.txt")
    with pytest.raises(LlmsimError, match="^--group-size"):
        quantize_cli("int", 4, -3, good)
