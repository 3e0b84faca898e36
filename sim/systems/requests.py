"""Request batches: per-request KV context lengths (and optional channels) for a decode iteration.

* ``--lengths FILE``: a CSV with a ``seq_len`` column (the request's KV context length) and an
  optional ``ch_idx`` column pinning the request's KV cache to a channel (0-based).
* ``--requests sharegpt|alpaca``: a batch sampled as NeuPIMs built its batches, steady-state
  continuous batching: in steady state a request is in the running batch for as long as it
  generates, so the batch holds requests with probability proportional to their output length
  (length-biased sampling), each at a uniformly random point of its generation; its context is
  input + generated tokens, capped at the maximum sequence length (2048). Requests whose prompt
  alone reaches the cap are not admitted. On the NeuPIMs ShareGPT trace (512 requests) this gives
  mean 274-332 / median 206-229 / p90 530-671 over seeds, against the trace's 300 / 217 / 566.
  The token counts come from ``../shared/data/<dataset>/stats.tsv`` when present, else from the
  lognormals fitted to it (``workloads/requests/<dataset>.yaml``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.config.loader import load_yaml
from sim.config.paths import find_bundled, project_root
from sim.errors import LlmsimError

MAX_SEQ_LEN = 2048   # NeuPIMs' batches (reference/neupims.md)


@dataclass(frozen=True)
class Batch:
    lengths: np.ndarray              # int64 [B]: KV context length of each request
    channels: np.ndarray | None      # int64 [B] channel of each request's KV cache, or None: assign
    source: str

    @property
    def size(self) -> int:
        return int(self.lengths.shape[0])


def load_lengths(path: str | Path) -> Batch:
    """A batch from a CSV (``seq_len`` and optional ``ch_idx`` columns); one-line errors."""
    p = Path(path)
    if not p.exists():
        raise LlmsimError(f"{p}: file not found (expected a CSV with a seq_len column)")
    try:
        rows = list(csv.DictReader(p.open(newline="")))
    except (csv.Error, UnicodeDecodeError) as e:
        raise LlmsimError(f"{p}: not a readable CSV ({e})") from None
    if not rows or "seq_len" not in rows[0]:
        raise LlmsimError(f"{p}: seq_len: expected a column named seq_len with one request per row")
    lengths, channels = [], []
    has_ch = "ch_idx" in rows[0]
    for i, r in enumerate(rows, start=2):
        try:
            n = int(r["seq_len"])
            c = int(r["ch_idx"]) if has_ch else 0
        except (TypeError, ValueError):
            raise LlmsimError(f"{p}: line {i}: seq_len{'/ch_idx' if has_ch else ''}: expected integers, "
                              f"found {r.get('seq_len')!r}{', ' + repr(r.get('ch_idx')) if has_ch else ''}") from None
        if n < 1:
            raise LlmsimError(f"{p}: line {i}: seq_len: expected a positive integer, found {n}")
        if c < 0:
            raise LlmsimError(f"{p}: line {i}: ch_idx: expected a channel index >= 0, found {c}")
        lengths.append(n)
        channels.append(c)
    return Batch(np.array(lengths, np.int64), np.array(channels, np.int64) if has_ch else None, str(p))


def _token_counts(dataset: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    spec_path = find_bundled("workloads/requests", dataset, "request-length distribution")
    spec = load_yaml(spec_path)
    data = project_root().parent / "shared" / "data" / spec["data_file"]
    if data.exists():
        arr = np.loadtxt(data, delimiter="\t", skiprows=1, dtype=np.int64, ndmin=2)
        return arr[:, 0], arr[:, 1], f"{dataset} ({data.name}, {len(arr):,} requests)"
    n = 200_000
    inp = np.maximum(1, np.round(rng.lognormal(spec["input_log_mean"], spec["input_log_std"], n))).astype(np.int64)
    out = np.maximum(1, np.round(rng.lognormal(spec["output_log_mean"], spec["output_log_std"], n))).astype(np.int64)
    return inp, out, f"{dataset} (lognormal fit, {spec_path.name})"


def sample_batch(dataset: str, batch: int, seed: int = 0, max_seq_len: int = MAX_SEQ_LEN) -> Batch:
    """``batch`` requests in steady-state continuous batching (see the module doc)."""
    if batch < 1:
        raise LlmsimError(f"--batch: expected a positive integer, found {batch}")
    rng = np.random.default_rng(seed)
    inp, out, source = _token_counts(dataset, rng)
    ok = inp < max_seq_len
    inp, out = inp[ok], np.maximum(out[ok], 1)
    w = out / out.sum()
    idx = rng.choice(len(inp), size=batch, p=w)
    done = rng.integers(0, out[idx])          # tokens generated so far: uniform over the output
    lengths = np.minimum(inp[idx] + done, max_seq_len).astype(np.int64)
    return Batch(np.maximum(lengths, 1), None, f"{source}, steady state, seed {seed}")
