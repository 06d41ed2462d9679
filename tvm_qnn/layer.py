"""``QnnLayer``: one quantized conv2d/dense layer as plain data.

This is the hand-off between the graph side and the backends: ``relay_passes`` reads a
``qnn.conv2d`` / ``qnn.dense`` composite function into a ``QnnLayer`` (``relay_passes.composite``),
and both ``codegen`` (CPU bit-serial kernels) and ``vta_ext`` (the accelerator compiler) consume
it. Its ``reference`` method states the numeric contract (DESIGN.md) in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference
from .errors import QuantizationError, ShapeError

KINDS = ("conv2d", "dense")


@dataclass(frozen=True, eq=False)
class QnnLayer:
    """A quantized layer: ``y = epilogue(s_a * sum_q lut[o,q] S[o,q] + bias[o])``.

    * ``weight_idx``: uint8, OIHW ``(O, C/groups, kh, kw)`` for conv2d, ``(O, C)`` for dense.
    * ``lut``: float32 ``(1 or O, 2^w_bits)``; ``bias``: float32 ``(O,)`` or None.
    * the input's codes are ``act_codes(x, a_clamp, a_bits, a_zero_point)`` and stand for
      ``s_a (q - a_zero_point)``; the sums ``S`` run over ``q - a_zero_point`` (padding adds 0);
    * ``padding`` is ``(top, left, bottom, right)``; ``stride``/``dilation`` are (h, w) pairs;
    * the epilogue clips the float output to ``[out_min, out_max]`` (None = unbounded):
      ReLU is ``(0, None)``, ReLU6 ``(0, 6)``, none ``(None, None)``.
    * ``input_shape`` is NCHW (conv2d) or (N, C) (dense).
    """

    name: str
    kind: str
    weight_idx: np.ndarray
    lut: np.ndarray
    bias: np.ndarray | None
    w_bits: int
    w_scheme: str
    a_bits: int
    a_clamp: float
    input_shape: tuple
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    out_min: float | None = None
    out_max: float | None = None
    a_zero_point: int = 0

    def __post_init__(self):
        where = f"layer {self.name!r}"
        if self.kind not in KINDS:
            raise ShapeError(f"{where}: kind={self.kind!r}; expected one of {list(KINDS)}")
        reference.check_bits(self.w_bits, "w_bits", self.name)
        reference.check_bits(self.a_bits, "a_bits", self.name)
        reference.check_clamp(self.a_clamp, "a_clamp", self.name)
        object.__setattr__(self, "a_zero_point",
                           reference.check_zero_point(self.a_zero_point, self.a_bits, "a_zero_point", self.name))
        idx = np.asarray(self.weight_idx)
        if idx.dtype != np.uint8:
            raise ShapeError(f"{where}: weight_idx dtype is {idx.dtype}; expected uint8")
        levels = 1 << self.w_bits
        if idx.size and int(idx.max()) >= levels:
            raise QuantizationError(f"{where}: weight index {int(idx.max())} does not fit w_bits={self.w_bits}")
        lut = np.atleast_2d(np.asarray(self.lut, dtype=np.float32))
        if lut.shape[1] != levels or lut.shape[0] not in (1, idx.shape[0]):
            raise QuantizationError(
                f"{where}: lut has shape {lut.shape}; expected (1 or {idx.shape[0]}, {levels}) for w_bits={self.w_bits}"
            )
        object.__setattr__(self, "lut", lut)
        if self.bias is not None:
            bias = np.asarray(self.bias, dtype=np.float32).reshape(-1)
            if bias.shape != (idx.shape[0],):
                raise ShapeError(f"{where}: bias has {bias.shape[0]} entries; expected {idx.shape[0]}")
            object.__setattr__(self, "bias", bias)
        expected_ndim = 4 if self.kind == "conv2d" else 2
        if idx.ndim != expected_ndim or len(self.input_shape) != expected_ndim:
            raise ShapeError(f"{where}: {self.kind} expects {expected_ndim}-D weight and input shapes")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "stride", tuple(int(v) for v in self.stride))
        object.__setattr__(self, "dilation", tuple(int(v) for v in self.dilation))
        object.__setattr__(self, "padding", reference.padding4(self.padding))
        if self.in_channels != idx.shape[1] * self.groups:
            raise ShapeError(
                f"{where}: input has {self.in_channels} channels; weight {idx.shape} with groups={self.groups} needs "
                f"{idx.shape[1] * self.groups}"
            )

    # ------------------------------------------------------------------ derived sizes
    @property
    def s_a(self):
        return reference.act_scale(self.a_clamp, self.a_bits)

    @property
    def n_levels(self):
        return 1 << self.w_bits

    @property
    def in_channels(self):
        return self.input_shape[1]

    @property
    def out_channels(self):
        return int(np.shape(self.weight_idx)[0])

    @property
    def kernel(self):
        return tuple(np.shape(self.weight_idx)[2:]) if self.kind == "conv2d" else (1, 1)

    @property
    def output_shape(self):
        if self.kind == "dense":
            return (self.input_shape[0], self.out_channels)
        n, _, h, w = self.input_shape
        ho, wo = reference.conv_out_hw(h, w, self.kernel, self.stride, self.padding, self.dilation)
        return (n, self.out_channels, ho, wo)

    @property
    def is_depthwise(self):
        return self.kind == "conv2d" and self.groups > 1 and self.groups == self.in_channels

    @property
    def lut_is_uniform(self):
        return reference.lut_is_affine(self.lut)

    def bops(self):
        positions = int(np.prod(self.output_shape[2:])) if self.kind == "conv2d" else 1
        fan_in_channels = self.in_channels // self.groups
        per_image = reference.layer_bops(fan_in_channels, self.out_channels, self.kernel, positions, self.a_bits, self.w_bits)
        return per_image

    # ------------------------------------------------------------------ the contract
    def reference_sums(self, act_codes):
        """Exact int64 sums ``S`` of the reference (``(N, O, L, Ho, Wo)`` or ``(N, O, L)``)."""
        if self.kind == "dense":
            return reference.qdense_sums(act_codes, self.weight_idx, self.n_levels, self.a_zero_point)
        return reference.qconv2d_sums(act_codes, self.weight_idx, self.n_levels, self.stride,
                                      self.padding, self.groups, self.dilation, self.a_zero_point)

    def act_codes(self, x):
        """The input's codes ``act_codes(x, a_clamp, a_bits, a_zero_point)``."""
        return reference.act_codes(x, self.a_clamp, self.a_bits, self.a_zero_point)

    def reference(self, x):
        """Float64 output of the layer for a float input ``x`` (codes, sums, LUT, bias, epilogue)."""
        codes = self.act_codes(x)
        y = reference.combine_sums(self.reference_sums(codes), self.s_a, self.lut, self.bias)
        if self.out_min is not None or self.out_max is not None:
            y = np.clip(y, self.out_min, self.out_max)
        return y
