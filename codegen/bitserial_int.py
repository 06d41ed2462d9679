"""Integer-only bit-serial kernels: DESIGN's integer-only mode on the CPU (no float in the layer).

The popcount part is the float kernel's (:mod:`codegen.bitserial_conv2d`): activation planes
``A_p`` and weight planes ``W_j`` give the exact integers ``acc[j] = sum_p 2^p popcount(A_p & W_j)``
and the window total ``T = sum_p 2^p popcount(A_p)``. With the int8 LUT ``lut_int`` of
``reference.integer_requant_params`` the layer's int32 accumulator is an integer affine form of
them (block ``combine`` plus ``epilogue``, all in int64, exact):

* one-hot planes (any ``lut_int``): ``acc = lut_int[L-1] T + sum_{q<L-1} (lut_int[q] - lut_int[L-1]) acc[q]``;
* bit planes, only when every row of ``lut_int`` is exactly ``a + d q`` in integers (int8 rounding
  usually breaks that even for a uniform float LUT): ``acc = a T + sum_j d 2^j acc[j]``;

then ``+ bias_int``. An input zero point ``z`` (``wl.a_zero_point``) changes only the packing
(codes ``+ z``, spatial padding of code ``z``) and the bias: the host passes ``bias_acc = bias_int
- z sum lut_int[o, idx]`` (``vta_ext.compiler.integer_params``), so the accumulator is the
contract's ``sum lut_int (q - z) + bias_int`` exactly. The epilogue is either the fixed-point
requant to the next layer's codes, ``clip(((acc * M + 2^(sh-1)) >> sh) + z_next, lo, hi)`` as
uint8 NCHW (``output="codes"``), or the host's
dequantization of a raw accumulator, ``float32(clip(float64(acc) * (s_a * s_w[o]), out_min,
out_max))`` (``output="float"``) -- the accelerator's two store paths
(``vta_ext.compiler.LayerProgram``). Inputs are float32 (quantized in the kernel with
``act_codes``) or the uint8 codes another integer kernel emitted (``input="codes"``).

Block names and loop nests match the float kernel's (``act_codes``/``pack``, ``popcount_acc``,
``window_total``, ``combine``, ``epilogue``), so ``codegen.schedules.hand_schedule`` schedules
these kernels as it schedules the float ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from tvm_qnn.errors import QuantizationError, ShapeError

from .bitpack import act_codes_compute, pack_compute, pack_weight_planes
from .bitserial_conv2d import popcount_stages
from .workload import ConvWorkload, choose_scheme

ENDS = ("float", "codes")  # what an integer kernel reads / writes


def check_ends(kernel, what):
    """ShapeError unless ``kernel.input`` and ``kernel.output`` are in :data:`ENDS` (``what`` names the kernel)."""
    for field_name in ("input", "output"):
        value = getattr(kernel, field_name)
        if value not in ENDS:
            raise ShapeError(f"{what} {field_name}={value!r}; expected one of {list(ENDS)}")
INT32_LIMIT = 1 << 31


@dataclass(frozen=True)
class IntegerKernel:
    """One integer-only kernel: the workload's shapes/bits/scheme plus the input and output kinds."""

    wl: ConvWorkload
    input: str = "float"
    output: str = "float"

    def __post_init__(self):
        check_ends(self, "integer kernel")
        if self.wl.output != "float":
            raise ShapeError(f"integer kernel: workload output={self.wl.output!r}; expected 'float' (the NCHW layout)")

    @property
    def output_dtype(self):
        return "uint8" if self.output == "codes" else "float32"

    def key(self):
        return f"int_{self.wl.key()}_{self.input}_to_{self.output}"


def integer_scheme(lut_int, w_bits):
    """``"bitplane"`` when every row of ``lut_int`` is exactly ``a + d q`` in integers, else ``"onehot"``."""
    rows = np.atleast_2d(np.asarray(lut_int, dtype=np.int64))
    steps = rows[:, 1:2] - rows[:, :1]
    affine = bool(np.array_equal(rows, rows[:, :1] + steps * np.arange(rows.shape[1])[None, :]))
    return choose_scheme(w_bits, affine)


