"""Uniform top-k routing for MoE experts traced on ``meta``.

On ``meta`` tensors have no values, so the stock experts loop (one_hot -> nonzero -> index) selects
no tokens and every expert silently counts zero work. The shim replaces the experts' forward with
the same computation on a fixed, balanced assignment: of the T*k (token, expert) slots, expert e
gets T*k // E tokens, the first T*k % E experts one more. Experts with no token read no weights,
as with real routing. The router itself (linear, softmax, top-k) still runs and is traced.
Works for transformers' fused-expert layout (``gate_up_proj`` [E, 2I, H], ``down_proj`` [E, H, I]).
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def balanced_counts(tokens: int, top_k: int, experts: int) -> list[int]:
    slots = tokens * top_k
    base, rem = divmod(slots, experts)
    return [base + (1 if e < rem else 0) for e in range(experts)]


def _uniform_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor):
    tokens = hidden_states.shape[0]
    top_k = top_k_index.shape[-1]
    final = torch.zeros_like(hidden_states)
    for e, n in enumerate(balanced_counts(tokens, top_k, self.num_experts)):
        if n == 0:
            continue
        token_idx = torch.arange(n, device=hidden_states.device)  # n <= tokens since top_k <= experts
        state = hidden_states[token_idx]
        gate, up = F.linear(state, self.gate_up_proj[e]).chunk(2, dim=-1)
        h = self.act_fn(gate) * up
        h = F.linear(h, self.down_proj[e])
        h = h * top_k_weights[:n, :1]
        final.index_add_(0, token_idx, h.to(final.dtype))
    return final


def is_fused_experts(module: torch.nn.Module) -> bool:
    p = dict(module.named_parameters(recurse=False))
    return (
        "gate_up_proj" in p and "down_proj" in p and p["gate_up_proj"].dim() == 3 and hasattr(module, "num_experts")
    )


def install_uniform_routing(model: torch.nn.Module) -> int:
    """Patch every fused-experts module of ``model``; returns how many were patched."""
    n = 0
    for module in model.modules():
        if is_fused_experts(module):
            module.forward = types.MethodType(_uniform_forward, module)
            n += 1
    return n
