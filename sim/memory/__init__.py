"""Memory system: DRAM standards declared as data, address mapping, timing checker, engines.

``sim.memory.standard`` reads a standard (levels, commands, timing-constraint table) from
``sim/memory/standards/<NAME>.yaml`` and binds it to a preset's numbers (``hw_configs/memory``).
"""
