"""int8 kernels for integer-only layers: u8 activation codes x s8 weights -> s32 (AVX-512 VNNI).

DESIGN's integer-only accumulator ``acc[o] = sum lut_int[o, idx] * q_a + bias_int[o]`` is an
ordinary int8 convolution once the int8 LUT is gathered per weight index on the host
(``w_s8[o, c, kh, kw] = lut_int[o, idx[o, c, kh, kw]]``, exact: ``lut_int`` is int8). Codes are
``0 .. 2^a_bits - 1 <= 255`` (uint8) and the contract has no activation zero point, so the
products are exactly what ``vpdpbusd`` (u8 x s8, four products summed into an s32 lane) computes;
it does not saturate, and ``vnni_kernel_args`` refuses layers whose worst-case accumulator does
not fit int32 (as the popcount integer kernels do). The epilogue is the integer kernels' own
(:mod:`codegen.bitserial_int`): the fixed-point requant to the next layer's codes (uint8 NCHW) or
the host's float64 dequantization of the accumulator (float32 NCHW).

Internal layout (the API stays NCHW/OIHW):

* ``act_pad``: codes ``(N, Hp, Wp, G, Cg4)`` uint8, spatially pre-padded with code 0 (adds
  nothing) and each group's channels zero-padded to a multiple of 4 (``Cg4``);
* ``weight_s8``: ``(G, OB, kh, kw, Cg4/4, 16, 4)`` int8, ``OB = ceil(O/G / 16)`` blocks of 16
  output channels (zero rows past the group's outputs) by 4 consecutive input channels -- the
  ``(16, 4)`` operand of the ``dot_16x4`` VNNI intrinsic (``codegen.vnni_intrin``);
* ``vnni_acc``: ``(N, Ho, Wo, G, OB*16)`` int32, computed per register tile of ``x_tile``
  pixels x ``16 * o_vectors`` channels (:mod:`codegen.vnni_schedule`);
* ``epilogue``: NCHW output, or, when output channels need padding (``O/G`` not a multiple of
  16, or groups), a padded ``(N, G, OB*16, Ho, Wo)`` output that ``crop`` copies to NCHW.

A float conv may instead read and write NHWC (``layout="NHWC"``: input, residual and output): the
quantize then reads each pixel's channels contiguously and the epilogue writes the accumulator's own
``(pixel, channel)`` order, with no transposition at either end (``padded (N, Ho, Wo, G, OB*16)``
before ``crop``). ``relay_passes.lower_bitserial`` chains such kernels in NHWC and transposes only
where a float op of the graph reads or writes NCHW.

Dense layers are 1x1 convolutions on a 1x1 image, ``(N, C)`` -> ``(N, O)``.

**Float contract** (``contract="float"``, float input and output): a quantized layer of the float
contract whose LUT is uniform, ``lut[o, q] = a[o] + d[o] q`` (``reference.lut_is_affine``), runs on
the same int8 core with the *indices* as weights, ``v = idx - off`` (``off = 128`` at 8-bit weights
so that ``v`` fits int8, else 0). With the activation zero point ``z`` (codes, and the spatial
padding, hold ``q``; ``q - z`` is the contract's value) and ``K = C/G kh kw``:

    sum lut (q - z) = (a + d off) T_c + d (acc - z V[o]),   T_c = T - z K

where ``acc = sum v q`` (``vnni_acc``), ``V[o] = sum v`` over the kernel (host) and ``T = sum q``
over the window (``window_total``, from the per-pixel channel sums ``channel_sum``: ``kh kw``
adds per output pixel, not ``K``). The epilogue is the bit-serial kernels' ``combine``:
``float32(alpha T_c + beta (acc - z V)) `` in float64 with ``alpha = s_a (a + d off)``, ``beta = s_a
d``, then the float32 bias and the clip -- the exact integer sums of the contract combined in
float64 and rounded once, as ``codegen.bitserial_conv2d`` does; one ``vpdpbusd`` per 64 MACs
whatever the bits, where bit-serial popcount needs ``a_bits x w_bits`` plane products.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from tvm_qnn import reference
from tvm_qnn.errors import QuantizationError, ShapeError

from .bitpack import act_codes_compute, act_input_placeholder, counts_codes
from .bitserial_conv2d import residual_epilogue
from .bitserial_int import INT32_LIMIT, check_ends
from .plan import act_input_args, affine_lut, clip_bounds
from .vnni_intrin import AVX2_MAX_A_BITS, INT16_SUM_LIMIT
from .workload import ConvWorkload

LANES = 16  # s32 lanes of one zmm: output channels per vpdpbusd
REDUCE = 4  # u8 x s8 products summed per lane
INSTRUCTIONS = ("vnni", "avx2", "plain")  # what the (16, 4) reduction block is built with
LAYOUTS = ("NCHW", "NHWC")


def _ceil_div(a, b):
    return -(-a // b)


@dataclass(frozen=True)
class Int8Kernel:
    """One int8 kernel: the workload's shapes and bits, the input/output kinds, the instructions.

    ``instructions`` (``codegen.vnni_schedule.target_int8_instructions``): "vnni", the 512-bit
    ``vpdpbusd`` (``codegen.vnni_intrin``); "avx2", ``vpmaddubsw`` + ``vpmaddwd`` (codes of more
    than ``AVX2_MAX_A_BITS`` bits split in two, see ``codegen.vnni_intrin``); "plain", the int32
    fallback. ``int16_sums`` (AVX2 only, codes of at most ``AVX2_MAX_A_BITS``): the ``vpmaddubsw`` pair
    sums stay in int16 accumulators over the whole reduction and are widened once per output
    (``codegen.vnni_intrin``); only exact for weights that pass :func:`int16_sums_exact`, which
    :func:`with_int16_sums` checks. ``wl.scheme`` and ``wl.word`` describe
    bit planes and do not apply: they are normalised so that equal layers share one kernel.
    """

    wl: ConvWorkload
    input: str = "float"
    output: str = "float"
    instructions: str = "vnni"
    contract: str = "integer"  # "integer": DESIGN's integer-only accumulator; "float": the float contract
    int16_sums: bool = False
    int16_per_tap: bool = False  # with int16_sums: widened into int32 after each kernel tap (kh, kw)
    layout: str = "NCHW"  # of the float input, residual and output of a conv: "NCHW" or "NHWC"
    unsplit_codes: bool = False  # AVX2, 8-bit codes fed to vpmaddubsw whole: exact for weights of |w| <= 64

    def __post_init__(self):
        check_ends(self, "int8 kernel")
        if self.int16_sums and (self.instructions != "avx2" or self.wl.a_bits > AVX2_MAX_A_BITS):
            raise ShapeError(f"int8 kernel: int16_sums needs instructions='avx2' and codes of at most "
                             f"{AVX2_MAX_A_BITS} bits (got {self.instructions!r}, a_bits={self.wl.a_bits})")
        if self.unsplit_codes and self.instructions != "avx2":
            raise ShapeError(f"int8 kernel: unsplit_codes needs instructions='avx2' (got {self.instructions!r})")
        if self.int16_per_tap and not (self.int16_sums and self.wl.kind == "conv2d"):
            raise ShapeError(f"int8 kernel: int16_per_tap needs int16_sums and a conv2d "
                             f"(got int16_sums={self.int16_sums}, kind={self.wl.kind!r})")
        if self.instructions not in INSTRUCTIONS:
            raise ShapeError(f"int8 kernel: instructions={self.instructions!r}; expected one of {list(INSTRUCTIONS)}")
        if self.contract not in ("integer", "float"):
            raise ShapeError(f"int8 kernel: contract={self.contract!r}; expected 'integer' or 'float'")
        if self.contract == "float" and (self.input, self.output) != ("float", "float"):
            raise ShapeError(f"int8 kernel: the float contract reads and writes float "
                             f"(got input={self.input!r}, output={self.output!r})")
        if self.layout not in LAYOUTS:
            raise ShapeError(f"int8 kernel: layout={self.layout!r}; expected one of {list(LAYOUTS)}")
        if self.layout == "NHWC" and (self.wl.kind != "conv2d" or (self.input, self.output) != ("float", "float")):
            raise ShapeError(f"int8 kernel: layout='NHWC' needs a conv2d with float input and output "
                             f"(got kind={self.wl.kind!r}, input={self.input!r}, output={self.output!r})")
        if self.wl.output != "float":
            raise ShapeError(f"int8 kernel: workload output={self.wl.output!r}; expected 'float' (the NCHW layout)")
        object.__setattr__(self, "wl", dataclasses.replace(self.wl, scheme="onehot", word="uint64"))

    @property
    def output_dtype(self):
        return "uint8" if self.output == "codes" else "float32"

    @property
    def channels_padded(self):
        """``Cg4``: channels per group padded to a multiple of 4."""
        return _ceil_div(self.wl.channels_per_group, REDUCE) * REDUCE

    @property
    def out_blocks(self):
        """``OB``: blocks of 16 output channels per group."""
        return _ceil_div(self.wl.out_per_group, LANES)

    @property
    def out_padded(self):
        """Output channels per group after padding to whole blocks (``OB * 16``)."""
        return self.out_blocks * LANES

    @property
    def pads_output(self):
        """True when the epilogue writes a padded output and ``crop`` copies it to NCHW."""
        return self.wl.groups > 1 or self.out_padded != self.wl.out_channels

    @property
    def weight_shape(self):
        kh, kw = self.wl.kernel
        return (self.wl.groups, self.out_blocks, kh, kw, self.channels_padded // REDUCE, LANES, REDUCE)

    @property
    def nhwc(self):
        """True when the conv's float input, residual and output are NHWC (:data:`LAYOUTS`)."""
        return self.layout == "NHWC"

    @property
    def input_shape(self):
        wl = self.wl
        return (wl.batch, wl.height, wl.width, wl.in_channels) if self.nhwc else wl.input_shape

    @property
    def output_shape(self):
        wl = self.wl
        if wl.kind == "dense":
            return (wl.batch, wl.out_channels)
        if self.nhwc:
            return (wl.batch, wl.out_height, wl.out_width, wl.out_channels)
        return (wl.batch, wl.out_channels, wl.out_height, wl.out_width)

    def key(self):
        contract = "_float_contract" if self.contract == "float" else ""
        sums = ("_int16_per_tap" if self.int16_per_tap else "_int16_sums") if self.int16_sums else ""
        layout = "_nhwc" if self.nhwc else ""
        whole = "_unsplit" if self.unsplit_codes else ""
        return (f"int8_{self.instructions}{sums}{whole}_{self.wl.key()}_{self.input}_to_{self.output}"
                f"{contract}{layout}")

    @property
    def vnni(self):
        """True when the reduction tile is ``vpdpbusd``."""
        return self.instructions == "vnni"

    @property
    def counts_codes(self):
        """True when the float contract's input codes are counted against thresholds, not divided
        (``codegen.bitpack.act_code_thresholds``; the ``act_thresholds`` argument replaces ``act_scale``)."""
        return self.contract == "float" and counts_codes(self.wl.a_bits)

    @property
    def splits_codes(self):
        """True when the AVX2 kernel splits 8-bit codes in two (``vpmaddubsw`` would saturate on them)."""
        return self.instructions == "avx2" and self.wl.a_bits > AVX2_MAX_A_BITS and not self.unsplit_codes


