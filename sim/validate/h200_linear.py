"""Predict measured H200 linear layers with the roofline (measured ceilings and datasheet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sim.roofline.single import single_gemm

DATA = Path(__file__).with_name("h200_linear.yaml")


def run(quick: bool = False) -> dict[str, Any]:
    spec = yaml.safe_load(DATA.read_text())
    rows = []
    for m, k, n, us in spec["rows"]:
        meas = single_gemm(m, k, n, spec["device"], spec["dtype"], measured=True)
        data = single_gemm(m, k, n, spec["device"], spec["dtype"], measured=False)
        rows.append({
            "M": m, "K": k, "N": n,
            "measured_us": us,
            "predicted_us": meas["time_s"] * 1e6,
            "error_pct": (meas["time_s"] * 1e6 - us) / us * 100,
            "bound": meas["bound"],
            "datasheet_us": data["time_s"] * 1e6,
            "datasheet_error_pct": (data["time_s"] * 1e6 - us) / us * 100,
        })
    mean_abs = sum(abs(r["error_pct"]) for r in rows) / len(rows)
    mean_abs_ds = sum(abs(r["datasheet_error_pct"]) for r in rows) / len(rows)
    return {
        "suite": "h200-linear",
        "what": "H200 bf16 linear layers: roofline prediction vs measured time",
        "rows": rows,
        "mean_abs_error_pct": mean_abs,
        "mean_abs_error_pct_datasheet": mean_abs_ds,
        "columns": ["M", "K", "N", "measured_us", "predicted_us", "error_pct", "bound", "datasheet_us",
                    "datasheet_error_pct"],
    }
