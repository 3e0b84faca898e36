"""The numbered notebooks in notebooks/ run top to bottom in a fresh kernel at their small size, and
every notebook is committed clean (no outputs, no execution counts, a python3 kernelspec).

Each notebook runs with nbclient in a temporary working directory (its files land under
``out/notebooks/<name>/`` there), with ``LLMSIM_NOTEBOOK_SMALL=1`` and ``MPLBACKEND=Agg``. Its last
cell asserts what it shows (throughput rising with batch, BitMoD's MSE below INT's, ...) and prints
"all checks passed"; the test also checks the figures it writes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT_S = 300

#: notebook -> the figures (under out/notebooks/<name>/ of the working directory) it must write
EXPECTED = {
    "01_quickstart": ["time_by_class.png", "roofline.png", "systems.png", "trace.json"],
    "02_roofline": ["batch_throughput.png", "roofline_batch.png", "gqa.png", "moe.png", "quantization.png"],
    "03_neupims_design_space": ["throughput.png", "sub_batch.png", "pareto.png"],
    "04_bitmod": ["grids.png", "mse_gaussian.png", "accelerators.png"],
    "05_techniques": ["verification.png", "acceptance.png", "hydragen.png", "compare.png", "compare.csv",
                      "commentary.md"],
}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _text(outputs: list[dict]) -> str:
    parts = []
    for o in outputs:
        if o.get("output_type") == "stream":
            parts.append("".join(o.get("text", "")))
        elif o.get("output_type") in ("execute_result", "display_data"):
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_small(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("LLMSIM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("LLMSIM_NOTEBOOK_OUT", raising=False)
    # the kernel imports sim from this checkout even where llmsim is not installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    # and runs on this interpreter whatever python3 kernelspec a user or system folder holds
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(p for p in (str(tmp_path / "jupyter"),
                                                                   os.environ.get("JUPYTER_PATH")) if p))

    work = tmp_path / "work"     # the kernel's working directory
    work.mkdir()
    nb = nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(work)}})
    t0 = time.perf_counter()
    client.execute()   # raises CellExecutionError on the first failing cell
    wall = time.perf_counter() - t0
    print(f"{name}: {wall:.1f} s")

    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    assert all(c.get("execution_count") for c in code), "every code cell ran"
    assert "all checks passed" in _text(code[-1].get("outputs", [])), "the last cell's checks ran"
    out = work / "out" / "notebooks" / name
    for f in EXPECTED[name]:
        p = out / f
        assert p.is_file() and p.stat().st_size > (10_000 if f.endswith(".png") else 0), p


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code":
            assert c.get("outputs") == [], f"{path.name} cell {i}: outputs committed (clear them)"
            assert c.get("execution_count") is None, f"{path.name} cell {i}: execution count committed"


def test_every_numbered_notebook_is_tested():
    numbered = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert numbered == set(EXPECTED)
