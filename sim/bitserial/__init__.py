"""The BitMoD accelerator (bit-serial PEs) and its iso-area bit-parallel baselines (ANT, OliVe, FP16).

* :mod:`sim.bitserial.layers`: :class:`GemmLayer` and the artifact's layer list of a zoo model;
* :mod:`sim.bitserial.analytic`: the artifact's per-layer analytic model (cycles, DRAM bytes, energy);
* :mod:`sim.bitserial.des_model`: a discrete-event model of the same layers (tiles through SRAMs and DRAM);
* :mod:`sim.bitserial.agreement`: the two side by side, and the paper's speedup table.

Only numpy / simpy / pydantic are imported (no torch), so the CLI stays fast.
"""

from sim.bitserial.analytic import DESIGNS, LayerResult, RunResult, analytic_layer, analytic_run, load_accelerator
from sim.bitserial.des_model import des_layer, des_run
from sim.bitserial.layers import BITMOD_MODELS, GemmLayer, artifact_layers

__all__ = [
    "BITMOD_MODELS",
    "DESIGNS",
    "GemmLayer",
    "LayerResult",
    "RunResult",
    "analytic_layer",
    "analytic_run",
    "artifact_layers",
    "des_layer",
    "des_run",
    "load_accelerator",
]
