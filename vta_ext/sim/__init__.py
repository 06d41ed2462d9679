"""Simulators of the core: ``functional`` (bit-exact results) and ``timing`` (cycles)."""
