"""Integer-only depthwise conv2d (``groups == in_channels == out_channels``): a direct kernel.

A depthwise layer has a fan-in of ``kh * kw`` per output: bit planes (64 channels per word) and
VNNI (4 input channels per lane) both waste almost all their width on it. Here channels are the
vector lanes instead: codes are laid out NHWC (channels padded to a multiple of 16, spatially
pre-padded with code 0), the gathered int8 weights ``lut_int[c, idx]`` are stored as int32
``(kh, kw, C16)``, and each output pixel is ``kh * kw`` int32 multiply-adds on 16-channel
vectors; a tile of ``x_tile`` pixels x 16 channels stays in registers over the ``kh, kw`` window.
Exact: int32 products of u8 x s8 and an accumulator checked to fit int32. The epilogue is the
integer kernels' (``codegen.vnni_int8.integer_epilogue``): requant to the next layer's codes or
the float64 dequantization, NCHW.

Arguments: ``x`` (float32 NCHW) and ``act_scale`` (1,), or ``act_codes_in`` (uint8 NCHW);
``weight`` (kh, kw, C16) int32; ``bias`` (C,) int32; then the epilogue's.

**Float contract** (``contract="float"``, target ``cpu``, any LUT): the weights are
``s_a * lut[c, idx]`` in float64 and each output is ``float32(sum w (q - z)) + float32 bias`` (then
the clip), the window sum in float64 over the centred codes (spatial padding holds code ``z``).
Each product of a float64 weight and an integer below 2^9 carries one float64 rounding, so the
result is the contract's ``s_a sum lut S`` to ~1e-16 before the float32 rounding, as
``cpu-reference`` computes it. Arguments: ``x``, ``act_scale``, ``weight`` (kh, kw, C16) float64,
``bias`` (C,) float64, ``clip_bounds`` (2,) float32.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import te, tirx

from tvm_qnn import reference
from tvm_qnn.errors import CompileError, QuantizationError, ShapeError

from .bitpack import act_codes_compute
from .bitserial_int import check_ends
from .plan import clip_bounds
from .vnni_int8 import check_accumulator_fits, epilogue_args, integer_epilogue
from .workload import ConvWorkload

LANES = 16  # int32 lanes of one zmm
MAX_X_TILE = 8


def is_depthwise(wl: ConvWorkload) -> bool:
    return wl.kind == "conv2d" and wl.groups > 1 and wl.groups == wl.in_channels == wl.out_channels


@dataclass(frozen=True)
class DepthwiseKernel:
    """One integer-only depthwise kernel: shapes/bits of ``wl`` plus the input and output kinds."""

    wl: ConvWorkload
    input: str = "float"
    output: str = "float"
    contract: str = "integer"  # "integer": DESIGN's integer-only accumulator; "float": the float contract

    def __post_init__(self):
        check_ends(self, "depthwise kernel")
        if self.contract not in ("integer", "float"):
            raise ShapeError(f"depthwise kernel: contract={self.contract!r}; expected 'integer' or 'float'")
        if self.contract == "float" and (self.input, self.output) != ("float", "float"):
            raise ShapeError(f"depthwise kernel: the float contract reads and writes float "
                             f"(got input={self.input!r}, output={self.output!r})")
        if not is_depthwise(self.wl):
            raise ShapeError(f"depthwise kernel: workload {self.wl.key()} is not depthwise "
                             f"(needs groups == in_channels == out_channels > 1)")
        object.__setattr__(self, "wl", dataclasses.replace(self.wl, scheme="onehot", word="uint64"))

    @property
    def channels_padded(self):
        return -(-self.wl.in_channels // LANES) * LANES

    @property
    def output_dtype(self):
        return "uint8" if self.output == "codes" else "float32"

    @property
    def output_shape(self):
        wl = self.wl
        return (wl.batch, wl.out_channels, wl.out_height, wl.out_width)

    def key(self):
        contract = "_float_contract" if self.contract == "float" else ""
        return f"dw_{self.wl.key()}_{self.input}_to_{self.output}{contract}"


def depthwise_stages(kernel: DepthwiseKernel):
    """TE arguments and output (see the module docstring)."""
    wl = kernel.wl
    n_b, c, h, w = wl.input_shape
    c16, ho, wo = kernel.channels_padded, wl.out_height, wl.out_width
    (kh, kw), (sh, sw), (dh, dw) = wl.kernel, wl.stride, wl.dilation
    top, left, _, _ = wl.padding
    float_contract = kernel.contract == "float"
    zero = wl.a_zero_point if float_contract else 0
    if kernel.input == "float":
        x = te.placeholder(wl.input_shape, "float32", name="x")
        act_scale = te.placeholder((1,), "float32", name="act_scale")
        codes_at = act_codes_compute(lambda n, y, xx, ch: x[n, ch, y, xx], (n_b, h, w, c), act_scale, wl.a_bits,
                                     zero_point=zero)
        args = [x, act_scale]
    else:
        x = te.placeholder(wl.input_shape, "uint8", name="act_codes_in")
        codes_at = lambda n, y, xx, ch: x[n, ch, y, xx]  # noqa: E731
        args = [x]

    def padded_code(n, y, xx, ch):
        inside = tirx.all(y >= top, y < top + h, xx >= left, xx < left + w)
        value = codes_at(n, tirx.min(tirx.max(y - top, 0), h - 1), tirx.min(tirx.max(xx - left, 0), w - 1),
                         tirx.min(ch, c - 1))
        spatial = tirx.Select(inside, value, tirx.const(zero, "uint8"))  # padding: code z, value 0
        return tirx.Select(ch < c, spatial, tirx.const(0, "uint8"))

    act_pad = te.compute((n_b, wl.padded_height, wl.padded_width, c16), padded_code, name="act_pad")
    weight = te.placeholder((kh, kw, c16), "float64" if float_contract else "int32", name="weight")
    bias = te.placeholder((c,), "float64" if float_contract else "int32", name="bias")
    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    if float_contract:
        def product(n, y, xx, ch):
            code = act_pad[n, y * sh + rh * dh, xx * sw + rw * dw, ch].astype("int32") - tirx.const(zero, "int32")
            return code.astype("float64") * weight[rh, rw, ch]
    else:
        def product(n, y, xx, ch):
            return act_pad[n, y * sh + rh * dh, xx * sw + rw * dw, ch].astype("int32") * weight[rh, rw, ch]
    acc = te.compute((n_b, ho, wo, c16), lambda n, y, xx, ch: te.sum(product(n, y, xx, ch), axis=[rh, rw]),
                     name="dw_acc")
    if float_contract:
        clip_bounds = te.placeholder((2,), "float32", name="clip_bounds")

        def value(n, ch, y, xx):  # rounded to float32 before the float32 bias, as the other float kernels
            full = acc[n, y, xx, ch].astype("float32") + bias[ch].astype("float32")
            return tirx.min(tirx.max(full, clip_bounds[0]), clip_bounds[1])

        out = te.compute((n_b, c, ho, wo), value, name="epilogue")
        return args + [weight, bias, clip_bounds], out
    store_args, requant = integer_epilogue(kernel.output, c)
    out = te.compute((n_b, c, ho, wo),
                     lambda n, ch, y, xx: requant(acc[n, y, xx, ch].astype("int64") + bias[ch].astype("int64"), ch),
                     name="epilogue")
    return args + [weight, bias] + store_args, out


def make_depthwise_primfunc(kernel: DepthwiseKernel):
    args, out = depthwise_stages(kernel)
    return te.create_prim_func(args + [out]).with_attr("global_symbol", "qnn_" + kernel.key())


def _divisors(n, limit):
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def schedule_depthwise(kernel: DepthwiseKernel, func) -> tvm.s_tir.Schedule:
    """Rows in parallel; per ``x_tile`` pixels x 16 channels the window sum stays in registers."""
    wl = kernel.wl
    sch = tvm.s_tir.Schedule(func)
    try:
        sch.compute_inline(sch.get_sblock("act_codes"))
    except Exception:  # noqa: BLE001 - codes input: no quantization block
        pass
    pad = sch.get_sblock("act_pad")
    n, y, xx, ch = sch.get_loops(pad)
    sch.parallel(sch.fuse(n, y))
    sch.vectorize(sch.split(ch, [None, LANES])[1])
    epilogue = sch.get_sblock("epilogue")
    n, ch, y, xx = sch.get_loops(epilogue)
    x_tile = max(_divisors(wl.out_width, MAX_X_TILE))
    xo, xi = sch.split(xx, [None, x_tile])
    sch.reorder(n, y, xo, ch, xi)
    sch.parallel(sch.fuse(n, y))
    if x_tile > 1:
        sch.vectorize(xi)
    acc = sch.get_sblock("dw_acc")
    sch.compute_at(acc, xo)  # the tile's pixels x every (padded) channel: a few KB, in L1
    loops = sch.get_loops(acc)
    xo_stmt = sch.get(xo)
    start = next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(xo_stmt)) + 1
    inner = loops[start:]
    spatial = inner[:len(inner) - sum(1 for extent in wl.kernel if extent > 1)]
    reductions = inner[len(spatial):]
    ch_loop = spatial[-1]
    cb, lane = sch.split(ch_loop, [None, LANES])
    pixel = spatial[:-1]
    sch.reorder(cb, *reductions, *pixel, lane)
    for loop in pixel:
        sch.unroll(loop)
    sch.vectorize(lane)
    sch.set_scope(acc, 0, "local")
    if reductions:
        init = sch.decompose_reduction(acc, reductions[0])
        init_loops = sch.get_loops(init)
        sch.vectorize(init_loops[-1])
    return sch


def scheduled_depthwise_primfunc(kernel: DepthwiseKernel):
    from .build import OPAQUE_PATTERN

    try:
        func = schedule_depthwise(kernel, make_depthwise_primfunc(kernel)).mod["main"]
    except Exception as err:  # noqa: BLE001 - a TVM schedule error becomes a CompileError naming the kernel
        raise CompileError(f"schedule failed for depthwise kernel {kernel.key()}: {err}") from err
    return func.with_attr("op_pattern", OPAQUE_PATTERN).with_attr("tirx.is_scheduled", True)


def depthwise_kernel_args(name, kernel: DepthwiseKernel, weight_idx, params):
    """Numpy arguments (after the input): gathered weights, bias, epilogue parameters."""
    wl = kernel.wl
    check_accumulator_fits(name, wl, params["lut_int"], params["bias_int"])
    c = wl.out_channels
    rows = np.broadcast_to(np.atleast_2d(np.asarray(params["lut_int"], dtype=np.int64)), (c, 1 << wl.w_bits))
    if np.abs(rows).max(initial=0) > 127:
        raise QuantizationError(f"layer {name!r}: lut_int has a level {int(np.abs(rows).max())} outside int8")
    idx = np.asarray(weight_idx, dtype=np.int64)  # (C, 1, kh, kw)
    gathered = np.take_along_axis(rows, idx.reshape(c, -1), axis=1).reshape(c, *wl.kernel)
    weight = np.zeros((*wl.kernel, kernel.channels_padded), np.int32)
    weight[..., :c] = np.transpose(gathered, (1, 2, 0))
    bias = np.ascontiguousarray(np.asarray(params["bias_int"], dtype=np.int64).reshape(-1), dtype=np.int32)
    return [weight, bias] + epilogue_args(params, c, kernel.output)


def float_depthwise_kernel_args(layer, kernel: DepthwiseKernel):
    """Numpy arguments (after ``x``) of a float-contract depthwise kernel for a ``QnnLayer``:
    ``act_scale, weight, bias, clip_bounds`` (module doc)."""
    wl = kernel.wl
    c = wl.out_channels
    rows = reference.lut_rows(layer.lut, c)  # float64 (C, L)
    idx = np.asarray(layer.weight_idx, dtype=np.int64)  # (C, 1, kh, kw)
    gathered = float(layer.s_a) * np.take_along_axis(rows, idx.reshape(c, -1), axis=1).reshape(c, *wl.kernel)
    weight = np.zeros((*wl.kernel, kernel.channels_padded), np.float64)
    weight[..., :c] = np.transpose(gathered, (1, 2, 0))
    bias = np.zeros(c) if layer.bias is None else np.asarray(layer.bias, np.float64)
    return [np.array([layer.s_a], dtype=np.float32), weight, np.ascontiguousarray(bias, dtype=np.float64),
            clip_bounds(layer)]
