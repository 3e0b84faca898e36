"""Composed systems (GPU-only, NPU-only, naive NPU+PIM, NeuPIMs): configs and the decode iteration."""
