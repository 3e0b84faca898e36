"""`llmsim validate bitmod`: BitMoD (lossy) against ANT, OliVe and FP16, reproduced.

Reference: the BitMoD paper's headline table (``../shared/reference/bitmod.md``): speed-up and
energy reduction of BitMoD over each iso-area baseline, mean over OPT-1.3B, Phi-2, Yi-6B,
Llama-2-7B, Llama-2-13B and Llama-3-8B, for the prefill of 256 tokens (batch 1) and the
"generative" task (that prefill plus 20 decode steps, costed the way the artifact's plotting
notebook does: 20 x one step at context 256), and the normalized total energies (FP16 = 1).

Simulated: the discrete-event model of :mod:`sim.bitserial` (``--quick``: the artifact's analytic
model, which agrees with it within 1% on these means) on the artifact's layer lists. Pass: within
15% of the paper; ``docs/bitmod.md`` says where and why the simulation differs. Also checked: the
discrete-event model within 5% of the analytic one on every layer (``--quick``: two models).
"""

from __future__ import annotations

from typing import Any

from sim.validate.cases import Case

SOURCE = "BitMoD (HPCA 2025) headline results, reference/bitmod.md"
TASKS = ("prefill", "generative")
PAPER_SPEEDUP = {"ant": (1.72, 1.66), "olive": (1.56, 1.39), "fp16-accel": (2.82, 4.18)}
PAPER_ENERGY_REDUCTION = {"ant": (1.40, 1.57), "olive": (1.30, 1.35)}
PAPER_NORMALIZED_ENERGY = {"bitmod": (0.339, 0.241), "ant": (0.474, 0.379), "olive": (0.441, 0.324)}
TOLERANCE = 0.15
QUICK_AGREEMENT_MODELS = ("opt-1.3b", "llama2-7b")


def _within(sim: float, ref: float) -> bool:
    return abs(sim - ref) <= TOLERANCE * ref


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def reproduction_cases(quick: bool) -> list[Case]:
    from sim.bitserial import BITMOD_MODELS, analytic_run, des_run
    from sim.bitserial.agreement import speedups, summary_table

    models = tuple(BITMOD_MODELS)
    engine = "analytic" if quick else "des"
    table = summary_table(models=models, run=analytic_run if quick else des_run)
    cases: list[Case] = []
    for base, refs in PAPER_SPEEDUP.items():
        for task, ref in zip(TASKS, refs):
            sp, _ = speedups(table, base, task, models)
            per = ", ".join(f"{m} {table[base, m, task].cycles / table['bitmod', m, task].cycles:.2f}" for m in models)
            cases.append(Case(f"BitMoD speed-up over {base}, {task} (mean of 6 models)", ref, sp, "x",
                              "within 15%", _within(sp, ref), SOURCE, note=f"{engine} model; per model: {per}"))
    for base, refs in PAPER_ENERGY_REDUCTION.items():
        for task, ref in zip(TASKS, refs):
            _, en = speedups(table, base, task, models)
            cases.append(Case(f"BitMoD energy reduction over {base}, {task} (mean of 6 models)", ref, en, "x",
                              "within 15%", _within(en, ref), SOURCE, note=f"{engine} model"))
    for design, refs in PAPER_NORMALIZED_ENERGY.items():
        for task, ref in zip(TASKS, refs):
            e = _mean([table[design, m, task].energy_pj["total"] / table["fp16-accel", m, task].energy_pj["total"]
                       for m in models])
            cases.append(Case(f"{design} total energy normalized to FP16, {task} (mean of 6 models)", ref, e, "x FP16",
                              "within 15%", _within(e, ref), SOURCE, note=f"{engine} model"))
    return cases


def agreement_case(quick: bool) -> Case:
    from sim.bitserial import BITMOD_MODELS
    from sim.bitserial.agreement import agreement_table

    models = QUICK_AGREEMENT_MODELS if quick else tuple(BITMOD_MODELS)
    rows = agreement_table(models=models)
    worst = max(rows, key=lambda r: abs(r.rel_error))
    ok = all(abs(r.rel_error) <= 0.05 for r in rows) and all(r.bytes_equal for r in rows)
    return Case(f"discrete-event vs analytic model, worst layer of {len(rows)} ({len(models)} models, 4 designs, "
                "prefill 256 and one decode step)", None, worst.rel_error, "relative", "every layer within 5%, "
                "DRAM bytes equal", ok, "the artifact's per-layer model (bitmod_sim/accelerator.py), rewritten",
                note=f"worst: {worst.design} {worst.model} {worst.phase} {worst.layer}")


def run(quick: bool = False) -> dict[str, Any]:
    cases = reproduction_cases(quick) + [agreement_case(quick)]
    for c in cases:
        c.suite = "bitmod"
    return {"suite": "bitmod", "what": "BitMoD vs ANT, OliVe and FP16 (speed-up, energy), six models",
            "cases": cases}
