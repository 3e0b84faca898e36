"""Where sweep points run: ``local`` (a process pool on this machine; one worker runs in-process) or
``dask`` (dask.distributed: a local cluster of single-threaded worker processes, or the scheduler
at ``--scheduler ADDR``). Both yield each point's result as soon as it finishes, in any order; the
caller writes it (:mod:`sim.explore.store`)."""

from __future__ import annotations

import os
import time
from typing import Any, Iterable, Iterator

from sim.errors import LlmsimError

BACKENDS = ("local", "dask")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:       # not Linux
        return max(1, os.cpu_count() or 1)


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An exception as one line: an LlmsimError's message, else ``Type: message``."""
    text = str(exc) if isinstance(exc, LlmsimError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _worker_init() -> None:
    """One thread per worker process for the numeric libraries (as Dask's nanny sets it): the pool
    already fills the cores, more threads only contend. Runs before numpy or torch is imported."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one point (a task: point_id, base, overrides, workload, seed); an exception becomes
    status "error" with a one-line message. Runs in a worker process."""
    from sim.explore.evaluate import evaluate_point, nan_metrics

    t0 = time.perf_counter()
    try:
        metrics, status, error = evaluate_point(task["base"], task["overrides"], task["workload"],
                                                task["seed"]), "ok", ""
    except Exception as exc:   # noqa: BLE001 - one bad point must not stop the sweep
        metrics, status, error = nan_metrics(), "error", one_line(exc)
    return {"point_id": task["point_id"], "metrics": metrics, "status": status, "error": error,
            "wall_s": time.perf_counter() - t0}


def check_backend(backend: str, workers: int | None, scheduler: str | None) -> None:
    if backend not in BACKENDS:
        raise LlmsimError(f"--backend: expected one of {', '.join(BACKENDS)}, found {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise LlmsimError(f"--workers: expected a positive integer, found {workers!r}")
    if scheduler is not None and backend != "dask":
        raise LlmsimError("--scheduler: only with --backend dask")
    if scheduler is not None and workers is not None:
        raise LlmsimError("--workers: the cluster at --scheduler has its own workers (give one or the other)")


def run_local(tasks: list[dict[str, Any]], workers: int | None = None) -> Iterator[dict[str, Any]]:
    """A pool of ``workers`` processes (default: every core); one worker runs the points here."""
    n = min(workers or default_workers(), max(1, len(tasks)))
    if n == 1:
        for t in tasks:
            yield run_point(t)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawn: a worker starts clean (no threads or state of the caller copied by fork)
    pool = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init)
    try:
        futures = [pool.submit(run_point, t) for t in tasks]
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:
                raise LlmsimError("sweep: a worker process died (out of memory, or a script without an `if __name__ == "
                                  "'__main__':` guard?); the finished points are kept, "
                                  "run the same command again to resume") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_dask(tasks: list[dict[str, Any]], workers: int | None = None,
             scheduler: str | None = None) -> Iterator[dict[str, Any]]:
    """dask.distributed: ``LocalCluster(n_workers=workers, threads_per_worker=1, processes=True)``
    unless ``scheduler`` names a running scheduler."""
    import logging

    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise LlmsimError(f"--backend: dask needs dask[distributed] installed ({exc})") from None
    cluster = None
    try:
        if scheduler is None:
            n = min(workers or default_workers(), max(1, len(tasks)))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise LlmsimError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} "
                                  f"({one_line(exc, 200)})") from None
    except LlmsimError:
        raise
    except Exception as exc:   # noqa: BLE001
        if cluster is not None:
            cluster.close()
        raise LlmsimError(f"--backend: dask: cannot start a local cluster ({one_line(exc, 200)})") from None
    try:
        futures = client.map(run_point, tasks, pure=False)
        by_future = {f.key: t for f, t in zip(futures, tasks)}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost mid-task: an error row, not stored in
                # points/, so the next run retries it
                t = by_future[fut.key]
                from sim.explore.evaluate import nan_metrics

                yield {"point_id": t["point_id"], "metrics": nan_metrics(), "status": "error",
                       "error": f"dask: {one_line(exc)}", "wall_s": float("nan"), "transient": True}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_tasks(tasks: list[dict[str, Any]], backend: str = "local", workers: int | None = None,
              scheduler: str | None = None) -> Iterable[dict[str, Any]]:
    check_backend(backend, workers, scheduler)
    if backend == "dask":
        return run_dask(tasks, workers, scheduler)
    return run_local(tasks, workers)
