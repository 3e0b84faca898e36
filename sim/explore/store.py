"""The result store of a sweep (``--out DIR``) and the loop that fills it.

* ``DIR/spec.yaml``: the spec as given; a later run into DIR must bring the same spec (compared as
  canonical JSON of the YAML mapping).
* ``DIR/points/<point_id>.parquet``: one row per finished point, written as soon as it finishes.
* ``DIR/results.parquet``: every row, sorted by ``index``, written at the end of a run.

Every file is written to a temporary file beside it and renamed (:mod:`sim.io`), so a killed run
leaves no half-written file under a final name; a re-run skips the points already in ``points/``.
A lock file (``DIR/.lock``, flock) keeps two runs from writing into one folder at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sim.errors import LlmsimError
from sim.explore.evaluate import METRICS
from sim.explore.spec import WORKLOAD_FIELDS, Point, SweepSpec, expand_points, load_spec, spec_fingerprint

POINTS = "points"
RESULTS = "results.parquet"
SPEC = "spec.yaml"
STR_COLUMNS = ("point_id", "sweep", "base", "workload", "status", "error", "llmsim_version", "backend")
WL_INT = ("batch", "tp")
WL_OPTIONAL_INT = ("seq_len", "new_tokens", "layers")


def columns(spec: SweepSpec) -> list[str]:
    """Row columns, in order."""
    return (["point_id", "index", "sweep", "base"] + [f"cfg.{p}" for a in spec.axes for p, _ in a.columns()]
            + ["workload"]
            + [f"wl.{f}" for f in WORKLOAD_FIELDS] + [f"m.{m}" for m in METRICS]
            + ["status", "error", "wall_s", "llmsim_version", "seed", "backend"])


def _cfg_value(kind: str, value: Any) -> Any:
    return json.dumps(value) if kind == "json" else value


def make_row(spec: SweepSpec, point: Point, result: dict[str, Any], backend: str) -> dict[str, Any]:
    import sim

    kinds = {p: kind for a in spec.axes for p, kind in a.columns()}
    row: dict[str, Any] = {"point_id": point.point_id, "index": point.index, "sweep": spec.name, "base": spec.base}
    row.update({f"cfg.{p}": _cfg_value(kinds[p], v) for p, v in point.overrides.items()})
    row["workload"] = point.label
    row.update({f"wl.{f}": point.workload.get(f) for f in WORKLOAD_FIELDS})
    row.update({f"m.{m}": float(result["metrics"].get(m, float("nan"))) for m in METRICS})
    row.update(status=result["status"], error=result["error"], wall_s=float(result["wall_s"]),
               llmsim_version=sim.__version__, seed=spec.seed, backend=backend)
    return row


def frame(rows: list[dict[str, Any]] | Any, spec: SweepSpec):
    """Rows (dicts or a DataFrame) as a DataFrame with this spec's columns and dtypes, by index."""
    import pandas as pd

    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    cols = columns(spec)
    for c in cols:
        if c not in df.columns:
            df[c] = None
    df = df[cols]
    for c in ("index", "seed"):
        df[c] = df[c].astype("int64")
    for c in ["wall_s"] + [f"m.{m}" for m in METRICS]:
        df[c] = df[c].astype("float64")
    for c in STR_COLUMNS:
        df[c] = df[c].astype(object)
    for c in WL_INT:
        df[f"wl.{c}"] = df[f"wl.{c}"].astype("int64")
    for c in WL_OPTIONAL_INT:
        df[f"wl.{c}"] = df[f"wl.{c}"].astype("Int64")
    for c in set(WORKLOAD_FIELDS) - set(WL_INT) - set(WL_OPTIONAL_INT):
        df[f"wl.{c}"] = df[f"wl.{c}"].astype(object).where(df[f"wl.{c}"].notna(), None)
    for a in spec.axes:
        for p, kind in a.columns():
            c = f"cfg.{p}"
            df[c] = df[c].astype({"bool": "bool", "int": "int64", "float": "float64"}.get(kind, object))
    return df.sort_values("index", kind="stable").reset_index(drop=True)


def _write_parquet(df, target: Path) -> None:
    from sim.io import atomic_path

    with atomic_path(target) as tmp:
        df.to_parquet(tmp, index=False)


