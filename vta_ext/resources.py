"""Resource (LUT/FF/BRAM/DSP) and power model of a configured core.

What the hardware does, term by term (``lanes = batch*block_in*block_out``, ``outputs =
batch*block_out``, ``w = max_w_bits``, ``L = 2^w`` LUT levels):

Each weight storage mode (``lut_mode``) has only the terms its hardware has (``LUT_MODE_TERMS``):

* ``lut_mode = "decode"``: every lane holds an L:1 multiplexer of int8 levels,
  ``lut_per_lane_level_decode * lanes * L`` (the probe's lanes x 2^b_w growth), and multiplies the
  decoded int8 level bit-serially: AND with one activation bit + adder-tree share,
  ``lut_per_lane_wbit * lanes * 8`` (linear in lanes x operand bits: the issue's synthesis probe,
  R^2 = 0.999).
* ``lut_mode = "onehot"``: every lane compares its index with the L levels and feeds one popcount
  per level, ``lut_per_lane_level_onehot * lanes * L``, plus the level-sum accumulators per output
  ``lut_per_output_level * outputs * L`` (and their registers). There is no per-lane multiply, so
  no lanes x b_w term: the RTL fit with it mis-predicted a held-out 32x16 b_w=3 core by 14%,
  without it every held-out one-hot core is within 5% (``vta_ext/rtl/resource_fit.py``).
* an array folded over its outputs (``gemm_out_lanes`` < ``block_out``) builds the GEMM terms for
  ``lanes / gemm_passes`` lanes and ``outputs / gemm_passes`` output sums (the per-pass selects
  and the held entry are not modelled; the measured whole core has them).
* ALU (requant multiply, rounding shift, clamp, LUT apply multiplier) per ALU lane
  (``HwConfig.alu_lane_count``: one per output unless ``alu_lanes`` says fewer):
  ``lut_per_alu_lane * alu_lanes`` LUTs, ``dsp_per_alu_lane * alu_lanes`` DSPs (32x32 on 18x25).
* buffer datapath: ``lut_per_datapath_bit`` per bit of the words the core moves between DRAM,
  buffers and units (``datapath_bits``: an input vector, a weight block, an accumulator vector and
  a parameter row at the widest bits);
* DMA element assembly: ``lut_per_dma_byte_lane`` per byte lane (``dma_byte_lanes``: each beat
  engine's widest element plus one beat, times the beat bytes; ``dma_read``'s shifters grow with
  that product, 17.4k to 71.6k LUT from 136- to 544-byte elements at 64-byte beats), and
  ``ff_per_dma_buffer_bit`` per bit of the engines' assembly registers (``dma_buffer_bits``).
* one-hot accumulators: the GEMM reads and writes a level group (``L`` entries at a runtime
  stride) per clock, so yosys builds them from flip-flops, not block RAM: ``ff_per_onehot_acc_bit``
  per bit of the accumulator buffer and ``lut_per_onehot_acc_bit_level`` per bit and level.
* parameter-row bypass: parameter rows deeper than distributed RAM takes go to block RAM, where
  yosys emulates a read of the row written in the same clock with a register of one row:
  ``ff_per_prm_bypass_bit`` per row bit (structural, 1; not fitted).
* parameter-row register: with ``HwConfig.prm_row_beats`` the compute DMA assembles a row beat by
  beat in a register of the row (no shifter): ``ff_per_prm_row_bit`` per row bit (structural, 1;
  not fitted: the fitted ``ff_per_dma_buffer_bit`` also pays for the shifters' registers and put
  ``ultrascale_plus`` at 50,378 FF against 43,169 measured, 44,128 with this term).
* control, fetch, DMA, queues: ``lut_base`` / ``ff_base``.
* DSPs: ``dsp_per_alu_lane`` per ALU lane, ``dsp_per_lut_apply_lane`` per int8 x int32 LUT-apply
  multiplier (one per output element, unless decode mode runs LUT_APPLY on fewer ALU lanes),
  ``dsp_per_address_width`` per bit width that is not a power of two, up to the widest load
  (``max(a, w)`` bits) and again up to the widest store (``a`` bits): the DMA offsets multiply an
  index by it; ``dsp_base`` for the DMA length multipliers.
* block RAM: structural, not fitted. ``memories`` lists the RAMs ``qnn_compute``/``qnn_core``
  declare (width x depth, one copy per read port), and ``vta_ext.parts.memory_blocks`` maps each to
  the fewest blocks of the part's family (Xilinx RAMB36, RAMB18 as half; iCE40 4 Kb EBR),
  distributed RAM for Xilinx memories at most 64 deep.
* power: ``static_power_w`` + clock x (per-kLUT, per-kFF, per-BRAM, per-DSP dynamic mW/MHz).

Coefficients: ``HwConfig.resources`` (defaults in ``vta_ext/config.py``), replaced by the fits
written from yosys when their files exist (key ``"coefficients"``: any subset of
``ResourceCoefficients`` fields), later over earlier:

1. ``vta_ext/rtl_fit/resources_fit.json``: the GEMM unit and ALU lanes synthesized alone
   (``vta_ext.rtl.resource_fit``, ``benchmarks/rtl.py``);
2. ``vta_ext/rtl_fit/core_fit.json``: whole cores (``vta_ext.rtl.core_fit``,
   ``benchmarks/fpga_core_fit.py``), which also sets the control and datapath terms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from tvm_qnn.errors import HwConfigError

from .config import ResourceCoefficients
from .isa import INSN_BITS, Uop
from .parts import LUTRAM_MAX_DEPTH, memory_blocks

FIT_PATH = Path(__file__).resolve().parent / "rtl_fit" / "resources_fit.json"
CORE_FIT_PATH = Path(__file__).resolve().parent / "rtl_fit" / "core_fit.json"

# Published reference points the report prints next to our estimates.
PUBLISHED = {
    # The streaming multi-FPGA paper: whole-network resources and latency.
    "streaming ResNet-18": {"luts": 596_081, "ffs": 1_175_373, "latency_ms": 16.1},
    "streaming AlexNet": {"luts": 343_295, "ffs": None, "latency_ms": 13.7},
    # Pynq-Z1's Zynq-7020 device capacity (Xilinx DS190), the budget VTA's default core fits in;
    # VTA's default (1x16x16 int8 GEMM at 100 MHz) peaks at 2*256*100e6 = 51.2 GOP/s.
    "Zynq-7020 (Pynq-Z1) capacity": {"luts": 53_200, "ffs": 106_400, "bram36": 140, "dsps": 220},
}


@dataclass(frozen=True)
class ResourceEstimate:
    luts: float
    ffs: float
    bram36: int
    dsps: float
    power_w: float
    breakdown: dict  # term -> LUTs

    def as_dict(self):
        return {"luts": round(self.luts), "ffs": round(self.ffs), "bram36": self.bram36, "dsps": round(self.dsps),
                "power_w": round(self.power_w, 3), "breakdown": {k: round(v) for k, v in self.breakdown.items()}}


DECODED_LEVEL_BITS = 8  # decode mode multiplies the int8 level the lane's multiplexer selects


def _decode_terms(c, lanes, outputs, levels):
    luts = {"bit-serial datapath": c.lut_per_lane_wbit * lanes * DECODED_LEVEL_BITS,
            "per-lane LUT decode": c.lut_per_lane_level_decode * lanes * levels}
    ffs = c.ff_per_lane_wbit * lanes * DECODED_LEVEL_BITS + c.ff_per_lane_level * lanes * levels
    return luts, ffs


def _onehot_terms(c, lanes, outputs, levels):
    luts = {"one-hot level adders": c.lut_per_lane_level_onehot * lanes * levels,
            "level-sum accumulators": c.lut_per_output_level * outputs * levels}
    ffs = c.ff_per_lane_level * lanes * levels + c.ff_per_output_level * outputs * levels
    return luts, ffs


# weight storage mode -> the GEMM unit's LUT terms and FFs (what that mode's RTL instantiates)
LUT_MODE_TERMS = {"decode": _decode_terms, "onehot": _onehot_terms}


def gemm_terms(coefficients, lut_mode, lanes, outputs, w_bits):
    """``({term: LUTs}, FFs)`` of a GEMM unit of ``lanes`` lanes and ``outputs`` outputs storing
    ``w_bits``-bit LUT weights in ``lut_mode`` (module doc); unknown mode -> ``HwConfigError``."""
    if lut_mode not in LUT_MODE_TERMS:
        raise HwConfigError(f"lut_mode={lut_mode!r}; expected one of {sorted(LUT_MODE_TERMS)}")
    return LUT_MODE_TERMS[lut_mode](coefficients, lanes, outputs, 1 << w_bits)


def read_fit_file(path=FIT_PATH):
    """The calibration JSON (written by ``vta_ext.rtl.resource_fit``) as a dict, or None when absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HwConfigError(f"{path}: resource fit is not valid JSON: {err}") from None


