"""`llmsim validate gpu`: the GPU device model (sim/gpu) against measured H200 linear layers.

Every row is predicted by a model fitted WITHOUT that row (leave-one-out), so the errors are
errors on rows not used for fitting. The references are the measured times typed into
sim/gpu/fit.py from ../shared/reference/roofline-and-peers.md, never the model's own output.
"""

from __future__ import annotations

import statistics
from typing import Any

from sim.validate.cases import Case

ROW_TOLERANCE = 0.25
MEDIAN_TOLERANCE = 0.15


def run(quick: bool = False) -> dict[str, Any]:
    from sim.config import load_hw
    from sim.gpu.fit import DEVICE, ROWS, SOURCE, baselines, fit, leave_one_out, median_abs

    gpu = load_hw(DEVICE)
    loo = leave_one_out(ROWS, gpu)
    cases = []
    for r in loo:
        err = r["error"]
        cases.append(Case(f"H200 bf16 linear {r['M']}x{r['K']}x{r['N']} (leave-one-out)", r["measured_us"],
                          r["predicted_us"], "us", f"within {ROW_TOLERANCE:.0%}", abs(err) <= ROW_TOLERANCE,
                          SOURCE, note=f"tile {r['tile']}, {r['bound']} bound; fitted without this row"))
    med = median_abs(r["error"] for r in loo)
    cases.append(Case("LOO median |error| over the H200 linear rows", MEDIAN_TOLERANCE, med, "fraction",
                      f"<= {MEDIAN_TOLERANCE:.0%}", med <= MEDIAN_TOLERANCE, "gpu-only goal: median error of rows "
                      "not used for fitting <= 15%", note=f"mean {statistics.mean(abs(r['error']) for r in loo):.1%}, "
                      f"max {max(abs(r['error']) for r in loo):.1%}"))
    for name, errs in baselines(ROWS, gpu).items():
        cases.append(Case(f"for comparison: {name}, median |error|", None, median_abs(errs), "fraction", None, None,
                          "report-only", note=f"max {max(map(abs, errs)):.1%}"))
    p = gpu.model or fit(ROWS, gpu)
    cases.append(Case("constants in hw_configs/gpu/h200.yaml match a fresh fit", None,
                      float(p == fit(ROWS, gpu).model_copy(update={"source": p.source})), "bool", None, None,
                      "report-only", note="1: the YAML holds what `python -m sim.gpu.fit --write` writes now"))
    for c in cases:
        c.suite = "gpu"
    return {"suite": "gpu", "what": "GPU model vs measured H200 linear layers (leave-one-out)", "cases": cases}
