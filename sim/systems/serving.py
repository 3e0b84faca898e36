"""Continuous, iteration-level (Orca-style) serving of a request stream on a composed system.

Requests ``(arrival s, input tokens, output tokens)`` come from a dataset's token counts
(:func:`sim.systems.requests._token_counts`: ShareGPT / Alpaca, seeded; prompts reaching
``max_seq_len`` are dropped, output capped so input + output <= ``max_seq_len``), all at time 0 or
as a Poisson stream. The scheduler runs iterations back to back:

1. **Admit** waiting requests that have arrived, first come first served, while the running batch
   holds fewer than ``max_batch`` requests. A PIM system pins each admitted request's KV cache to
   a channel for its lifetime (the system's policy: round-robin, or greedy least current PIM load).
2. **Prefill** the newly admitted requests on the accelerator (PIM systems prefill on their NPU,
   PIM idle): one batch of ``#new`` prompts at their mean length. It produces their first token.
3. **Decode** one token for every request that already had its first token (Orca: a request
   joins the decode batch the iteration after its prefill), at its own KV length (input +
   generated), as :func:`sim.systems.decode.decode_iteration` (NPU / PIM systems, sub-batch
   interleaving included) or :func:`sim.gpu.iteration.gpu_decode_iteration` (``gpu-only``) would.
4. Iteration time = prefill + decode (no overlap between them; every token of the iteration is
   emitted at its end). Requests that reached their output length leave the batch.

TTFT = end of the prefill iteration - arrival; TBT = the gaps between a request's consecutive
tokens. With nothing running the clock jumps to the next arrival (idle time counts in the total).

**Memoisation** (``docs/serving.md`` has the measured errors): a decode iteration costs 0.1-2 s
through ``decode_iteration`` (mostly tracing), and a run has thousands, so its parts are cached:

* As in ``decode_iteration``, the deduplicated trace's one layer is simulated once and multiplied by
  the layer count (identical layers); traces are cached per shape.
* NPU stage times (QKV, proj/FFN, head, tail; alone and at the bandwidth share left beside PIM)
  depend on the batch size only: simulated exactly for sizes <= 16, then on a grid of
  ``batch_step`` and interpolated linearly.
* PIM MHA: the PIM cycles of one request are simulated once per distinct length
  (:func:`sim.systems.channels.request_pim_cycles`); a channel runs its requests one after another,
  so its time is their sum (plus the NPU softmaxes, as in :func:`~sim.systems.decode.pim_mha_seconds`).
* MHA on the NPU (``npu-only``): as in ``decode_iteration``, the batch's attention is one
  variable-length op, simulated every iteration (about 10 ms; not memoised).
* GPU decode: the non-attention ops' time is cached on the same batch grid; the variable-length
  attention op is rebuilt from per-length FLOPs / bytes each iteration and timed by the GPU model.
* Prefill: one layer (a ``layers=1`` trace, ~20 ms to trace) cached per exact (prompt count, mean
  prompt length): the NPU's time steps at tile boundaries of the length (+40 % from 512 to 518
  tokens), so lengths are not interpolated. Counts above 32 (only bursts) are rounded to 3
  significant bits and the time scaled by the count ratio. The ops outside the layers come from
  the full trace at powers of two of the length, interpolated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.errors import LlmsimError
from sim.systems.config import SystemConfig
from sim.systems.requests import MAX_SEQ_LEN, _token_counts
from sim.trace.schema import Op, Trace


# ------------------------------------------------------------------------------------- config
@dataclass
class ServeConfig:
    system: SystemConfig
    model: str
    tp: int = 1
    max_batch: int = 256
    max_seq_len: int = MAX_SEQ_LEN
    dataset: str = "sharegpt"
    n_requests: int = 1000
    requests: list[tuple[float, int, int]] | None = None   # explicit (arrival s, input, output); wins
    arrival: str = "all-at-once"                            # or "poisson" (needs rate)
    rate: float | None = None                               # requests/s for poisson
    seed: int = 0
    layers: int | None = None                               # None: all the model's layers
    gpu: str | None = None                                  # gpu-only: GPU config (default: the system's)
    sub_batch: bool | None = None                           # None: the system's setting
    batch_step: int = 8                                     # NPU stage-time grid above 16 requests (1: exact)

    def validate(self) -> None:
        if self.tp < 1:
            raise LlmsimError(f"--tp: expected a positive integer, found {self.tp}")
        if self.max_batch < 1:
            raise LlmsimError(f"--max-batch: expected a positive integer, found {self.max_batch}")
        if self.max_seq_len < 2:
            raise LlmsimError(f"--max-seq-len: expected an integer >= 2, found {self.max_seq_len}")
        if self.requests is None and self.n_requests < 1:
            raise LlmsimError(f"--n: expected a positive number of requests, found {self.n_requests}")
        if self.arrival not in ("all-at-once", "poisson"):
            raise LlmsimError(f"arrival: expected all-at-once or poisson, found {self.arrival!r}")
        if self.arrival == "poisson" and not (self.rate and self.rate > 0):
            raise LlmsimError(f"--rate: expected a positive request rate (requests/s), found {self.rate}")
        if self.batch_step < 1:
            raise LlmsimError(f"batch_step: expected a positive integer, found {self.batch_step}")
        if self.sub_batch and self.system.pim is None:
            raise LlmsimError(f"--sub-batch: on needs a system with PIM ({self.system.name} has none)")


@dataclass(frozen=True)
class Requests:
    arrival: np.ndarray      # float64 [N] seconds, non-decreasing
    input: np.ndarray        # int64 [N] prompt tokens
    output: np.ndarray       # int64 [N] tokens to generate (>= 1)
    source: str

    @property
    def size(self) -> int:
        return int(self.input.shape[0])


def make_requests(cfg: ServeConfig) -> Requests:
    """The request stream of ``cfg`` (seeded): explicit requests, or drawn from the dataset."""
    if cfg.requests is not None:
        arr = np.array(cfg.requests, dtype=np.float64).reshape(-1, 3)
        if len(arr) == 0:
            raise LlmsimError("requests: expected at least one (arrival, input, output) request")
        t, inp, out = arr[:, 0], arr[:, 1].astype(np.int64), arr[:, 2].astype(np.int64)
        if (inp < 1).any() or (out < 1).any() or (t < 0).any():
            raise LlmsimError("requests: expected arrival >= 0, input >= 1 and output >= 1 for every request")
        if (inp + out > cfg.max_seq_len).any():
            raise LlmsimError(f"requests: input + output exceeds max_seq_len {cfg.max_seq_len}")
        order = np.argsort(t, kind="stable")
        return Requests(t[order], inp[order], out[order], "explicit")
    rng = np.random.default_rng(cfg.seed)
    inp_all, out_all, source = _token_counts(cfg.dataset, rng)
    ok = inp_all < cfg.max_seq_len
    inp_all, out_all = inp_all[ok], np.maximum(out_all[ok], 1)
    idx = rng.choice(len(inp_all), size=cfg.n_requests)
    inp = np.maximum(inp_all[idx], 1).astype(np.int64)
    out = np.minimum(out_all[idx], cfg.max_seq_len - inp).astype(np.int64)
    if cfg.arrival == "poisson":
        t = np.cumsum(rng.exponential(1.0 / cfg.rate, cfg.n_requests))
        how = f"Poisson {cfg.rate:g} req/s"
    else:
        t = np.zeros(cfg.n_requests)
        how = "all at once"
    return Requests(t, inp, out, f"{source}, {cfg.n_requests} requests {how}, seed {cfg.seed}")


# ------------------------------------------------------------------------------ cost models
@dataclass
class StepCost:
    """One iteration's decode (or prefill) cost: seconds, busy seconds, bytes."""

    time_s: float = 0.0
    npu_busy_s: float = 0.0      # NPU (or GPU) stage work, stand-alone durations
    pim_busy_s: float = 0.0      # PIM MHA (slowest channel), all layers
    npu_bytes: float = 0.0       # accelerator DRAM read + write bytes
    pim_bytes: float = 0.0       # KV bytes PIM reads inside the banks