def load_fit(path=FIT_PATH):
    """Fitted coefficients (dict) from the calibration JSON, or None when it does not exist."""
    data = read_fit_file(path)
    if data is None:
        return None
    coefficients = data.get("coefficients") if isinstance(data, dict) else None
    if not isinstance(coefficients, dict):
        raise HwConfigError(f"{path}: expected an object with a 'coefficients' mapping")
    known = {f.name for f in fields(ResourceCoefficients)}
    return {k: v for k, v in coefficients.items() if k in known}


def coefficients_for(config, fit_path=FIT_PATH, core_fit_path=CORE_FIT_PATH):
    """The config's coefficients with the fitted ones (if any) on top, the whole-core fit last;
    returns (coefficients, source)."""
    fits = [(path, load_fit(path)) for path in (fit_path, core_fit_path) if path is not None]
    fits = [(path, fit) for path, fit in fits if fit]
    if not fits:
        return config.resources, "defaults (vta_ext/config.py ResourceCoefficients)"
    merged = {f.name: getattr(config.resources, f.name) for f in fields(ResourceCoefficients)}
    for _, fit in fits:
        merged.update(fit)
    return ResourceCoefficients(**merged), "fit " + " + ".join(str(path) for path, _ in fits)


def datapath_bits(config):
    """Bits of the words the core moves: an input vector, a weight block, an accumulator vector and a
    parameter row, at the core's widest bits."""
    return 8 * (config.inp_vector_bytes(config.max_a_bits) + config.wgt_block_bytes(config.max_w_bits)
                + config.acc_vector_bytes + config.prm_entry_bytes)


