"""``HwConfig``: the whole accelerator core as one frozen dataclass read from JSON.

Like VTA's ``vta_config.json`` a few base fields define the core; everything else (buffer
depths, vector widths, peak throughput) is derived by properties. There is no "current"
config: every function that needs one takes it as an argument.

The core (see ``vta_ext/isa.py`` for the instruction set):

* a GEMM array of ``batch x block_in x block_out`` lanes, bit-serial over the activation bits
  (one activation bit plane per cycle, so a GEMM step costs ``a_bits`` cycles); ``gemm_out_lanes``
  fewer than ``block_out`` (decode mode, batch 1) folds the array over its outputs as FINN folds an
  MVAU over its PEs: ``gemm_out_lanes`` columns per clock, so a step costs ``a_bits * gemm_passes``
  cycles with a ``gemm_passes``-th of the per-lane decode and adder trees;
* LUT weights (``w_bits`` index bits, ``2^w_bits <= lut_entries`` int8 levels per output
  channel) applied in one of two ways (``lut_mode``): ``"onehot"`` keeps one running sum per
  level per output and multiplies by the LUT once per output (ALU ``LUT_APPLY``), ``"decode"``
  looks the level up per lane before the multiply-add;
* SRAM buffers (``*_buff_bytes``) holding activations and weight indices packed at their bit
  width, int32 accumulators, 64-bit micro-ops and per-channel parameters (LUT row, bias,
  requant multiplier and shift);
* a vector ALU of ``alu_lanes`` lanes (``None``: one per output element, ``batch * block_out``);
  with fewer lanes an ALU micro-op passes over the vector in ``alu_passes`` clocks (each lane's
  32 x 32 requant multiplier is the core's largest block where a part has no DSP);
  ``alu_mul_cycles`` > 1 builds that multiplier serially (``32 / alu_mul_cycles`` bits of the
  multiplier operand per clock, a few hundred LUTs instead of ~1.7k on an iCE40), so each pass of
  a MUL or REQUANT micro-op takes ``alu_mul_cycles`` clocks; with one GEMM column and one ALU lane
  on a one-byte DMA port the core is ``lane_serial`` (accumulators and parameters one lane per
  block-RAM word; a GEMM reset step then takes ``block_out`` clocks);
* a DMA engine moving ``dma_bytes_per_cycle`` after ``dma_latency_cycles`` of set-up;
  ``prm_row_beats`` pads each parameter row in DRAM to whole beats so that the compute module's
  DMA assembles it beat by beat without a byte shifter (``prm_row_bytes``), which wide rows need;
* the FPGA ``part`` it is built for (``vta_ext/parts.py``): a config naming a part is refused
  (``HwConfigError`` naming the resource and both numbers) unless its core fits that part
  (``vta_ext/fit.py``: measured whole-core synthesis where it exists, else the resource model).
  ``part=None`` (the default of a bare ``HwConfig()``) is a core not tied to a device: no check.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tvm_qnn.errors import HwConfigError

LUT_MODES = ("onehot", "decode")
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
UOP_BYTES = 8  # one micro-op is a 64-bit word (isa.UOP_BITS)
ACC_BYTES = 4  # accumulators are int32


def _is_pow2(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


def _field_names(cls, data):
    """``(sorted field names of cls, sorted keys of data that are not fields)``."""
    known = sorted(f.name for f in dataclasses.fields(cls))
    return known, sorted(set(data) - set(known))

@dataclass(frozen=True)
class ResourceCoefficients:
    """Coefficients of the resource/power model (``vta_ext/resources.py`` documents each).

    Defaults are a first synthesis probe (yosys ``synth_xilinx``, a bit-serial PE: LUTs linear in
    lanes x b_w), VTA's published Pynq utilisation and the RTL's structure (DSP slices per multiply,
    one flip-flop per bit); the yosys fits override them when present: the GEMM unit's
    (``vta_ext.rtl.resource_fit``, ``vta_ext/rtl_fit/resources_fit.json``), then the whole cores'
    (``vta_ext.rtl.core_fit``, ``vta_ext/rtl_fit/core_fit.json``).
    """

    lut_base: float = 9000.0  # fetch/decode, DMA, queues, ALU control (VTA Pynq ~ 9-10k LUT outside GEMM)
    lut_per_lane_wbit: float = 4.0  # bit-serial AND + adder-tree share per lane per weight bit
    lut_per_lane_level_decode: float = 1.2  # per-lane LUT-decode mux per level (lanes x 2^b_w)
    lut_per_lane_level_onehot: float = 0.6  # one-hot compare + per-level adder per lane per level
    lut_per_output_level: float = 2.0  # onehot: level-sum accumulators per output per level
    lut_per_alu_lane: float = 180.0  # requant/clamp ALU per output lane (32-bit mul + shift + clip)
    lut_per_block: float = 300.0  # streaming planner: control of one dedicated layer block (FINN-R's c0)
    ff_per_block: float = 200.0
    ff_base: float = 12000.0
    ff_per_lane_wbit: float = 3.0
    ff_per_lane_level: float = 0.5
    ff_per_output_level: float = 32.0  # one int32 register per level per output (onehot)
    ff_per_alu_lane: float = 200.0
    # per bit of the buffer words the core moves (input vector, weight block, accumulator vector,
    # parameter row: read registers, selects, store narrowing); 0 until the whole-core fit sets it
    lut_per_datapath_bit: float = 0.0
    # per byte lane of the DMA engines' element assembly (element bytes x beat bytes: each byte of
    # the assembly register takes any byte of a beat); 0 until the whole-core fit sets it
    lut_per_dma_byte_lane: float = 0.0
    ff_per_dma_buffer_bit: float = 0.0  # per bit of the DMA engines' assembly registers (element + beat)
    # onehot: the GEMM reads and writes a level group (2^b_w entries) of the accumulators per clock,
    # which yosys builds from flip-flops (one per bit) behind a multiplexer per level and bit
    ff_per_onehot_acc_bit: float = 1.0
    lut_per_onehot_acc_bit_level: float = 2.0
    # parameter rows in block RAM (deeper than distributed RAM takes): yosys emulates the read of a
    # row written in the same clock with one register of the row (qnn_compute's prm_mem)
    ff_per_prm_bypass_bit: float = 1.0
    # prm_row_beats: the compute DMA's register of the parameter row it assembles beat by beat
    ff_per_prm_row_bit: float = 1.0
    dsp_per_alu_lane: float = 4.0  # a 32x32 requant multiply on 18x25 DSP slices
    dsp_per_lut_apply_lane: float = 2.0  # an int8 x int32 LUT-apply multiply: two 18x25 slices
    # per bit width that is not a power of two (up to the widest load, and again the widest store):
    # the DMA offsets multiply an index by it (a 32-bit base, 2 slices, and a 16-bit stride, 1 slice)
    dsp_per_address_width: float = 3.0
    dsp_base: float = 0.0  # DMA length multipliers; 0 until the whole-core fit sets it
    static_power_w: float = 0.4
    dynamic_mw_per_klut_mhz: float = 0.006
    dynamic_mw_per_kff_mhz: float = 0.002
    dynamic_mw_per_bram_mhz: float = 0.012
    dynamic_mw_per_dsp_mhz: float = 0.010

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise HwConfigError(f"resources.{f.name}={value!r} is out of range; expected a finite number >= 0")
            object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise HwConfigError(f"resources={data!r}; expected an object of coefficients")
        known, unknown = _field_names(cls, data)
        if unknown:
            raise HwConfigError(f"resources has unknown field(s) {unknown}; known: {known}")
        return cls(**data)


# field -> (minimum, maximum) for integer fields; checked in __post_init__
_INT_RANGES = {
    "batch": (1, 64),
    "block_in": (2, 256),
    "block_out": (2, 256),
    "max_a_bits": (1, 8),
    "max_w_bits": (1, 8),
    "lut_entries": (2, 256),
    "inp_buff_bytes": (64, 1 << 26),
    "wgt_buff_bytes": (64, 1 << 26),
    "acc_buff_bytes": (64, 1 << 26),
    "uop_buff_bytes": (64, 1 << 24),
    "prm_buff_bytes": (64, 1 << 24),
    "dma_bytes_per_cycle": (1, 1024),
    "dma_latency_cycles": (0, 10_000),
    "gemm_pipeline_cycles": (0, 1000),
    "alu_pipeline_cycles": (0, 1000),
    "alu_mul_cycles": (1, 32),
}
_POW2 = ("batch", "block_in", "block_out", "lut_entries", "dma_bytes_per_cycle", "alu_mul_cycles")


@dataclass(frozen=True)
class HwConfig:
    """One configured accelerator core (see the module docstring)."""

    name: str = "custom"
    batch: int = 1
    block_in: int = 16
    block_out: int = 16
    max_a_bits: int = 8
    max_w_bits: int = 8
    lut_entries: int = 256
    lut_mode: str = "onehot"
    inp_buff_bytes: int = 32768
    wgt_buff_bytes: int = 262144
    acc_buff_bytes: int = 131072
    uop_buff_bytes: int = 32768
    prm_buff_bytes: int = 16384
    dma_bytes_per_cycle: int = 8
    dma_latency_cycles: int = 32
    gemm_pipeline_cycles: int = 4
    alu_pipeline_cycles: int = 4
    clock_mhz: float = 100.0
    alu_lanes: int | None = None
    alu_mul_cycles: int = 1
    gemm_out_lanes: int | None = None
    prm_row_beats: bool = False
    part: str | None = None
    resources: ResourceCoefficients = field(default_factory=ResourceCoefficients)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise HwConfigError(f"name={self.name!r}; expected a non-empty string")
        for name, (lo, hi) in _INT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise HwConfigError(f"{name}={value!r} is out of range; expected an integer in {lo}..{hi}")
        for name in _POW2:
            if not _is_pow2(getattr(self, name)):
                raise HwConfigError(f"{name}={getattr(self, name)!r} must be a power of two")
        if self.alu_lanes is not None and not (_is_pow2(self.alu_lanes) and self.alu_lanes <= self.block_out):
            raise HwConfigError(f"alu_lanes={self.alu_lanes!r}; expected null or a power of two <= block_out="
                                f"{self.block_out}")
        if self.lut_mode not in LUT_MODES:
            raise HwConfigError(f"lut_mode={self.lut_mode!r}; expected one of {list(LUT_MODES)}")
        if self.gemm_out_lanes is not None:
            if not (_is_pow2(self.gemm_out_lanes) and self.gemm_out_lanes <= self.block_out):
                raise HwConfigError(f"gemm_out_lanes={self.gemm_out_lanes!r}; expected null or a power of two <= "
                                    f"block_out={self.block_out}")
            if self.gemm_out_lanes < self.block_out and (self.lut_mode != "decode" or self.batch != 1):
                raise HwConfigError(f"gemm_out_lanes={self.gemm_out_lanes} < block_out={self.block_out} folds the "
                                    f"GEMM over its outputs, which the core builds for lut_mode='decode' and batch=1 "
                                    f"only (got lut_mode={self.lut_mode!r}, batch={self.batch})")
        if not isinstance(self.prm_row_beats, bool):
            raise HwConfigError(f"prm_row_beats={self.prm_row_beats!r}; expected true or false")
        if self.prm_row_beats and self.dma_bytes_per_cycle == 1:
            raise HwConfigError("prm_row_beats=true needs dma_bytes_per_cycle > 1: a one-byte port already writes "
                                "parameter rows into their buffer byte by byte")
        if self.lut_entries < 1 << self.max_w_bits:
            raise HwConfigError(
                f"lut_entries={self.lut_entries} is too small for max_w_bits={self.max_w_bits}; "
                f"expected >= {1 << self.max_w_bits}"
            )
        # DRAM addresses count whole vectors: every vector must be a whole number of bytes
        if self.batch * self.block_in < 8 or self.block_in * self.block_out < 8:
            raise HwConfigError(
                f"batch*block_in={self.batch * self.block_in} and block_in*block_out="
                f"{self.block_in * self.block_out} must both be >= 8 (1-bit vectors must fill a byte)"
            )
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) or not (
            math.isfinite(self.clock_mhz) and 1 <= self.clock_mhz <= 2000
        ):
            raise HwConfigError(f"clock_mhz={self.clock_mhz!r} is out of range; expected a number in 1..2000")
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        if isinstance(self.resources, dict):
            object.__setattr__(self, "resources", ResourceCoefficients.from_dict(self.resources))
        if not isinstance(self.resources, ResourceCoefficients):
            raise HwConfigError(f"resources={self.resources!r}; expected a ResourceCoefficients or dict")
        # the smallest useful buffers: one vector/block/uop/param row at the widest bits
        for name, need in (
            ("inp_buff_bytes", self.inp_vector_bytes(self.max_a_bits)),
            ("wgt_buff_bytes", self.wgt_block_bytes(self.max_w_bits)),
            ("acc_buff_bytes", self.acc_vector_bytes),
            ("prm_buff_bytes", self.prm_entry_bytes),
        ):
            if getattr(self, name) < need:
                raise HwConfigError(f"{name}={getattr(self, name)} cannot hold one entry of {need} bytes")
        if self.part is not None:
            if not isinstance(self.part, str):
                raise HwConfigError(f"part={self.part!r}; expected a part name (vta_ext/parts.py) or null")
            from .fit import check_fit  # the fit check needs the resource model, which needs this module

            check_fit(self)

    # ------------------------------------------------------------------ JSON
    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise HwConfigError(f"hardware config must be a JSON object, got {type(data).__name__}")
        known, unknown = _field_names(cls, data)
        if unknown:
            raise HwConfigError(f"unknown field(s) {unknown}; known fields: {known}")
        data = dict(data)
        if "resources" in data:
            data["resources"] = ResourceCoefficients.from_dict(data["resources"])
        return cls(**data)

    @classmethod
    def from_json(cls, path_or_text):
        """Read a config from a JSON file path or a JSON string."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise HwConfigError(f"hardware config file {str(path)!r} does not exist")
            text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise HwConfigError(f"hardware config is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self, path=None):
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def preset(cls, name):
        """A shipped preset (``vta_ext/configs/<name>.json``), e.g. ``"pynq_z1"``."""
        known = preset_names()
        if name not in known:
            raise HwConfigError(f"unknown hardware preset {name!r}; known presets: {known}")
        return cls.from_json(CONFIG_DIR / f"{name}.json")

    def replace(self, **changes):
        known, unknown = _field_names(type(self), changes)
        if unknown:
            raise HwConfigError(f"replace: unknown field(s) {unknown}; known fields: {known}")
        return dataclasses.replace(self, **changes)

    @property
    def capacity(self):
        """``{"lut", "ff", "bram", "dsp": count}`` of the part (``None`` without a part)."""
        from .parts import get_part

        return None if self.part is None else get_part(self.part).capacity()

    # ------------------------------------------------------------------ derived sizes
    @property
    def lanes(self):
        """Multiply lanes of the GEMM array (each handles one activation bit per cycle)."""
        return self.batch * self.block_in * self.block_out

    @property
    def alu_lane_count(self):
        """Physical ALU lanes (``alu_lanes``, or one per output element)."""
        return self.alu_lanes or self.batch * self.block_out

    @property
    def alu_passes(self):
        """Clocks an ALU micro-op (other than LUT_APPLY) takes: the output vector over the ALU lanes."""
        return self.batch * self.block_out // self.alu_lane_count

    @property
    def gemm_out_lane_count(self):
        """Output columns the GEMM array computes per clock (``gemm_out_lanes``, or ``block_out``)."""
        return self.gemm_out_lanes or self.block_out

    @property
    def gemm_passes(self):
        """Passes of a GEMM step over the outputs (each ``a_bits`` clocks; 1 unless the array is folded)."""
        return self.block_out // self.gemm_out_lane_count

    @property
    def lane_serial(self):
        """One GEMM column and one ALU lane on a one-byte DMA port (batch 1): the RTL's lane-serial datapath.

        Its accumulators and parameter rows are block RAMs of one output lane per word (``qnn_compute``),
        so it has no whole-vector registers, and a GEMM ``reset`` writes one lane per clock.
        """
        return (self.batch == 1 and self.block_out > 1 and self.gemm_out_lane_count == 1
                and self.alu_lane_count == 1 and self.dma_bytes_per_cycle == 1)

    @property
    def insn_queue_depth(self):
        """Entries per instruction queue of the RTL core (the timing model's fetch stalls on a full one).

        64 (a 192-bit x 64 queue is three BRAM36 halves or LUT-RAM on Xilinx), except on a one-byte-port
        core (the iCE40 ones): one entry, a register with no read multiplexer, cost 418 LUT4 and 379 FF less
        than 2 on the smallest core (a deep queue would take 12 of the HX8K's 32 EBRs) for at most 0.2 % more
        cycles on the co-simulated layers (7,026 against 7,012 on a 10 -> 12 channel 3x3 layer).
        """
        return 1 if self.dma_bytes_per_cycle == 1 else 64

    @property
    def gemm_reset_cycles(self):
        """Clocks a GEMM ``reset`` step takes: one, or one per output lane on the lane-serial datapath."""
        return self.block_out if self.lane_serial else 1

    def inp_vector_bytes(self, a_bits):
        """Bytes of one input vector (``batch x block_in`` codes at ``a_bits``)."""
        return self.batch * self.block_in * a_bits // 8

    def wgt_block_bytes(self, w_bits):
        """Bytes of one weight block (``block_out x block_in`` indices at ``w_bits``)."""
        return self.block_out * self.block_in * w_bits // 8

    def out_vector_bytes(self, out_bits):
        """Bytes of one stored output vector (``batch x block_out`` at ``out_bits``; 32 = raw acc)."""
        return self.batch * self.block_out * out_bits // 8

    @property
    def acc_vector_bytes(self):
        return self.batch * self.block_out * ACC_BYTES

    def inp_depth(self, a_bits):
        """Input vectors the input buffer holds at ``a_bits`` (packing: fewer bits, more vectors)."""
        return self.inp_buff_bytes // self.inp_vector_bytes(a_bits)

    def wgt_depth(self, w_bits):
        return self.wgt_buff_bytes // self.wgt_block_bytes(w_bits)

    @property
    def acc_depth(self):
        """int32 accumulator vectors (``batch x block_out``) in the accumulator buffer."""
        return self.acc_buff_bytes // self.acc_vector_bytes

    @property
    def uop_depth(self):
        return self.uop_buff_bytes // UOP_BYTES

    @property
    def prm_entry_bytes(self):
        """One parameter row per output block: LUT (int8 x lut_entries), bias, multiplier (int32), shift (int8)."""
        return self.block_out * (self.lut_entries + 4 + 4 + 1)

    @property
    def prm_row_bytes(self):
        """DRAM bytes of one parameter row: ``prm_entry_bytes``, padded to whole DMA beats with ``prm_row_beats``.

        With ``prm_row_beats`` the compute module's DMA assembles a row by writing each beat at its beat
        offset of a row register (``dma_read``'s wide elements: a clock enable per beat), instead of
        appending beats through a byte shifter, whose logic grows as row bytes x beat bytes (``dma_read``
        alone: 17.4k LUT for 136-byte elements on 64-byte beats, 71.6k for 544). Rows padded to whole
        beats never start inside a beat, so no shifter is needed.
        """
        if not self.prm_row_beats:
            return self.prm_entry_bytes
        beat = self.dma_bytes_per_cycle
        return -(-self.prm_entry_bytes // beat) * beat

    @property
    def prm_depth(self):
        return self.prm_buff_bytes // self.prm_entry_bytes

    def peak_gops(self, a_bits):
        """Peak throughput in GOP/s (2 ops per MAC) with ``a_bits``-bit activations."""
        return 2.0 * self.lanes * self.clock_mhz * 1e6 / a_bits / 1e9

    def check_layer_bits(self, layer_name, a_bits, w_bits, out_bits=None):
        """Raise HwConfigError unless the core supports a layer with these bit widths."""
        outputs = self.batch * self.block_out
        if out_bits is not None and (outputs * out_bits) % 8:
            # a stored output vector is whole bytes: batch*block_out codes at out_bits
            raise HwConfigError(
                f"layer {layer_name!r}: out_bits={out_bits} on config {self.name!r} (batch*block_out={outputs}) "
                f"stores {outputs * out_bits} bits per output vector, not whole bytes; use out_bits with "
                f"{outputs}*out_bits a multiple of 8")
        exceeded = self._bits_exceeded(a_bits, w_bits, out_bits)
        if exceeded:
            field_name, value, limit = exceeded
            raise HwConfigError(
                f"layer {layer_name!r}: {field_name}={value} exceeds the core's "
                f"max_{'w' if field_name == 'w_bits' else 'a'}_bits={limit} (config {self.name!r}); "
                + _presets_taking(a_bits, w_bits, out_bits)
            )

    def _bits_exceeded(self, a_bits, w_bits, out_bits=None):
        """``(field, value, limit)`` of the first bit width beyond the core's, or None."""
        for field_name, value, limit in (("a_bits", a_bits, self.max_a_bits), ("w_bits", w_bits, self.max_w_bits),
                                         ("out_bits", out_bits, self.max_a_bits)):
            if value is not None and value > limit:
                return field_name, value, limit
        return None


def _checked_init(cls):
    """Wrap the dataclass ``__init__`` of ``cls``: an unknown keyword is a HwConfigError naming it."""
    generated = cls.__init__
    count = len(dataclasses.fields(cls))

    def __init__(self, *args, **kwargs):
        known, unknown = _field_names(cls, kwargs)
        if unknown:
            raise HwConfigError(f"{cls.__name__}: unknown field(s) {unknown}; known fields: {known}")
        if len(args) > count:
            raise HwConfigError(f"{cls.__name__}: {len(args)} positional values for {count} fields {known}")
        generated(self, *args, **kwargs)

    __init__.__doc__ = generated.__doc__
    cls.__init__ = __init__
    return cls


_checked_init(HwConfig)
_checked_init(ResourceCoefficients)


def preset_names():
    """Names of the shipped presets (``vta_ext/configs/<name>.json``; ``devices.json`` is not one)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json") if p.stem != "devices")


def _presets_taking(a_bits, w_bits, out_bits=None):
    """The sentence naming the shipped presets whose core takes these bit widths (or saying none does)."""
    fits = [name for name in preset_names() if not HwConfig.preset(name)._bits_exceeded(a_bits, w_bits, out_bits)]
    if not fits:
        return "no shipped preset takes it: quantize the layer to fewer bits"
    return f"presets whose core takes it: {', '.join(fits)} (target=HwConfig.preset(name))"
