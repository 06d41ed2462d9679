"""From a ``QnnLayer`` to a kernel: the workload plus the host-side constant arguments.

Weight indices are packed once here (compile time) into ``weight_planes``; the LUT, ``s_a``
and the bias fold into float64 ``coef``/``alpha``/``bias`` (see :mod:`codegen.bitserial_conv2d`
for the algebra). The cheaper exact scheme is chosen: bit planes when the LUT is uniform
(``reference.lut_is_affine``), one-hot index planes otherwise. A layer with an activation zero
point also gets ``zero_sums`` (``z`` times the ones of each weight plane per output channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tvm_qnn import reference
from tvm_qnn.errors import QuantizationError

from .bitpack import act_code_thresholds, counts_codes, pack_weight_planes
from .workload import ConvWorkload, choose_scheme


@dataclass(frozen=True, eq=False)
class LayerKernelArgs:
    """Numpy arguments of one layer's kernel (after ``x``), in PrimFunc order."""

    act_scale: np.ndarray
    weight_planes: np.ndarray
    coef: np.ndarray
    alpha: np.ndarray
    bias: np.ndarray
    clip_bounds: np.ndarray
    zero_sums: np.ndarray | None = None  # int64 (O, w_planes), only for a layer with a zero point

    def as_list(self):
        middle = [] if self.zero_sums is None else [self.zero_sums]
        return [self.act_scale, self.weight_planes, self.coef, self.alpha] + middle + [self.bias, self.clip_bounds]


def check_layer(layer):
    """Re-validate bits and LUT size (QnnLayer does too; kernels must never see bad data)."""
    reference.check_bits(layer.w_bits, "w_bits", layer.name)
    reference.check_bits(layer.a_bits, "a_bits", layer.name)
    lut = np.atleast_2d(layer.lut)
    if lut.shape[1] != 1 << layer.w_bits or lut.shape[0] not in (1, layer.out_channels):
        raise QuantizationError(f"layer {layer.name!r}: lut has shape {lut.shape}; expected "
                                f"(1 or {layer.out_channels}, {1 << layer.w_bits}) for w_bits={layer.w_bits}")


def layer_workload(layer, word="uint64", scheme=None, **output):
    """The ``ConvWorkload`` of a ``QnnLayer`` (``output``: ``output="packed"`` + ``next_*`` fields)."""
    check_layer(layer)
    scheme = scheme or choose_scheme(layer.w_bits, layer.lut_is_uniform)
    if layer.kind == "dense":
        n, c = layer.input_shape
        h = w = 1
    else:
        n, c, h, w = layer.input_shape
    return ConvWorkload(kind=layer.kind, batch=n, in_channels=c, height=h, width=w, out_channels=layer.out_channels,
                        kernel=layer.kernel, stride=layer.stride if layer.kind == "conv2d" else (1, 1),
                        padding=layer.padding if layer.kind == "conv2d" else (0, 0, 0, 0),
                        dilation=layer.dilation if layer.kind == "conv2d" else (1, 1),
                        groups=layer.groups if layer.kind == "conv2d" else 1, a_bits=layer.a_bits,
                        w_bits=layer.w_bits, scheme=scheme, word=word, a_zero_point=layer.a_zero_point, **output)


def affine_lut(rows):
    """``(a, d)`` per output channel of LUT rows ``a + d q`` (float64; the least-error affine fit
    through the two end levels, exact for ``reference.lut_is_affine`` LUTs)."""
    return rows[:, 0], (rows[:, -1] - rows[:, 0]) / (rows.shape[1] - 1)


def clip_bounds(layer):
    """``[lo, hi]`` float32 of the layer's epilogue clip (+-inf where it has none)."""
    lo = -np.inf if layer.out_min is None else layer.out_min
    hi = np.inf if layer.out_max is None else layer.out_max
    return np.array([lo, hi], dtype=np.float32)


def act_input_args(layer, bits):
    """The float input's quantizer argument of a kernel reading ``layer``'s input with ``bits``-bit codes:
    ``act_thresholds`` (2^b - 1,) float32 where those codes are counted (``codegen.bitpack.counts_codes``),
    else ``act_scale`` (1,) float32. ``QuantizationError`` naming the layer for a scale that is not a
    positive finite float32."""
    if not counts_codes(bits):
        return np.array([layer.s_a], dtype=np.float32)
    thresholds = act_code_thresholds(layer.s_a, bits, layer.a_zero_point)
    if thresholds is None:
        raise QuantizationError(f"layer {layer.name!r}: activation scale s_a={layer.s_a!r} is not a positive "
                                f"finite float32")
    return thresholds


def kernel_args(layer, wl: ConvWorkload):
    """Host-side constants of ``layer`` for workload ``wl`` (weights packed once, float64 coefficients)."""
    check_layer(layer)
    rows = reference.lut_rows(layer.lut, layer.out_channels)  # float64 (O, L)
    s_a = float(layer.s_a)
    if wl.scheme == "bitplane":
        if not reference.lut_is_affine(layer.lut):
            raise QuantizationError(f"layer {layer.name!r}: scheme 'bitplane' needs a uniform LUT")
        first, step = affine_lut(rows)
        coef = s_a * step[:, None] * (2.0 ** np.arange(wl.w_bits))[None, :]
        alpha = s_a * first
    else:
        coef = s_a * (rows[:, :-1] - rows[:, -1:])
        alpha = s_a * rows[:, -1]
    bias = np.zeros(layer.out_channels) if layer.bias is None else np.asarray(layer.bias, np.float64)
    weight_planes = pack_weight_planes(layer.weight_idx, wl.scheme, wl.w_bits, wl.groups, wl.word)
    zero_sums = None
    if wl.a_zero_point:
        ones = reference.popcount(weight_planes).sum(axis=(0, 1, 3))  # (w_planes, O): window positions per plane
        zero_sums = np.ascontiguousarray(wl.a_zero_point * ones.T, dtype=np.int64)
    return LayerKernelArgs(
        act_scale=act_input_args(layer, wl.a_bits),
        weight_planes=weight_planes,
        coef=np.ascontiguousarray(coef, dtype=np.float64),
        alpha=np.ascontiguousarray(alpha, dtype=np.float64),
        bias=np.ascontiguousarray(bias, dtype=np.float64),
        clip_bounds=clip_bounds(layer),
        zero_sums=zero_sums,
    )
