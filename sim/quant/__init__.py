"""Weight number formats and per-group quantization (BitMoD, ANT, OliVe, OCP MX baselines).

``sim.quant.formats``: every data type as a sorted grid of values, and the ``(format, bits)``
pairs. ``sim.quant.quantize``: ``quantize(w, format, bits, group_size)``, the per-group symmetric
quantization with the per-group data-type search. ``sim.quant.api.quantize_cli``: the work behind
``llmsim quantize``. See docs/quant.md.
"""


def quantize_cli(*args, **kwargs):
    """See :func:`sim.quant.api.quantize_cli` (imported on first use)."""
    from sim.quant.api import quantize_cli as f

    return f(*args, **kwargs)
