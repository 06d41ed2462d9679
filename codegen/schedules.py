"""Hand schedule of the bit-serial kernel (the default when no tuning record exists).

The hot block ``popcount_acc`` is tiled as ``x_tile`` output pixels x ``o_tile`` output
channels; the tile's ``x_tile * w_planes * a_bits * o_tile/lanes`` accumulators stay in vector
registers across the whole ``kh, kw, words`` reduction (the reduction loops are moved outside
the unrolled tile loops). Output channels are the vector lanes (8 x uint64 = one zmm): the
weight words of 8 channels are one load, the activation word is broadcast, so the inner body is
AND + VPOPCNTQ + ADD per 512 bit-MACs with no horizontal reduction. Rows of output pixels are
spread over the threads. Tile sizes are chosen to fill ~16-24 of the 32 zmm registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm

from .workload import ConvWorkload

VECTOR_BITS = 512  # AVX-512; on narrower machines LLVM splits the vector ops (still correct)
MAX_ACCUMULATORS = 24
EPILOGUE_PIXELS_MAX = 32  # fp32 lanes of two zmm (a 28-pixel row is one chunk)


@dataclass(frozen=True)
class TileConfig:
    """Tile of the hand schedule: pixels per tile, output channels per tile, vector lanes."""

    x_tile: int
    o_tile: int
    lanes: int

    def __post_init__(self):
        if min(self.x_tile, self.o_tile, self.lanes) < 1 or self.o_tile % self.lanes:
            raise ValueError(f"bad tile {self}: sizes must be >= 1 and lanes must divide o_tile")


def divisors(n, limit):
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def default_tile(wl: ConvWorkload, word_bits=None) -> TileConfig:
    """Largest register tile (accumulators <= MAX_ACCUMULATORS) whose sizes divide the output."""
    word_bits = word_bits or wl.word_bits
    lanes_max = max(1, VECTOR_BITS // max(word_bits, 32))
    lanes = max(d for d in divisors(wl.out_channels, lanes_max))
    combos = wl.w_planes * wl.a_bits
    best = None
    for vectors in (4, 2, 1):
        if wl.out_channels % (lanes * vectors):
            continue
        for x_tile in divisors(wl.out_width, 8):
            regs = x_tile * vectors * combos
            if regs > MAX_ACCUMULATORS and not (x_tile == 1 and vectors == 1):
                continue
            # prefer more work per loaded word: (x_tile * vectors) products per (x_tile + vectors) loads
            score = (x_tile * vectors * combos, x_tile * vectors / (x_tile + vectors), x_tile)
            if best is None or score > best[0]:
                best = (score, TileConfig(x_tile, lanes * vectors, lanes))
    return best[1]


def hand_schedule(wl: ConvWorkload, func, tile: TileConfig | None = None) -> tvm.s_tir.Schedule:
    """Schedule ``make_primfunc(wl)`` (float output or packed output)."""
    tile = tile or default_tile(wl)
    sch = tvm.s_tir.Schedule(func)
    schedule_packing(sch, "act_codes", "pack")
    if wl.output == "packed":
        anchors = _schedule_packed_output(sch, wl, tile)
    else:
        anchors = _schedule_float_output(sch, wl, tile)
    _schedule_hot_loop(sch, wl, tile, *anchors)
    return sch


def has_block(sch, name):
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - get_sblock raises a TVM error for a missing block
        return False


def _row_vector(width, whole_up_to, divisor_up_to):
    """Lanes along a row: the whole row when short, else the largest divisor <= ``divisor_up_to``.

    A row with no divisor of at least 4 there (a prime width such as 79, or 2 x prime) is taken whole:
    LLVM splits a long vector into legal ones, where one lane per vector would leave the packing scalar.
    """
    if width <= whole_up_to:
        return width
    divisor = max(divisors(width, divisor_up_to))
    return divisor if divisor >= 4 else width


def column_vector(width):
    """Columns packed per vector: the whole row when short, else the largest divisor <= 8."""
    return _row_vector(width, 16, 8)


def byte_vector(width):
    """Columns per vector while building bytes: the whole row up to 64 (uint8 lanes), else a divisor."""
    return _row_vector(width, 64, 64)


def schedule_packing(sch, codes_name, pack_name):
    """Pack rows in parallel: bytes of 8 channel lanes x (columns as vector lanes), then words.

    For each channel the codes of ``byte_vector`` adjacent pixels (contiguous in NCHW) are loaded,
    quantized and OR-ed into ``bits`` uint8 vectors kept in registers; the row's bytes are then
    joined into words (a second row-parallel pass over a buffer 1/8 the size of the codes). The zero border is
    a separate cheap copy.
    """
    if not has_block(sch, pack_name):
        return
    pack_bytes = sch.get_sblock(pack_name + "_bytes")
    b, y, g, k, p, j, x, bit = sch.get_loops(pack_bytes)
    width = int(sch.get(x).extent)
    lanes = byte_vector(width)
    xo, xi = sch.split(x, [None, lanes])
    sch.reorder(b, y, g, k, j, xo, bit, p, xi)
    row = sch.fuse(b, y)
    sch.parallel(row)
    words = sch.get_sblock(pack_name)
    wb, wy, *_, wx = sch.get_loops(words)
    sch.parallel(sch.fuse(wb, wy))
    # vectorize only loops of more than one lane: compute_at/decompose_reduction drop extent-1 loops, and
    # the loop found in their place is a reduction loop, which vectorize refuses
    if column_vector(width) > 1:
        sch.vectorize(sch.split(wx, [None, column_vector(width)])[1])
    sch.unroll(bit)
    sch.unroll(p)
    if lanes > 1:
        sch.vectorize(xi)
    if codes_name and has_block(sch, codes_name):  # one code vector per channel, shared by all planes
        codes = sch.get_sblock(codes_name)
        sch.compute_at(codes, bit)
        sch.set_scope(codes, 0, "local")
        if lanes > 1:
            sch.vectorize(sch.get_loops(codes)[-1])
    init = sch.decompose_reduction(pack_bytes, bit)
    if lanes > 1:
        init_p, init_x = sch.get_loops(init)[-2:]
        sch.unroll(init_p)
        sch.vectorize(init_x)
    else:
        sch.unroll(sch.get_loops(init)[-1])
    if has_block(sch, pack_name + "_pad"):
        pad = sch.get_sblock(pack_name + "_pad")
        b, y, *_ = sch.get_loops(pad)
        sch.parallel(sch.fuse(b, y))


def epilogue_pixels(width, x_tile):
    """Output pixels per float epilogue vector: the largest multiple of ``x_tile`` dividing the row, at
    most ``EPILOGUE_PIXELS_MAX``. The register tile stays ``x_tile`` pixels; the popcount sums of the
    wider chunk wait in a small local buffer, so the float64 combine, the float32 bias and clip and the
    NCHW stores run on ``EPILOGUE_PIXELS_MAX``-wide vectors instead of ``x_tile``-wide ones."""
    best = x_tile
    for pixels in range(x_tile, min(width, EPILOGUE_PIXELS_MAX) + 1, x_tile):
        if width % pixels == 0:
            best = pixels
    return best


def _schedule_float_output(sch, wl, tile):
    """Tile the output (rows in parallel); returns (row-tile anchor, channel-tile anchor, pixels)."""
    epilogue = sch.get_sblock("epilogue")
    if wl.kind == "dense":
        n, o = sch.get_loops(epilogue)
        oo, oi = sch.split(o, [None, tile.o_tile])
        fused = sch.fuse(n, oo)
        sch.parallel(fused)
        return fused, fused, 1
    n, o, y, x = sch.get_loops(epilogue)
    pixels = epilogue_pixels(int(sch.get(x).extent), tile.x_tile)
    xo, xi = sch.split(x, [None, pixels])
    oo, oi = sch.split(o, [None, tile.o_tile])
    # vectors along the pixels give contiguous NCHW stores; a single pixel keeps channel vectors
    pixel_vectors = pixels >= 4
    sch.reorder(n, y, xo, oo, *((oi, xi) if pixel_vectors else (xi, oi)))
    sch.parallel(sch.fuse(n, y))
    if pixel_vectors:
        sch.unroll(oi)
        sch.vectorize(xi)
    elif tile.o_tile > 1:
        sch.vectorize(oi)  # float64 -> float32, bias, clip on vectors; the NCHW stores are strided
    return xo, oo, pixels


def _schedule_packed_output(sch, wl, tile):
    """Next layer's codes tiled like the float epilogue, then packed row-parallel like the input."""
    codes = sch.get_sblock("next_codes")
    n, y, o, x = sch.get_loops(codes)
    xo, xi = sch.split(x, [None, tile.x_tile])
    oo, oi = sch.split(o, [None, tile.o_tile])
    sch.reorder(n, y, xo, oo, xi, oi)
    sch.parallel(sch.fuse(n, y))
    if tile.o_tile > 1:
        sch.vectorize(oi)
    schedule_packing(sch, None, "pack_next")
    return xo, oo, tile.x_tile