@dataclass(frozen=True)
class Memory:
    """One RAM of the RTL core: ``copies`` of ``width`` x ``depth`` (a block RAM reads one word per
    clock, so a memory read at two ports is built twice); ``block_only``: the RTL asks for block RAM."""

    name: str
    width: int
    depth: int
    copies: int = 1
    block_only: bool = False


def _address_bits(depth):
    return max(1, (depth - 1).bit_length())  # Verilog's $clog2, at least one bit


def memories(config, lut_mode=None):
    """The RAMs of ``config``'s whole core as ``qnn_compute`` and ``qnn_core`` declare them, at the
    synthesized depths (``vta_ext.rtl.core_synth.synthesis_parameters``: the configured bytes at the
    widest bits). The one-hot accumulators are read a level group per clock, which yosys builds from
    flip-flops, so they are no RAM here; the lane-serial datapath keeps one output lane per word."""
    mode = lut_mode or config.lut_mode
    inp_depth, wgt_depth = config.inp_depth(config.max_a_bits), config.wgt_depth(config.max_w_bits)
    acc_depth, prm_depth = config.acc_depth, config.prm_depth
    acc_aw, prm_aw = _address_bits(acc_depth), _address_bits(prm_depth)
    dst_w, src_w, wgt_w = (bits for _, bits, _ in Uop.FIELDS)
    uop_width = (min(acc_aw, dst_w) + min(max(_address_bits(inp_depth), acc_aw), src_w)
                 + min(max(_address_bits(wgt_depth), prm_aw), wgt_w))  # the micro-op bits the buffers address
    acc_width = 32 * config.batch * config.block_out
    prm_width = config.block_out * (8 * config.lut_entries + 32 + 32 + 8)
    rams = [Memory("inp", config.batch * config.block_in * config.max_a_bits, inp_depth),
            Memory("wgt", config.block_out * config.block_in * config.max_w_bits, wgt_depth),
            Memory("uop", uop_width, config.uop_depth)]
    if config.insn_queue_depth > 1:
        rams += [Memory(f"{q} queue", INSN_BITS, config.insn_queue_depth) for q in ("load", "compute", "store")]
    if config.lane_serial:
        lanes = prm_depth * config.block_out
        rams += [Memory("acc lanes", 32, acc_depth * config.block_out, copies=2),
                 Memory("acc store copy", acc_width, acc_depth),
                 *(Memory(f"{name} lanes", width, lanes, block_only=True)
                   for name, width in (("lut", 8 * config.lut_entries), ("bias", 32), ("mult", 32), ("shift", 8)))]
        return rams
    if mode != "onehot":
        rams += [Memory("acc", acc_width, acc_depth, copies=2), Memory("acc store copy", acc_width, acc_depth)]
    return rams + [Memory("prm", prm_width, prm_depth)]


