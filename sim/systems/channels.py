"""Which channel holds each request's KV cache (NeuPIMs keeps a request's KV in one channel's PIM
tiles): round-robin, or greedy least estimated load (NeuPIMs' channel load balancing: each
request, in batch order, goes to the channel whose PIM attention work so far is least; ties go to
the lowest channel). A request's load is the PIM cycles of its q.K^T and p.V on an idle channel
(:func:`sim.memory.pim.run_attention_batch`, fast path), so the estimate is the simulator's own.
"""

from __future__ import annotations

import numpy as np

from sim.errors import LlmsimError


def request_pim_cycles(memory, lengths: np.ndarray, head_dim: int, heads: int) -> dict[int, int]:
    """PIM cycles of one request's attention on an idle channel, per distinct length."""
    from sim.memory.pim import run_attention_batch

    out = {}
    for length in np.unique(lengths):
        out[int(length)] = run_attention_batch(memory, [int(length)], [0], head_dim, heads).cycles
    return out


def assign_channels(policy: str, lengths: np.ndarray, n_channels: int, memory=None, head_dim: int = 128,
                    heads: int = 1, pinned: np.ndarray | None = None) -> np.ndarray:
    """Channel of each request; ``pinned`` (a ``ch_idx`` column) wins over the policy."""
    if pinned is not None:
        bad = pinned[(pinned < 0) | (pinned >= n_channels)]
        if bad.size:
            raise LlmsimError(f"--lengths: ch_idx: expected channels 0..{n_channels - 1}, found {int(bad[0])}")
        return pinned.astype(np.int64)
    if policy == "round_robin":
        return np.arange(len(lengths), dtype=np.int64) % n_channels
    if policy == "greedy":
        cost = request_pim_cycles(memory, lengths, head_dim, heads)
        load = np.zeros(n_channels, np.int64)
        out = np.empty(len(lengths), np.int64)
        for i, length in enumerate(lengths):
            c = int(np.argmin(load))
            out[i] = c
            load[c] += cost[int(length)]
        return out
    raise LlmsimError(f"channel_assignment: expected round_robin or greedy, found {policy!r}")