def loops_under(sch, block, anchor):
    """The loops of ``block`` nested inside the loop ``anchor`` (after a compute_at there)."""
    loops = sch.get_loops(block)
    anchor_stmt = sch.get(anchor)
    return loops[next(i for i, loop in enumerate(loops) if sch.get(loop).same_as(anchor_stmt)) + 1:]


def loops_after(sch, block, anchor, names_extents):
    """Loops of ``block`` under ``anchor`` by name; compute_at drops extent-1 loops (-> None)."""
    inner = loops_under(sch, block, anchor)
    kept = [name for name, extent in names_extents if extent > 1]
    if len(inner) != len(kept):
        raise RuntimeError(f"unexpected loop nest under the tile: {len(inner)} loops, expected {kept}")
    found = dict(zip(kept, inner))
    return {name: found.get(name) for name, _ in names_extents}


def _schedule_hot_loop(sch, wl, tile, row_anchor, anchor, pixels):
    combine = sch.get_sblock("combine")
    acc = sch.get_sblock("popcount_acc")
    total = sch.get_sblock("window_total")
    sch.compute_at(combine, anchor)
    sch.compute_at(acc, anchor)
    sch.compute_at(total, row_anchor)  # per pixel, shared by all output-channel tiles
    kh, kw = wl.kernel
    x_tile = tile.x_tile if wl.kind == "conv2d" else 1
    pixels = pixels if wl.kind == "conv2d" else 1
    loops = loops_after(sch, acc, anchor, [("x", pixels), ("j", wl.w_planes), ("p", wl.a_bits),
                                            ("o", tile.o_tile), ("rh", kh), ("rw", kw), ("rc", wl.words_per_group)])
    outer, x_loop = [], loops["x"]
    if pixels > x_tile:  # register tiles of x_tile pixels, one after the other, into the chunk's buffer
        chunk, x_loop = sch.split(x_loop, [None, x_tile])
        outer = [chunk]
    _register_tile(sch, acc, [x_loop, loops["j"], loops["p"]], loops["o"],
                   [loops["rh"], loops["rw"], loops["rc"]], tile.lanes, outer=outer)
    sch.set_scope(acc, 0, "local")
    loops = loops_after(sch, combine, anchor, [("x", pixels), ("o", tile.o_tile), ("rj", wl.w_planes)])
    _register_tile(sch, combine, [loops["x"]], loops["o"], [loops["rj"]], tile.lanes)
    sch.set_scope(combine, 0, "local")


def _register_tile(sch, block, outer_spatial, channel, reduction, lanes, outer=()):
    """Reduction loops outermost (after the ``outer`` loops), unrolled spatial tile inside, channels
    split into vector lanes.

    Loops may be None (extent 1, dropped by compute_at). Annotations go on before
    ``decompose_reduction`` because vectorize needs the block to still own its init.
    """
    lane = vector = None
    if channel is not None:
        vector, lane = sch.split(channel, [None, lanes])
    reduction = [loop for loop in reduction if loop is not None]
    spatial = [loop for loop in outer_spatial + [vector, lane] if loop is not None]
    if reduction and spatial:
        sch.reorder(*outer, *reduction, *spatial)
    for loop in spatial[:-1] if lane is not None else spatial:
        sch.unroll(loop)
    if lane is not None:
        sch.vectorize(lane)
    if reduction:
        init = sch.decompose_reduction(block, reduction[0])
        if spatial:
            init_loops = sch.get_loops(init)[-len(spatial):]
            for loop in init_loops[:-1] if lane is not None else init_loops:
                sch.unroll(loop)
            if lane is not None:
                sch.vectorize(init_loops[-1])
