"""Request batches: per-request KV context lengths (and optional channels) for a decode iteration.

* ``--lengths FILE``: a CSV with a ``seq_len`` column (the request's KV context length) and an
  optional ``ch_idx`` column pinning the request's KV cache to a channel (0-based).
* ``--requests sharegpt|alpaca``: a batch sampled as NeuPIMs built its batches, steady-state
  continuous batching: in steady state a request is in the running batch for as long as it
  generates, so the batch holds requests with probability proportional to the tokens they
  generate (length-biased sampling), each at a uniformly random point of its generation; its
  context is input + generated tokens. A request stops at the maximum sequence length (2048), so
  its output counts up to 2048 - input; prompts that reach the cap alone are not admitted. For
  512 requests this gives mean 280-299 / median 208-224 / p90 561-650 over seeds from the data
  file (263-300 / 200-227 / 530-631 from the shipped percentile table), against the NeuPIMs
  trace's 300 / 217 / 566. The token counts come from ``../shared/data/<dataset>/stats.tsv`` when
  present, else from its percentile table (``workloads/requests/<dataset>.yaml``).
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


def uniform_batch(batch: int, seq_len: int) -> Batch:
    """``batch`` requests with ``seq_len`` cached tokens each (KV length seq_len + 1 with the new
    token, as a decode trace has it)."""
    if batch < 1 or seq_len < 1:
        raise LlmsimError(f"--batch: expected positive --batch and --seq-len, found {batch} and {seq_len}")
    return Batch(np.full(batch, seq_len + 1, np.int64), None, f"uniform: {batch} requests of {seq_len} cached tokens")


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


def _token_counts(dataset: str, rng: np.random.Generator, use_data: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """(input tokens, output tokens, source) of a dataset: the data file when present (and
    ``use_data``), else 200,000 draws from its shipped percentile table."""
    spec_path = find_bundled("workloads/requests", dataset, "request-length distribution")
    spec = load_yaml(spec_path)
    data = project_root().parent / "shared" / "data" / spec["data_file"]
    if use_data and data.exists():
        arr = np.loadtxt(data, delimiter="\t", skiprows=1, dtype=np.int64, ndmin=2)
        return arr[:, 0], arr[:, 1], f"{dataset} ({data.name}, {len(arr):,} requests)"
    n = 200_000
    pct = np.asarray(spec["percentiles"], np.float64)
    inp = np.maximum(1, np.round(np.interp(rng.random(n) * 100, pct, spec["input_tokens"]))).astype(np.int64)
    out = np.maximum(1, np.round(np.interp(rng.random(n) * 100, pct, spec["output_tokens"]))).astype(np.int64)
    return inp, out, f"{dataset} (percentile table, {spec_path.name})"


def sample_batch(dataset: str, batch: int, seed: int = 0, max_seq_len: int = MAX_SEQ_LEN,
                 use_data: bool = True) -> Batch:
    """``batch`` requests in steady-state continuous batching (see the module doc); ``use_data``
    False draws from the shipped percentile table even where the data file is present."""
    if batch < 1:
        raise LlmsimError(f"--batch: expected a positive integer, found {batch}")
    rng = np.random.default_rng(seed)
    inp, out, source = _token_counts(dataset, rng, use_data)
    ok = inp < max_seq_len
    inp = inp[ok]
    out = np.clip(out[ok], 1, max_seq_len - inp)   # a request stops at the maximum length
    w = out / out.sum()
    idx = rng.choice(len(inp), size=batch, p=w)
    done = rng.integers(0, out[idx])          # tokens generated so far: uniform over the output
    lengths = (inp[idx] + done).astype(np.int64)
    return Batch(np.maximum(lengths, 1), None, f"{source}, steady state, seed {seed}")
