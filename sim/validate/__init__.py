"""Validation suites: reproduce published or measured numbers and print them side by side."""

SUITES = {
    "h200-linear": "sim.validate.h200_linear",
    "memory": "sim.validate.memory",
    "npu": "sim.validate.npu",
    "gpu": "sim.validate.gpu",
    "neupims": "sim.validate.neupims",
    "bitmod": "sim.validate.bitmod",
}
