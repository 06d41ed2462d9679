"""NHWC bit-serial conv2d (TE): popcounts of AND over packed words, exact integer sums.

For one output channel ``o`` and pixel, with activation planes ``A_p`` (p < b_a) and weight
planes ``W_j`` (:mod:`codegen.bitpack`), the kernel accumulates the integers

    acc[j] = sum_p 2^p sum_{kh,kw,words} popcount(A_p & W_j)       (block "popcount_acc")
    T      = sum_p 2^p sum_{kh,kw,words} popcount(A_p)             (block "window_total")

and the layer's float output ``s_a * sum_q lut[o,q] S[o,q] + bias[o]`` is the affine form
``float32(alpha[o] * T + sum_j coef[o,j] * acc[j]) + bias[o]`` (block "combine" in float64,
rounded once to float32, then the float32 bias: the order of ``cpu-reference``) with

* uniform LUT ``lut[q] = a + d q`` (scheme "bitplane", ``W_j`` = bit j of the index):
  ``sum_q lut[q] S[q] = a T + d sum_j 2^j acc[j]``  ->  ``alpha = s_a a``, ``coef_j = s_a d 2^j``;
* any LUT (scheme "onehot", ``W_q = [idx == q]`` for q < L-1): ``S[q] = acc[q]``,
  ``S[L-1] = T - sum acc``  ->  ``alpha = s_a lut[L-1]``, ``coef_q = s_a (lut[q] - lut[L-1])``.

So both schemes share one kernel; only the weight planes and the coefficients differ
(:func:`codegen.plan.plan_layer` computes them on the host).

Zero point ``z`` (``wl.a_zero_point``): the code planes stay unsigned (codes ``q``, the spatial
padding filled with code ``z``) and the integers are corrected before the float combine, so the
float64 ``combine`` sees the exact sums over ``q - z`` of the contract:
``acc[j] - zero_sums[o, j]`` with ``zero_sums[o, j] = z * #{ones of weight plane j of channel o}``
(an extra int64 argument after ``alpha``, host-computed) and ``T - z * C/groups * kh * kw``. The epilogue then clips
(ReLU/ReLU6/clamp) and either writes float32 NCHW or the next layer's packed codes.
Accumulators are ``uint64`` popcount lanes (no conversion in the inner loop).
"""

from __future__ import annotations

from tvm import te, tirx

from .bitpack import act_codes_compute, act_input_placeholder, counts_codes, pack_compute
from .workload import ConvWorkload


def _acc_dtype(wl):
    return "uint64" if wl.word == "uint64" else "uint32"


def conv2d_tensors(wl: ConvWorkload, packed_input=False):
    """TE arguments and output of a workload, see :func:`conv2d_stages`."""
    stages = conv2d_stages(wl, packed_input)
    return stages["args"], stages["out"]


