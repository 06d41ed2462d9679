"""Whole-core synthesis: ``qnn_core`` (fetch, queues, DMA, buffers, GEMM, ALU) for one ``HwConfig``.

The core is synthesized by yosys with its part's flow (``synth_xilinx -flatten -noiopad`` with
DSPs for Xilinx parts, ``synth_ice40`` for iCE40, ``-dsp`` where the part has DSP blocks; a
Xilinx core with more per-lane decode than one run maps keeps each GEMM column a module of its
own, mapped once, ``flow_of``) and the cell counts become the part's resources:

* ``lut``: LUT cells plus the LUTs of LUT-RAM cells (a RAM64M is four LUTs of a SLICEM); on iCE40 the
  logic cells ``nextpnr-ice40 --pack-only`` packs the netlist into (a flip-flop shares a cell with a LUT4
  only when that LUT drives its D input alone; the LUT4 count stays in the record's cells);
* ``ff``: flip-flops; ``dsp``: DSP48 / SB_MAC16 blocks;
* ``bram``: block RAMs in the part's unit (Xilinx: RAMB36 + RAMB18 / 2, rounded up; iCE40: 4 Kb EBRs).

The buffers are sized to the configured bytes at the core's widest bits (``synthesis_parameters``):
the RTL stores one vector per entry at ``max_a_bits`` / ``max_w_bits``, so the synthesized core
holds exactly ``inp_buff_bytes`` and ``wgt_buff_bytes`` (the compiler may pack narrower codes
deeper; the RTL does not, see ``vta_ext/README.md``). ``record`` writes the figures into
``vta_ext/rtl_fit/whole_core.json``, which ``vta_ext.fit`` reads (a measured core is checked
against its part with these numbers instead of the model's).

``python -m vta_ext.rtl.core_synth PRESET [PRESET ...]`` synthesizes presets and records them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import tempfile
from pathlib import Path

from tvm_qnn.errors import HwConfigError
from vta_ext.config import HwConfig
from vta_ext.fit import MEASURED_PATH, hardware_key
from vta_ext.parts import get_part
from vta_ext.resources import dma_elements
from vta_ext.rtl.bitstream import ice40_logic_cells
from vta_ext.rtl.core_cosim import core_parameters
from vta_ext.rtl.cosim import isa_header
from vta_ext.rtl.synth import SynthesisLimitError, SynthResult, synthesize
from vta_ext.rtl.tools import tool_version

# LUTs of a SLICEM per Xilinx LUT-RAM / shift-register cell
_LUTRAM_LUTS = {"RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1D": 2, "RAM64X1D": 2,
                "RAM128X1D": 4, "RAM256X1S": 4, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "SRL16E": 1,
                "SRLC32E": 1}


def _part_of(cfg, part=None):
    name = part or cfg.part
    if name is None:
        raise HwConfigError(f"config {cfg.name!r} names no part: whole-core synthesis needs part= (vta_ext/parts.py)")
    return get_part(name)


def synthesis_parameters(cfg, part=None):
    """``qnn_core`` parameters of the synthesized core: buffer depths hold the configured bytes at the widest
    bits; ``part`` (default ``cfg.part``) picks whether the ALU's multipliers are built from adders (a part
    without DSP blocks) or left to the tool's DSP mapping. The instruction queues have
    ``cfg.insn_queue_depth`` entries."""
    target = _part_of(cfg, part)
    params = core_parameters(cfg, soft_mul=not target.dsp)
    params["INP_DEPTH"] = cfg.inp_depth(cfg.max_a_bits)
    params["WGT_DEPTH"] = cfg.wgt_depth(cfg.max_w_bits)
    return params


# lanes x 2^b_w of per-lane LUT logic one yosys run maps within its bounds (benchmarks/rtl.py's sweep:
# 64 lanes x 256 levels took 600 s and 6 GB as one flat module)
MAX_LANE_LEVELS = 8192
# widest DMA element (bytes) x DMA beat (bytes): dma_read assembles elements in a register of that
# many bytes with byte-granular shifts of whole beats, so its logic grows with the product. Twice the
# widest one synthesized alone here (dma_read, 544-byte elements from 64-byte beats: 71.6k LUT,
# 279 s and 1.5 GB of yosys; 136-byte elements: 17.4k LUT); the whole-core fit's cores reach 12,800
MAX_DMA_BYTE_LANES = 65_536


def flow_of(part, cfg=None, max_lane_levels=MAX_LANE_LEVELS):
    """The yosys flow (``synth.FLOWS`` key) of ``cfg``'s core on a :class:`~vta_ext.parts.Part`.

    A Xilinx core whose built decode lanes (``block_in x gemm_out_lanes``) hold more than
    ``max_lane_levels`` lanes x levels is mapped one GEMM column at a time (``"xilinx-columns"``);
    one whose single column is already past it, or a one-hot core past it, or whose DMA assembles
    elements past ``MAX_DMA_BYTE_LANES`` raises ``SynthesisLimitError`` (not attempted)."""
    if cfg is not None:
        widest = max(dma_elements(cfg))
        if widest * cfg.dma_bytes_per_cycle > MAX_DMA_BYTE_LANES:
            raise SynthesisLimitError(
                f"not attempted: the DMA assembles {widest:,}-byte elements from {cfg.dma_bytes_per_cycle}-byte "
                f"beats ({widest * cfg.dma_bytes_per_cycle:,} byte lanes > {MAX_DMA_BYTE_LANES:,}, the bound of "
                f"the yosys runs; dma_read's shifters grow with that product)")
    if part.family == "ice40":
        return "ice40-dsp" if part.dsp else "ice40"
    if cfg is None:
        return "xilinx"
    levels = 1 << cfg.max_w_bits
    built = cfg.batch * cfg.block_in * cfg.gemm_out_lane_count * levels
    if built <= max_lane_levels:
        return "xilinx"
    column = cfg.block_in * levels
    if cfg.lut_mode == "decode" and column <= max_lane_levels:
        return "xilinx-columns"
    raise SynthesisLimitError(
        f"not attempted: lanes x 2^b_w = {built:,} > {max_lane_levels:,}"
        + (f" in one GEMM column ({column:,})" if cfg.lut_mode == "decode" else " (one-hot lanes are not split)")
        + " (the yosys bound of one run)")


def part_resources(result: SynthResult, family, logic_cells=None):
    """``{lut, ff, bram, dsp}`` in the part's units from one synthesis' cell counts; on iCE40 ``lut`` is
    ``logic_cells`` (packed LUT4 + flip-flop cells, ``bitstream.ice40_logic_cells``) when given."""
    cells = result.cells
    if family == "ice40":
        return {"lut": result.luts if logic_cells is None else logic_cells, "ff": result.ffs, "bram": result.bram,
                "dsp": result.dsp}
    lutram = sum(n * _LUTRAM_LUTS.get(name, 0) for name, n in cells.items())
    ramb36 = sum(n for name, n in cells.items() if re.fullmatch(r"RAMB36E\d", name))
    ramb18 = sum(n for name, n in cells.items() if re.fullmatch(r"RAMB18E\d", name))
    return {"lut": result.luts + lutram, "ff": result.ffs, "bram": ramb36 + math.ceil(ramb18 / 2),
            "dsp": result.dsp}


def synthesize_core(cfg, part=None, timeout_s=1800.0, mem_mb=4096, max_lane_levels=MAX_LANE_LEVELS):
    """Synthesize ``cfg``'s whole core for ``part`` (default ``cfg.part``; a config the resource model
    refuses for a part is built with ``part=None`` and measured for it here) with ``flow_of``'s flow.
    Returns ``(SynthResult, {lut, ff, bram, dsp})``."""
    target = _part_of(cfg, part)
    flow = flow_of(target, cfg, max_lane_levels)
    params, headers = synthesis_parameters(cfg, target.name), {"isa_fields.vh": isa_header()}
    if target.family != "ice40":
        result = synthesize("qnn_core", params, flow, timeout_s=timeout_s, mem_mb=mem_mb, headers=headers)
        return result, part_resources(result, target.family)
    # an iCE40 cell holds one LUT4 and one flip-flop: the part's capacity is packed cells, not LUT4s
    with tempfile.TemporaryDirectory(prefix="qnn_core_pack_") as tmp:
        netlist = Path(tmp) / "core.json"
        result = synthesize("qnn_core", params, flow, timeout_s=timeout_s, mem_mb=mem_mb, headers=headers,
                            json_out=str(netlist))
        cells = ice40_logic_cells(netlist, target.name, mem_mb=mem_mb)
    return result, part_resources(result, target.family, logic_cells=cells)


def record(cfg, result: SynthResult, resources, part=None, path=MEASURED_PATH):
    """Add (or replace) ``cfg``'s measured whole core on ``part`` in ``path`` (read by ``vta_ext.fit``)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("format", "tvm-qnn-whole-core/1")
    data["tools"] = {"yosys": tool_version("yosys")}
    cores = data.setdefault("cores", {})
    target = _part_of(cfg, part)
    cores[cfg.name] = {
        "hardware": dict(hardware_key(cfg), part=target.name), "measured": resources, "capacity": target.capacity(),
        "flow": result.flow, "parameters": result.params, "wall_s": round(result.wall_s, 1),
        "date": datetime.date.today().isoformat(),
        "cells": {k: v for k, v in sorted(result.cells.items())},
    }
    data["cores"] = dict(sorted(cores.items()))
    path.write_text(json.dumps(data, indent=1) + "\n")
    return cores[cfg.name]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="preset names (vta_ext/configs/)")
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    parser.add_argument("--mem-mb", type=int, default=4096)
    args = parser.parse_args(argv)
    for name in args.presets:
        cfg = HwConfig.preset(name)
        result, resources = synthesize_core(cfg, timeout_s=args.timeout_s, mem_mb=args.mem_mb)
        entry = record(cfg, result, resources)
        print(name, json.dumps({"measured": resources, "capacity": entry["capacity"], "wall_s": entry["wall_s"]}))


if __name__ == "__main__":
    main()