def block_rams(config, family="xilinx", lut_mode=None, rams=None):
    """Block RAMs of ``config``'s core (or of ``rams``, its ``memories``) in ``family``'s blocks
    (Xilinx: BRAM36, two RAMB18 one)."""
    rams = memories(config, lut_mode) if rams is None else rams
    return math.ceil(sum(m.copies * memory_blocks(m.width, m.depth, family, m.block_only) for m in rams))


def _non_power_of_two_widths(bits):
    return sum(1 for b in range(1, bits + 1) if b & (b - 1))


def dsp_terms(config, c, lut_mode=None):
    """``{term: DSPs}`` of ``config``'s core (module doc)."""
    serial_lut = config.lane_serial or ((lut_mode or config.lut_mode) == "decode"
                                        and config.alu_lane_count < config.batch * config.block_out)
    apply_lanes = 0 if serial_lut else config.batch * config.block_out
    widths = (_non_power_of_two_widths(max(config.max_a_bits, config.max_w_bits))
              + _non_power_of_two_widths(config.max_a_bits))
    return {"alu": c.dsp_per_alu_lane * config.alu_lane_count, "lut apply": c.dsp_per_lut_apply_lane * apply_lanes,
            "dma offsets": c.dsp_per_address_width * widths, "dma lengths": c.dsp_base}


def dma_elements(config):
    """The widest element (bytes) each DMA engine of ``qnn_core`` assembles through its byte shifter:
    fetch, load, compute, store (with ``prm_row_beats`` the compute engine assembles parameter rows beat by
    beat in a register of their own instead, charged by ``ff_per_prm_row_bit``)."""
    outputs = config.batch * config.block_out
    return (INSN_BITS // 8,
            max(config.inp_vector_bytes(config.max_a_bits), config.wgt_block_bytes(config.max_w_bits)),
            max(4 * outputs, 0 if config.prm_row_beats else config.prm_entry_bytes, 8),
            4 * outputs)


def dma_byte_lanes(config):
    """Byte lanes of the DMA engines' element assembly, each engine as wide as its widest element:
    (element + beat) x beat bytes summed (a one-byte port assembles byte by byte: one lane a byte)."""
    beat = config.dma_bytes_per_cycle
    return sum((e + beat) * beat for e in dma_elements(config))


