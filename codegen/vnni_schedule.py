"""Hand schedule of the int8 kernels (:mod:`codegen.vnni_int8`), VNNI or plain.

The epilogue is the anchor: its output is tiled as ``x_tile`` pixels x ``16 * o_vectors``
channels and the accumulator tile ``vnni_acc`` is computed under it in ``local`` scope, with the
``kh, kw, C/4`` reduction outside the unrolled tile so that the ``x_tile * o_vectors`` zmm
accumulators stay in registers. Per reduction step one 64-byte weight load per channel vector and
one 4-byte activation broadcast per pixel feed ``x_tile * o_vectors`` ``vpdpbusd``: the inner
``(16 channels, 4 input channels)`` block is tensorized with the ``dot_16x4`` VNNI intrinsic
(``codegen.vnni_intrin``). Without VNNI, an AVX2 target tensorizes the same block with
``vpmaddubsw`` + ``vpmaddwd`` (8-bit codes in two halves; a 16-lane accumulator is two of the 16
ymm registers, so the tile is smaller), and any other target vectorizes it over the 16 channels in
plain int32 arithmetic (correct on any x86-64, not fast). Rows of output pixels
(with the batch and groups) are spread over the threads, as are the padding and crop copies and,
for the float contract, the window sums of the codes.
"""

from __future__ import annotations

import math

import tvm

from .schedules import divisors, epilogue_pixels, has_block, loops_after
from .vnni_int8 import LANES, Int8Kernel

MAX_ACCUMULATORS = 24  # of the 32 zmm registers; the rest hold weight vectors and broadcasts
AVX2_MAX_ACCUMULATORS = 6  # 16-lane accumulators in 12 of the 16 ymm registers: weights, codes, ones, products
# int16 pair sums need no ones vector: 7 accumulators (14 ymm) + the broadcast codes + one product
AVX2_INT16_MAX_ACCUMULATORS = 7
CACHE_BUDGET = 512 * 1024  # bytes a streamed operand may take: half of a Zen 4 core's 1 MB L2
# AVX2 tiles favour pixels per weight load once the weights pass this (up to 7 accumulators, some
# spilled by the int32 kernels): on one Zen 3 core (float contract, 1 thread, best of 8-15 interleaved
# runs) 512->512 3x3 at 7x7 (2.4 MB of weights) ran 7 pixels x 16 channels in 1.30 ms against 2.05 ms
# for 1 x 64 at w2a2 (int16 sums), 1.33 against 2.95 ms at w4a4 (int32) and 3.04 against 4.07 ms at
# w4a8 (split codes); at 256->256 14x14 (0.6 MB) 2 x 32 kept the lead (1.09 against 1.22 ms, w2a2)
STREAMED_WEIGHT_BYTES = 2 * CACHE_BUDGET
VNNI_FEATURES = ("avx512vnni",)  # the dot_16x4 intrinsic is the 512-bit vpdpbusd


def target_has_vnni(target) -> bool:
    """True when ``target`` (a ``tvm.target.Target`` or its dict) can run ``dot_16x4_vnni``.

    Asks LLVM about the target's ``mcpu`` and ``mattr`` (``-avx512vnni`` in ``mattr`` turns it off).
    """
    from tvm.target.codegen import target_has_features

    target = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if str(target.kind.name) != "llvm":
        return False
    return bool(target_has_features(list(VNNI_FEATURES), target))


def target_int8_instructions(target) -> str:
    """``"vnni"``, ``"avx2"`` or ``"plain"``: the int8 kernel's instructions on ``target`` (any code
    width: the AVX2 kernel splits 8-bit codes itself)."""
    from tvm.target.codegen import target_has_features

    if target_has_vnni(target):
        return "vnni"
    target = target if isinstance(target, tvm.target.Target) else tvm.target.Target(target)
    if str(target.kind.name) == "llvm" and target_has_features(["avx2"], target):
        return "avx2"
    return "plain"




