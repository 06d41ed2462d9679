"""Default schedules for the float ops left around the bit-serial kernels (target ``cpu``).

Relax's default CPU pipeline compiles every fused PrimFunc with TE's naive loop nest: one
thread, no vectors. On a quantized ResNet-18 that makes the fp32 first conv (kept float, as NICE)
cost several times all the bit-serial layers together. This dlight-style rule gives them a
plain CPU schedule, no tuning:

* NCHW conv2d (a reduction block with spatial ``n, o, y, x`` and reductions ``c, kh, kw``):
  register tile of ``o_tile`` output channels x ``x_vec`` output columns (columns are the vector
  lanes: contiguous in NCHW), reductions outside the tile, rows x channel tiles in parallel;
  elementwise consumers (bias, ReLU) are inlined into the tile's write-back when TVM allows;
* matmul ``(M, K) x (K, N)``: ``N`` in chunks of up to 256 columns, ``K`` outside the chunk so each
  weight row segment streams through vector lanes once (accumulators of the chunk in a local
  buffer), chunks in parallel;
* pooling (a reduction block named ``*pool*`` over a padded window): the padding computed in the
  window loop instead of a padded copy, window loops unrolled, channels in parallel;
* any other block: its outer spatial loop in parallel, the innermost loop vectorized when it
  is spatial and short;
* NCHW conv2d with output channels a multiple of 16 and a strided or large output: output channels
  as the vector lanes instead (weights relaid out per call), so that no load is strided.
* NHWC conv2d with HWIO weights (an fp32 stem that ``relay_passes.lower_bitserial`` redoes in NHWC
  under an NHWC chain): the same channel-lane tile without the weight copy, summed in the NCHW
  conv's reduction order so that its outputs equal the NCHW layer's.

Blocks where a primitive fails are left as they are (each step is tried on its own).
"""

from __future__ import annotations

import tvm
from tvm.s_tir.dlight.base import ScheduleRule

X_VECTOR_MAX = 16  # fp32 lanes of one zmm
O_TILE_MAX = 6
CHANNEL_LANES = 16  # fp32 lanes of one zmm: output channels of a conv's register tile
AVX2_CHANNEL_LANES = 8  # fp32 lanes of one ymm, on x86 targets without AVX-512
# accumulators of the channel-lane tile (pixels x channel vectors): 16 of the 32 zmm; 12 of the 16
# ymm without AVX-512 (the rest: the weight vectors and a broadcast input). The AVX-512 tile (8 pixels
# x 2 zmm) spilled on AVX2, 32 ymm live: the ResNet-18 stem took 3.3x as long (Zen 3, 1 thread)
CHANNEL_TILE_REGISTERS = {CHANNEL_LANES: 16, AVX2_CHANNEL_LANES: 12}
# below this many output pixels the per-call weight relayout costs more than it saves (512x512 3x3
# weights are 9.4 MB of float32 against 7x7 output pixels); the column-vector tile runs those
CHANNEL_LANES_MIN_PIXELS = 196
# matmul output columns per chunk: a 1 KB weight row segment per k. A batch-1 Linear layer is one read
# of its weights from L3 or memory; 50-column tiles (200-byte segments 4 KB apart) were latency-bound:
# ResNet-18's 512x1000 classifier took 0.61 ms against 0.20 ms for 200-column chunks (Xeon, 1 thread,
# L2 flushed between calls)
N_CHUNK_MAX = 256
POOL_UNROLL_MAX = 8  # window loops unrolled up to this extent (a global pool's window stays a loop)
DEBUG = False  # raise instead of skipping a block whose schedule fails (development only)


def _divisor(n, limit):
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def _column_stride(sch, block, out_width, kernel_width):
    """The conv's stride along the columns, from its (padded) input width: ``(Wp - kw) // (Wo - 1)``."""
    if out_width < 2:
        return 1
    width = int(sch.get(block).reads[0].source.shape[-1])
    return max(1, (width - kernel_width) // (out_width - 1))


def _iter_kinds(sch, block):
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]  # 0 = spatial, 2 = reduce


