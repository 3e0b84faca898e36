"""The analytic and discrete-event models side by side, and the paper's speedup / energy tables.

* :func:`agreement_table`: per unique layer of each (design, model, phase), the analytic and DES
  cycles and their relative error (and whether the DRAM bytes agree); what ``llmsim validate bitmod``
  can print.
* :func:`generative`: the paper's "generative" task, the artifact's way (its plotting notebook):
  one 256-token prefill plus 20 decode steps, each decode step costed at the prompt's context (256),
  so generative = prefill + 20 x decode(256). ``growing_context=True`` instead costs the decode
  steps at contexts 256, 257, ..., 275.
* :func:`summary_table` / :func:`speedups`: whole-model cycles and energy per design and task, and
  BitMoD's speedup and energy reduction over each baseline (mean over the models of the per-model
  ratios), beside the paper's numbers (reference/bitmod.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from sim.bitserial.analytic import DESIGNS, RunResult, analytic_run, load_accelerator, scaled
from sim.bitserial.des_model import des_run
from sim.bitserial.layers import BITMOD_MODELS, artifact_layers

#: BitMoD (lossy) vs baseline, mean over the six models (reference/bitmod.md, "Headline results").
PAPER_SPEEDUP = {"ant": (1.72, 1.66), "olive": (1.56, 1.39), "fp16-accel": (2.82, 4.18)}
PAPER_ENERGY_REDUCTION = {"ant": (1.40, 1.57), "olive": (1.30, 1.35)}
GEN_TOKENS = 20


@dataclass(frozen=True)
class AgreementRow:
    design: str
    model: str
    phase: str
    layer: str
    count: int
    analytic_cycles: int
    des_cycles: int
    rel_error: float          # des / analytic - 1
    bytes_equal: bool
    compute_cycles: int
    dram_cycles: int


def agreement_table(designs: Iterable[str] = DESIGNS, models: Iterable[str] = tuple(BITMOD_MODELS),
                    phases: Iterable[str] = ("prefill", "decode"), seq_len: int = 256,
                    batch: int = 1) -> list[AgreementRow]:
    """Every unique layer of every (design, model, phase) through both models."""
    rows: list[AgreementRow] = []
    for d in designs:
        cfg = load_accelerator(d)
        for m in models:
            for ph in phases:
                layers = artifact_layers(m, ph, seq_len, batch, design=cfg)
                a, e = analytic_run(cfg, layers, ph), des_run(cfg, layers, ph)
                for ra, rd in zip(a.layers, e.layers):
                    rows.append(AgreementRow(
                        design=d, model=m, phase=ph, layer=ra.layer.name, count=ra.layer.count,
                        analytic_cycles=ra.cycles, des_cycles=rd.cycles, rel_error=rd.cycles / ra.cycles - 1,
                        bytes_equal=ra.dram_bytes == rd.dram_bytes, compute_cycles=ra.compute_cycles,
                        dram_cycles=ra.dram_cycles))
    return rows


@dataclass(frozen=True)
class TaskTotals:
    cycles: float
    seconds: float
    energy_pj: dict[str, float]
    dram_bytes: float


def _totals(runs: list[RunResult]) -> TaskTotals:
    parts: dict[str, float] = {}
    for r in runs:
        for k, v in r.energy_pj.items():
            parts[k] = parts.get(k, 0.0) + v
    return TaskTotals(cycles=sum(r.cycles for r in runs), seconds=sum(r.seconds for r in runs), energy_pj=parts,
                      dram_bytes=sum(r.dram_bytes for r in runs))


def generative(design: str, model: str, prompt: int = 256, new_tokens: int = GEN_TOKENS,
               growing_context: bool = False, run: Callable = analytic_run) -> TaskTotals:
    """Prefill of ``prompt`` tokens plus ``new_tokens`` decode steps (module doc)."""
    cfg = load_accelerator(design)
    runs = [run(cfg, artifact_layers(model, "prefill", prompt, design=cfg), "prefill")]
    if growing_context:
        runs += [run(cfg, artifact_layers(model, "decode", prompt + i, design=cfg), "decode")
                 for i in range(new_tokens)]
    else:
        runs.append(scaled(run(cfg, artifact_layers(model, "decode", prompt, design=cfg), "decode"), new_tokens))
    return _totals(runs)


def summary_table(designs: Iterable[str] = DESIGNS, models: Iterable[str] = tuple(BITMOD_MODELS),
                  seq_len: int = 256, growing_context: bool = False,
                  run: Callable = analytic_run) -> dict[tuple[str, str, str], TaskTotals]:
    """(design, model, task) -> totals, for task in prefill (``seq_len`` tokens), decode (one step at
    context ``seq_len``) and generative (prefill + 20 decode steps)."""
    out: dict[tuple[str, str, str], TaskTotals] = {}
    for d in designs:
        cfg = load_accelerator(d)
        for m in models:
            for ph in ("prefill", "decode"):
                out[d, m, ph] = _totals([run(cfg, artifact_layers(m, ph, seq_len, design=cfg), ph)])
            out[d, m, "generative"] = generative(d, m, seq_len, growing_context=growing_context, run=run)
    return out


def speedups(table: dict[tuple[str, str, str], TaskTotals], baseline: str, task: str,
             models: Iterable[str] = tuple(BITMOD_MODELS), design: str = "bitmod") -> tuple[float, float]:
    """(speedup, energy reduction) of ``design`` over ``baseline`` on ``task``: the mean over the
    models of the per-model ratios."""
    ms = list(models)
    sp = [table[baseline, m, task].cycles / table[design, m, task].cycles for m in ms]
    en = [table[baseline, m, task].energy_pj["total"] / table[design, m, task].energy_pj["total"] for m in ms]
    return sum(sp) / len(sp), sum(en) / len(en)