def default_tile(kernel: Int8Kernel):
    """``(x_tile, o_vectors)``: the largest register tile whose sizes divide the output.

    With VNNI, and on AVX2 with weights beyond :data:`STREAMED_WEIGHT_BYTES` (streamed from L2 or
    further for every tile of pixels), the tile with the most pixels per weight load wins instead.
    With VNNI the weights of a channel tile over the whole reduction (``16 * o_vectors * 9 * C`` bytes)
    pass a 48 KB L1 from 64 channels on, so their stream from L2 limits the ``vpdpbusd`` loop: on a
    Xeon (1 thread) 256->256 3x3 at 14x14 ran 0.41 ms with 7 pixels x 32 channels against 0.50 ms
    with 2 x 128, 64->64 at 56x56 0.51 against 0.57 ms with 8 x 32 instead of 4 x 64 (integer contract),
    and ResNet-18 w2a2 took 7.90 against 8.26 ms at 1 thread, 3.92 against 4.20 ms at 2 (float
    contract, one process, interleaved)."""
    wl = kernel.wl
    width = 1 if wl.kind == "dense" else wl.out_width
    blocks = kernel.out_blocks
    best = None
    limit, pixels_first = MAX_ACCUMULATORS, kernel.instructions == "vnni"
    if kernel.instructions == "avx2":
        pixels_first = _weight_bytes(kernel) > STREAMED_WEIGHT_BYTES
        limit = AVX2_INT16_MAX_ACCUMULATORS if pixels_first or kernel.int16_sums else AVX2_MAX_ACCUMULATORS
    for x_tile in divisors(width, 8):
        for vectors in divisors(blocks, 8):
            if x_tile * vectors > limit:
                continue
            # more products per load ((x * v) per (x + v)), then more accumulators
            score = (x_tile * vectors / (x_tile + vectors), x_tile * vectors)
            if pixels_first:
                score = (x_tile,) + score
            if best is None or score > best[0]:
                best = (score, (x_tile, vectors))
    return best[1]


def _weight_bytes(kernel: Int8Kernel):
    return math.prod(kernel.weight_shape)  # int8: one byte per weight