def integer_stages(kernel: IntegerKernel):
    """TE arguments and output of an integer kernel.

    Arguments, in PrimFunc order: ``x`` (float32 ``wl.input_shape``, then ``act_scale`` (1,)
    float32) or ``act_codes_in`` (uint8 ``wl.input_shape``); ``weight_planes``; ``coef`` (O,
    planes) int64; ``alpha`` (O,) int64; ``bias`` (O,) int64; then for ``output="codes"``
    ``multiplier``, ``rounding``, ``shift`` (O,) int64 and ``code_bounds`` (2,) int64, or for
    ``output="float"`` ``scale`` (O,) float64 and ``clip_bounds`` (2,) float64.
    """
    wl = kernel.wl
    word = wl.word
    n_out, o_out = wl.batch, wl.out_channels
    ho, wo, og = wl.out_height, wl.out_width, wl.out_per_group
    codes_shape = (wl.batch, 1, 1, wl.in_channels) if wl.kind == "dense" else (wl.batch, wl.height, wl.width,
                                                                                 wl.in_channels)

    if kernel.input == "float":
        x = te.placeholder(wl.input_shape, "float32", name="x")
        act_scale = te.placeholder((1,), "float32", name="act_scale")
        x_at = (lambda n, h, w, c: x[n, c]) if wl.kind == "dense" else (lambda n, h, w, c: x[n, c, h, w])
        codes = act_codes_compute(x_at, codes_shape, act_scale, wl.a_bits, zero_point=wl.a_zero_point)
        packed = pack_compute(codes, wl.a_bits, wl.groups, wl.padding, word, pad_code=wl.a_zero_point)
        args = [x, act_scale]
    else:
        x = te.placeholder(wl.input_shape, "uint8", name="act_codes_in")
        x_at = (lambda n, h, w, c: x[n, c]) if wl.kind == "dense" else (lambda n, h, w, c: x[n, c, h, w])
        packed = pack_compute(x_at, wl.a_bits, wl.groups, wl.padding, word, codes_shape=codes_shape,
                              pad_code=wl.a_zero_point)
        args = [x]
    weight_planes = te.placeholder(wl.weight_planes_shape, word, name="weight_planes")
    coef = te.placeholder((o_out, wl.w_planes), "int64", name="coef")
    alpha = te.placeholder((o_out,), "int64", name="alpha")
    bias = te.placeholder((o_out,), "int64", name="bias")

    acc, total, plane_sum = popcount_stages(wl, packed, weight_planes)  # the float kernel's integer core
    rj = te.reduce_axis((0, wl.w_planes), name="rj")

    combine = te.compute((n_out, ho, wo, o_out),
                         lambda n, y, xx, o: te.sum(coef[o, rj] * plane_sum(n, y, xx, rj, o), axis=rj),
                         name="combine")

    def accumulator(n, y, xx, o):  # the int32 accumulator of integer-only mode, formed in int64
        return combine[n, y, xx, o] + alpha[o] * total[n, y, xx, o // og] + bias[o]

    if kernel.output == "codes":
        multiplier = te.placeholder((o_out,), "int64", name="multiplier")
        rounding = te.placeholder((o_out,), "int64", name="rounding")
        shift = te.placeholder((o_out,), "int64", name="shift")
        code_bounds = te.placeholder((3,), "int64", name="code_bounds")

        def value(n, y, xx, o):
            requant = ((accumulator(n, y, xx, o) * multiplier[o] + rounding[o]) >> shift[o]) + code_bounds[2]
            return tirx.min(tirx.max(requant, code_bounds[0]), code_bounds[1]).astype("uint8")

        args = args + [weight_planes, coef, alpha, bias, multiplier, rounding, shift, code_bounds]
    else:
        scale = te.placeholder((o_out,), "float64", name="scale")
        clip_bounds = te.placeholder((2,), "float64", name="clip_bounds")

        def value(n, y, xx, o):
            y64 = accumulator(n, y, xx, o).astype("float64") * scale[o]
            return tirx.min(tirx.max(y64, clip_bounds[0]), clip_bounds[1]).astype("float32")

        args = args + [weight_planes, coef, alpha, bias, scale, clip_bounds]
    if wl.kind == "dense":
        out = te.compute((n_out, o_out), lambda n, o: value(n, 0, 0, o), name="epilogue")
    else:
        out = te.compute((n_out, o_out, ho, wo), lambda n, o, y, xx: value(n, y, xx, o), name="epilogue")
    return args, out


def make_integer_primfunc(kernel: IntegerKernel):
    """The unscheduled PrimFunc of an integer kernel."""
    args, out = integer_stages(kernel)
    return te.create_prim_func(args + [out]).with_attr("global_symbol", "qnn_" + kernel.key())


def scheduled_integer_primfunc(kernel: IntegerKernel):
    """The kernel with the hand schedule of the float kernels (same blocks), marked opaque and scheduled."""
    from tvm_qnn.errors import CompileError

    from .build import OPAQUE_PATTERN
    from .schedules import hand_schedule

    try:
        func = hand_schedule(kernel.wl, make_integer_primfunc(kernel)).mod["main"]
    except Exception as err:  # noqa: BLE001 - a TVM schedule error becomes a CompileError naming the kernel
        raise CompileError(f"hand schedule failed for integer kernel {kernel.key()}: {err}") from err
    return func.with_attr("op_pattern", OPAQUE_PATTERN).with_attr("tirx.is_scheduled", True)


def integer_kernel_args(name, kernel: IntegerKernel, weight_idx, params):
    """Numpy arguments (after the input) of ``kernel`` for one layer.

    ``params`` are the layer's integer-only parameters as the accelerator compiler makes them
    (``vta_ext.compiler.integer_params``: ``lut_int, bias_int, s_a, s_w, out_min, out_max`` and,
    for ``output="codes"``, ``multiplier, shift, lo, hi``). Raises ``QuantizationError`` naming
    the layer when the worst-case accumulator does not fit int32 (what the core accumulates in).
    """
    wl = kernel.wl
    lut_int = np.atleast_2d(np.asarray(params["lut_int"], dtype=np.int64))
    lut_int = np.broadcast_to(lut_int, (wl.out_channels, lut_int.shape[1]))
    # the bias over the unsigned codes (bias_int - z sum lut_int when the input has a zero point)
    bias = np.asarray(params.get("bias_acc", params["bias_int"]), dtype=np.int64).reshape(-1)
    fan_in = wl.channels_per_group * wl.kernel[0] * wl.kernel[1]
    worst = fan_in * ((1 << wl.a_bits) - 1) * np.abs(lut_int).max(axis=1) + np.abs(bias)
    if worst.max() >= INT32_LIMIT:
        raise QuantizationError(f"layer {name!r}: integer-only accumulator can reach {int(worst.max())} "
                                f"(fan-in {fan_in}, a_bits={wl.a_bits}), beyond int32")
    if wl.scheme == "bitplane":
        step = lut_int[:, 1] - lut_int[:, 0]
        if not np.array_equal(lut_int, lut_int[:, :1] + step[:, None] * np.arange(lut_int.shape[1])[None, :]):
            raise QuantizationError(f"layer {name!r}: scheme 'bitplane' needs an integer-affine lut_int")
        coef = step[:, None] << np.arange(wl.w_bits, dtype=np.int64)[None, :]
        alpha = lut_int[:, 0]
    else:
        coef = lut_int[:, :-1] - lut_int[:, -1:]
        alpha = lut_int[:, -1]
    planes = pack_weight_planes(weight_idx, wl.scheme, wl.w_bits, wl.groups, wl.word)
    out = [planes, np.ascontiguousarray(coef, np.int64), np.ascontiguousarray(alpha, np.int64), bias]
    if kernel.output == "codes":
        shift = np.asarray(params["shift"], dtype=np.int64).reshape(-1)
        rounding = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0).astype(np.int64)
        out += [np.asarray(params["multiplier"], dtype=np.int64).reshape(-1), rounding, shift,
                np.array([params["lo"], params["hi"], params.get("out_zero_point", 0)], dtype=np.int64)]
    else:
        # the same float64 product as LayerProgram.dequantize: acc * (float(s_a) * s_w[o])
        scale = float(params["s_a"]) * np.asarray(params["s_w"], dtype=np.float64).reshape(-1)
        lo = -np.inf if params.get("out_min") is None else float(params["out_min"])
        hi = np.inf if params.get("out_max") is None else float(params["out_max"])
        out += [np.ascontiguousarray(scale, np.float64), np.array([lo, hi], dtype=np.float64)]
    return out
