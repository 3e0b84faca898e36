"""GEMM layers as the BitMoD accelerators see them, and the artifact's layer list of a zoo model.

A :class:`GemmLayer` is ``instances`` independent GEMMs ``out[tokens, cout] = in[tokens, cin] @ W[cout, cin]^T``:

* ``linear``: W is the layer's weight (``weight_bits`` per weight, group metadata included), shared by
  every instance (``shared_weight``: the batch of a prefill); ``tokens`` rows of activations each.
* ``attn_qk``: the stationary operand is the K cache of one KV head: ``cout`` = context keys,
  ``cin`` = head size, at the KV bits; the moving operand is the queries of the heads sharing it
  (GQA): ``tokens`` = query-share x query tokens; ``instances`` = batch x KV heads.
* ``attn_v``: the stationary operand is the V cache: ``cout`` = head size, ``cin`` = context;
  moving: the scores, ``tokens`` as for ``attn_qk``.

This is how the artifact's ``pe_array.py`` builds its layers (``weight_dim`` = [instances, cout, cin],
``output_dim`` = [instances, tokens, cout]); in decode the context is the prompt length (256) and
the linears see one token per sequence (``tokens`` = batch, one instance).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from sim.errors import LlmsimError

if TYPE_CHECKING:
    from sim.config.hardware import BitSerialConfig

Kind = Literal["linear", "attn_qk", "attn_v"]
Phase = Literal["prefill", "decode"]

#: The models of the BitMoD evaluation (zoo names) and the Hugging Face ids the artifact uses.
BITMOD_MODELS: dict[str, str] = {
    "opt-1.3b": "facebook/opt-1.3b",
    "phi-2": "microsoft/phi-2",
    "yi-6b": "01-ai/Yi-6B",
    "llama2-7b": "meta-llama/Llama-2-7b-hf",
    "llama2-13b": "meta-llama/Llama-2-13b-hf",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B",
}


@dataclass(frozen=True)
class GemmLayer:
    """One GEMM layer (see the module doc). ``weight_bits`` None: the design's bits for the layer's
    kind (linear weight bits of the phase, or KV bits), filled in by the run. ``count``: how many
    identical layers this row stands for (decoder layers repeat); results scale by it."""

    name: str
    kind: Kind
    cout: int
    cin: int
    tokens: int
    instances: int = 1
    weight_bits: float | None = None
    act_bits: int = 16
    shared_weight: bool = True
    count: int = 1

    def __post_init__(self) -> None:
        for f in ("cout", "cin", "tokens", "instances", "act_bits", "count"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise LlmsimError(f"layer {self.name}: {f}: expected a positive integer, found {v!r}")
        if self.weight_bits is not None and not self.weight_bits > 0:
            raise LlmsimError(f"layer {self.name}: weight_bits: expected > 0, found {self.weight_bits!r}")
        if self.kind not in ("linear", "attn_qk", "attn_v"):
            raise LlmsimError(f"layer {self.name}: kind: expected linear, attn_qk or attn_v, found {self.kind!r}")

    @property
    def is_attention(self) -> bool:
        return self.kind != "linear"

    @property
    def weight_instances(self) -> int:
        """Copies of the stationary operand: 1 for a shared weight, else one per instance."""
        return 1 if self.shared_weight else self.instances

    def with_bits(self, cfg: "BitSerialConfig", phase: str, model: str | None = None) -> "GemmLayer":
        """This layer with ``weight_bits`` resolved from the design (if not set already)."""
        if self.weight_bits is not None:
            return self
        bits = cfg.kv_bits if self.is_attention else cfg.linear_weight_bits(phase, model)
        return replace(self, weight_bits=float(bits), act_bits=cfg.act_bits)


def _cfg_of(model: str | dict[str, Any]) -> tuple[str | None, str, dict[str, Any]]:
    if isinstance(model, dict):
        return None, str(model.get("model_type", "llama")), dict(model)
    from sim.config.models import load_model_spec

    spec = load_model_spec(model)
    return spec.name, spec.family, dict(spec.config)


def linear_shapes(family: str, c: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, cout, cin) of every ``nn.Linear`` of one decoder layer, in module order, as the
    Hugging Face implementation of ``family`` builds them (what the artifact's profiler records)."""
    h = int(c["hidden_size"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    d = int(c.get("head_dim") or h // heads)
    if family == "opt":
        f = int(c["ffn_dim"])
        return [("self_attn.k_proj", h, h), ("self_attn.v_proj", h, h), ("self_attn.q_proj", h, h),
                ("self_attn.out_proj", h, h), ("fc1", f, h), ("fc2", h, f)]
    if family == "phi":
        f = int(c["intermediate_size"])
        return [("self_attn.q_proj", heads * d, h), ("self_attn.k_proj", kv * d, h), ("self_attn.v_proj", kv * d, h),
                ("self_attn.dense", h, heads * d), ("mlp.fc1", f, h), ("mlp.fc2", h, f)]
    if family in ("llama", "mistral"):
        f = int(c["intermediate_size"])
        return [("self_attn.q_proj", heads * d, h), ("self_attn.k_proj", kv * d, h), ("self_attn.v_proj", kv * d, h),
                ("self_attn.o_proj", h, heads * d), ("mlp.gate_proj", f, h), ("mlp.up_proj", f, h),
                ("mlp.down_proj", h, f)]
    raise LlmsimError(f"artifact_layers: family {family!r}: expected opt, phi, llama or mistral")


def artifact_layers(model: str | dict[str, Any], phase: Phase, seq_len: int = 256, batch: int = 1,
                    design: "BitSerialConfig | str | None" = None, expand: bool = False) -> list[GemmLayer]:
    """The artifact's layer list of ``model`` (a zoo name, or a Hugging Face config dict with
    ``model_type``): every decoder layer's linears, ``lm_head``, and per decoder layer one
    ``attn_qk`` and one ``attn_v``.

    ``phase`` "prefill": ``seq_len`` tokens per sequence; "decode": one new token per sequence over
    a context of ``seq_len`` (the artifact's ``cxt_len``). ``design`` (a config or its name) fills
    in the weight / KV bits, per-model overrides included; else they stay None and the run fills in
    the design's defaults. Identical decoder layers are one row with ``count`` = layers unless
    ``expand`` (then one row per decoder layer, as the artifact lists them).
    """
    if phase not in ("prefill", "decode"):
        raise LlmsimError(f"artifact_layers: phase: expected prefill or decode, found {phase!r}")
    if seq_len < 1 or batch < 1:
        raise LlmsimError("artifact_layers: seq_len and batch: expected positive integers")
    name, family, c = _cfg_of(model)
    n_layers = int(c["num_hidden_layers"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    h = int(c["hidden_size"])
    d = int(c.get("head_dim") or h // heads)
    if heads % kv:
        raise LlmsimError(f"artifact_layers: {heads} heads do not share {kv} KV heads evenly")
    share = heads // kv
    vocab = int(c["vocab_size"])
    lm_in = int(c.get("word_embed_proj_dim") or h)

    if phase == "prefill":
        lin = dict(tokens=seq_len, instances=batch)
        q_tokens = share * seq_len
    else:
        lin = dict(tokens=batch, instances=1)
        q_tokens = share
    per_layer: list[GemmLayer] = [GemmLayer(n, "linear", co, ci, **lin) for n, co, ci in linear_shapes(family, c)]
    per_layer += [
        GemmLayer("self_attn.attn_qk", "attn_qk", seq_len, d, q_tokens, batch * kv, shared_weight=False),
        GemmLayer("self_attn.attn_v", "attn_v", d, seq_len, q_tokens, batch * kv, shared_weight=False),
    ]
    layers: list[GemmLayer] = []
    if expand:
        for i in range(n_layers):
            layers += [replace(g, name=f"layers.{i}.{g.name}") for g in per_layer]
    else:
        layers += [replace(g, name=f"layers.*.{g.name}", count=n_layers) for g in per_layer]
    layers.append(GemmLayer("lm_head", "linear", vocab, lm_in, **lin))
    if design is not None:
        if isinstance(design, str):
            from sim.bitserial.analytic import load_accelerator

            design = load_accelerator(design)
        layers = [g.with_bits(design, phase, name) for g in layers]
    return layers
