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
* control, fetch, DMA, queues: ``lut_base`` / ``ff_base``.
* BRAM: every SRAM buffer rounded up to whole ``bram_kbits`` blocks.
* power: ``static_power_w`` + clock x (per-kLUT, per-kFF, per-BRAM, per-DSP dynamic mW/MHz).

Coefficients: ``HwConfig.resources`` (defaults in ``vta_ext/config.py``), replaced by the fit the
``vta_ext.rtl.resource_fit`` writes from yosys (``vta_ext/rtl_fit/resources_fit.json``, key
``"coefficients"``: any subset of ``ResourceCoefficients`` fields) when that file exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

from tvm_qnn.errors import HwConfigError

from .config import ResourceCoefficients

FIT_PATH = Path(__file__).resolve().parent / "rtl_fit" / "resources_fit.json"

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


def coefficients_for(config, fit_path=FIT_PATH):
    """The config's coefficients with the fitted ones (if any) on top; returns (coefficients, source)."""
    fit = load_fit(fit_path)
    if not fit:
        return config.resources, "defaults (vta_ext/config.py ResourceCoefficients)"
    merged = {f.name: getattr(config.resources, f.name) for f in fields(ResourceCoefficients)}
    merged.update(fit)
    return ResourceCoefficients(**merged), f"fit {fit_path}"


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
    terms = {"control": c.lut_base, **gemm_luts, "alu": c.lut_per_alu_lane * alu_lanes}
    ffs = c.ff_base + gemm_ffs + c.ff_per_alu_lane * alu_lanes
    luts = sum(terms.values())
    buffer_bytes = (config.inp_buff_bytes, config.wgt_buff_bytes, config.acc_buff_bytes, config.uop_buff_bytes,
                    config.prm_buff_bytes)
    bram = sum(math.ceil(b * 8 / (c.bram_kbits * 1024)) for b in buffer_bytes)
    dsps = c.dsp_per_alu_lane * alu_lanes
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