def _interp(grid: list[int], value: float, fn) -> np.ndarray:
    """Linear interpolation of the vector ``fn(point)`` over the sorted integer ``grid``."""
    i = int(np.searchsorted(grid, value))
    if i < len(grid) and grid[i] == value:
        return fn(grid[i])
    if i == 0:
        return fn(grid[0])
    if i == len(grid):
        return fn(grid[-1]) * (value / grid[-1])
    lo, hi = grid[i - 1], grid[i]
    w = (value - lo) / (hi - lo)
    return fn(lo) * (1 - w) + fn(hi) * w


def _sig3(x: int) -> int:
    """``x`` rounded to three significant bits (relative spacing <= 12.5%)."""
    if x <= 8:
        return x
    step = 1 << (x.bit_length() - 4)
    return max(step, int(round(x / step)) * step)


class CostModel:
    """Memoised per-iteration costs of one (system, model, tp, layers) (see the module doc)."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.system = cfg.system
        self.model, self.tp = cfg.model, cfg.tp
        self.is_gpu = self.system.accelerator == "gpu"
        self.pim = self.system.pim is not None
        self.use_sub = (self.system.sub_batch if cfg.sub_batch is None else cfg.sub_batch) and self.pim
        self._traces: dict[tuple, tuple] = {}
        probe = self._decode_ops(1)
        self.n_layers = int(probe[5])
        if probe[1] is None:
            raise LlmsimError(f"--model: {cfg.model} has no attention layers to serve")
        self.att_template: Op = probe[1]
        self.heads = int(self.att_template.extra["heads"])
        self.head_dim = int(self.att_template.extra["head_dim"])
        if self.is_gpu:
            from sim.config.hardware import GpuConfig

            gpu = self.system.gpu_config(cfg.gpu)
            if not isinstance(gpu, GpuConfig):
                raise LlmsimError(f"--gpu: expected a GPU config, found kind {gpu.kind!r}")
            self.gpu = gpu
            self.freq_hz = gpu.boost_freq_mhz * 1e6
        else:
            self.npu = self.system.npu_config()
            self.freq_hz = self.npu.freq_mhz * 1e6
        if self.use_sub and self.system.pim.row_buffers == 1:
            raise LlmsimError(f"--sub-batch: on needs dual row buffers (pim.row_buffers: 2): {self.system.name} "
                              "blocks normal traffic to a bank while PIM computes")
        if self.system.accelerator == "npu" and self.npu.mapping.attention == "serial_gemv":
            raise LlmsimError(f"{self.system.name}: npu.mapping.attention: serial_gemv (NeuPIMs' simulator's decode "
                              "schedule) is modelled for one decode iteration (llmsim simulate), not for serving runs")
        if self.pim and self.system.pim.issue is not None:
            raise LlmsimError(f"{self.system.name}: pim.issue: NeuPIMs' simulator front end is modelled for one "
                              "decode iteration (llmsim simulate), not for serving runs")
        if self.pim:
            from sim.systems.decode import npu_bandwidth_share

            self.memory = self.system.memory()
            self.n_channels = self.memory.channels
            self.mem_hz = self.memory.freq_hz
            self.share = npu_bandwidth_share(self.memory) if self.use_sub else 1.0
        else:
            self.n_channels = 1
        n = cfg.max_seq_len + 2
        self._pim_cyc = np.full(n, -1, np.int64)        # PIM cycles of one request, per KV length
        self._soft_s = np.full(n, -1.0)                 # its NPU softmax seconds
        self._kv_bytes = np.full(n, -1.0)               # KV bytes it reads per layer
        self._att_flops = np.full(n, -1.0)              # GPU varlen attention parts per length
        self._att_act = np.full(n, -1.0)
        self._npu_stage: dict[tuple[int, float], np.ndarray] = {}
        self._prefill: dict[tuple[int, int], np.ndarray] = {}
        self._prefill_ht: dict[tuple[int, int], np.ndarray] = {}
        self._gpu_base: dict[int, tuple] = {}
        self.stats = {"npu_stage_points": 0, "npu_attention_runs": 0, "prefill_points": 0, "pim_lengths": 0}

    # ------------------------------------------------------------------ traces (deduplicated)
    def _ops(self, phase: str, batch: int, seq_len: int, layers: int | None | str = "cfg") -> tuple:
        layers = self.cfg.layers if layers == "cfg" else layers
        key = (phase, batch, seq_len, layers)
        if key not in self._traces:
            from sim.systems.decode import split_layer
            from sim.trace.tracer import capture

            tr = capture(self.model, phase=phase, batch=batch, seq_len=seq_len, layers=layers, tp=self.tp,
                         **self.system.trace_precision(phase, self.model))
            self._traces[key] = split_layer(tr) + (tr,)
        return self._traces[key]

    def _decode_ops(self, batch: int) -> tuple:
        return self._ops("decode", batch, 128)

    # ------------------------------------------------------------------ NPU simulations
    def _npu_run(self, ops: list[Op], share: float = 1.0) -> tuple[float, float]:
        """(seconds, DRAM bytes) of ``ops`` one after another on the NPU."""
        from sim.systems.decode import npu_run

        return npu_run(self.npu, ops, share)

    def _stage_point(self, batch: int, share: float) -> np.ndarray:
        """[qkv s, post s, head s, tail s, layer bytes, head+tail bytes] at an exact batch size."""
        key = (batch, share)
        if key not in self._npu_stage:
            pre, _, post, head, tail, _, _ = self._decode_ops(batch)
            q, qb = self._npu_run(pre, share)
            p, pb = self._npu_run(post, share)
            h, hb = self._npu_run([dataclasses.replace(o, repeat=1) for o in head])
            t, tb = self._npu_run([dataclasses.replace(o, repeat=1) for o in tail])
            self._npu_stage[key] = np.array([q, p, h, t, qb + pb, hb + tb])
            self.stats["npu_stage_points"] += 1
        return self._npu_stage[key]

    def _batch_grid(self, batch: int, point) -> np.ndarray:
        """``point(size)`` at ``batch``: exact to 16 requests, then linear between multiples of
        ``batch_step``."""
        step = self.cfg.batch_step
        if batch <= 16 or step == 1 or batch % step == 0:
            return point(batch)
        lo = max(16, (batch // step) * step)
        hi = ((batch + step - 1) // step) * step
        w = (batch - lo) / (hi - lo)
        return point(lo) * (1 - w) + point(hi) * w

    def npu_stages(self, batch: int, share: float = 1.0) -> np.ndarray:
        """[qkv s, post s, head s, tail s, layer bytes, head+tail bytes] of a (sub-)batch."""
        return self._batch_grid(batch, lambda b: self._stage_point(b, share))

    def npu_attention(self, lengths: np.ndarray) -> tuple[float, float]:
        """(seconds, bytes) of one layer's MHA on the NPU: as ``decode_iteration``, the batch's
        attention as one variable-length op, simulated each iteration (~10 ms: the lengths differ
        from one iteration to the next)."""
        if len(lengths) == 0:
            return 0.0, 0.0
        from sim.systems.decode import ragged_attention_op

        self.stats["npu_attention_runs"] += 1
        return self._npu_run([ragged_attention_op(self.att_template, np.asarray(lengths, np.int64))])

    # ------------------------------------------------------------------ per-length tables
    def _fill(self, lengths: np.ndarray) -> None:
        todo = np.unique(lengths[self._kv_bytes[lengths] < 0])
        if todo.size == 0:
            return
        from sim.systems.decode import attention_ops

        for length, op in zip(todo.tolist(), attention_ops(self.att_template, todo)):
            self._kv_bytes[length] = op.bytes_kv_read
            self._att_flops[length] = op.flops
            self._att_act[length] = op.bytes_activation
        if self.pim:
            from sim.npu.vector import vector_cycles
            from sim.systems.channels import request_pim_cycles

            cyc = request_pim_cycles(self.memory, todo, self.head_dim, self.heads)
            hz = self.npu.freq_mhz * 1e6
            for length in todo.tolist():
                self._pim_cyc[length] = cyc[length]
                self._soft_s[length] = vector_cycles(self.npu, "softmax", self.heads, length).cycles / hz
            self.stats["pim_lengths"] += int(todo.size)

    def pim_cycles(self, lengths: np.ndarray) -> np.ndarray:
        self._fill(lengths)
        return self._pim_cyc[lengths]

    def pim_mha(self, lengths: np.ndarray, channels: np.ndarray) -> tuple[float, float, float]:
        """(MHA s, PIM s, softmax s) of one layer, as :func:`sim.systems.decode.pim_mha_seconds`:
        a channel's time is the sum of its requests' PIM cycles and softmaxes."""
        if len(lengths) == 0:
            return 0.0, 0.0, 0.0
        self._fill(lengths)
        cyc = self._pim_cyc[lengths].astype(np.float64)
        soft = self._soft_s[lengths]
        pim_ch = np.bincount(channels, weights=cyc, minlength=self.n_channels)
        soft_ch = np.bincount(channels, weights=soft, minlength=self.n_channels)
        used = np.bincount(channels, minlength=self.n_channels) > 0
        total = float(np.max((pim_ch / self.mem_hz + soft_ch)[used]))
        units_bound = float(soft.sum()) / self.npu.vector.units
        return max(total, units_bound), float(pim_ch.max()) / self.mem_hz, float(soft.sum())

    # ------------------------------------------------------------------ decode
    def decode(self, lengths: np.ndarray, channels: np.ndarray) -> StepCost:
        if len(lengths) == 0:
            return StepCost()
        if self.is_gpu:
            return self._gpu_decode(lengths)
        n = self.n_layers
        self._fill(lengths)
        pim_bytes = float(self._kv_bytes[lengths].sum()) * n if self.pim else 0.0
        if not self.use_sub or len(lengths) < 2:
            q, p, h, t, lb, htb = self.npu_stages(len(lengths))
            if self.pim:
                mha, pim_s, _ = self.pim_mha(lengths, channels)
                npu_work, att_bytes = 0.0, 0.0
            else:
                mha, att_bytes = self.npu_attention(lengths)
                pim_s, npu_work = 0.0, mha
            total = h + n * (q + mha + p) + t
            return StepCost(total, h + t + n * (q + p + npu_work), pim_s * n, htb + n * (lb + att_bytes), pim_bytes)
        from sim.systems.decode import Stages, split_sub_batches

        first = split_sub_batches(lengths, channels, self._pim_cyc)
        halves = []
        busy = nbytes = pim_s = 0.0
        for mask in (first, ~first):
            size = int(mask.sum())
            alone, shared = self.npu_stages(size), self.npu_stages(size, self.share)
            mha, pim, soft = self.pim_mha(lengths[mask], channels[mask])
            halves.append((Stages(alone[0], mha, alone[1], alone[2], alone[3], pim, soft),
                           Stages(shared[0], mha, shared[1], shared[2], shared[3], pim, soft)))
            busy += n * (alone[0] + alone[1])
            nbytes += n * alone[4]
            pim_s += pim * n
        (a1, s1), (a2, s2) = halves
        total = sub_batch_total(a1, s1, a2, s2, n)
        head_tail = self.npu_stages(int(first.sum()))
        busy += a1.head + a1.tail + a2.head + a2.tail
        nbytes += head_tail[5] + self.npu_stages(int((~first).sum()))[5]
        return StepCost(total, busy, pim_s, nbytes, pim_bytes)

    def _gpu_rest(self, batch: int) -> np.ndarray:
        """[seconds, bytes] of every op but attention of a decode batch on the GPU."""
        if batch not in self._gpu_base:
            tr = self._decode_ops(batch)[6]
            self._gpu_base[batch] = self._sim([o for o in tr.ops if o.op_class != "attention"], tr.meta)
            self.stats["gpu_points"] = self.stats.get("gpu_points", 0) + 1
        return self._gpu_base[batch]

    def _gpu_decode(self, lengths: np.ndarray) -> StepCost:
        """As :func:`sim.gpu.iteration.gpu_decode_iteration`: the traced batch with one
        variable-length attention op carrying every request's own FLOPs and bytes (kernels one
        after another, so the other ops' time is cached per batch size, on the batch grid)."""
        from sim.gpu.model import op_time

        self._fill(lengths)
        rest = self._batch_grid(len(lengths), self._gpu_rest)
        m = max(1, int(round(float(lengths.mean()))) - 1)   # the traced cached length
        op = dataclasses.replace(
            self.att_template, flops=float(self._att_flops[lengths].sum()),
            bytes_activation=float(self._att_act[lengths].sum()), bytes_kv_read=float(self._kv_bytes[lengths].sum()),
            repeat=self.n_layers, extra=dict(self.att_template.extra, batch=len(lengths), kv_len=m + 1, pairs=m + 1,
                                             cached_tokens_read=m, varlen=True, kv_len_max=int(lengths.max())))
        t = float(rest[0]) + op_time(op, self.gpu).time_s * op.repeat
        return StepCost(t, t, 0.0, float(rest[1]) + op.bytes * op.repeat, 0.0)

    # ------------------------------------------------------------------ prefill
    def _sim(self, ops: list[Op], meta: dict | None = None) -> np.ndarray:
        """[seconds, accelerator DRAM bytes] of ``ops`` (repeats counted) on the accelerator."""
        if not ops:
            return np.zeros(2)
        if self.is_gpu:
            from sim.gpu.model import simulate_trace_gpu

            res = simulate_trace_gpu(self.gpu, Trace(meta=dict(meta or {}), ops=ops), system=self.system.name)
            return np.array([res.time_s, float(res.meta["bytes"])])
        return np.array(self._npu_run(ops))

    def _prefill_layer(self, count: int, length: int) -> np.ndarray:
        """[seconds, bytes] of one decoder layer's prefill of ``count`` prompts of ``length``
        tokens (a ``layers=1`` trace: cheap, so exact in the length)."""
        key = (count, length)
        if key not in self._prefill:
            tr = self._ops("prefill", count, length, layers=1)[6]
            self._prefill[key] = self._sim([dataclasses.replace(o, repeat=1) for o in tr.ops], tr.meta)
            self.stats["prefill_points"] += 1
        return self._prefill[key]

    def _prefill_head_tail(self, count: int, length: int) -> np.ndarray:
        """[seconds, bytes] of the ops outside the layers (embeddings, final norm, lm_head) of a
        prefill, from the full trace (none when ``layers`` is given, as in ``capture``)."""
        key = (count, length)
        if key not in self._prefill_ht:
            if self.cfg.layers is not None:
                self._prefill_ht[key] = np.zeros(2)
            else:
                _, _, _, head, tail, _, tr = self._ops("prefill", count, length)
                self._prefill_ht[key] = self._sim([dataclasses.replace(o, repeat=1) for o in head + tail], tr.meta)
        return self._prefill_ht[key]

    def prefill(self, prompts: np.ndarray) -> StepCost:
        """Prefill of the newly admitted prompts: one batch of ``count`` prompts at their mean
        length (rounded). The layers are simulated at that exact shape (counts above 32 rounded to 3
        significant bits, time scaled by the count ratio); the ops outside the layers are
        interpolated between powers of two of the length."""
        if len(prompts) == 0:
            return StepCost()
        count = len(prompts)
        cap = self.cfg.max_seq_len - 1
        length = min(cap, max(1, int(round(float(prompts.mean())))))
        cb = count if count <= 32 else _sig3(count)
        v = self._prefill_layer(cb, length) * self.n_layers
        lo = 1 << (length.bit_length() - 1)
        hi = min(cap, lo * 2)
        if length == lo or hi <= lo:
            v = v + self._prefill_head_tail(cb, lo)
        else:
            w = (length - lo) / (hi - lo)
            v = v + self._prefill_head_tail(cb, lo) * (1 - w) + self._prefill_head_tail(cb, hi) * w
        v = v * (count / cb)
        return StepCost(float(v[0]), float(v[0]), 0.0, float(v[1]), 0.0)


