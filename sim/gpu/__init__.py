"""GPU device model (``gpu-only``): roofline with measured ceilings, per-kernel overhead, tile
shapes, wave quantization; constants fitted by :mod:`sim.gpu.fit`."""

from sim.gpu.model import GpuOpTime, GpuSimResult, gemm_op, op_time, roofline_time, simulate_trace_gpu

__all__ = ["GpuOpTime", "GpuSimResult", "gemm_op", "op_time", "roofline_time", "simulate_trace_gpu"]