def dma_buffer_bits(config):
    """Bits of the DMA engines' shifter assembly registers: an element plus one beat per engine (with
    ``prm_row_beats`` the parameter-row register is counted apart, ``ff_per_prm_row_bit``)."""
    return 8 * sum(e + config.dma_bytes_per_cycle for e in dma_elements(config))


def estimate(config, a_bits=None, w_bits=None, coefficients=None, lut_mode=None):
    """Resources and power of ``config`` built for ``a_bits``/``w_bits`` (default: its maxima)."""
    c = coefficients or coefficients_for(config)[0]
    w = w_bits or config.max_w_bits
    mode = lut_mode or config.lut_mode
    # a folded array (gemm_out_lanes < block_out) builds a gemm_passes-th of the lanes and output sums
    folded = config.gemm_passes
    lanes, outputs = config.lanes // folded, config.batch * config.block_out // folded
    gemm_luts, gemm_ffs = gemm_terms(c, mode, lanes, outputs, w)
    alu_lanes = config.alu_lane_count  # the requant ALU is built per physical lane, not per output
    width = datapath_bits(config)
    terms = {"control": c.lut_base, **gemm_luts, "alu": c.lut_per_alu_lane * alu_lanes,
             "buffer datapath": c.lut_per_datapath_bit * width,
             "dma assembly": c.lut_per_dma_byte_lane * dma_byte_lanes(config)}
    ffs = c.ff_base + gemm_ffs + c.ff_per_alu_lane * alu_lanes + c.ff_per_dma_buffer_bit * dma_buffer_bits(config)
    rams = memories(config, mode)
    if config.prm_row_beats:  # the row's bits (its beat padding is never read: yosys drops it)
        ffs += c.ff_per_prm_row_bit * 8 * config.prm_entry_bytes
    ffs += sum(c.ff_per_prm_bypass_bit * m.width for m in rams
               if m.name == "prm" and m.depth > LUTRAM_MAX_DEPTH["xilinx"])
    if mode == "onehot" and not config.lane_serial:
        acc_bits = 8 * config.acc_buff_bytes
        terms["accumulators in flip-flops"] = c.lut_per_onehot_acc_bit_level * acc_bits * (1 << w)
        ffs += c.ff_per_onehot_acc_bit * acc_bits
    luts = sum(terms.values())
    bram = block_rams(config, rams=rams)
    dsps = sum(dsp_terms(config, c, mode).values())
    dynamic_mw = config.clock_mhz * (c.dynamic_mw_per_klut_mhz * luts / 1e3 + c.dynamic_mw_per_kff_mhz * ffs / 1e3
                                     + c.dynamic_mw_per_bram_mhz * bram + c.dynamic_mw_per_dsp_mhz * dsps)
    _ = a_bits  # area does not depend on b_a (bit-serial): it sets cycles, see sim.timing
    return ResourceEstimate(luts, ffs, bram, dsps, c.static_power_w + dynamic_mw / 1e3, terms)


def comparison_table(rows):
    """Text table of ``[(label, estimate-dict-or-published-dict)]``."""
    lines = [f"{'':<44} {'LUT':>10} {'FF':>10} {'BRAM36':>7} {'DSP':>6} {'W':>6} {'ms':>8}"]
    for label, d in rows:
        def fmt(key, width, digits=0):
            v = d.get(key)
            return f"{'-':>{width}}" if v is None else f"{v:>{width},.{digits}f}"
        lines.append(f"{label[:44]:<44} {fmt('luts', 10)} {fmt('ffs', 10)} {fmt('bram36', 7)} {fmt('dsps', 6)} "
                     f"{fmt('power_w', 6, 2)} {fmt('latency_ms', 8, 2)}")
    return "\n".join(lines)
