"""FPGA parts a core can target, with their capacity (what ``HwConfig.part`` names).

Capacities are the vendors' published device figures:

* ``xc7z020`` (Pynq-Z1): Xilinx DS190, Zynq-7000 SoC overview, table 3 (Z-7020): 53,200 LUTs,
  106,400 flip-flops, 140 36 Kb block RAMs, 220 DSP48E1 slices.
* ``xcvu9p`` (VCU118 / AWS F1): Xilinx DS890, UltraScale architecture overview, Virtex
  UltraScale+ table: 1,182,240 LUTs, 2,364,480 flip-flops, 2,160 36 Kb block RAMs, 6,840 DSP48E2
  (its 960 UltraRAMs are not counted: the resource model maps every buffer to BRAM36).
* ``ice40hx8k`` (iCE40-HX8K breakout board): Lattice iCE40 LP/HX family data sheet
  (FPGA-DS-02029), table 1.1: 7,680 logic cells (one LUT4 + one flip-flop each), 32 4 Kb
  embedded block RAMs (sysMEM EBR), no DSP.
* ``ice40up5k`` (iCEBreaker, UPduino): Lattice iCE40 UltraPlus family data sheet
  (FPGA-DS-02008), table 1.1: 5,280 logic cells, 30 4 Kb EBRs, 8 sysDSP (16 x 16 multiply-
  accumulate) blocks, 4 x 256 Kb single-port RAM (not counted here).

``bram_kbits`` is the size of one block RAM of the family. ``memory_blocks`` maps one memory
(width x depth) onto the family's block RAM aspect ratios (``BLOCK_RAM_SHAPES``) the way yosys'
``memory_libmap`` does for these cores: the fewest blocks over the shapes, a Xilinx RAMB18 half a
block, and memories at most ``LUTRAM_MAX_DEPTH`` deep in distributed (LUT) RAM instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm_qnn.errors import HwConfigError

RESOURCES = ("lut", "ff", "bram", "dsp")

# (blocks per primitive, ((width bits, depth), ...)) per family: Xilinx RAMB36 in simple dual port
# (up to 72 bits wide) and its RAMB18 half (7 series UG473, UltraScale UG573); iCE40 SB_RAM40_4K
# (Lattice TN1250, 256 x 16 .. 2048 x 2)
BLOCK_RAM_SHAPES = {
    "xilinx": ((1.0, ((72, 512), (36, 1024), (18, 2048), (9, 4096), (4, 8192), (2, 16384), (1, 32768))),
               (0.5, ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)))),
    "ice40": ((1.0, ((16, 256), (8, 512), (4, 1024), (2, 2048))),),
}
# memories this shallow go to distributed RAM (one Xilinx LUT6 = 64 x 1 bit); iCE40 has none
LUTRAM_MAX_DEPTH = {"xilinx": 64, "ice40": 0}


@dataclass(frozen=True)
class Part:
    """One FPGA part: family (synthesis flow), board, and capacity per resource."""

    name: str
    family: str  # "xilinx" (yosys synth_xilinx) or "ice40" (synth_ice40)
    board: str
    lut: int
    ff: int
    bram: int
    bram_kbits: int
    dsp: int

    def capacity(self):
        """``{resource: count}`` for the resources the fit check compares."""
        return {r: getattr(self, r) for r in RESOURCES}


PARTS = {p.name: p for p in (
    Part("xc7z020", "xilinx", "Pynq-Z1 (Zynq-7020)", lut=53_200, ff=106_400, bram=140, bram_kbits=36, dsp=220),
    Part("xcvu9p", "xilinx", "VCU118 / AWS F1 (Virtex UltraScale+ VU9P)", lut=1_182_240, ff=2_364_480, bram=2_160,
         bram_kbits=36, dsp=6_840),
    Part("ice40hx8k", "ice40", "iCE40-HX8K breakout", lut=7_680, ff=7_680, bram=32, bram_kbits=4, dsp=0),
    Part("ice40up5k", "ice40", "iCEBreaker / UPduino (iCE40 UltraPlus 5K)", lut=5_280, ff=5_280, bram=30,
         bram_kbits=4, dsp=8),
)}


def memory_blocks(width, depth, family, block_only=False):
    """Block RAMs (in the family's blocks; a RAMB18 counts 0.5) of one ``width`` x ``depth`` memory:
    the fewest over ``BLOCK_RAM_SHAPES``, 0 when ``LUTRAM_MAX_DEPTH`` puts it in distributed RAM
    (unless ``block_only``: the RTL asks for block RAM)."""
    if family not in BLOCK_RAM_SHAPES:
        raise HwConfigError(f"family={family!r} has no block RAM geometry; known: {sorted(BLOCK_RAM_SHAPES)}")
    if width <= 0 or depth <= 0 or (depth <= LUTRAM_MAX_DEPTH[family] and not block_only):
        return 0.0
    return min(cost * math.ceil(width / w) * math.ceil(depth / d)
               for cost, shapes in BLOCK_RAM_SHAPES[family] for w, d in shapes)


def get_part(name):
    """The :class:`Part` called ``name``; ``HwConfigError`` listing the known parts otherwise."""
    if name not in PARTS:
        raise HwConfigError(f"part={name!r} is unknown; known parts: {sorted(PARTS)}")
    return PARTS[name]