def int8_stages(kernel: Int8Kernel):
    """TE arguments and output of an int8 kernel.

    Arguments, in PrimFunc order: ``x`` (float32 NCHW, NHWC with ``layout="NHWC"``, or (N, C)) and
    ``act_scale`` (1,) float32 (``act_thresholds`` (2^b - 1,) float32 when ``kernel.counts_codes``), or
    ``act_codes_in`` (uint8, same shape); ``weight_s8`` (``kernel.weight_shape``) int8;
    ``bias`` (O,) int32; then for ``output="codes"`` ``multiplier``, ``rounding``, ``shift`` (O,)
    int64 and ``code_bounds`` (2,) int64, or for ``output="float"`` ``scale`` (O,) float64 and
    ``clip_bounds`` (2,) float64 -- the arguments of :func:`codegen.bitserial_int.integer_stages`
    with the weight planes and LUT coefficients replaced by the gathered int8 weights.
    """
    wl = kernel.wl
    n_b, o_out, groups = wl.batch, wl.out_channels, wl.groups
    cg, og, cg4, op = wl.channels_per_group, wl.out_per_group, kernel.channels_padded, kernel.out_padded
    ho, wo = wl.out_height, wl.out_width
    (kh, kw), (sh, sw), (dh, dw) = wl.kernel, wl.stride, wl.dilation
    top, left, _, _ = wl.padding
    dense = wl.kind == "dense"
    codes_shape = (n_b, 1, 1, wl.in_channels) if dense else (n_b, wl.height, wl.width, wl.in_channels)

    float_contract = kernel.contract == "float"
    zero = wl.a_zero_point if float_contract else 0
    if kernel.input == "float":
        x = te.placeholder(kernel.input_shape, "float32", name="x")
        act_scale = act_input_placeholder(wl.a_bits, kernel.counts_codes)
        if kernel.nhwc:
            x_at = lambda n, h, w, c: x[n, h, w, c]  # noqa: E731
        else:
            x_at = (lambda n, h, w, c: x[n, c]) if dense else (lambda n, h, w, c: x[n, c, h, w])
        codes_at = act_codes_compute(x_at, codes_shape, act_scale, wl.a_bits, zero_point=zero,
                                     counted=kernel.counts_codes)
        args = [x, act_scale]
    else:
        x = te.placeholder(wl.input_shape, "uint8", name="act_codes_in")
        codes_at = (lambda n, h, w, c: x[n, c]) if dense else (lambda n, h, w, c: x[n, c, h, w])
        args = [x]

    height, width = codes_shape[1], codes_shape[2]

    def padded_code(n, y, xx, g, c):
        # spatial padding holds code z (value 0); the channels padded to a multiple of 4 hold 0 (no weight)
        inside = tirx.all(y >= top, y < top + height, xx >= left, xx < left + width)
        value = codes_at(n, tirx.min(tirx.max(y - top, 0), height - 1), tirx.min(tirx.max(xx - left, 0), width - 1),
                         g * cg + tirx.min(c, cg - 1))
        spatial = tirx.Select(inside, value, tirx.const(zero, "uint8"))
        return tirx.Select(c < cg, spatial, tirx.const(0, "uint8"))

    act_pad = te.compute((n_b, wl.padded_height, wl.padded_width, groups, cg4), padded_code, name="act_pad")
    weight = te.placeholder(kernel.weight_shape, "int8", name="weight_s8")
    bias = te.placeholder((o_out,), "float64" if float_contract else "int32", name="bias")

    rh, rw = te.reduce_axis((0, kh), name="rh"), te.reduce_axis((0, kw), name="rw")
    rcb = te.reduce_axis((0, cg4 // REDUCE), name="rcb")
    if kernel.int16_per_tap:  # int16 sums per kernel tap, each widened into the int32 sum after it
        rj = te.reduce_axis((0, 2), name="rj")
        pairs = te.compute(
            (n_b, ho, wo, groups, kh, kw, op, 2),  # (channel, pair) innermost: the intrinsic's (16, 2) tile
            lambda n, y, xx, g, th, tw, o, p: te.sum(
                act_pad[n, y * sh + th * dh, xx * sw + tw * dw, g, rcb * REDUCE + p * 2 + rj].astype("int16")
                * weight[g, o // LANES, th, tw, rcb, o % LANES, p * 2 + rj].astype("int16"),
                axis=[rcb, rj]),
            name="pair_acc")
        rp = te.reduce_axis((0, 2), name="rp")
        acc = te.compute((n_b, ho, wo, groups, op),
                         lambda n, y, xx, g, o: te.sum(pairs[n, y, xx, g, rh, rw, o, rp].astype("int32"),
                                                       axis=[rh, rw, rp]), name="vnni_acc")
    elif kernel.int16_sums:  # int16 sums of products 2p, 2p+1 of each group of 4, widened after the reduction
        rj = te.reduce_axis((0, 2), name="rj")
        pairs = te.compute(
            (n_b, ho, wo, groups, op, 2),
            lambda n, y, xx, g, o, p: te.sum(
                act_pad[n, y * sh + rh * dh, xx * sw + rw * dw, g, rcb * REDUCE + p * 2 + rj].astype("int16")
                * weight[g, o // LANES, rh, rw, rcb, o % LANES, p * 2 + rj].astype("int16"),
                axis=[rh, rw, rcb, rj]),
            name="pair_acc")
        acc = te.compute((n_b, ho, wo, groups, op),
                         lambda n, y, xx, g, o: pairs[n, y, xx, g, o, 0].astype("int32")
                         + pairs[n, y, xx, g, o, 1].astype("int32"), name="vnni_acc")
    else:
        rci = te.reduce_axis((0, REDUCE), name="rci")
        acc = te.compute(
            (n_b, ho, wo, groups, op),
            lambda n, y, xx, g, o: te.sum(
                act_pad[n, y * sh + rh * dh, xx * sw + rw * dw, g, rcb * REDUCE + rci].astype("int32")
                * weight[g, o // LANES, rh, rw, rcb, o % LANES, rci].astype("int32"),
                axis=[rh, rw, rcb, rci]),
            name="vnni_acc")

    if float_contract:
        value = _FloatContractValue(kernel, act_pad, acc, bias)
        args = args + [weight] + value.args
    else:
        store_args, requant = integer_epilogue(kernel.output, o_out)
        args = args + [weight, bias] + store_args

        def value(n, y, xx, g, o):
            oc = tirx.min(g * og + o, o_out - 1)  # padded channels read a valid row; their values are dropped
            return requant(acc[n, y, xx, g, o].astype("int64") + bias[oc].astype("int64"), oc)

    residual = None
    if wl.residual:
        if kernel.output != "float":  # (the workload itself refuses a residual on a dense layer)
            raise ShapeError(f"int8 kernel {kernel.key()}: a residual needs a float output")
        residual = te.placeholder(kernel.output_shape, "float32", name="residual")
        args = args + [residual]

    def finish(result, n, o, y, xx):  # the fused residual add / ReLU (codegen.bitserial_conv2d.residual_epilogue)
        if residual is None:
            return result
        return residual_epilogue(wl, result, residual[n, y, xx, o] if kernel.nhwc else residual[n, o, y, xx])

    if kernel.nhwc:  # channels innermost, as the accumulator: no transposition in the epilogue
        if kernel.pads_output:
            padded = te.compute((n_b, ho, wo, groups, op), lambda n, y, xx, g, o: value(n, y, xx, g, o),
                                name="epilogue")
            out = te.compute((n_b, ho, wo, o_out),
                             lambda n, y, xx, o: finish(padded[n, y, xx, o // og, o % og], n, o, y, xx), name="crop")
        else:
            out = te.compute((n_b, ho, wo, o_out), lambda n, y, xx, o: finish(value(n, y, xx, 0, o), n, o, y, xx),
                             name="epilogue")
    elif kernel.pads_output:
        if dense:
            padded = te.compute((n_b, groups, op), lambda n, g, o: value(n, 0, 0, g, o), name="epilogue")
            out = te.compute((n_b, o_out), lambda n, o: padded[n, o // og, o % og], name="crop")
        else:
            padded = te.compute((n_b, groups, op, ho, wo), lambda n, g, o, y, xx: value(n, y, xx, g, o),
                                name="epilogue")
            out = te.compute((n_b, o_out, ho, wo),
                             lambda n, o, y, xx: finish(padded[n, o // og, o % og, y, xx], n, o, y, xx), name="crop")
    elif dense:
        out = te.compute((n_b, o_out), lambda n, o: value(n, 0, 0, 0, o), name="epilogue")
    else:
        out = te.compute((n_b, o_out, ho, wo), lambda n, o, y, xx: finish(value(n, y, xx, 0, o), n, o, y, xx),
                         name="epilogue")
    return args, out


class _FloatContractValue:
    """The float-contract epilogue ``value(n, y, x, g, o)`` and its placeholders (module doc):
    ``alpha``, ``beta`` (O,) float64, ``weight_zero`` (O,) float64 (``z V[o]``, an integer below 2^53:
    converted once on the host, not per output), ``bias`` (O,) float64,
    ``clip_bounds`` (2,) float32."""

    def __init__(self, kernel, act_pad, acc, bias):
        wl = kernel.wl
        o_out, og = wl.out_channels, wl.out_per_group
        (kh, kw), (sh, sw), (dh, dw) = wl.kernel, wl.stride, wl.dilation
        n_b, groups, cg4 = wl.batch, wl.groups, kernel.channels_padded
        self.alpha = te.placeholder((o_out,), "float64", name="alpha")
        self.beta = te.placeholder((o_out,), "float64", name="beta")
        self.weight_zero = te.placeholder((o_out,), "float64", name="weight_zero")
        self.clip_bounds = te.placeholder((2,), "float32", name="clip_bounds")
        self.bias, self.acc, self.og, self.o_out = bias, acc, og, o_out
        self.args = [self.alpha, self.beta, self.weight_zero, bias, self.clip_bounds]
        rc = te.reduce_axis((0, cg4), name="rc")
        channel_sum = te.compute((n_b, wl.padded_height, wl.padded_width, groups),
                                 lambda n, h, w, g: te.sum(act_pad[n, h, w, g, rc].astype("int32"), axis=rc),
                                 name="channel_sum")
        rh, rw = te.reduce_axis((0, kh), name="th"), te.reduce_axis((0, kw), name="tw")
        self.total = te.compute((n_b, wl.out_height, wl.out_width, groups),
                                lambda n, y, xx, g: te.sum(channel_sum[n, y * sh + rh * dh, xx * sw + rw * dw, g],
                                                           axis=[rh, rw]),
                                name="window_total")
        self.total_offset = wl.a_zero_point * wl.fan_in

    def __call__(self, n, y, xx, g, o):
        oc = tirx.min(g * self.og + o, self.o_out - 1)  # padded channels read a valid row; values dropped
        # int32 -> float64 converts in vector lanes on AVX2 (int64 -> float64 needs AVX-512DQ, else it is
        # scalar); the integers are below 2^53, so these float64 differences equal the int64 ones exactly
        window = self.total[n, y, xx, g].astype("float64")
        if self.total_offset:
            window = window - tirx.const(float(self.total_offset), "float64")
        centred = self.acc[n, y, xx, g, o].astype("float64") - self.weight_zero[oc]
        # rounded to float32 before the float32 bias, as codegen.bitserial_conv2d's combine
        combined = self.beta[oc] * centred + self.alpha[oc] * window
        full = combined.astype("float32") + self.bias[oc].astype("float32")
        return tirx.min(tirx.max(full, self.clip_bounds[0]), self.clip_bounds[1])


def integer_epilogue(output, out_channels):
    """``(placeholders, value(acc64, o))``: the integer kernels' store path for an int64 accumulator.

    ``output="codes"``: ``multiplier``, ``rounding``, ``shift`` (O,) int64 and ``code_bounds`` (2,)
    int64, value ``clip((acc * M + rounding) >> shift, lo, hi)`` as uint8; ``output="float"``:
    ``scale`` (O,) float64 and ``clip_bounds`` (2,) float64, value
    ``float32(clip(float64(acc) * scale, lo, hi))`` (what ``LayerProgram.dequantize`` computes).
    """
    if output == "codes":
        multiplier = te.placeholder((out_channels,), "int64", name="multiplier")
        rounding = te.placeholder((out_channels,), "int64", name="rounding")
        shift = te.placeholder((out_channels,), "int64", name="shift")
        code_bounds = te.placeholder((2,), "int64", name="code_bounds")

        def codes(acc64, o):
            requant = (acc64 * multiplier[o] + rounding[o]) >> shift[o]
            return tirx.min(tirx.max(requant, code_bounds[0]), code_bounds[1]).astype("uint8")

        return [multiplier, rounding, shift, code_bounds], codes
    scale = te.placeholder((out_channels,), "float64", name="scale")
    clip_bounds = te.placeholder((2,), "float64", name="clip_bounds")

    def dequantized(acc64, o):
        y64 = acc64.astype("float64") * scale[o]
        return tirx.min(tirx.max(y64, clip_bounds[0]), clip_bounds[1]).astype("float32")

    return [scale, clip_bounds], dequantized


def epilogue_args(params, out_channels, output):
    """Numpy arguments of :func:`integer_epilogue` from a layer's integer-only ``params``."""
    if output == "codes":
        shift = np.broadcast_to(np.asarray(params["shift"], dtype=np.int64).reshape(-1), (out_channels,))
        rounding = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0).astype(np.int64)
        multiplier = np.broadcast_to(np.asarray(params["multiplier"], dtype=np.int64).reshape(-1), (out_channels,))
        return [np.ascontiguousarray(multiplier), rounding, np.ascontiguousarray(shift),
                np.array([params["lo"], params["hi"]], np.int64)]
    # the same float64 product as LayerProgram.dequantize: acc * (float(s_a) * s_w[o])
    scale = float(params["s_a"]) * np.asarray(params["s_w"], dtype=np.float64).reshape(-1)
    lo = -np.inf if params.get("out_min") is None else float(params["out_min"])
    hi = np.inf if params.get("out_max") is None else float(params["out_max"])
    return [np.ascontiguousarray(np.broadcast_to(scale, (out_channels,))), np.array([lo, hi], np.float64)]


def make_int8_primfunc(kernel: Int8Kernel):
    """The unscheduled PrimFunc of an int8 kernel."""
    args, out = int8_stages(kernel)
    return te.create_prim_func(args + [out]).with_attr("global_symbol", "qnn_" + kernel.key())


def gather_weight_s8(kernel: Int8Kernel, weight_idx, lut_int):
    """``lut_int[o, idx]`` as int8, laid out as ``kernel.weight_shape`` (zeros in padded slots)."""
    wl = kernel.wl
    idx = np.asarray(weight_idx, dtype=np.int64)
    if idx.ndim == 2:
        idx = idx[:, :, None, None]
    rows = np.broadcast_to(np.atleast_2d(np.asarray(lut_int, dtype=np.int64)), (wl.out_channels, 1 << wl.w_bits))
    if rows.min(initial=0) < -128 or rows.max(initial=0) > 127:
        bad = int(rows.min()) if rows.min(initial=0) < -128 else int(rows.max())
        raise QuantizationError(f"lut_int has a level {bad} outside int8")
    weight = np.take_along_axis(rows, idx.reshape(wl.out_channels, -1), axis=1).reshape(idx.shape)  # (O, Cg, kh, kw)
    g, ob, kh, kw, cb, lanes, four = kernel.weight_shape
    og, cg = wl.out_per_group, wl.channels_per_group
    full = np.zeros((g, ob * lanes, cb * four, kh, kw), dtype=np.int8)
    full[:, :og, :cg] = weight.reshape(g, og, cg, kh, kw)
    # (G, OB, 16, CB, 4, kh, kw) -> (G, OB, kh, kw, CB, 16, 4)
    blocked = full.reshape(g, ob, lanes, cb, four, kh, kw).transpose(0, 1, 5, 6, 3, 2, 4)
    return np.ascontiguousarray(blocked)


def int16_sums_exact(kernel: Int8Kernel, weight_s8, per_tap=False):
    """True when every int16 pair accumulator of ``kernel`` stays in int16 for any codes: per output
    channel and pair lane, ``max code * sum |w|`` over the products it sums (the whole reduction, or
    one kernel tap's with ``per_tap``) is at most 32767."""
    g, ob, kh, kw, cb, lanes, four = kernel.weight_shape
    magnitude = np.abs(np.asarray(weight_s8, dtype=np.int64)).reshape(g, ob, kh * kw, cb, lanes, 2, four // 2)
    sums = magnitude.sum(axis=(3, 6)) if per_tap else magnitude.sum(axis=(2, 3, 6))
    worst = ((1 << kernel.wl.a_bits) - 1) * sums.max(initial=0)
    return bool(worst <= INT16_SUM_LIMIT)


# per-tap int16 sums pay a load, add and store of the int32 tile per tap: on one Zen 3 core (w4a4 float
# contract, 3x3, 1 thread, best of 12 interleaved runs) they lost to int32 accumulators at 64 channels
# (16 steps per tap; 1.86 against 1.58 ms at 56x56) and won from 128 (1.33 against 1.45 ms at 28x28;
# 1.08 against 1.33 ms at 256 channels 14x14)
INT16_TAP_MIN_CHANNELS = 128


def with_int16_sums(kernel: Int8Kernel, weight_s8):
    """``kernel`` with int16 pair accumulators when it is an AVX2 kernel of codes below 128 and
    :func:`int16_sums_exact` holds for its gathered weights over the whole reduction, or else per
    kernel tap of a conv with more than one tap and at least :data:`INT16_TAP_MIN_CHANNELS` channels
    per group (``int16_per_tap``); else ``kernel`` as it is."""
    if kernel.instructions != "avx2" or kernel.splits_codes:
        return kernel
    if int16_sums_exact(kernel, weight_s8):
        return dataclasses.replace(kernel, int16_sums=True)
    taps = kernel.wl.kernel[0] * kernel.wl.kernel[1] if kernel.wl.kind == "conv2d" else 1
    if taps > 1 and kernel.channels_padded >= INT16_TAP_MIN_CHANNELS and int16_sums_exact(kernel, weight_s8,
                                                                                          per_tap=True):
        return dataclasses.replace(kernel, int16_sums=True, int16_per_tap=True)
    return kernel


# vpmaddubsw's pair sum a0 w0 + a1 w1 stays within int16 for every 8-bit code when |w| <= 64 (2 x 255 x 64 =
# 32640): then 8-bit codes need no split (the float contract's 4-bit weight indices, 0..15)
UNSPLIT_MAX_WEIGHT = 64


def with_avx2_sums(kernel: Int8Kernel, weight_s8):
    """The cheapest exact AVX2 accumulation of ``kernel`` for its gathered weights: int16 sums where
    :func:`with_int16_sums` takes them, 8-bit codes unsplit (``unsplit_codes``) where every weight is within
    :data:`UNSPLIT_MAX_WEIGHT`, else ``kernel`` as it is (any other instructions: unchanged)."""
    kernel = with_int16_sums(kernel, weight_s8)
    weight = np.asarray(weight_s8, dtype=np.int64)
    if kernel.splits_codes and np.abs(weight).max(initial=0) <= UNSPLIT_MAX_WEIGHT:
        return dataclasses.replace(kernel, unsplit_codes=True)
    return kernel


def check_accumulator_fits(name, wl: ConvWorkload, lut_int, bias_int):
    """``QuantizationError`` naming the layer when the worst-case accumulator does not fit int32."""
    rows = np.broadcast_to(np.atleast_2d(np.asarray(lut_int, dtype=np.int64)), (wl.out_channels, 1 << wl.w_bits))
    bias = np.asarray(bias_int, dtype=np.int64).reshape(-1)
    fan_in = wl.channels_per_group * wl.kernel[0] * wl.kernel[1]
    worst = fan_in * ((1 << wl.a_bits) - 1) * np.abs(rows).max(axis=1) + np.abs(bias)
    if worst.max() >= INT32_LIMIT:
        raise QuantizationError(f"layer {name!r}: integer-only accumulator can reach {int(worst.max())} "
                                f"(fan-in {fan_in}, a_bits={wl.a_bits}), beyond int32")


def int8_kernel_args(name, kernel: Int8Kernel, weight_idx, params):
    """Numpy arguments (after the input) of ``kernel`` for one layer.

    ``params`` are the layer's integer-only parameters as the accelerator compiler makes them
    (see :func:`codegen.bitserial_int.integer_kernel_args`). Raises ``QuantizationError`` naming
    the layer when the worst-case accumulator does not fit int32.
    """
    wl = kernel.wl
    check_accumulator_fits(name, wl, params["lut_int"], params["bias_int"])
    try:
        weight = gather_weight_s8(kernel, weight_idx, params["lut_int"])
    except QuantizationError as err:
        raise QuantizationError(f"layer {name!r}: {err}") from None
    bias = np.ascontiguousarray(np.asarray(params["bias_int"], dtype=np.int64).reshape(-1), dtype=np.int32)
    return [weight, bias] + epilogue_args(params, wl.out_channels, kernel.output)


def float_contract_weight_offset(w_bits):
    """``off``: the weights are ``idx - off`` in int8 (module doc)."""
    return 128 if w_bits == 8 else 0


def float_int8_kernel_args(layer, kernel: Int8Kernel):
    """Numpy arguments (after ``x``) of a float-contract int8 kernel for a ``QnnLayer`` with a uniform LUT:
    ``act_scale`` (or ``act_thresholds`` when ``kernel.counts_codes``), ``weight_s8, alpha, beta, weight_zero,
    bias, clip_bounds`` (module doc)."""
    wl = kernel.wl
    if not reference.lut_is_affine(layer.lut):
        raise QuantizationError(f"layer {layer.name!r}: the int8 kernel of the float contract needs a uniform "
                                f"(affine) LUT; this one is not (k-quantile levels run on the popcount kernel)")
    first, step = affine_lut(reference.lut_rows(layer.lut, layer.out_channels))  # as the bit-plane kernels
    off = float_contract_weight_offset(wl.w_bits)
    levels = np.arange(1 << wl.w_bits, dtype=np.int64) - off
    weight = gather_weight_s8(kernel, layer.weight_idx, levels)
    fan = wl.channels_per_group * wl.kernel[0] * wl.kernel[1]
    check_accumulator_fits(layer.name, wl, levels, np.zeros(wl.out_channels, np.int64))
    s_a = float(layer.s_a)
    idx = np.asarray(layer.weight_idx, dtype=np.int64).reshape(wl.out_channels, fan)
    weight_zero = wl.a_zero_point * (idx - off).sum(axis=1)
    bias = np.zeros(wl.out_channels) if layer.bias is None else np.asarray(layer.bias, np.float64)
    return [act_input_args(layer, wl.a_bits), weight,
            np.ascontiguousarray(s_a * (first + step * off), dtype=np.float64),
            np.ascontiguousarray(s_a * step, dtype=np.float64),
            np.ascontiguousarray(weight_zero, dtype=np.float64),  # exact: |z V| < 2^53
            np.ascontiguousarray(bias, dtype=np.float64), clip_bounds(layer)]