def sub_batch_total(a1, s1, a2, s2, n: int) -> float:
    """NeuPIMs' sub-batch stage table (:func:`sim.systems.decode.sub_batch_stages`): the total."""
    from sim.systems.decode import sub_batch_stages

    return sub_batch_stages(a1, s1, a2, s2, n)["total"]


# ------------------------------------------------------------------------------------ results
def _stats(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0}
    return {"mean": float(np.mean(x)), "p50": float(np.percentile(x, 50)), "p99": float(np.percentile(x, 99))}


@dataclass
class ServeResult:
    system: str
    model: str
    accelerator: str                 # "npu" or "gpu"
    total_s: float
    iteration_s: np.ndarray          # per iteration: prefill + decode
    prefill_s: np.ndarray            # per iteration: its prefill part (0 when nobody was admitted)
    batch_sizes: np.ndarray          # per iteration: decoding + newly admitted requests
    ttft_s: np.ndarray               # per request
    tbt_s: np.ndarray                # every gap between a request's consecutive tokens, pooled
    latency_s: np.ndarray            # per request: last token - arrival
    generated_tokens: int
    prompt_tokens: int
    npu_busy_s: float
    pim_busy_s: float
    npu_bytes: float
    pim_bytes: float
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        acc = self.accelerator
        busy = float(self.iteration_s.sum())
        w = self.iteration_s / busy if busy else np.zeros_like(self.iteration_s)
        return {
            "system": self.system, "model": self.model, "requests": int(len(self.ttft_s)),
            "total_s": self.total_s, "generated_tokens": self.generated_tokens, "prompt_tokens": self.prompt_tokens,
            "throughput_tokens_per_s": self.generated_tokens / self.total_s if self.total_s else 0.0,
            "requests_per_s": len(self.ttft_s) / self.total_s if self.total_s else 0.0,
            "iterations": int(len(self.iteration_s)),
            "iteration_latency_s": _stats(self.iteration_s), "ttft_s": _stats(self.ttft_s),
            "tbt_s": _stats(self.tbt_s), "request_latency_s": _stats(self.latency_s),
            "batch_size": {"mean": float(self.batch_sizes.mean()) if len(self.batch_sizes) else 0.0,
                           "mean_over_time": float((self.batch_sizes * w).sum()),
                           "max": int(self.batch_sizes.max()) if len(self.batch_sizes) else 0},
            "prefill_share": float(self.prefill_s.sum()) / busy if busy else 0.0,
            "utilization": {acc: self.npu_busy_s / self.total_s if self.total_s else 0.0,
                            "pim": self.pim_busy_s / self.total_s if self.total_s else 0.0},
            "memory_traffic": {f"{acc}_bytes": self.npu_bytes, "pim_bytes": self.pim_bytes,
                               f"{acc}_bytes_per_s": self.npu_bytes / self.total_s if self.total_s else 0.0,
                               "pim_bytes_per_s": self.pim_bytes / self.total_s if self.total_s else 0.0},
            "meta": self.meta,
        }

    def summary_lines(self) -> list[str]:
        j = self.to_json()
        acc = self.accelerator
        ms = lambda d: f"{d['mean'] * 1e3:.2f} / {d['p50'] * 1e3:.2f} / {d['p99'] * 1e3:.2f} ms"  # noqa: E731
        return [
            f"{self.system}: {self.model}, {j['requests']} requests ({self.meta.get('requests', '')})",
            f"  total {self.total_s:.3f} s, {j['iterations']:,} iterations, {j['generated_tokens']:,} tokens: "
            f"{j['throughput_tokens_per_s']:,.0f} tokens/s, {j['requests_per_s']:.2f} requests/s",
            f"  iteration latency mean/p50/p99 {ms(j['iteration_latency_s'])}",
            f"  TTFT mean/p50/p99 {j['ttft_s']['mean']:.3f} / {j['ttft_s']['p50']:.3f} / {j['ttft_s']['p99']:.3f} s",
            f"  TBT mean/p50/p99 {ms(j['tbt_s'])}",
            f"  batch mean {j['batch_size']['mean']:.1f} (over time {j['batch_size']['mean_over_time']:.1f}), "
            f"max {j['batch_size']['max']}; prefill share {j['prefill_share']:.1%}",
            f"  utilization {acc} {j['utilization'][acc]:.1%}, PIM {j['utilization']['pim']:.1%}; traffic "
            f"{acc} {j['memory_traffic'][f'{acc}_bytes_per_s'] / 1e9:.0f} GB/s, "
            f"PIM {j['memory_traffic']['pim_bytes_per_s'] / 1e9:.0f} GB/s",
        ]


