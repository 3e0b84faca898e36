"""Weight quantization on real trained weights: the bundled MiniLM (all-MiniLM-L6-v2).

Every ``nn.Linear`` weight of the BERT encoder (6 blocks x query, key, value, attention output,
FFN in, FFN out = 36 matrices, ``[out, in]``, groups of 128 along the last axis) is quantized with
:func:`sim.quant.quantize.quantize`; embeddings, LayerNorms and biases stay fp32. The BERT pooler
(a dense layer on the CLS token) is not used by the sentence embedding (mean pooling) and is left out.

Two measures per ``(format, bits)``:

* weight MSE per layer (mean over elements of (dequantized - w)^2) and relative MSE
  (MSE / mean(w^2)); the totals pool all 36 layers (sum of squared errors / number of weights, and
  sum of squared errors / sum of w^2);
* end to end: sentence embeddings as sentence-transformers computes them for this model (mean of
  the last hidden state over the tokens the attention mask keeps, then L2-normalized) for
  :data:`SENTENCES`, and the cosine similarity of each quantized model's embedding against the fp32
  model's, mean and min over the sentences.

``python -m sim.quant.real_weights`` prints the tables (see docs/quant.md, "Real weights: MiniLM").
"""

from __future__ import annotations

import time
from typing import Iterable

import numpy as np
import torch

from sim.quant.quantize import quantize

#: The package ships only the two example sentences of its model card (README.md); they come first,
#: followed by 14 of our own, varied in length, topic and register.
SENTENCES: tuple[str, ...] = (
    "This is an example sentence",
    "Each sentence is converted",
    "The cat sat quietly on the warm windowsill, watching the rain.",
    "Quarterly revenue rose 12 percent, beating analyst expectations.",
    "How do I reset my password if I no longer have access to my email?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The defendant pleaded not guilty to all charges on Monday.",
    "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
    "A transformer layer combines self-attention with a feed-forward network.",
    "She scored the winning goal in the final minute of extra time.",
    "Is it safe to drink tap water in Lisbon?",
    "The museum's new exhibit features paintings from the Dutch Golden Age.",
    "Error: connection refused on port 8080 after three retries.",
    "I can't believe how beautiful the sunset was tonight!",
    "Interest rates are expected to remain unchanged until next spring.",
    "Mount Everest is the highest mountain above sea level.",
)

ALL_FORMATS: tuple[str, ...] = ("int", "fp", "flint", "ant", "olive", "bitmod", "bitmod-er", "bitmod-ea")
#: Formats that exist only at 4 bits (skipped at other widths).
FOUR_BIT_ONLY = ("flint", "olive")
GROUP_SIZE = 128
MODEL_NAME = "minilm"


def _model_path():
    from sim.config import load_model_spec
    from sim.trace.zoo import model_dir

    return model_dir(load_model_spec(MODEL_NAME))


def load_minilm():
    """``(tokenizer, model)``: the bundled all-MiniLM-L6-v2 as a transformers ``BertModel``, fp32, eval."""
    from transformers import AutoModel, AutoTokenizer

    path = str(_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return tok, model


def encoder_linears(model) -> list[tuple[str, torch.nn.Linear]]:
    """The encoder's ``nn.Linear`` modules in module order, as ``(name, module)``."""
    return [(n, m) for n, m in model.encoder.named_modules() if isinstance(m, torch.nn.Linear)]


@torch.no_grad()
def embed(tok, model, sentences: Iterable[str] = SENTENCES) -> torch.Tensor:
    """Mean-pooled, L2-normalized sentence embeddings ``[n, hidden]`` (sentence-transformers' rule)."""
    enc = tok(list(sentences), padding=True, truncation=True, max_length=256, return_tensors="pt")
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def minilm_table(
    bits: Iterable[int] = (3, 4),
    formats: Iterable[str] = ALL_FORMATS,
    sentences: Iterable[str] = SENTENCES,
    group_size: int = GROUP_SIZE,
    _loaded=None,
) -> list[dict]:
    """One dict per ``(format, bits)`` (bits outer, formats in the given order; 4-bit-only formats
    are skipped at other widths) with keys ``format, bits, bits_per_weight, mse, rel_mse,
    mean_cos, min_cos, cos (per sentence), dtype_counts (summed over layers), layers`` where
    ``layers`` maps each linear's name (``layer.0.attention.self.query`` ...) to
    ``{"mse", "rel_mse", "numel"}``. The model's weights are restored afterwards."""
    sentences = tuple(sentences)
    tok, model = _loaded if _loaded is not None else load_minilm()
    linears = encoder_linears(model)
    originals = {n: m.weight.detach().clone() for n, m in linears}
    ref = embed(tok, model, sentences)
    rows: list[dict] = []
    try:
        for b in bits:
            for fmt in formats:
                if fmt in FOUR_BIT_ONLY and b != 4:
                    continue
                layers: dict[str, dict] = {}
                sq_err = 0.0
                sq_w = 0.0
                numel = 0
                counts: dict[str, int] = {}
                bpw = None
                for name, mod in linears:
                    w = originals[name].numpy()
                    r = quantize(w, fmt, b, group_size=group_size)
                    w64 = w.astype(np.float64)
                    ms_w = float(np.mean(w64 * w64))
                    layers[name] = {"mse": float(r.mse), "rel_mse": float(r.mse) / ms_w, "numel": int(w.size)}
                    sq_err += float(r.mse) * w.size
                    sq_w += ms_w * w.size
                    numel += w.size
                    for k, v in r.dtype_counts.items():
                        counts[k] = counts.get(k, 0) + int(v)
                    bpw = r.bits_per_weight
                    mod.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(r.dequantized, dtype=np.float32)))
                cos = (embed(tok, model, sentences) * ref).sum(1)
                for name, mod in linears:
                    mod.weight.data.copy_(originals[name])
                rows.append({
                    "format": fmt,
                    "bits": int(b),
                    "bits_per_weight": bpw,
                    "mse": sq_err / numel,
                    "rel_mse": sq_err / sq_w,
                    "mean_cos": float(cos.mean()),
                    "min_cos": float(cos.min()),
                    "cos": [float(c) for c in cos],
                    "dtype_counts": counts,
                    "layers": layers,
                })
    finally:
        for name, mod in linears:
            mod.weight.data.copy_(originals[name])
    return rows


