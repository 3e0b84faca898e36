"""``capture()``: run a zoo model forward in PyTorch and return its operator :class:`Trace`.

Prefill: B sequences of L prompt tokens, logits for the last position only (as generation does),
the new K/V written to the cache. Decode: one new token per sequence over a cache holding L
tokens. Generate: a prefill of L tokens, then ``new_tokens`` decode steps over the growing cache.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

import torch

import sim
from sim.config.models import ModelSpec, load_model_spec
from sim.errors import LlmsimError
from sim.trace.costs import Precision
from sim.trace.recorder import Recorder
from sim.trace.schema import Op, Trace
from sim.trace import zoo

CPU_AUTO_MAX_PARAMS = 150_000_000  # "small": trace on the CPU with real tensors when auto


def capture(
    model: str | ModelSpec,
    phase: str = "decode",
    batch: int = 1,
    seq_len: int = 128,
    new_tokens: int = 1,
    layers: int | None = None,
    tp: int = 1,
    device: str = "auto",
    dtype: str | None = None,
    weight_bits: float | None = None,
    act_bits: float | None = None,
    kv_bits: float | None = None,
    group_size: int | None = None,
    group_meta_bits: float = 0.0,
    weight_bits_rules: list[tuple[str, float]] | tuple[tuple[str, float], ...] = (),
    seed: int = 0,
    dedup: bool = True,
    overrides: list[str] | None = None,
) -> Trace:
    """Trace one run of a zoo model. See ``llmsim trace --help`` for the meaning of each knob."""
    spec = model if isinstance(model, ModelSpec) else load_model_spec(model, overrides)
    _check_args(spec, phase, batch, seq_len, new_tokens, tp, weight_bits, act_bits, kv_bits, group_size,
                group_meta_bits)
    rules = tuple((str(p), float(b)) for p, b in weight_bits_rules)
    for pattern, bits in rules:
        if not (0 < bits <= 32):
            raise LlmsimError(f"--weight-bits-rule: {pattern}={bits}: expected a bit width in (0, 32]")
    dev = ("cpu" if spec.cpu_default else "meta") if device == "auto" else device
    if dev not in ("cpu", "meta"):
        raise LlmsimError(f"--device: expected auto, cpu or meta, found {device!r}")
    tdtype = zoo.TORCH_DTYPES[dtype or spec.dtype] if (dtype or spec.dtype) in zoo.TORCH_DTYPES else None
    if tdtype is None:
        raise LlmsimError(f"--dtype: expected one of {', '.join(zoo.TORCH_DTYPES)}, found {dtype!r}")
    precision = Precision(weight_bits, act_bits, kv_bits, group_size, group_meta_bits if group_size else 0.0,
                          weight_bits_rules=rules)

    torch.manual_seed(seed)
    net = None
    if device == "auto" and dev == "meta":
        # auto: real tensors on the CPU for small models; the meta build that decides is kept for big ones
        net = zoo.build_model(spec, "meta", tdtype, layers=layers, tp=tp, seed=seed)
        if sum(p.numel() for p in net.parameters()) <= CPU_AUTO_MAX_PARAMS:
            dev, net = "cpu", None
    elif dev == "cpu":
        _check_cpu_memory(spec, tdtype, layers, tp, seed)
    if net is None:
        net = zoo.build_model(spec, dev, tdtype, layers=layers, tp=tp, seed=seed)
    max_pos = zoo.max_learned_positions(spec, net.config)
    total = seq_len + (new_tokens if phase == "generate" else 1 if phase == "decode" else 0)
    if max_pos and total > max_pos:
        raise LlmsimError(f"--seq-len: {spec.name} has learned positions up to {max_pos}, found {total} tokens")
    if dev == "meta":
        from sim.trace.moe import install_uniform_routing

        install_uniform_routing(net)
    runner = _Runner(spec, net, dev, precision, tp, seed)
    with torch.inference_mode(), _forward_errors(spec):
        if spec.family == "bert":
            ops = runner.encoder(batch, seq_len)
        elif phase == "prefill":
            ops, _ = runner.prefill(batch, seq_len)
        elif phase == "decode":
            ops = runner.decode(batch, seq_len)
        else:
            ops, cache = runner.prefill(batch, seq_len)
            for step in range(1, new_tokens + 1):
                ops += runner.decode_step(batch, cache, seq_len + step - 1, step)
    if layers is not None:
        ops = [o for o in ops if o.layer is not None]
    if dedup:
        ops = merge_identical_layers(ops)
    meta = {
        "model": spec.name,
        "family": spec.family,
        "phase": phase,
        "batch": batch,
        "seq_len": seq_len,
        "new_tokens": new_tokens if phase == "generate" else None,
        "layers": layers,
        "num_layers_traced": _num_layers(net),
        "tp": tp,
        "device": dev,
        "dtype": dtype or spec.dtype,
        "precision": precision.as_dict(),
        "seed": seed,
        "parameters": sum(p.numel() for p in net.parameters()),
        "llmsim_version": sim.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "transformers_version": _tf_version(),
    }
    return Trace(meta=meta, ops=ops)


@contextmanager
def _forward_errors(spec: ModelSpec) -> Iterator[None]:
    """A configuration that builds but cannot run (shapes that do not fit) is a user error."""
    try:
        yield
    except (RuntimeError, ValueError, IndexError) as exc:
        raise LlmsimError(f"{spec.name}: the forward pass failed with this configuration: {zoo.one_line(exc)}") from None


def _meta_params(spec: ModelSpec, dtype: torch.dtype, layers: int | None, tp: int, seed: int) -> int:
    net = zoo.build_model(spec, "meta", dtype, layers=layers, tp=tp, seed=seed)
    return sum(p.numel() for p in net.parameters())


def _check_cpu_memory(spec: ModelSpec, dtype: torch.dtype, layers: int | None, tp: int, seed: int) -> None:
    """Refuse a CPU run whose weights alone would not fit in the memory available now."""
    if spec.weights_package:
        return
    import psutil

    need = _meta_params(spec, dtype, layers, tp, seed) * torch.empty((), dtype=dtype).element_size()
    avail = psutil.virtual_memory().available
    if need > 0.8 * avail:
        raise LlmsimError(
            f"--device: cpu needs {need / 1e9:.1f} GB for {spec.name}'s weights, {avail / 1e9:.1f} GB available "
            f"(use --device meta, or --layers N)"
        )


def _tf_version() -> str:
    import transformers

    return transformers.__version__


def _num_layers(net: torch.nn.Module) -> int:
    cfg = net.config
    return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", 0))


def _check_args(spec: ModelSpec, phase: str, batch: int, seq_len: int, new_tokens: int, tp: int,
                weight_bits, act_bits, kv_bits, group_size, group_meta_bits) -> None:
    if phase not in ("prefill", "decode", "generate"):
        raise LlmsimError(f"--phase: expected prefill, decode or generate, found {phase!r}")
    needed = ["prefill", "decode"] if phase == "generate" else [phase]
    for p in needed:
        if p not in spec.phases:
            raise LlmsimError(
                f"--phase: {spec.name} has no {p} phase (it is an encoder; expected one of: {', '.join(spec.phases)})"
            )
    for flag, v in (("--batch", batch), ("--seq-len", seq_len), ("--tp", tp)):
        if not isinstance(v, int) or v < 1:
            raise LlmsimError(f"{flag}: expected a positive integer, found {v!r}")
    if phase == "generate" and (not isinstance(new_tokens, int) or new_tokens < 1):
        raise LlmsimError(f"--new-tokens: expected a positive integer, found {new_tokens!r}")
    for flag, v in (("--weight-bits", weight_bits), ("--act-bits", act_bits), ("--kv-bits", kv_bits)):
        if v is not None and not (0 < v <= 32):
            raise LlmsimError(f"{flag}: expected a bit width in (0, 32], found {v!r}")
    if tp > 1 and not (spec.tp_shard_keys or spec.tp_surgery):
        raise LlmsimError(f"--tp: {spec.name} declares no tensor-parallel sharding (expected --tp 1)")
    if group_size is not None and group_size < 1:
        raise LlmsimError(f"--group-size: expected a positive integer, found {group_size!r}")
    if group_size is not None and weight_bits is None:
        raise LlmsimError("--group-size: group quantization needs --weight-bits (found none)")
    if group_meta_bits < 0:
        raise LlmsimError(f"--group-meta-bits: expected a non-negative number, found {group_meta_bits!r}")
    if group_meta_bits and group_size is None:
        raise LlmsimError("--group-meta-bits: metadata is charged per group; give --group-size too")


class _Runner:
    def __init__(self, spec: ModelSpec, net: torch.nn.Module, device: str, precision: Precision, tp: int,
                 seed: int) -> None:
        self.spec, self.net, self.device, self.precision, self.tp = spec, net, device, precision, tp
        self.gen = torch.Generator().manual_seed(seed)
        self.vocab = int(net.config.vocab_size)

    def _recorder(self, phase: str, past: int, step: int = 0) -> Recorder:
        return Recorder(self.net, phase, self.precision, past_len=past, step=step, tp=self.tp,
                        tp_allreduce_after=self.spec.tp_allreduce_after)

    def _tokens(self, batch: int, length: int) -> torch.Tensor:
        if self.device == "meta":
            return torch.empty((batch, length), dtype=torch.long, device="meta")
        return torch.randint(0, self.vocab, (batch, length), generator=self.gen)

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.net.config)

    def prefill(self, batch: int, seq_len: int) -> tuple[list[Op], Any]:
        cache = self._new_cache()
        ids = self._tokens(batch, seq_len)
        rec = self._recorder("prefill", 0)
        with rec:
            self.net(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
        return rec.ops, cache

    def _filled_cache(self, batch: int, length: int):
        """A cache holding ``length`` tokens per sequence, made by an unrecorded prefill (so its
        shapes follow the model, sliding windows and tensor-parallel sharding included)."""
        cache = self._new_cache()
        self.net(input_ids=self._tokens(batch, length), cache=cache, use_cache=True, logits_to_keep=1)
        return cache

    def decode(self, batch: int, seq_len: int) -> list[Op]:
        cache = self._filled_cache(batch, seq_len)
        return self.decode_step(batch, cache, seq_len, 0)

    def decode_step(self, batch: int, cache: Any, past: int, step: int) -> list[Op]:
        ids = self._tokens(batch, 1)
        rec = self._recorder("decode", past, step)
        with rec:
            self.net(input_ids=ids, cache=cache, use_cache=True)
        return rec.ops

    def encoder(self, batch: int, seq_len: int) -> list[Op]:
        tok = zoo.tokenizer_for(self.spec)
        sentences = self.spec.sentences or ["llmsim traces a real encoder on real text."]
        texts = [sentences[i % len(sentences)] for i in range(batch)]
        enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt")
        rec = self._recorder("prefill", 0)
        with rec:
            self.net(**enc)
        return rec.ops


def _signature(op: Op) -> str:
    d = op.to_dict()
    d.pop("layer")
    d.pop("repeat")
    if op.layer is not None:
        d["module"] = _normalise(op.module, op.layer)
    return json.dumps(d, sort_keys=True, default=str)


def _normalise(module: str, layer: int) -> str:
    parts = module.split(".")
    for i, p in enumerate(parts):
        if p == str(layer):
            parts[i] = "*"
            break
    return ".".join(parts)


def merge_identical_layers(ops: list[Op]) -> list[Op]:
    """Store a run of identical consecutive decoder layers once, with ``repeat`` = run length."""
    segments: list[tuple[int | None, list[Op]]] = []
    for op in ops:
        key = op.layer
        if segments and segments[-1][0] == key and key is not None:
            segments[-1][1].append(op)
        else:
            segments.append((key, [op]))
    # non-layer ops are their own segments; merge consecutive non-layer ops back together
    out: list[Op] = []
    i = 0
    while i < len(segments):
        layer, seg = segments[i]
        if layer is None:
            out.extend(seg)
            i += 1
            continue
        sig = [_signature(o) for o in seg]
        run = 1
        while i + run < len(segments):
            nl, nseg = segments[i + run]
            if nl != layer + run or len(nseg) != len(seg) or [_signature(o) for o in nseg] != sig:
                break
            run += 1
        for o in seg:
            o.repeat = run
        out.extend(seg)
        i += run
    return out