def popcount_stages(wl: ConvWorkload, packed, weight_planes):
    """The exact integer core shared by the float and the integer-only kernels.

    ``packed``: the packed activation planes (N, H+pad, W+pad, G, b_a, words); ``weight_planes``:
    ``wl.weight_planes_shape``. Returns ``(acc, total, plane_sum)``: blocks "popcount_acc" (N, Ho,
    Wo, w_planes, b_a, O) and "window_total" (N, Ho, Wo, G), and ``plane_sum(n, y, x, j, o)`` =
    ``sum_p 2^p acc[.., j, p, o]`` in int64. The hand schedule and the tuning space find the
    blocks by these names.
    """
    acc_dtype = _acc_dtype(wl)
    n_out, o_out, kh, kw = wl.batch, wl.out_channels, wl.kernel[0], wl.kernel[1]
    (sh, sw), (dh, dw) = wl.stride, wl.dilation
    ho, wo, og = wl.out_height, wl.out_width, wl.out_per_group
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    rc = te.reduce_axis((0, wl.words_per_group), name="rc")
    acc = te.compute(
        (n_out, ho, wo, wl.w_planes, wl.a_bits, o_out),
        lambda n, y, xx, j, p, o: te.sum(
            tirx.popcount(packed[n, y * sh + rh * dh, xx * sw + rw * dw, o // og, p, rc]
                          & weight_planes[rh, rw, j, rc, o]).astype(acc_dtype),
            axis=[rh, rw, rc]),
        name="popcount_acc",
    )
    th = te.reduce_axis((0, kh), name="th")
    tw = te.reduce_axis((0, kw), name="tw")
    tc = te.reduce_axis((0, wl.words_per_group), name="tc")
    tp = te.reduce_axis((0, wl.a_bits), name="tp")
    total = te.compute(
        (n_out, ho, wo, wl.groups),
        lambda n, y, xx, g: te.sum(
            tirx.popcount(packed[n, y * sh + th * dh, xx * sw + tw * dw, g, tp, tc]).astype("int64")
            << tp.astype("int64"),
            axis=[th, tw, tc, tp]),
        name="window_total",
    )

    def plane_sum(n, y, xx, j, o):  # sum_p 2^p acc[j, p]: b_a <= 8 terms, unrolled here
        terms = [acc[n, y, xx, j, p, o].astype("int64") << p for p in range(wl.a_bits)]
        out = terms[0]
        for term in terms[1:]:
            out = out + term
        return out

    return acc, total, plane_sum


def conv2d_stages(wl: ConvWorkload, packed_input=False):
    """All TE tensors of one workload: ``{"args": [...], "out", "popcount_acc", "window_total"}``.

    Arguments, in PrimFunc order:
    ``x`` (float32 ``wl.input_shape``; or the packed codes ``wl.packed_input_shape`` when
    ``packed_input``), ``act_scale`` (1,) float32 or, for codes of at most ``bitpack.THRESHOLD_MAX_BITS`` bits,
    ``act_thresholds`` (2^b - 1,) float32 (``codegen.plan.act_input_args``; unused when packed), ``weight_planes``
    ``wl.weight_planes_shape`` of ``wl.word``, ``coef`` (O, w_planes) float64, ``alpha`` (O,)
    float64, ``zero_sums`` (O, w_planes) int64 (only when ``wl.a_zero_point``), ``bias`` (O,)
    float64, ``clip_bounds`` (2,) float32 (lo, hi; +-inf when absent), ``next_act_scale`` (1,)
    float32 (only for ``wl.output == "packed"``), ``residual`` float32 ``wl.output_shape`` (only for
    ``wl.residual``).
    """
    word = wl.word
    n_out, o_out = wl.batch, wl.out_channels
    ho, wo, og = wl.out_height, wl.out_width, wl.out_per_group

    counted = counts_codes(wl.a_bits)  # codes counted against thresholds, not divided (codegen.bitpack)
    act_scale = act_input_placeholder(wl.a_bits, counted)
    if packed_input:
        x = te.placeholder(wl.packed_input_shape, word, name="x_packed")
        packed = x
    else:
        x = te.placeholder(wl.input_shape, "float32", name="x")
        if wl.kind == "dense":
            codes = act_codes_compute(lambda n, h, w, c: x[n, c], (wl.batch, 1, 1, wl.in_channels), act_scale, wl.a_bits,
                                      zero_point=wl.a_zero_point, counted=counted)
        else:
            codes = act_codes_compute(lambda n, h, w, c: x[n, c, h, w],
                                      (wl.batch, wl.height, wl.width, wl.in_channels), act_scale, wl.a_bits,
                                      zero_point=wl.a_zero_point, counted=counted)
        packed = pack_compute(codes, wl.a_bits, wl.groups, wl.padding, word, pad_code=wl.a_zero_point)
    weight_planes = te.placeholder(wl.weight_planes_shape, word, name="weight_planes")
    coef = te.placeholder((o_out, wl.w_planes), "float64", name="coef")
    alpha = te.placeholder((o_out,), "float64", name="alpha")
    zero_sums = te.placeholder((o_out, wl.w_planes), "int64", name="zero_sums") if wl.a_zero_point else None
    bias = te.placeholder((o_out,), "float64", name="bias")
    clip_bounds = te.placeholder((2,), "float32", name="clip_bounds")

    acc, total, plane_sum = popcount_stages(wl, packed, weight_planes)
    rj = te.reduce_axis((0, wl.w_planes), name="rj")

    def centred_plane_sum(n, y, xx, j, o):  # exact integers over q - z (module doc)
        value = plane_sum(n, y, xx, j, o)
        return value - zero_sums[o, j] if zero_sums is not None else value

    combine = te.compute(
        (n_out, ho, wo, o_out),
        lambda n, y, xx, o: te.sum(coef[o, rj] * centred_plane_sum(n, y, xx, rj, o).astype("float64"), axis=rj),
        name="combine",
    )
    total_offset = wl.a_zero_point * wl.fan_in

    def value(n, y, xx, o):
        # the sum rounds to float32 before the bias is added in float32, as cpu-reference does
        window = total[n, y, xx, o // og]
        if total_offset:
            window = window - tirx.const(total_offset, "int64")
        acc = (combine[n, y, xx, o] + alpha[o] * window.astype("float64")).astype("float32")
        full = acc + bias[o].astype("float32")
        return tirx.min(tirx.max(full, clip_bounds[0]), clip_bounds[1])

    args = [x, act_scale, weight_planes, coef, alpha] + ([zero_sums] if zero_sums is not None else []) \
        + [bias, clip_bounds]
    if wl.output == "packed":
        next_scale = te.placeholder((1,), "float32", name="next_act_scale")
        # codes stored (N, Ho, O, Wo): columns contiguous, so pack_next packs them like the input
        codes_next = act_codes_compute(lambda n, y, o, xx: value(n, y, xx, o), (n_out, ho, o_out, wo), next_scale,
                                       wl.next_a_bits, name="next_codes", zero_point=wl.next_a_zero_point)
        out = pack_compute(lambda n, y, xx, o: codes_next[n, y, o, xx], wl.next_a_bits, wl.next_groups,
                           wl.next_padding, word, name="pack_next", codes_shape=(n_out, ho, wo, o_out),
                           pad_code=wl.next_a_zero_point)
        args = args + [next_scale]
    elif wl.kind == "dense":
        out = te.compute((n_out, o_out), lambda n, o: value(n, 0, 0, o), name="epilogue")
    elif wl.residual:
        residual = te.placeholder(wl.output_shape, "float32", name="residual")
        out = te.compute((n_out, o_out, ho, wo),
                         lambda n, o, y, xx: residual_epilogue(wl, value(n, y, xx, o), residual[n, o, y, xx]),
                         name="epilogue")
        args = args + [residual]
    else:
        out = te.compute((n_out, o_out, ho, wo), lambda n, o, y, xx: value(n, y, xx, o), name="epilogue")
    return {"args": args, "out": out, "popcount_acc": acc, "window_total": total}


def residual_epilogue(wl: ConvWorkload, value, residual):
    """``value + residual`` in float32 (then ``max(., 0)`` for ``"add_relu"``): the separate add / ReLU's arithmetic."""
    total = value + residual
    return tirx.max(total, tirx.const(0.0, "float32")) if wl.residual == "add_relu" else total


def make_primfunc(wl: ConvWorkload, packed_input=False):
    """The unscheduled ``tirx.PrimFunc`` of a workload (what schedules and MetaSchedule start from)."""
    args, out = conv2d_tensors(wl, packed_input)
    func = te.create_prim_func(args + [out])
    return func.with_attr("global_symbol", "qnn_" + wl.key())



def integer_sums_primfunc(wl: ConvWorkload):
    """PrimFunc exposing the exact integer sums ``popcount_acc`` (N, Ho, Wo, planes, a_bits, O) and
    ``window_total`` (N, Ho, Wo, G) of the kernel (tests check them bit-exactly)."""
    stages = conv2d_stages(wl)
    args = stages["args"]
    return te.create_prim_func([args[0], args[1], args[2], stages["popcount_acc"], stages["window_total"]])
