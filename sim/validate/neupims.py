"""`llmsim validate neupims`: the layer-level reference run of NeuPIMs' public C++ simulator.

Reference (``../shared/reference/neupims.md``, measured 2026-11-28): GPT-3 7B at tensor
parallelism 4, one decoder layer, one decode iteration of the 512 requests of
``../shared/data/neupims-traces/share-gpt2-bs512-ms7B-tp4-clb-0.csv`` (their KV lengths and
channels), sub-batching off: NeuPIMs 619,227 cycles, naive NPU+PIM 1,331,873, NPU-only 5,937,042.
Pass: within 25% each, and the three in the same order. ``docs/neupims-reference-notes.md`` says
what the C++ simulator does that ours does not (and why we do not copy it by default).

Two baselines run with what the C++ simulator does that hardware would not, because that, not
the hardware, sets their reference cycles (``docs/neupims-reference-notes.md``); each is reported
beside llmsim's own model of the same hardware:

* NPU-only with ``npu.mapping.attention=serial_gemv``: the simulator's NPU attention schedule (every
  head's q.K^T, softmax and p.V one after another on one in-order pipeline,
  ``sim.npu.mapping.plan_attention_serial_gemv``);
* naive NPU+PIM with ``pim.issue.kernel=newton``: the simulator's PIM instruction front end (one
  instruction per core cycle for all channels, the batch in channel order, Newton's separate COMP
  and READRES instructions; ``sim.systems.pim_frontend``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.config.paths import project_root
from sim.validate.cases import Case

TRACE = "neupims-traces/share-gpt2-bs512-ms7B-tp4-clb-0.csv"
REFERENCE = {"neupims": 619_227, "npu-pim-naive": 1_331_873, "npu-only": 5_937_042}
# the devices as the C++ simulator maps work onto them (see the module doc)
REFERENCE_MAPPING = {"npu-only": ["npu.mapping.attention=serial_gemv"], "npu-pim-naive": ["pim.issue.kernel=newton"]}
OWN_MODEL = {"npu-only": "llmsim's tiled attention mapping", "npu-pim-naive": "no instruction front-end limit"}
STAGES = {"neupims": "A 87,268; B 266,239; E 265,724", "npu-pim-naive": "A 87,268; B 977,851; E 266,758",
          "npu-only": "QKV 99,829; attention 5,539,497; proj+FFN 297,716"}


def data_path() -> Path:
    return project_root().parent / "shared" / "data" / TRACE


def layer_cases() -> list[Case]:
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import load_lengths

    path = data_path()
    if not path.exists():
        return [Case(f"layer-level run ({name})", None, 0.0, "cycles", None, None,
                     "NeuPIMs C++ simulator (reference/neupims.md)", note=f"skipped: {path} not found")
                for name in REFERENCE]
    batch = load_lengths(path)
    cases = []
    got = {}
    def layer(name: str, overrides: list[str] | None):
        r = decode_iteration(load_system(name, overrides), "gpt3-7b", batch, tp=4, layers=1, sub_batch=False)
        per = r.meta.get("per_layer", {})
        return r.cycles, ", ".join(f"{k} {v * r.freq_hz:,.0f}" for k, v in per.items() if k != "mha_pim")

    title = "GPT-3 7B TP4 one layer, 512 ShareGPT requests, sub-batch off"
    for name, ref in REFERENCE.items():
        cycles, ours = layer(name, REFERENCE_MAPPING.get(name))
        got[name] = cycles
        mapping = f" ({', '.join(REFERENCE_MAPPING[name])})" if name in REFERENCE_MAPPING else ""
        cases.append(Case(f"{title}: {name}", float(ref), float(cycles), "cycles", "within 25%",
                          abs(cycles - ref) <= 0.25 * ref,
                          "NeuPIMs public C++ simulator, reference run in reference/neupims.md",
                          note=f"theirs: {STAGES[name]}; ours{mapping}: {ours}"))
    for name in REFERENCE_MAPPING:   # the same hardware under llmsim's own mapping (report-only)
        cycles, ours = layer(name, None)
        cases.append(Case(f"{title}: {name}, {OWN_MODEL[name]}", None, float(cycles), "cycles", None,
                          None, "report-only: the reference's schedule is its simulator's, not the hardware's "
                                "(docs/neupims-reference-notes.md)",
                          note=f"{cycles / REFERENCE[name] - 1:+.1%} against the C++ simulator; ours: {ours}"))
    order_ok = got["neupims"] <= got["npu-pim-naive"] <= got["npu-only"]
    cases.append(Case("same order: neupims <= naive NPU+PIM <= NPU-only", None, float(order_ok), "bool",
                      "true", order_ok, "the C++ simulator's order (619,227 < 1,331,873 < 5,937,042)"))
    return cases


# NeuPIMs' end-to-end setting (reference/neupims.md): tensor parallel 4, pipeline 1, 1, 2 (one
# device simulated: its share of the layers), ShareGPT batches in steady state (max length 2048)
E2E_MODELS = {"gpt3-7b": (4, 1, 32), "gpt3-13b": (4, 1, 40), "gpt3-30b": (4, 2, 48)}
PAPER = {"npu-only": 2.4, "npu-pim-naive": 1.6, "gpu-only:a100": 3.0}


def end_to_end_cases(quick: bool) -> list[Case]:
    """NeuPIMs' throughput against each baseline on one decode iteration of a steady-state batch
    (report-only: the paper's ratios are over whole serving runs; docs/systems.md discusses)."""
    from sim.gpu.iteration import gpu_decode_iteration
    from sim.systems.config import load_system
    from sim.systems.decode import decode_iteration
    from sim.systems.requests import sample_batch

    models = ["gpt3-7b"] if quick else list(E2E_MODELS)
    batches = [256] if quick else [256, 512]
    cases = []
    for model in models:
        tp, pp, n_layers = E2E_MODELS[model]
        # pipeline 1: the whole model (embedding and lm_head included); pipeline 2: the device's
        # half of the decoder layers (its embedding or lm_head left out)
        layers = None if pp == 1 else n_layers // pp
        for b in batches:
            batch = sample_batch("sharegpt", b, seed=0)
            tps = {"neupims": decode_iteration(load_system("neupims"), model, batch, tp=tp, layers=layers).tokens_per_s}
            for name in ("npu-only", "npu-pim-naive"):
                tps[name] = decode_iteration(load_system(name), model, batch, tp=tp, layers=layers).tokens_per_s
            for gpu in ("a100", "h100", "h200"):
                tps[f"gpu-only:{gpu}"] = gpu_decode_iteration(load_system("gpu-only"), gpu, model, batch, tp=tp,
                                                              layers=layers).tokens_per_s
            for base in ("npu-only", "npu-pim-naive", "gpu-only:a100", "gpu-only:h100", "gpu-only:h200"):
                ratio = tps["neupims"] / tps[base]
                ref = PAPER.get(base)
                off = (f"paper {ref}x end to end, {ratio / ref - 1:+.0%} from it" if ref else "no paper number")
                # report-only (reference null): the paper's number is end to end, ours one iteration
                cases.append(Case(f"{model} TP{tp} PP{pp} batch {b}: NeuPIMs / {base} throughput", None, ratio, "x",
                                  None, None, "report-only; NeuPIMs paper (ASPLOS 2024) headline ratios in the note",
                                  note=f"{off}; one iteration, {layers or n_layers} layers on the device; "
                                       f"neupims {tps['neupims']:,.0f} tokens/s"))
    return cases


def run(quick: bool = False) -> dict[str, Any]:
    cases = layer_cases() + end_to_end_cases(quick)
    for c in cases:
        c.suite = "neupims"
    return {"suite": "neupims", "what": "NeuPIMs, naive NPU+PIM and NPU-only against NeuPIMs' C++ simulator",
            "cases": cases}
