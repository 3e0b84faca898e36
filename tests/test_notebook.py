"""The roofline notebook runs top to bottom (its code cells, executed in order)."""

from __future__ import annotations

import json
import os
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "roofline.ipynb"


def test_roofline_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells
    namespace: dict = {"__name__": "__notebook__"}
    for cell in cells:
        exec(compile("".join(cell["source"]), str(NOTEBOOK), "exec"), namespace)
    assert (tmp_path / "out/notebook/report/roofline.png").stat().st_size > 10_000
    assert (tmp_path / "out/notebook/llama2-7b-generate.json").exists()
