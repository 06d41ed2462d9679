"""Schedule features of a bit-serial candidate: what the ``BitserialSpace`` decisions do to the hot loop.

MetaSchedule's per-store features describe every buffer access in absolute counts (log2 of
bytes, loop extents, ...). Those numbers move with the layer's size and bit width, so a tree
trained on two layers at 1 and 2 bits sees every schedule of an unseen 3-bit layer as out of
range. The decisions of our space act on the popcount register tile, and their cost depends on
quantities that mean the same thing on every workload:

* the register tile: accumulator vectors ``x_inner · w_planes · a_bits · o_vectors`` (AVX-512
  has 32 vector registers: a tile beyond that spills on every reduction step), the weight
  vectors and activation words loaded per step, and popcounts per load;
* words per vector (``lanes``), the innermost reduction loop (kernel window or packed words)
  and its trip count, the unroll step, the parallel extent;
* an analytic instruction count per popcount vector built from those (``log2_ops_per_popcount``).

They are read from the scheduled loop nest of the ``popcount_acc`` update block (the register
tile loops are unrolled, the lanes vectorized, the reduction loops serial between them; after
``compute_at`` loop ``ax{i}`` iterates the block's i-th iterator). A schedule that is not of this
shape gets NaN features, which XGBoost treats as missing.
"""

from __future__ import annotations

import math

import numpy as np

VECTOR_REGISTERS = 32  # x86 with AVX-512 (zmm0-31); the tile's accumulators should fit
HOT_BLOCK = "popcount_acc_update"

SCHEDULE_FEATURE_NAMES = (
    "lanes",
    "x_inner",
    "o_vectors",
    "log2_acc_vectors",
    "acc_vectors_over_registers",
    "spilled_vectors_per_acc",
    "log2_loads_per_step",
    "log2_popcounts_per_load",
    "innermost_reduction_is_words",
    "log2_innermost_reduction",
    "log2_unroll_step",
    "log2_parallel_extent",
    "log2_tile_trips",
    "log2_ops_per_popcount",
)


def _loop_nest(sch):
    """(block iterator name -> extent of its unrolled / vectorized / serial loops, loops) of the hot block."""
    from tvm.tirx import ForKind  # noqa: PLC0415

    block_rv = sch.get_sblock(HOT_BLOCK)
    iter_names = [iv.var.name.removeprefix("v_") for iv in sch.get(block_rv).iter_vars]
    loops = [sch.get(loop) for loop in sch.get_loops(block_rv)]
    unrolled, vectorized, reduction = {}, {}, []
    for loop in loops:
        name = loop.loop_var.name
        index = name.removeprefix("ax").split("_")[0]
        if not (name.startswith("ax") and index.isdigit() and int(index) < len(iter_names)):
            continue  # an output-tile loop above the anchor
        iterator, extent = iter_names[int(index)], int(loop.extent)
        if loop.kind == ForKind.UNROLLED:
            unrolled[iterator] = unrolled.get(iterator, 1) * extent
        elif loop.kind == ForKind.VECTORIZED:
            vectorized[iterator] = extent
        elif iterator.startswith("r"):
            reduction.append((iterator, extent))
    return unrolled, vectorized, reduction, loops


def schedule_features(sch) -> np.ndarray:
    """``SCHEDULE_FEATURE_NAMES`` of one scheduled candidate (``tvm.s_tir.Schedule``), NaN if not ours."""
    from tvm.tirx import ForKind  # noqa: PLC0415

    try:
        unrolled, vectorized, reduction, loops = _loop_nest(sch)
    except Exception:  # noqa: BLE001 - not a bit-serial kernel of our space: features missing
        return np.full(len(SCHEDULE_FEATURE_NAMES), np.nan, dtype="float32")
    if not vectorized or not reduction:
        return np.full(len(SCHEDULE_FEATURE_NAMES), np.nan, dtype="float32")
    lanes = int(np.prod(list(vectorized.values())))
    o_vectors, w_planes, a_bits = unrolled.get("o", 1), unrolled.get("j", 1), unrolled.get("p", 1)
    # output pixels of the tile (the x iterator is "xx" in the conv kernel; n and y are unit loops here)
    x_inner = math.prod(extent for name, extent in unrolled.items() if name not in ("o", "j", "p"))
    acc_vectors = int(np.prod(list(unrolled.values())))
    loads = x_inner * a_bits + o_vectors * w_planes  # activation words broadcast + weight-plane vectors
    spilled = max(0, acc_vectors + 2 - VECTOR_REGISTERS)  # +2: one weight vector and one broadcast in flight
    innermost, inner_extent = reduction[-1]
    unroll_step = max((int(loop.annotations.get("pragma_auto_unroll_max_step", 0)) for loop in loops), default=0)
    parallel = math.prod(int(loop.extent) for loop in loops if loop.kind == ForKind.PARALLEL)
    tile_trips = math.prod(int(loop.extent) for loop in loops if loop.kind == ForKind.SERIAL) // max(
        1, math.prod(extent for _, extent in reduction))
    # per popcount vector: AND + POPCNT + ADD, the loads amortised over the tile, a spilled
    # accumulator's reload + store, and the reduction loop's compare-branch when it is not unrolled;
    # narrower vectors do the same work in proportionally more instructions
    loop_overhead = 0.0 if unroll_step >= inner_extent * acc_vectors else 1.0 / acc_vectors
    ops = (3.0 + loads / acc_vectors + 2.0 * spilled / acc_vectors + loop_overhead) * (8.0 / lanes)
    return np.array(
        [
            lanes,
            x_inner,
            o_vectors,
            math.log2(acc_vectors),
            acc_vectors / VECTOR_REGISTERS,
            spilled / acc_vectors,
            math.log2(loads),
            math.log2(acc_vectors / loads),
            float(innermost == "rc"),
            math.log2(inner_extent),
            math.log2(1 + unroll_step),
            math.log2(parallel),
            math.log2(max(1, tile_trips)),
            math.log2(ops),
        ],
        dtype="float32",
    )
