"""``CoreParams``: the Verilog parameters of one generated core, validated like ``HwConfig``.

The RTL is parameterized Verilog; this dataclass is the single place that turns an
``HwConfig`` (or a sweep point) into those parameters and refuses what the generator cannot
build, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm_qnn.errors import HwConfigError

# weight storage variant -> gemm_unit WEIGHT_MODE parameter
WEIGHT_MODES = {"bitplane": 0, "onehot": 1, "decode": 2}


def _pow2(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class CoreParams:
    """Parameters of a generated core: array ``batch x block_in x block_out``, the widest
    activation/weight codes it accepts, and the weight storage variant."""

    batch: int = 1
    block_in: int = 16
    block_out: int = 16
    a_bits: int = 8
    w_bits: int = 8
    weight_mode: str = "bitplane"
    lut_entries: int | None = None  # defaults to 2^w_bits

    def __post_init__(self):
        for name in ("batch", "block_in", "block_out"):
            value = getattr(self, name)
            if not _pow2(value) or value > 256:
                raise HwConfigError(f"{name}={value!r}: the RTL generator needs a power of two in 1..256")
        for name in ("a_bits", "w_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 8:
                raise HwConfigError(f"{name}={value!r}: the RTL generator supports 1..8 bits")
        if self.weight_mode not in WEIGHT_MODES:
            raise HwConfigError(f"weight_mode={self.weight_mode!r}; known: {sorted(WEIGHT_MODES)}")
        if self.lut_entries is None:
            object.__setattr__(self, "lut_entries", 1 << self.w_bits)
        if not _pow2(self.lut_entries) or self.lut_entries < 1 << self.w_bits:
            raise HwConfigError(
                f"lut_entries={self.lut_entries!r}: must be a power of two >= 2^w_bits = {1 << self.w_bits}")

    @classmethod
    def from_hw_config(cls, cfg, weight_mode=None, a_bits=None, w_bits=None):
        """Parameters of ``cfg`` (a ``vta_ext.config.HwConfig``); ``weight_mode`` defaults to its
        ``lut_mode``; ``a_bits``/``w_bits`` may shrink the core below the config's maxima."""
        return cls(batch=cfg.batch, block_in=cfg.block_in, block_out=cfg.block_out,
                   a_bits=a_bits or cfg.max_a_bits, w_bits=w_bits or cfg.max_w_bits,
                   weight_mode=weight_mode or cfg.lut_mode, lut_entries=None)

    @property
    def levels(self) -> int:
        """LUT levels held per output channel by the RTL (2^w_bits)."""
        return 1 << self.w_bits

    @property
    def lanes(self) -> int:
        return self.batch * self.block_in * self.block_out

    @property
    def acc_elems(self) -> int:
        """int32 elements of one accumulator-buffer entry (onehot keeps one per level)."""
        per_out = self.levels if self.weight_mode == "onehot" else 1
        return self.batch * self.block_out * per_out

    def verilog(self) -> dict:
        """Parameter overrides of ``gemm_unit`` / ``qnn_core``."""
        return {"BATCH": self.batch, "BLOCK_IN": self.block_in, "BLOCK_OUT": self.block_out,
                "A_BITS": self.a_bits, "W_BITS": self.w_bits,
                "WEIGHT_MODE": WEIGHT_MODES[self.weight_mode]}

    def bitplane_lut(self):
        """The integer levels the bit-plane variant implements: ``2q - (2^w_bits - 1)``."""
        import numpy as np

        return 2 * np.arange(self.levels, dtype=np.int64) - (self.levels - 1)

    def check_lut(self, lut_int, layer="tile"):
        """Refuse a LUT the core cannot hold (more entries than its levels) or, for bit-plane
        weights, a LUT that is not affine; names the field."""
        import numpy as np

        lut = np.atleast_2d(np.asarray(lut_int))
        if lut.shape[-1] > self.levels:
            raise HwConfigError(f"{layer}: LUT has {lut.shape[-1]} entries but the core's lut_entries "
                                f"is {self.levels} (w_bits={self.w_bits})")
        if self.weight_mode == "bitplane" and not np.array_equal(lut, np.broadcast_to(self.bitplane_lut(), lut.shape)):
            raise HwConfigError(f"{layer}: weight_mode='bitplane' computes symmetric uniform weights "
                                f"2*idx - (2^w_bits - 1) (half-steps; the step goes into the requant multiplier); "
                                "this LUT is not that: use 'onehot' or 'decode'")
        return lut
