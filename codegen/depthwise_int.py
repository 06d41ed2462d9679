"""Integer-only depthwise conv2d (``groups == in_channels == out_channels``): a direct kernel.

A depthwise layer has a fan-in of ``kh * kw`` per output: bit planes (64 channels per word) and
VNNI (4 input channels per lane) both waste almost all their width on it. Here each channel is its
own plane, as NCHW lays it out: the channel planes run in parallel, a plane's codes are padded once
into a small buffer (spatially pre-padded with code 0, its columns stored by phase ``column mod
stride`` so that the taps of adjacent output pixels are adjacent bytes at any stride), and a row
tile of ``x_tile`` output pixels (16 or 8 when they divide the row) is ``kh * kw`` multiply-adds
on pixel vectors with the tap's weight broadcast, the window sum in registers. Neither the input
nor the output is transposed. The gathered int8 weights ``lut_int[c, idx]`` are stored as int32
``(kh, kw, C16)`` (channels padded to a multiple of 16).
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
from .schedules import divisors, loops_under
from .vnni_int8 import check_accumulator_fits, epilogue_args, integer_epilogue
from .workload import ConvWorkload

LANES = 16  # weights are stored (kh, kw, C) with C padded to a multiple of this
MAX_X_TILE = 16  # output pixels of a row per register tile: float64 / int32 vector lanes
PAD_LANES = 64  # code bytes per vector while padding


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

    phases = sw  # padded columns stored by phase (column mod stride): a row of outputs reads contiguous codes
    width_q = -(-wl.padded_width // phases)

    def padded_code(n, ch, y, phase, q):
        xx = q * phases + phase
        inside = tirx.all(y >= top, y < top + h, xx >= left, xx < left + w)
        value = codes_at(n, tirx.min(tirx.max(y - top, 0), h - 1), tirx.min(tirx.max(xx - left, 0), w - 1), ch)
        return tirx.Select(inside, value, tirx.const(zero, "uint8"))  # padding: code z, value 0

    act_pad = te.compute((n_b, c, wl.padded_height, phases, width_q), padded_code, name="act_pad")
    weight = te.placeholder((kh, kw, c16), "float64" if float_contract else "int32", name="weight")
    bias = te.placeholder((c,), "float64" if float_contract else "int32", name="bias")
    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")

    def code_at(n, ch, y, xx):  # padded code of output (y, xx) under tap (rh, rw)
        column = rw * dw
        return act_pad[n, ch, y * sh + rh * dh, column % phases, xx + column // phases]

    if float_contract:
        def product(n, ch, y, xx):
            code = code_at(n, ch, y, xx).astype("int32") - tirx.const(zero, "int32")
            return code.astype("float64") * weight[rh, rw, ch]
    else:
        def product(n, ch, y, xx):
            return code_at(n, ch, y, xx).astype("int32") * weight[rh, rw, ch]
    acc = te.compute((n_b, c, ho, wo), lambda n, ch, y, xx: te.sum(product(n, ch, y, xx), axis=[rh, rw]),
                     name="dw_acc")
    if float_contract:
        clip_bounds = te.placeholder((2,), "float32", name="clip_bounds")

        def value(n, ch, y, xx):  # rounded to float32 before the float32 bias, as the other float kernels
            full = acc[n, ch, y, xx].astype("float32") + bias[ch].astype("float32")
            return tirx.min(tirx.max(full, clip_bounds[0]), clip_bounds[1])

        out = te.compute((n_b, c, ho, wo), value, name="epilogue")
        return args + [weight, bias, clip_bounds], out
    store_args, requant = integer_epilogue(kernel.output, c)
    out = te.compute((n_b, c, ho, wo),
                     lambda n, ch, y, xx: requant(acc[n, ch, y, xx].astype("int64") + bias[ch].astype("int64"), ch),
                     name="epilogue")
    return args + [weight, bias] + store_args, out


def make_depthwise_primfunc(kernel: DepthwiseKernel):
    args, out = depthwise_stages(kernel)
    return te.create_prim_func(args + [out]).with_attr("global_symbol", "qnn_" + kernel.key())




def pixel_tile(width):
    """Output pixels per register tile: 16 or 8 when they divide the row (whole float64 / int32 vectors),
    else the largest divisor up to ``MAX_X_TILE`` (a 7- or 14-pixel row)."""
    for lanes in (16, 8):
        if width % lanes == 0:
            return lanes
    return max(divisors(width, MAX_X_TILE))


def schedule_depthwise(kernel: DepthwiseKernel, func) -> tvm.s_tir.Schedule:
    """Channels (with the batch) in parallel; per channel its padded codes (a plane of bytes, in L1),
    then per ``x_tile`` output pixels of a row the window sum in vector registers."""
    wl = kernel.wl
    sch = tvm.s_tir.Schedule(func)
    try:
        sch.compute_inline(sch.get_sblock("act_codes"))
    except Exception:  # noqa: BLE001 - codes input: no quantization block
        pass
    epilogue = sch.get_sblock("epilogue")
    n, ch, y, xx = sch.get_loops(epilogue)
    x_tile = pixel_tile(wl.out_width)
    xo, xi = sch.split(xx, [None, x_tile])
    plane = sch.fuse(n, ch)
    sch.parallel(plane)
    if x_tile > 1:
        sch.vectorize(xi)
    acc = sch.get_sblock("dw_acc")
    sch.compute_at(acc, xo)
    inner = loops_under(sch, acc, xo)
    reductions = inner[len(inner) - sum(1 for extent in wl.kernel if extent > 1):]
    pixel = inner[:len(inner) - len(reductions)]
    if reductions and pixel:
        sch.reorder(*reductions, *pixel)  # window order as the contract sums it: rh, then rw
    if pixel:
        sch.vectorize(pixel[-1])
    sch.set_scope(acc, 0, "local")
    if reductions:
        init = sch.decompose_reduction(acc, reductions[0])
        if pixel:
            sch.vectorize(sch.get_loops(init)[-1])
    pad = sch.get_sblock("act_pad")  # after its consumer moved under the channel loop
    sch.compute_at(pad, plane)
    inner = loops_under(sch, pad, plane)
    if inner and int(sch.get(inner[-1]).extent) > 1:  # a row of one phase: contiguous input columns at stride 1
        q = inner[-1]
        sch.vectorize(sch.split(q, [None, max(divisors(int(sch.get(q).extent), PAD_LANES))])[1])
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
