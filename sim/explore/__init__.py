"""Design-space exploration: sweeps of system configurations x workloads (``llmsim sweep``).

* :func:`load_spec` reads and checks a sweep spec (YAML path or mapping; ``docs/sweeps.md``);
* :func:`expand_points` lists its points in a fixed order, each with a stable ``point_id``;
* :func:`run_sweep` runs (or resumes) it into an output folder on a local process pool or Dask;
* :func:`load_results` reads the rows back (``results.parquet``, or the points of an unfinished run).

Importing this package is cheap: pandas, dask and the simulators load when a function runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_spec", "expand_points", "run_sweep", "load_results", "evaluate_point"]


def load_spec(path_or_dict):
    """A checked :class:`~sim.explore.spec.SweepSpec` from a YAML path or a mapping."""
    from sim.explore.spec import load_spec as _load

    return _load(path_or_dict)


def expand_points(spec) -> list:
    """The spec's points (:class:`~sim.explore.spec.Point`: index, point_id, overrides, workload, label)."""
    from sim.explore.spec import expand_points as _expand

    return _expand(spec)


def run_sweep(spec, out_dir, backend: str = "local", workers: int | None = None, quiet: bool = False,
              scheduler: str | None = None):
    """Run or resume a sweep into ``out_dir``; a pandas DataFrame of every point's row."""
    from sim.explore.store import run_sweep as _run

    return _run(spec, out_dir, backend=backend, workers=workers, quiet=quiet, scheduler=scheduler)


def load_results(out_dir):
    """A sweep folder's rows as a DataFrame."""
    from sim.explore.store import load_results as _load

    return _load(out_dir)


def evaluate_point(base: str, overrides: dict[str, Any], workload: dict[str, Any], seed: int = 0) -> dict:
    """Metrics of one system configuration on one workload (:mod:`sim.explore.evaluate`)."""
    from sim.explore.evaluate import evaluate_point as _eval

    return _eval(base, overrides, workload, seed)
