"""Heavy checks, out of the default run: `make test-slow` (pytest -m slow)."""

from __future__ import annotations

import pytest

from sim.trace import capture

pytestmark = pytest.mark.slow


def _key(tr):
    return [(o.name, o.op_class, o.module, o.flops, o.bytes_weight, o.bytes_activation, o.bytes_kv_read,
             o.bytes_kv_write, o.input_shapes, o.output_shapes, o.repeat) for o in tr.ops]


@pytest.mark.parametrize("model", ["llama2-7b", "opt-1.3b", "phi-2", "gpt3-7b"])
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_real_size_layer_same_trace_on_cpu_and_meta(model, phase):
    """One full-width decoder layer (plus embedding and lm_head) run with real tensors on the CPU
    counts exactly what the meta run counts."""
    kw = dict(phase=phase, batch=1, seq_len=16, overrides=["config.num_hidden_layers=1"]
              if model != "gpt3-7b" else ["config.n_layer=1"])
    assert _key(capture(model, device="meta", **kw)) == _key(capture(model, device="cpu", **kw))


def test_benchmark_size_trace_closed_form():
    """llama2-70b decode at the benchmark size: KV bytes and GEMM FLOPs in closed form."""
    b, l, layers, hidden, kv, hd, inter, vocab = 64, 4096, 80, 8192, 8, 128, 28672, 32000
    tr = capture("llama2-70b", phase="decode", batch=b, seq_len=l)
    by_role = tr.bytes_by_role()
    assert by_role["kv_read"] == layers * b * l * 2 * kv * hd * 2
    assert by_role["kv_write"] == layers * b * 2 * kv * hd * 2
    per_layer = 2 * b * (hidden * hidden * 2 + hidden * kv * hd * 2 + 3 * hidden * inter)
    gemm = sum(o.flops * o.repeat for o in tr.ops if o.op_class == "gemm")
    assert gemm == layers * per_layer + 2 * b * hidden * vocab