# ------------------------------------------------------------------------------------ the loop
def _check_cost_model(cfg: ServeConfig, cost: CostModel) -> None:
    c = cost.cfg
    same = (c.system.name == cfg.system.name and c.model == cfg.model and c.tp == cfg.tp and c.layers == cfg.layers
            and c.max_seq_len >= cfg.max_seq_len and c.gpu == cfg.gpu and c.batch_step == cfg.batch_step
            and cost.use_sub == ((cfg.system.sub_batch if cfg.sub_batch is None else cfg.sub_batch)
                                 and cfg.system.pim is not None))
    if not same:
        raise LlmsimError("cost model: built for another system, model, tp, layer count or sub-batch setting")


def serve(cfg: ServeConfig, cost: CostModel | None = None) -> ServeResult:
    """Run the request stream of ``cfg`` to completion (see the module doc)."""
    import time

    cfg.validate()
    wall = time.perf_counter()
    reqs = make_requests(cfg)
    cm = cost if cost is not None else CostModel(cfg)
    _check_cost_model(cfg, cm)
    n = reqs.size
    gen = np.zeros(n, np.int64)
    chan = np.zeros(n, np.int64)
    ttft = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    last_tok = np.zeros(n)
    tbt: list[float] = []
    it_s: list[float] = []
    pre_s: list[float] = []
    sizes: list[int] = []
    running: list[int] = []       # requests that have their first token
    nxt = 0
    t = 0.0
    rr = 0
    busy = pim_busy = npu_bytes = pim_bytes = 0.0
    policy = cfg.system.channel_assignment
    while nxt < n or running:
        if not running and nxt < n and reqs.arrival[nxt] > t:
            t = float(reqs.arrival[nxt])           # idle until the next arrival
        new: list[int] = []
        while nxt < n and reqs.arrival[nxt] <= t and len(running) + len(new) < cfg.max_batch:
            new.append(nxt)
            nxt += 1
        if cm.pim and new:               # pin each new request's KV cache to a channel
            if policy == "greedy":
                load = np.zeros(cm.n_channels)
                if running:
                    idx = np.array(running)
                    np.add.at(load, chan[idx], cm.pim_cycles(reqs.input[idx] + gen[idx]).astype(np.float64))
                for r in new:
                    c = int(np.argmin(load))
                    chan[r] = c
                    load[c] += float(cm.pim_cycles(np.array([reqs.input[r] + 1]))[0])
            else:
                for r in new:
                    chan[r] = rr % cm.n_channels
                    rr += 1
        pre = cm.prefill(reqs.input[new]) if new else StepCost()
        if running:
            idx = np.array(running)
            dec = cm.decode(reqs.input[idx] + gen[idx], chan[idx])
        else:
            dec = StepCost()
        step = pre.time_s + dec.time_s
        t += step
        it_s.append(step)
        pre_s.append(pre.time_s)
        sizes.append(len(running) + len(new))
        busy += pre.npu_busy_s + dec.npu_busy_s
        pim_busy += dec.pim_busy_s
        npu_bytes += pre.npu_bytes + dec.npu_bytes
        pim_bytes += dec.pim_bytes
        still: list[int] = []
        for r in running:                # one more token each
            gen[r] += 1
            tbt.append(t - last_tok[r])
            last_tok[r] = t
            if gen[r] >= reqs.output[r]:
                latency[r] = t - reqs.arrival[r]
            else:
                still.append(r)
        for r in new:                    # the prefill's first token
            gen[r] = 1
            ttft[r] = t - reqs.arrival[r]
            last_tok[r] = t
            if reqs.output[r] <= 1:
                latency[r] = t - reqs.arrival[r]
            else:
                still.append(r)
        running = still
    acc = "gpu" if cm.is_gpu else "npu"
    meta = {"requests": reqs.source, "max_batch": cfg.max_batch, "max_seq_len": cfg.max_seq_len, "tp": cfg.tp,
            "layers": cm.n_layers, "sub_batch": bool(cm.use_sub), "cached": dict(cm.stats),
            "assumptions": "prefill then decode in each iteration, no overlap; prefill at the new prompts' mean "
                           "length; a request decodes from the iteration after its prefill; channels pinned at "
                           "admission; one device (one tensor-parallel shard)",
            "wall_s": time.perf_counter() - wall}
    return ServeResult(cfg.system.name, cfg.model, acc, t, np.array(it_s), np.array(pre_s), np.array(sizes, np.int64),
                       ttft, np.array(tbt), latency, int(gen.sum()), int(reqs.input.sum()), busy, pim_busy,
                       npu_bytes, pim_bytes, meta)


