"""Devices and the cost of one dedicated streaming block: cycles (initiation interval) and
resources (LUT / FF / BRAM36-equivalents / DSP).

Timing (the planner's; ``streaming.sim.block_cycles`` derives it again on its own)
---------------------------------------------------------------------
A conv2d/dense block has ``pe`` output-channel lanes x ``simd`` input lanes and is bit-serial
over the activation bits of its input stream, so per image it computes for
``positions * (C_out / pe) * (C_in/groups * kh * kw / simd) * b_in`` cycles (``pe`` divides
``C_out``, ``simd`` divides the fan-in: no idle lanes). Pool and add blocks handle ``lanes``
channels of one pixel per cycle. A block's II is that, or the time its input streams (each
``pe * mmv * b`` bits per clock of its producer) take to deliver an image when longer
(``planner._Evaluator.block_ii``). ``row_cycles = II / rows_out`` is the time to emit one row.

Resources
---------
``block_resources``: a conv2d/dense block is the streaming MVAU of ``vta_ext/rtl/verilog/
mvau_stream.v``; its logic LUTs and FFs come from the fit to yosys syntheses of that block
(``benchmarks/rtl_mvau.py`` -> ``vta_ext/rtl_fit/mvau_fit.json``, terms in ``vta_ext.rtl.mvau``),
``mmv`` output pixels replicating the PE array. Pool and add blocks, which have no RTL yet, use
the per-lane comparator/adder model below. Memories (weights, thresholds, line buffers, FIFOs)
are mapped to BRAM36 by geometry (``memory_bram36``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from tvm_qnn.errors import HwConfigError
from vta_ext.parts import BLOCK_RAM_SHAPES
from vta_ext.parts import LUTRAM_MAX_DEPTH as LUTRAM_DEPTHS

DEVICES_JSON = Path(__file__).resolve().parents[1] / "configs" / "devices.json"
URAM_AS_BRAM36 = 8  # a 288 Kb UltraRAM holds the bits of eight 36 Kb BRAMs (capacity pooling)
RESOURCES = ("lut", "ff", "bram", "dsp")


@dataclass(frozen=True)
class DeviceSpec:
    """One FPGA device of the streaming pipeline (see ``configs/devices.json`` for sources).

    ``bram`` capacity is counted in BRAM36 equivalents: ``bram36 + 8 * uram`` (UltraRAM pooled
    by capacity; its fixed 72-bit width is ignored, an optimistic simplification).
    ``max_utilization`` caps every resource of a segment (routing above ~85% rarely closes).
    """

    name: str
    part: str
    lut: int
    ff: int
    bram36: int
    dsp: int
    uram: int = 0
    clock_mhz: float = 200.0
    link_gbps: float = 10.0
    link_latency_us: float = 1.0
    max_utilization: float = 0.85

    def __post_init__(self):
        for field_name in ("lut", "ff", "bram36", "dsp", "uram"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HwConfigError(f"device {self.name!r}: {field_name}={value!r}; expected an int >= 0")
        for field_name in ("lut", "ff"):
            if getattr(self, field_name) == 0:
                raise HwConfigError(f"device {self.name!r}: {field_name}=0; a device needs logic")
        for field_name in ("clock_mhz", "link_gbps"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise HwConfigError(f"device {self.name!r}: {field_name}={value!r}; expected a finite number > 0")
        if not isinstance(self.link_latency_us, (int, float)) or not 0 <= self.link_latency_us < 1e6:
            raise HwConfigError(f"device {self.name!r}: link_latency_us={self.link_latency_us!r}; expected 0 <= value < 1e6")
        if not isinstance(self.max_utilization, (int, float)) or not 0 < self.max_utilization <= 1:
            raise HwConfigError(f"device {self.name!r}: max_utilization={self.max_utilization!r}; expected 0 < value <= 1")

    @property
    def bram(self):
        return self.bram36 + URAM_AS_BRAM36 * self.uram

    def capacity(self):
        return {"lut": self.lut, "ff": self.ff, "bram": self.bram, "dsp": self.dsp}

    @property
    def link_bits_per_cycle(self):
        return self.link_gbps * 1e3 / self.clock_mhz

    @property
    def link_latency_cycles(self):
        return self.link_latency_us * self.clock_mhz

    def to_dict(self):
        return asdict(self)


@lru_cache(maxsize=None)
def _presets():
    data = json.loads(DEVICES_JSON.read_text())
    return {name: DeviceSpec(name=name, **fields) for name, fields in data["devices"].items()}


def device_presets():
    return dict(_presets())


def get_device(device):
    """A ``DeviceSpec`` from a spec, a preset name, a JSON file path or a dict of fields."""
    if isinstance(device, DeviceSpec):
        return device
    if isinstance(device, dict):
        known = set(DeviceSpec.__dataclass_fields__)
        unknown = sorted(set(device) - known)
        missing = sorted({"part", "lut", "ff", "bram36", "dsp"} - set(device))
        if unknown or missing:
            raise HwConfigError(
                f"device {device.get('name', 'custom')!r}: unknown field(s) {unknown}, missing {missing}; a device "
                f"spec has {sorted(known)} (an accelerator HwConfig is not a device; presets: {sorted(_presets())})")
        return DeviceSpec(**{"name": "custom", **device})
    if isinstance(device, (str, Path)):
        presets = _presets()
        if str(device) in presets:
            return presets[str(device)]
        path = Path(device)
        if path.suffix == ".json" and path.is_file():
            try:
                fields = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise HwConfigError(f"device file {str(path)!r} is not valid JSON: {err}") from None
            return get_device({"name": path.stem, **fields})
        raise HwConfigError(f"unknown device {str(device)!r}; known presets: {sorted(presets)} (or a .json file)")
    raise HwConfigError(f"device={device!r}; expected a DeviceSpec, a preset name, a dict or a .json path")


# --------------------------------------------------------------------------- memories
# (width bits, depth) aspect ratios of one BRAM36 (vta_ext.parts: simple dual port up to 72 bits wide)
BRAM36_SHAPES = BLOCK_RAM_SHAPES["xilinx"][0][1]
LUTRAM_MAX_DEPTH = LUTRAM_DEPTHS["xilinx"]  # shallower memories go to distributed RAM: one LUT6 = 64 x 1 bit


def memory_bram36(width_bits, total_bits):
    """(BRAM36 count, LUTs of distributed RAM) of a memory read ``width_bits`` per cycle."""
    if total_bits <= 0 or width_bits <= 0:
        return 0, 0
    width_bits = int(width_bits)
    depth = math.ceil(total_bits / width_bits)
    if depth <= LUTRAM_MAX_DEPTH:
        return 0, width_bits * math.ceil(depth / 64)
    best = min(math.ceil(width_bits / w) * math.ceil(depth / d) for w, d in BRAM36_SHAPES)
    return best, 0


# --------------------------------------------------------------------------- block costs
BLOCK_FF = 200  # pool/add block control registers


def block_resources(kind, pe, simd, mmv, in_bits, w_bits, out_bits, fan_in, weight_count, linebuf_bits, fit=None):
    """LUT/FF/BRAM36/DSP of one dedicated block.

    A conv2d/dense block is ``mvau_stream.v`` with ``PE = pe``, ``SIMD = simd``, ``A_BITS = in_bits``
    (bit-serial depth), ``W_BITS = w_bits`` and ``O_BITS = out_bits`` thresholds per output (none
    for a 32-bit last layer): its logic by the synthesized fit (``fit``: a ``tvm-qnn-mvau-fit/1``
    ``"fit"`` mapping, default the committed one), ``mmv`` copies of the PE array sharing the
    control; no DSP (the block multiplies nothing). A pool/add block has ``pe`` channel lanes: a
    comparator (max) or adder (avg) per lane in the input width, and for ``add`` a rescale of one
    operand (one DSP per lane), add, clamp and requantize. ``mmv`` output pixels in parallel
    replicate the lanes and the line buffer's read port. Weights (``pe * simd * w_bits`` bits per
    clock), thresholds (``pe`` outputs' per clock) and the line buffer are mapped to memory by
    ``memory_bram36``.
    """
    from vta_ext.rtl.mvau import acc_bits, load_block_fit, predict_block

    acc_width = in_bits + w_bits + math.ceil(math.log2(max(fan_in, 2)))
    outputs = pe * mmv  # results produced in parallel
    if kind in ("conv2d", "dense"):
        if fit is None:
            data = load_block_fit()
            if data is None:
                raise HwConfigError("no streaming block fit (vta_ext/rtl_fit/mvau_fit.json); run benchmarks/rtl_mvau.py")
            fit = data["fit"]
        logic = predict_block(fit, pe, simd, w_bits, in_bits, out_bits, fan_in, copies=mmv)
        lut, ff, dsp = logic["lut"], logic["ff"], 0
        bram, lutram = memory_bram36(pe * simd * w_bits, weight_count * w_bits)
        if out_bits <= 8:  # thresholds: 2^b - 1 accumulator-wide values per output channel
            thr_width = ((1 << out_bits) - 1) * acc_bits(fan_in, w_bits, in_bits)
            channels = weight_count // max(fan_in, 1)
            thr_bram, thr_lutram = memory_bram36(pe * thr_width, channels * thr_width)
            bram, lutram = bram + thr_bram, lutram + thr_lutram
        port_lanes = simd * mmv
    elif kind == "add":
        lut, ff, dsp, bram, lutram = outputs * 3 * acc_width, BLOCK_FF + outputs * 2 * acc_width, outputs, 0, 0
        port_lanes = outputs
    else:  # maxpool / avgpool
        lut = outputs * 2 * (in_bits + math.ceil(math.log2(max(fan_in, 2))))
        ff, dsp, bram, lutram = BLOCK_FF + outputs * 2 * in_bits, 0, 0, 0
        port_lanes = outputs
    line_bram, line_lutram = memory_bram36(port_lanes * in_bits, linebuf_bits)
    return {"lut": int(math.ceil(lut + lutram + line_lutram)), "ff": int(math.ceil(ff)),
            "bram": int(bram + line_bram), "dsp": int(dsp)}


COST_MODEL_NAME = ("vta_ext.streaming.cost.block_resources (conv/dense: yosys fit of the block RTL mvau_stream.v, "
                   "vta_ext/rtl_fit/mvau_fit.json; pool/add: per-lane model)")


def fifo_resources(depth_rows, row_bits, width_bits):
    """A stream FIFO of ``depth_rows`` feature-map rows: memory plus ~40 LUT/FF of pointers."""
    bram, lutram = memory_bram36(width_bits, depth_rows * row_bits)
    return {"lut": 40 + lutram, "ff": 40, "bram": bram, "dsp": 0}


def divisors(n):
    small = [d for d in range(1, int(math.isqrt(n)) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))