#: Short names for the six linears of a block, in module order.
KIND_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn-out",
    "intermediate.dense": "ffn-in",
    "output.dense": "ffn-out",
}


def _kind(name: str) -> str:
    rest = name.split(".", 2)[2]  # "layer.<i>.<rest>"
    return KIND_NAMES.get(rest, rest)


def totals_markdown(rows: list[dict]) -> str:
    out = ["| bits | format | bits/weight | weight MSE | rel. MSE | mean cos | min cos |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['bits']} | {r['format']} | {r['bits_per_weight']:.4f} | {r['mse']:.4g} | "
                   f"{r['rel_mse']:.4g} | {r['mean_cos']:.4f} | {r['min_cos']:.4f} |")
    return "\n".join(out)


def per_kind_markdown(rows: list[dict], bits: int = 4) -> str:
    """Relative MSE per linear kind (pooled over the 6 blocks), formats as columns; plus a row
    counting in how many of the 36 layers each format has the lowest MSE."""
    sel = [r for r in rows if r["bits"] == bits]
    fmts = [r["format"] for r in sel]
    names = list(sel[0]["layers"])
    kinds = list(dict.fromkeys(_kind(n) for n in names))
    out = ["| linear (6 blocks) | " + " | ".join(fmts) + " |", "|---|" + "---|" * len(fmts)]
    for k in kinds:
        cells = []
        for r in sel:
            ls = [v for n, v in r["layers"].items() if _kind(n) == k]
            err = sum(v["mse"] * v["numel"] for v in ls)
            sw = sum(v["mse"] / v["rel_mse"] * v["numel"] for v in ls)
            cells.append(f"{err / sw:.4g}")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    wins = {f: 0 for f in fmts}
    for n in names:
        best = min(sel, key=lambda r: r["layers"][n]["mse"])
        wins[best["format"]] += 1
    out.append("| layers won (of %d) | " % len(names) + " | ".join(str(wins[f]) for f in fmts) + " |")
    return "\n".join(out)


def per_layer_markdown(rows: list[dict], bits: int = 4) -> str:
    sel = [r for r in rows if r["bits"] == bits]
    fmts = [r["format"] for r in sel]
    out = ["| layer | " + " | ".join(fmts) + " |", "|---|" + "---|" * len(fmts)]
    for n in sel[0]["layers"]:
        out.append(f"| {n} | " + " | ".join(f"{r['layers'][n]['rel_mse']:.4g}" for r in sel) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--formats", nargs="+", default=list(ALL_FORMATS))
    ap.add_argument("--per-layer", action="store_true", help="also print relative MSE for all 36 layers")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    loaded = load_minilm()
    t1 = time.perf_counter()
    rows = minilm_table(a.bits, a.formats, _loaded=loaded)
    t2 = time.perf_counter()
    n = sum(v["numel"] for v in rows[0]["layers"].values())
    print(f"all-MiniLM-L6-v2: {len(rows[0]['layers'])} encoder linears, {n} weights, group {GROUP_SIZE}, "
          f"{len(SENTENCES)} sentences")
    print()
    print(totals_markdown(rows))
    for b in a.bits:
        if any(r["bits"] == b for r in rows):
            print()
            print(f"relative MSE per linear kind, {b} bits:")
            print(per_kind_markdown(rows, b))
            if a.per_layer:
                print()
                print(per_layer_markdown(rows, b))
    print()
    print(f"time: load {t1 - t0:.1f} s, quantize + embed {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