def channel_lanes(target):
    """fp32 lanes of the widest vector register of ``target``: 16 with AVX-512, else 8 (AVX2 ymm)."""
    from tvm.target.codegen import target_has_features

    try:
        wide = str(target.kind.name) == "llvm" and bool(target_has_features(["avx512f"], target))
    except Exception:  # noqa: BLE001 - a target LLVM cannot describe gets the narrower tile
        wide = False
    return CHANNEL_LANES if wide else AVX2_CHANNEL_LANES


def _channels_innermost(sch, block):
    """True when the block's first read indexes its last dimension by the last spatial block var alone
    (NHWC pooling: the channel), so that vector lanes over it load contiguously."""
    block_stmt = sch.get(block)
    spatial = [iv.var for iv in block_stmt.iter_vars if int(iv.iter_type) == 0]
    last = block_stmt.reads[0].region[-1].min
    return bool(spatial) and isinstance(last, tvm.tirx.Var) and last.same_as(spatial[-1])


def _try(step):
    try:
        step()
        return True
    except Exception:  # noqa: BLE001 - a primitive that does not apply leaves the block as is
        return False


class FloatCpuSchedule(ScheduleRule):
    """Parallel + vectorized schedule of unscheduled float PrimFuncs (see module doc)."""

    def apply(self, func, target, tunable):  # noqa: ARG002 - ScheduleRule interface
        if not isinstance(func, tvm.tirx.PrimFunc):
            return None
        sch = tvm.s_tir.Schedule(func)
        lanes = channel_lanes(target)
        try:
            root = sch.get_sblock("root")
            names = [sch.get(block).name_hint for block in sch.get_child_blocks(root)]
        except Exception:  # noqa: BLE001
            return None
        done = set()
        for name in names:
            if name in done:
                continue
            try:
                block = sch.get_sblock(name)
            except Exception:  # noqa: BLE001 - inlined by an earlier step
                continue
            kinds = _iter_kinds(sch, block)
            try:
                if kinds == [0, 0, 0, 0, 2, 2, 2] and "conv2d_nhwc" in name:
                    done |= self._conv_nhwc(sch, block, lanes)
                elif kinds.count(0) == 4 and kinds.count(2) == 3 and "conv2d" in name:
                    done |= self._conv(sch, block, lanes)
                elif kinds == [0, 0, 2] and "matmul" in name:
                    done |= self._matmul(sch, block, lanes)
                elif kinds == [0, 0, 0, 0, 2, 2] and "pool" in name:
                    self._pool(sch, block)
                else:
                    self._generic(sch, block, kinds)
            except Exception:  # noqa: BLE001 - keep what applied (primitives fail before changing anything)
                if DEBUG:
                    raise
        return sch

    def _conv(self, sch, block, lanes):
        loops = sch.get_loops(block)
        if len(loops) != 7:
            return set()
        n, o, y, x, rc, rh, rw = loops
        out_channels, width = int(sch.get(o).extent), int(sch.get(x).extent)
        pixels = int(sch.get(y).extent) * width
        strided = _column_stride(sch, block, width, int(sch.get(rw).extent)) > 1
        if out_channels % lanes == 0 and (strided or pixels >= CHANNEL_LANES_MIN_PIXELS):
            return self._conv_channel_lanes(sch, block, loops, lanes)
        x_vec, o_tile = _divisor(width, X_VECTOR_MAX), _divisor(out_channels, O_TILE_MAX)
        local, inlined = self._write_back(sch, block)
        xo, xi = sch.split(x, [None, x_vec])
        oo, oi = sch.split(o, [None, o_tile])
        sch.reorder(n, oo, y, xo, rc, rh, rw, oi, xi)
        sch.parallel(sch.fuse(n, oo, y))
        sch.unroll(oi)
        _try(lambda: sch.vectorize(xi))
        sch.reverse_compute_at(local, xo)
        _try(lambda: sch.vectorize(sch.get_loops(local)[-1]))
        sch.decompose_reduction(block, rc)
        for producer in sch.get_producers(block):  # padding: its own parallel loop
            self._generic(sch, producer, _iter_kinds(sch, producer))
        return inlined

    def _conv_channel_lanes(self, sch, block, loops, lanes):
        """Output channels as the vector lanes: weights copied per call to ``(O/L, C, kh, kw, L)``
        (``L`` = :func:`channel_lanes`), ``x_tile`` pixels x 1-2 channel vectors of accumulators in
        registers (channel-minor, :data:`CHANNEL_TILE_REGISTERS`), each
        input value broadcast, the tile written back to NCHW along the pixels. No strided load, so
        a strided conv (the stem's 7x7 stride 2: 4.7x) runs as fast as a stride-1 one (2x the
        column-vector tile on 64->64 3x3 at 56x56; Xeon, 1 thread, same sums in the same order)."""
        n, o, y, x, rc, rh, rw = loops
        out_channels = int(sch.get(o).extent)
        weight_index = next(i for i, region in enumerate(sch.get(block).reads)
                            if len(region.source.shape) == 4 and int(region.source.shape[0]) == out_channels
                            and i > 0)
        weights = sch.cache_read(block, weight_index, "global")
        sch.transform_layout(weights, ("write", 0),
                             lambda o, c, h, w: (o // lanes, c, h, w, o % lanes))
        local, inlined = self._write_back(sch, block)
        # the accumulator tile channel-minor, so that a lane vector is contiguous (registers, not a gather)
        sch.transform_layout(block, ("write", 0), lambda n, o, y, x: (n, y, x, o))
        self._channel_tile(sch, block, local, (n, o, y, x), (rc, rh, rw), lanes, nhwc=False)
        for stage in [weights] + [p for p in sch.get_producers(block) if not sch.get(p).same_as(sch.get(weights))]:
            self._generic(sch, stage, _iter_kinds(sch, stage))
        return inlined

    def _conv_nhwc(self, sch, block, lanes):
        """NHWC conv (weights HWIO, output channels contiguous in both): the channel-lane tile of
        :meth:`_conv_channel_lanes` without a weight copy, stored along the channels. The reductions
        run ``c, kh, kw``, the order of the NCHW conv's schedule and of Relax's default one, so the
        same sums come out as from the NCHW layer it replaces (``relay_passes.lower_bitserial``)."""
        n, y, x, o, ry, rx, rc = sch.get_loops(block)
        out_channels = int(sch.get(o).extent)
        lanes = next((v for v in (lanes, 8, 4) if out_channels % v == 0), None)
        if lanes is None:
            return set()
        local, inlined = self._write_back(sch, block)
        self._channel_tile(sch, block, local, (n, o, y, x), (rc, ry, rx), lanes, nhwc=True)
        for producer in sch.get_producers(block):  # padding: its own parallel loop
            self._generic(sch, producer, _iter_kinds(sch, producer))
        return inlined

    def _channel_tile(self, sch, block, local, spatial, reductions, lanes, nhwc):
        """The channel-lane register tile of a conv block: ``x_tile`` pixels x 1-2 vectors of ``lanes``
        output channels (:data:`CHANNEL_TILE_REGISTERS`) unrolled under ``reductions`` (in that order),
        rows x channel tiles in parallel, the write-back ``local`` per tile vectorized over its last loop
        (NCHW: the tile's pixels; NHWC: its channels, in vectors of ``lanes``)."""
        n, o, y, x = spatial
        out_channels, width = int(sch.get(o).extent), int(sch.get(x).extent)
        vectors = 2 if out_channels % (2 * lanes) == 0 else 1
        x_tile = _divisor(width, min(8, CHANNEL_TILE_REGISTERS.get(lanes, 16) // vectors))
        oo, ov, lane = sch.split(o, [None, vectors, lanes])
        xo, xi = sch.split(x, [None, x_tile])
        sch.reorder(n, oo, y, xo, *reductions, xi, ov, lane)
        sch.parallel(sch.fuse(n, oo, y))
        sch.unroll(xi)
        sch.unroll(ov)
        _try(lambda: sch.vectorize(lane))
        sch.reverse_compute_at(local, xo)
        last = sch.get_loops(local)[-1]
        _try(lambda: sch.vectorize(sch.split(last, [None, lanes])[1] if nhwc else last))
        init = sch.decompose_reduction(block, reductions[0])
        _try(lambda: sch.vectorize(sch.get_loops(init)[-1]))

    def _matmul(self, sch, block, lanes):
        """``(M, K) x (K, N)`` with ``N`` contiguous (Relax folds a Linear's transposed constant weight
        into that layout): ``N`` in chunks of at most :data:`N_CHUNK_MAX` columns (the fewest chunks,
        a whole number of vectors each), ``k`` outside the chunk so that each weight row segment streams
        through the vector lanes once, chunks in parallel. Each output sums ``k`` in order, as the
        default schedule does."""
        i, j, k = sch.get_loops(block)
        columns = int(sch.get(j).extent)
        lane = next(v for v in (lanes, 8, 4, 2, 1) if columns % v == 0)
        chunk = lane * _divisor(columns // lane, max(1, N_CHUNK_MAX // lane))
        local, inlined = self._write_back(sch, block)
        jo, jv, ji = sch.split(j, [None, chunk // lane, lane])
        sch.reorder(i, jo, k, jv, ji)
        sch.parallel(sch.fuse(i, jo))
        _try(lambda: sch.vectorize(ji))
        sch.reverse_compute_at(local, sch.get_loops(block)[0])
        _try(lambda: sch.vectorize(sch.split(sch.get_loops(local)[-1], [None, lane])[1]))
        sch.decompose_reduction(block, k)
        return inlined

    def _pool(self, sch, block):
        """A pooling window (four spatial loops, two window reductions): the padded copy inlined into the
        window (its bounds test per tap costs less than writing and re-reading a padded plane:
        ResNet-18's 3x3/2 max pool of 64x112x112 NCHW took 0.43 ms against 0.72 ms, Xeon, 1 thread),
        window unrolled. NHWC (channels innermost, read at the block's own channel index): channels in
        vector lanes under the window, rows in parallel. NCHW: rows of channels in parallel, scalar
        (vector lanes over the strided output columns were slower still: gathers)."""
        n, a, b, c, ry, rx = sch.get_loops(block)
        for window in (ry, rx):
            extent = sch.get(window).extent
            if isinstance(extent, tvm.tirx.IntImm) and int(extent) <= POOL_UNROLL_MAX:
                sch.unroll(window)
        channels = int(sch.get(c).extent)
        if _channels_innermost(sch, block) and channels % 4 == 0:
            lane = next(v for v in (16, 8, 4) if channels % v == 0)
            co, ci = sch.split(c, [None, lane])
            sch.reorder(b, co, ry, rx, ci)
            sch.parallel(sch.fuse(n, a))
            sch.vectorize(ci)
            init = sch.decompose_reduction(block, ry)
            _try(lambda: sch.vectorize(sch.get_loops(init)[-1]))
        else:
            sch.parallel(sch.fuse(n, a))
        for producer in sch.get_producers(block):
            if not _try(lambda producer=producer: sch.compute_inline(producer)):
                self._generic(sch, producer, _iter_kinds(sch, producer))

    def _write_back(self, sch, block):
        """``(write-back block, names of the consumers inlined into it)``: the block's output cached in
        ``local`` scope, and its elementwise consumers (bias add, ReLU, ...) computed in the copy back.
        A reduction block cannot take them itself (``reverse_compute_inline`` needs a complete
        producer); left as their own passes over the output, the stem's bias add and ReLU took a
        quarter of its time."""
        local = sch.cache_write(block, 0, "local")
        inlined = set()
        while True:  # a chain (add, then ReLU): each inlined consumer exposes the next
            consumers = sch.get_consumers(local)
            if len(consumers) != 1:  # a value read twice (hardswish's x * relu6(x + 3)) stays a buffer
                return local, inlined
            name = sch.get(consumers[0]).name_hint
            if not _try(lambda consumer=consumers[0]: sch.reverse_compute_inline(consumer)):
                return local, inlined
            inlined.add(name)

    def _generic(self, sch, block, kinds):
        loops = sch.get_loops(block)
        if not loops or not kinds or kinds[0] != 0:
            return
        spatial = [loop for loop, kind in zip(loops, kinds) if kind == 0]
        if len(spatial) >= 2 and int(sch.get(spatial[0]).extent) < 8:
            _try(lambda: sch.parallel(sch.fuse(spatial[0], spatial[1])))
        else:
            _try(lambda: sch.parallel(spatial[0]))
        inner = sch.get_loops(block)[-1]  # re-read: the fuse above may have replaced loops
        if len(kinds) == len(loops) and kinds[-1] == 0 and len(loops) > 2 and int(sch.get(inner).extent) <= 64:
            _try(lambda: sch.vectorize(inner))
