"""Hooks into transformers that let the recorder fold attention and the KV-cache append into one
op each, whatever SDPA backend or cache class runs underneath.

* ``llmsim`` is registered as an attention implementation: it calls the stock SDPA function
  with recording suppressed, then emits one attention op from the shapes.
* Every cache layer class's ``update`` is wrapped: the concatenation it performs is an artifact of
  the dynamic cache, so it is replaced in the trace by one append op (new K/V in, cache out).
"""

from __future__ import annotations

import functools

import torch

from sim.trace.recorder import active_recorder

ATTN_IMPL = "llmsim"
_installed = False


def _llmsim_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                      **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rec = active_recorder()
    if rec is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    with rec.suppressed():
        out, weights = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                              scaling=scaling, is_causal=is_causal, **kwargs)
    causal = bool(is_causal if is_causal is not None else getattr(module, "is_causal", True))
    window = kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
    rec.emit_attention(query, key, value, out, causal, window)
    return out, weights


def _wrap_update(fn):
    @functools.wraps(fn)
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rec = active_recorder()
        if rec is None:
            return fn(self, key_states, value_states, *args, **kwargs)
        with rec.suppressed():
            result = fn(self, key_states, value_states, *args, **kwargs)
        rec.emit_kv_append(key_states, value_states)
        return result

    update.__llmsim_wrapped__ = True
    return update


def install() -> None:
    """Register the attention function and wrap cache updates (idempotent)."""
    global _installed
    if _installed:
        return
    from transformers import cache_utils
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_ATTENTION_FUNCTIONS.register(ATTN_IMPL, _llmsim_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPL, sdpa_mask)
    for obj in vars(cache_utils).values():
        if isinstance(obj, type) and "update" in vars(obj) and issubclass(obj, cache_utils.CacheLayerMixin):
            if not getattr(obj.update, "__llmsim_wrapped__", False):
                obj.update = _wrap_update(obj.update)
    _installed = True
