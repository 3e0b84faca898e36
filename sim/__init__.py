"""llmsim: a hardware-accelerator simulator and co-design framework for LLM inference.

Importing ``sim`` is cheap on purpose: torch, transformers and numba load only inside the
subpackages that need them (``sim.trace`` capture, later the simulators).
"""

__version__ = "0.1.0"