# ------------------------------------------------------------------------------------ the folder
@contextmanager
def _locked(out: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:       # not POSIX: no lock
        yield
        return
    lock = out / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LlmsimError(f"{out}: another sweep is writing into this folder (wait for it, or use another "
                              f"--out)") from None
        yield
    finally:
        try:
            lock.unlink()
        except OSError:
            pass
        os.close(fd)


def _prepare(spec: SweepSpec, out_dir: str | os.PathLike) -> Path:
    """Create DIR (or check it holds this spec), write spec.yaml, drop temporary files of killed
    runs. Call with the lock held."""
    import yaml

    from sim.config.loader import load_yaml
    from sim.io import write_text_atomic

    out = Path(out_dir)
    spec_file = out / SPEC
    if spec_file.exists():
        try:
            held = load_yaml(spec_file)
        except LlmsimError as exc:
            raise LlmsimError(f"{out}: holds an unreadable sweep spec ({exc})") from None
        if spec_fingerprint(held) != spec.canonical():
            name = held.get("name", "?") if isinstance(held, dict) else "?"
            raise LlmsimError(f"{out}: holds the results of a different sweep spec ({spec_file}, sweep {name!r}); "
                              f"expected the same spec to resume, or another --out")
    else:
        stray = [p.name for p in out.iterdir() if p.name not in (".lock", POINTS) and not p.name.endswith(".tmp")]
        if stray:
            raise LlmsimError(f"{out}: expected an empty folder or a sweep output folder (no {SPEC}), found "
                              f"{sorted(stray)[0]}")
        text = spec.text if spec.text is not None else yaml.safe_dump(spec.raw, sort_keys=False)
        write_text_atomic(spec_file, text)
    (out / POINTS).mkdir(exist_ok=True)
    for tmp in [*out.glob(".*.tmp"), *(out / POINTS).glob(".*.tmp")]:   # left by a killed run
        try:
            tmp.unlink()
        except OSError:
            pass
    return out


def finished_ids(out: Path) -> set[str]:
    return {p.stem for p in (out / POINTS).glob("*.parquet") if not p.name.startswith(".")}


def _read_points(out: Path, ids: list[str]) -> list:
    import pandas as pd

    frames = []
    for pid in ids:
        try:
            frames.append(pd.read_parquet(out / POINTS / f"{pid}.parquet"))
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
            raise LlmsimError(f"{out / POINTS / (pid + '.parquet')}: unreadable point file ({exc}); remove it "
                              f"and run again to redo the point") from None
    return frames


# ------------------------------------------------------------------------------------- the loop
def sweep(spec: SweepSpec | str | Path | dict, out_dir: str | os.PathLike, backend: str = "local",
          workers: int | None = None, quiet: bool = False, scheduler: str | None = None):
    """Run (or resume) a sweep; returns (DataFrame of every point, summary dict)."""
    import pandas as pd

    from sim.explore.runners import check_backend, run_tasks
    from sim.io import check_writable_dir

    t0 = time.perf_counter()
    spec = load_spec(spec)
    check_backend(backend, workers, scheduler)
    points = expand_points(spec)
    out = check_writable_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _prepare(spec, out)
        have = finished_ids(out)
        done_before = [p for p in points if p.point_id in have]
        todo = [p for p in points if p.point_id not in have]
        by_id = {p.point_id: p for p in todo}
        tasks = [{"point_id": p.point_id, "base": spec.base_ref, "overrides": p.overrides, "workload": p.workload,
                  "seed": spec.seed} for p in todo]
        rows: list[dict[str, Any]] = []
        bar = _progress(len(points), len(done_before), spec.name, quiet)
        errors = 0
        try:
            for res in (run_tasks(tasks, backend, workers, scheduler) if tasks else ()):
                row = make_row(spec, by_id[res["point_id"]], res, backend)
                if not res.get("transient"):
                    _write_parquet(frame([row], spec), out / POINTS / f"{res['point_id']}.parquet")
                rows.append(row)
                errors += res["status"] != "ok"
                if bar is not None:
                    bar.update(1)
                    if errors:
                        bar.set_postfix(errors=errors, refresh=False)
        finally:
            if bar is not None:
                bar.close()
        frames = _read_points(out, [p.point_id for p in done_before])
        if rows:
            frames.append(frame(rows, spec))
        df = frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), spec)
        _write_parquet(df, out / RESULTS)
        df = pd.read_parquet(out / RESULTS)    # the dtypes load_results gives
    summary = {"sweep": spec.name, "points": len(points), "done": len(todo), "skipped": len(done_before),
               "errors": int((df["status"] != "ok").sum()), "wall_s": time.perf_counter() - t0, "out": str(out),
               "results": str(out / RESULTS), "backend": backend}
    return df, summary


def _progress(total: int, initial: int, name: str, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="pt", file=sys.stderr, dynamic_ncols=True)


def run_sweep(spec: SweepSpec | str | Path | dict, out_dir: str | os.PathLike, backend: str = "local",
              workers: int | None = None, quiet: bool = False, scheduler: str | None = None):
    """Run (or resume) a sweep into ``out_dir``; returns every point's row as a DataFrame (its
    ``attrs["summary"]``: points, done, skipped, errors, wall_s, out)."""
    df, summary = sweep(spec, out_dir, backend, workers, quiet, scheduler)
    df.attrs["summary"] = summary
    return df


def load_results(out_dir: str | os.PathLike):
    """The rows of a sweep folder: results.parquet, or the points/ files of an unfinished run."""
    import pandas as pd

    out = Path(out_dir)
    if not out.is_dir():
        raise LlmsimError(f"{out}: sweep output folder not found")
    if (out / RESULTS).exists():
        try:
            return pd.read_parquet(out / RESULTS)
        except Exception as exc:  # noqa: BLE001
            raise LlmsimError(f"{out / RESULTS}: unreadable results file ({exc})") from None
    if not (out / SPEC).exists() and not (out / POINTS).is_dir():
        raise LlmsimError(f"{out}: not a sweep output folder (expected {RESULTS}, {POINTS}/ or {SPEC})")
    ids = sorted(finished_ids(out)) if (out / POINTS).is_dir() else []
    frames = _read_points(out, ids)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True).sort_values("index", kind="stable").reset_index(drop=True)