def check_memo(cfg: ServeConfig, lengths: np.ndarray, cost: CostModel | None = None) -> dict[str, float]:
    """Relative errors of the memoised costs against the direct models on one batch: ``pim_mha``
    and ``pim_part`` (against :func:`sim.systems.decode.pim_mha_seconds`, PIM systems) and
    ``iteration`` (against ``decode_iteration`` / ``gpu_decode_iteration``, the same channels)."""
    from sim.systems.channels import assign_channels
    from sim.systems.requests import Batch

    cm = cost if cost is not None else CostModel(cfg)
    lengths = np.asarray(lengths, np.int64)
    out: dict[str, float] = {}
    channels = np.zeros(len(lengths), np.int64)
    if cm.pim:
        from sim.systems.decode import pim_mha_seconds

        channels = assign_channels(cfg.system.channel_assignment, lengths, cm.n_channels, cm.memory, cm.head_dim,
                                   cm.heads)
        direct, pim_direct, _ = pim_mha_seconds(cfg.system, cm.att_template, lengths, channels)
        memo, pim_memo, _ = cm.pim_mha(lengths, channels)
        out["pim_mha"] = memo / direct - 1
        out["pim_part"] = pim_memo / pim_direct - 1
    memo_it = cm.decode(lengths, channels).time_s
    batch = Batch(lengths, channels if cm.pim else None, "check_memo")
    if cm.is_gpu:
        from sim.gpu.iteration import gpu_decode_iteration

        direct_it = gpu_decode_iteration(cfg.system, cfg.gpu or cfg.system.gpu, cfg.model, batch, tp=cfg.tp,
                                         layers=cfg.layers).time_s
    else:
        from sim.systems.decode import decode_iteration

        direct_it = decode_iteration(cfg.system, cfg.model, batch, tp=cfg.tp, layers=cfg.layers,
                                     sub_batch=bool(cm.use_sub)).time_s
    out["iteration"] = memo_it / direct_it - 1
    return out