def weights_outer(kernel: Int8Kernel, x_tile, vectors) -> bool:
    """Loop order of a conv's register tiles: output-channel tiles outside the pixels (True) when the
    int8 weights do not stay in cache.

    Pixels outside (the default) read the whole weight tensor once per tile of ``x_tile`` pixels:
    from cache while it fits :data:`CACHE_BUDGET`, from memory for deep layers (2.4 MB at 512
    channels 3x3; ResNet-18's last stage ran 1.35x faster with channel tiles outside on a Xeon
    with 2 MB of L2). Channel tiles outside read the padded input codes once per ``16 * vectors``
    output channels instead; chosen when the weights exceed the budget and the codes fit it or move
    fewer bytes.
    """
    wl = kernel.wl
    weight_bytes = _weight_bytes(kernel)
    if weight_bytes <= CACHE_BUDGET:
        return False
    act_bytes = wl.batch * wl.padded_height * wl.padded_width * wl.groups * kernel.channels_padded
    pixel_tiles = wl.batch * wl.out_height * (wl.out_width // x_tile)
    return act_bytes <= CACHE_BUDGET or weight_bytes * pixel_tiles > act_bytes * (kernel.out_blocks // vectors)






def schedule_int8(kernel: Int8Kernel, func, tile=None) -> tvm.s_tir.Schedule:
    """Schedule ``make_int8_primfunc(kernel)``; the reduction tile tensorized per ``kernel.instructions``."""
    x_tile, vectors = tile or default_tile(kernel)
    sch = tvm.s_tir.Schedule(func)
    wl = kernel.wl
    dense = wl.kind == "dense"
    if has_block(sch, "act_codes"):
        codes = sch.get_sblock("act_codes")
        if dense or kernel.channels_padded >= LANES or kernel.nhwc:  # quantized in the padding copy
            sch.compute_inline(codes)
        else:  # few channels (an RGB stem): quantize NCHW rows in vector lanes, the padding copy moves bytes
            sch.transform_layout(codes, ("write", 0), lambda n, h, w, c: (n, c, h, w))
            n, h, w, c = sch.get_loops(codes)
            sch.reorder(n, c, h, w)
            sch.parallel(sch.fuse(n, c, h))
            sch.vectorize(sch.split(w, [None, max(divisors(wl.width, 16))])[1])
    pad = sch.get_sblock("act_pad")
    n, y, *_, channel = sch.get_loops(pad)
    pad_rows = sch.fuse(n, y)
    sch.parallel(pad_rows)
    if kernel.channels_padded >= LANES:  # quantize and pad a pixel's channels in vector lanes
        sch.vectorize(sch.split(channel, [None, max(divisors(kernel.channels_padded, 64))])[1])
    # the float contract's window sums of the codes: each row's channel sums right after its codes, the
    # window totals per output row inside the epilogue's rows (each parallel loop is a fork and join of
    # the thread pool: four per kernel cost ResNet-18's 2-thread run more than the sums themselves)
    float_sums = has_block(sch, "channel_sum")
    if float_sums:
        sch.reverse_compute_at(sch.get_sblock("channel_sum"), pad_rows)
    if has_block(sch, "crop"):
        crop = sch.get_sblock("crop")
        loops = sch.get_loops(crop)
        sch.parallel(sch.fuse(*loops[:2]))
        if kernel.nhwc:  # (n, y, x, o)
            sch.vectorize(sch.split(loops[-1], [None, max(divisors(wl.out_channels, 16))])[1])
        elif not dense:
            sch.vectorize(sch.split(loops[-1], [None, max(divisors(wl.out_width, 16))])[1])

    epilogue = sch.get_sblock("epilogue")
    o_tile = vectors * LANES
    loops = sch.get_loops(epilogue)
    if dense:  # (n, o) or (n, g, o)
        n, *g, o = loops
        oo, oi = sch.split(o, [None, o_tile])
        outer = sch.fuse(n, *g, oo)
        sch.parallel(outer)
        anchor = rows = outer
        sch.vectorize(oi)
    else:  # NCHW (n, o, y, x) / (n, g, o, y, x), or NHWC (n, y, x, o) / (n, y, x, g, o)
        if kernel.nhwc:  # the tile's pixels, then its channels in lanes: contiguous NHWC stores
            n, y, x, *g, o = loops
            pixels = x_tile
        else:  # chunks of up to a row of pixels in lanes: contiguous NCHW stores
            n, *g, o, y, x = loops
            pixels = epilogue_pixels(wl.out_width, x_tile)
        xo, xi = sch.split(x, [None, pixels])
        oo, oi = sch.split(o, [None, o_tile])
        inner = (xi, oi) if kernel.nhwc else (oi, xi)
        if weights_outer(kernel, x_tile, vectors):  # each weight tile stays in cache for all pixels
            sch.reorder(n, *g, oo, y, xo, *inner)
            rows = sch.fuse(n, *g, oo, y)
            anchor = xo
        else:  # each row of input codes stays in cache for all output channels
            sch.reorder(n, *g, y, xo, oo, *inner)
            rows = sch.fuse(n, *g, y)
            anchor = oo
        sch.parallel(rows)
        sch.vectorize(xi if pixels > 1 and not kernel.nhwc else oi)

    if float_sums:
        sch.compute_at(sch.get_sblock("window_total"), rows)
    if kernel.int16_per_tap:
        _schedule_tap_sums(sch, kernel, anchor, 1 if dense else pixels, x_tile, o_tile)
        return sch
    acc = sch.get_sblock("vnni_acc")
    pairs = [("p", 2)] if kernel.int16_sums else []
    pixels = 1 if dense else pixels
    widen = None
    if kernel.int16_sums:  # the int32 tile is the widened pair sums, the int16 tile is computed under it
        widen = acc
        sch.compute_at(widen, anchor)
        acc = sch.get_sblock("pair_acc")
    sch.compute_at(acc, anchor)
    kh, kw = wl.kernel
    loops = loops_after(sch, acc, anchor, [("x", pixels), ("o", o_tile), *pairs, ("rh", kh), ("rw", kw),
                                            ("rcb", kernel.channels_padded // 4),
                                            ("rci", 2 if kernel.int16_sums else 4)])
    chunk = []
    if pixels > x_tile:  # register tiles of x_tile pixels, one after the other, into the chunk's buffer
        chunk_loop, x_loop = sch.split(loops["x"], [None, x_tile])
        chunk, loops["x"] = [chunk_loop], x_loop
    pixel = [loops["x"]] if loops["x"] is not None else []
    o_loop = loops["o"]
    reductions = [loops[name] for name in ("rh", "rw", "rcb") if loops[name] is not None]
    rci = loops["rci"]
    if kernel.int16_sums:
        _pair_tile(sch, acc, chunk, reductions, pixel, o_loop, loops["p"], rci)
        _widen_tile(sch, widen, anchor, pixels, o_tile)
        return sch
    ob, lane = sch.split(o_loop, [None, LANES])
    if kernel.instructions != "plain":
        sch.reorder(*chunk, *reductions, *pixel, ob, lane, rci)
    else:  # annotate before decompose_reduction: vectorize needs the block to still own its init
        sch.reorder(*chunk, *reductions, *pixel, ob, rci, lane)
        sch.unroll(rci)
        sch.vectorize(lane)
    for loop in (*pixel, ob):
        sch.unroll(loop)
    init = sch.decompose_reduction(acc, (reductions or pixel or [ob])[0])
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    for loop in init_loops[-1 - len(pixel) - 1:-1]:
        sch.unroll(loop)
    if kernel.instructions != "plain":
        from .vnni_intrin import avx2_intrin_name, vnni_intrin_name

        sch.tensorize(lane, vnni_intrin_name() if kernel.vnni else avx2_intrin_name(kernel.splits_codes))
    # after tensorize: the intrinsic's buffers are global, a local accumulator would not match it
    sch.set_scope(init, 0, "local")
    return sch


def _schedule_tap_sums(sch, kernel, anchor, pixels, x_tile, o_tile):
    """int16 sums per kernel tap: under each tap ``(rh, rw)`` of the int32 tile ``vnni_acc``, the int16
    pair tile ``pair_acc`` is zeroed, summed over the tap's channels (tensorized like the whole-reduction
    int16 tile) and widened into ``vnni_acc`` (one add per accumulator and tap)."""
    kh, kw = kernel.wl.kernel
    acc = sch.get_sblock("vnni_acc")
    sch.compute_at(acc, anchor)
    loops = loops_after(sch, acc, anchor, [("x", pixels), ("o", o_tile), ("rh", kh), ("rw", kw), ("rp", 2)])
    chunk, x_extent = [], pixels
    if pixels > x_tile:  # register tiles of x_tile pixels, one after the other, into the chunk's buffer
        chunk_loop, loops["x"] = sch.split(loops["x"], [None, x_tile])
        chunk, x_extent = [chunk_loop], x_tile
    pixel = [loops["x"]] if loops["x"] is not None else []
    ob, lane = sch.split(loops["o"], [None, LANES])
    taps = [loops[name] for name in ("rh", "rw") if loops[name] is not None]
    sch.reorder(*chunk, *taps, *pixel, ob, loops["rp"], lane)
    sch.vectorize(lane)  # before decompose_reduction: vectorize needs the block to still own its init
    for loop in (*pixel, ob, loops["rp"]):
        sch.unroll(loop)
    init = sch.decompose_reduction(acc, taps[0])
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    for loop in init_loops[-1 - len(pixel) - 1:-1]:
        sch.unroll(loop)

    pairs = sch.get_sblock("pair_acc")
    sch.compute_at(pairs, taps[-1])
    inner = loops_after(sch, pairs, taps[-1], [("x", x_extent), ("o", o_tile), ("p", 2),
                                               ("rcb", kernel.channels_padded // 4), ("rj", 2)])
    reduction = [inner["rcb"]] if inner["rcb"] is not None else []
    pixel = [inner["x"]] if inner["x"] is not None else []
    _pair_tile(sch, pairs, [], reduction, pixel, inner["o"], inner["p"], inner["rj"])
    sch.set_scope(init, 0, "local")


def _pair_tile(sch, block, outer, reductions, pixel, o_loop, pair, pair_k):
    """The int16 pair-sum register tile of ``block`` (``pair_acc``): the reductions outside the unrolled
    pixels x 16-channel blocks, the ``(16 channels, 2 pairs, 2 products)`` block tensorized with the
    AVX2 pair intrinsic, the accumulators zeroed as 32 contiguous int16 per block and kept local."""
    from .vnni_intrin import avx2_pairs_intrin_name

    ob, lane = sch.split(o_loop, [None, LANES])
    sch.reorder(*outer, *reductions, *pixel, ob, lane, pair, pair_k)
    for loop in (*pixel, ob):
        sch.unroll(loop)
    init = sch.decompose_reduction(block, (reductions or pixel or [ob])[0])
    init_loops = sch.get_loops(init)
    init_loops = init_loops[:-2] + [sch.fuse(*init_loops[-2:])]  # (lane, pair): 32 contiguous int16
    sch.vectorize(init_loops[-1])
    for loop in init_loops[-1 - len(pixel) - 1:-1]:
        sch.unroll(loop)
    sch.tensorize(lane, avx2_pairs_intrin_name())
    # after tensorize: the intrinsic's buffers are global, a local accumulator would not match it
    sch.set_scope(init, 0, "local")


def _widen_tile(sch, block, anchor, pixels, o_tile):
    """The int32 tile ``vnni_acc`` of the whole-reduction int16 sums: each 16-channel block's two pair sums
    per channel added by the AVX2 widening intrinsic (``vpmaddwd`` with ones) into a local buffer in the
    accumulator's (pixel, channel) order, which the epilogue reads in contiguous vectors."""
    from .vnni_intrin import avx2_widen_intrin_name

    loops = loops_after(sch, block, anchor, [("x", pixels), ("o", o_tile)])
    ob, lane = sch.split(loops["o"], [None, LANES])
    for loop in ([loops["x"]] if loops["x"] is not None else []) + [ob]:
        sch.unroll(loop)
    sch.set_scope(block, 0, "local")  # both tiles are local, as the intrinsic's buffers
    sch.tensorize(lane, avx2_widen_intrin_name())


def scheduled_int8_primfunc(kernel: Int8Kernel):
    """The scheduled kernel, marked opaque (FuseOps leaves it whole) and scheduled (dlight skips it)."""
    from tvm_qnn.errors import CompileError

    from .build import OPAQUE_PATTERN
    from .vnni_int8 import make_int8_primfunc

    try:
        func = schedule_int8(kernel, make_int8_primfunc(kernel)).mod["main"]
    except Exception as err:  # noqa: BLE001 - a TVM schedule error becomes a CompileError naming the kernel
        raise CompileError(f"schedule failed for int8 kernel {kernel.key()}: {err}") from err
    return func.with_attr("op_pattern", OPAQUE_PATTERN).with_attr("tirx.is_scheduled", True)
