"""Whole-model performance report of the accelerator layers (timing simulator figures).

Latency counts the accelerator layers only, run one after the other (each layer's program ends
with FINISH); host-side work (fp32 first/last layers, pooling, residual adds, code conversion)
is not included and is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sim.timing import simulate_program


@dataclass(frozen=True)
class LayerRow:
    name: str
    a_bits: int
    w_bits: int
    macs: int
    cycles: int
    utilisation: float
    dram_bytes: int
    gemm_cycles: int
    alu_cycles: int
    tiles: int


@dataclass
class ModelReport:
    config_name: str
    clock_mhz: float
    batch: int  # images per run (the module's batch dimension)
    layers: list = field(default_factory=list)

    @classmethod
    def from_programs(cls, programs, config):
        rows = []
        for program in programs:
            t = simulate_program(program)
            g = program.geometry
            tiles = sum(1 for i in program.insns if getattr(i, "reset", 0))
            rows.append(LayerRow(program.name, g.a_bits, g.w_bits, t.macs, t.cycles, t.utilisation, t.dram_bytes,
                                 t.gemm_cycles, t.alu_cycles, tiles))
        batch = programs[0].geometry.n if programs else 1
        return cls(config.name, config.clock_mhz, batch, rows)

    @classmethod
    def from_segments(cls, segments, config):
        return cls.from_programs([node.program for seg in segments for node in seg.nodes], config)

    @property
    def cycles(self):
        return sum(r.cycles for r in self.layers)

    @property
    def latency_ms(self):
        return self.cycles / (self.clock_mhz * 1e3)

    @property
    def fps(self):
        return self.batch * 1e3 / self.latency_ms if self.latency_ms else float("inf")

    @property
    def macs(self):
        return sum(r.macs for r in self.layers)

    @property
    def gops(self):
        """Achieved GOP/s (2 ops per MAC) over the accelerator layers."""
        return 2 * self.macs / (self.latency_ms * 1e-3) / 1e9 if self.latency_ms else 0.0

    @property
    def dram_bytes(self):
        return sum(r.dram_bytes for r in self.layers)

    def as_dict(self):
        return {"config": self.config_name, "clock_mhz": self.clock_mhz, "batch": self.batch, "cycles": self.cycles,
                "latency_ms": self.latency_ms, "fps": self.fps, "gops": self.gops, "dram_bytes": self.dram_bytes,
                "layers": [vars(r) for r in self.layers]}

    def table(self):
        lines = [f"{'layer':<28} {'a/w':>5} {'MMAC':>8} {'cycles':>10} {'util':>6} {'DRAM kB':>9}"]
        for r in self.layers:
            lines.append(f"{r.name[:28]:<28} {r.a_bits}/{r.w_bits:<3} {r.macs / 1e6:8.2f} {r.cycles:10d} "
                         f"{r.utilisation:6.1%} {r.dram_bytes / 1024:9.1f}")
        lines.append(f"total on {self.config_name} @ {self.clock_mhz:g} MHz: {self.cycles} cycles, "
                     f"{self.latency_ms:.3f} ms, {self.fps:.1f} fps (accelerator layers only), "
                     f"{self.gops:.2f} GOP/s, {self.dram_bytes / 1024:.0f} kB DRAM")
        return "\n".join(lines)
