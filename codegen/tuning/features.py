"""Workload features of a bit-serial kernel, and this CPU's measured peaks.

The BOPs-aware cost model joins these to the schedule features (``schedule_features``) so that
records of one layer / bit width inform another: two kernels with the same loop structure but
different channel counts or bit widths differ exactly in these numbers, and the roofline time is
the prior its target is normalised by.

Everything is read from the PrimFunc itself (the tuning context only carries the IRModule):
the popcount blocks' iteration counts, the hot block's bit-plane extents and word width, and
the bytes of the parameters. The peaks are measured at run time, never hard-coded.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from tvm_qnn.errors import TuningError

WORKLOAD_FEATURE_NAMES = (
    "log2_bops",
    "log2_popcounts",
    "log2_bytes",
    "log2_popcounts_per_byte",
    "w_planes_times_a_bits",
    "a_bits",
    "w_bits",
    "word_bits",
    "log2_roofline_s",
)


@dataclass(frozen=True)
class Peaks:
    """This CPU's measured throughputs (all threads): packed-word popcounts/s and bytes/s."""

    popcounts_per_s: float
    bytes_per_s: float

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (value > 0 and math.isfinite(value)):
                raise TuningError(f"Peaks.{name}={value}; expected a positive finite throughput")


@dataclass(frozen=True)
class WorkloadFeatures:
    """What a kernel costs at best, independent of its schedule."""

    bops: float
    popcounts: float
    bytes_moved: float
    a_bits: int
    w_bits: int
    word_bits: int
    roofline_s: float

    def vector(self) -> np.ndarray:
        return np.array(
            [
                math.log2(1.0 + self.bops),
                math.log2(1.0 + self.popcounts),
                math.log2(1.0 + self.bytes_moved),
                math.log2((1.0 + self.popcounts) / (1.0 + self.bytes_moved)),
                float(self.a_bits * self.w_bits),
                float(self.a_bits),
                float(self.w_bits),
                float(self.word_bits),
                math.log2(self.roofline_s),
            ],
            dtype="float32",
        )


def _bytes(shape, dtype) -> int:
    import tvm  # noqa: PLC0415

    size = 1
    for dim in shape:
        size *= int(dim)
    return size * tvm.DataType(str(dtype)).bits // 8


def _popcount_blocks(sch):
    """(block, iteration count) of every block whose body calls popcount."""
    found = []
    for block_rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(block_rv)
        # TVM 0.27 has no Python TIR visitor; the printed body names the intrinsic
        if "T.popcount(" in str(block.body):
            size = 1
            for iv in block.iter_vars:
                size *= int(iv.dom.extent)
            found.append((block, size))
    return found


def workload_features(func, peaks: Peaks, workload: str = "main") -> WorkloadFeatures:
    """Features of an unscheduled bit-serial PrimFunc (``codegen.make_primfunc``).

    ``popcounts`` counts every AND+POPCNT of the function (hot loop and window totals); the hot
    block ``popcount_acc`` iterates ``(n, y, x, j, p, o, rh, rw, rc)``, so its ``j`` and ``p``
    extents are the weight planes and activation bits (``w_bits`` here is the number of weight
    planes: b_w for bit-plane weights, 2^b_w - 1 for one-hot LUT planes: what the kernel pays).
    """
    import tvm  # noqa: PLC0415
    from tvm import s_tir  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo  # noqa: PLC0415

    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    blocks = _popcount_blocks(sch)
    if not blocks:
        raise TuningError(f"workload {workload!r}: no popcount block; not a bit-serial kernel")
    popcounts = sum(size for _, size in blocks)
    hot, hot_size = max(blocks, key=lambda b: b[1])
    extents = {iv.var.name.removeprefix("v_"): int(iv.dom.extent) for iv in hot.iter_vars}
    a_bits, w_planes = extents.get("p", 1), extents.get("j", 1)
    word_bits = max((tvm.DataType(str(r.source.dtype)).bits for r in hot.reads if "uint" in str(r.source.dtype)), default=64)
    bytes_moved = sum(_bytes(info.shape, info.dtype) for info in ArgInfo.from_prim_func(func))
    # UNIQ's BOPs with the padded fan-in the kernel actually reads: macs * (b_a b_w + b_a + b_w + log2 fan-in)
    fan_in = extents.get("rh", 1) * extents.get("rw", 1) * extents.get("rc", 1) * word_bits
    macs = max(1, hot_size * word_bits // max(1, a_bits * w_planes))
    bops = macs * (a_bits * w_planes + a_bits + w_planes + math.log2(max(fan_in, 1)))
    roofline_s = max(popcounts / peaks.popcounts_per_s, bytes_moved / peaks.bytes_per_s)
    return WorkloadFeatures(float(bops), float(popcounts), float(bytes_moved), a_bits, w_planes, word_bits, roofline_s)


# --------------------------------------------------------------------------- peaks
def _popcount_kernel(rows: int, threads: int, lanes: int = 8, reps: int = 64):
    import tvm  # noqa: PLC0415
    from tvm import te  # noqa: PLC0415

    data = te.placeholder((threads, rows, lanes), "uint64", name="data")
    mask = te.placeholder((rows, lanes), "uint64", name="mask")
    rep = te.reduce_axis((0, reps), "rep")  # re-reads the same L1-resident rows: amortises thread launch
    red = te.reduce_axis((0, rows), "row")
    out = te.compute(
        (threads, lanes),
        lambda t, lane: te.sum(
            tvm.tirx.popcount(data[t, red, lane] & (mask[red, lane] ^ rep.astype("uint64"))).astype("uint64"), axis=[rep, red]
        ),
        name="acc",
    )
    return te.create_prim_func([data, mask, out])


def measure_peaks(target, threads: int | None = None, repeats: int = 5) -> Peaks:
    """Measure packed-word popcount throughput (TVM kernel, in L1) and copy bandwidth (numpy)."""
    import tvm  # noqa: PLC0415
    from tvm import s_tir  # noqa: PLC0415

    threads = threads or int(target.attrs.get("num-cores", 1))
    rows, lanes = 256, 8  # 16 KiB per thread: stays in L1, so this is the compute peak
    sch = s_tir.Schedule(tvm.IRModule({"main": _popcount_kernel(rows, threads, lanes)}))
    block = sch.get_sblock("acc")
    t_loop, lane_loop, rep_loop, row_loop = sch.get_loops(block)
    sch.parallel(t_loop)
    sch.reorder(t_loop, rep_loop, row_loop, lane_loop)
    sch.vectorize(lane_loop)  # one 8-lane vector popcount (VPOPCNTQ where the CPU has it) per row
    lib = tvm.compile(sch.mod, target=target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    data = tvm.runtime.tensor(rng.integers(0, 2**63, (threads, rows, lanes), dtype=np.uint64), dev)
    mask = tvm.runtime.tensor(rng.integers(0, 2**63, (rows, lanes), dtype=np.uint64), dev)
    out = tvm.runtime.empty((threads, lanes), "uint64", dev)
    timer = lib.mod.time_evaluator("main", dev, number=20, repeat=repeats)
    seconds = float(np.min(timer(data, mask, out).results))
    popcounts_per_s = threads * 64 * rows * lanes / seconds

    big = np.ones(32 * 1024 * 1024 // 8, dtype=np.uint64)  # 32 MiB: beyond the caches
    dst = np.empty_like(big)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, big)
        best = min(best, time.perf_counter() - start)
    return Peaks(popcounts_per_s=popcounts_per_s, bytes_per_s=2 * big.nbytes / best)
