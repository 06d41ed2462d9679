"""Measure this CPU's popcount and fp32 peaks at run time (nothing hard-coded), plus timing helpers.

* popcount peak: a TVM kernel keeping 16 vector accumulators in registers and doing
  ``acc[j] += popcount(a & w[j])`` with ``a`` streamed from L1 -- the AND + VPOPCNTQ + ADD triple
  our bit-serial inner loop is made of -- in bit-MACs per second;
* fp32 peak: the same shape with ``acc[j] += a * w[j]`` (FMA), in FLOP/s (2 per FMA).

Timing on a shared machine: ``measure`` (``tvm_qnn.demo.speed.measure``) reports (a) the thread CPU time of one call at one
thread (robust to other processes: time spent descheduled is not counted) and (b) the wall-clock
minimum at ``threads`` threads. Every library runs in the calling thread at one thread (TVM
thread pool of 1, ``torch.set_num_threads(1)``, onnxruntime ``intra_op_num_threads=1``).

Run: ``python benchmarks/roofline.py`` (prints and writes results/roofline.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON

from tvm_qnn.demo.speed import measure  # noqa: E402 - one timer for the demo and every benchmark

RESULTS = Path(__file__).resolve().parent.parent / "results"
ACCUMULATORS = 16
ROWS = 256  # streamed operand rows: 16 KB of uint64 lanes stays in L1
REPS = 4000


def set_tvm_threads(threads):
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(1, int(threads))


def _peak_kernel(kind, lanes, dtype, threads):
    from tvm import te, tirx

    a = te.placeholder((ROWS, lanes), dtype, name="a")
    w = te.placeholder((ACCUMULATORS, lanes), dtype, name="w")
    rep = te.reduce_axis((0, REPS), name="rep")
    row = te.reduce_axis((0, ROWS), name="row")
    if kind == "popcount":
        body = lambda t, j, lane: te.sum(tirx.popcount(a[row, lane] & w[j, lane]),  # noqa: E731
                                         axis=[rep, row])
    else:
        body = lambda t, j, lane: te.sum(a[row, lane] * w[j, lane], axis=[rep, row])  # noqa: E731
    acc = te.compute((threads, ACCUMULATORS, lanes), body, name="acc")
    return te.create_prim_func([a, w, acc])


def _schedule_peak(func):
    import tvm

    sch = tvm.s_tir.Schedule(func)
    block = sch.get_sblock("acc")
    t, j, lane, rep, row = sch.get_loops(block)
    local = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(local, t)
    sch.reorder(rep, row, j, lane)
    sch.unroll(j)
    sch.vectorize(lane)
    sch.parallel(t)
    sch.decompose_reduction(block, rep)
    return sch.mod


def measure_peaks(target, threads=2):
    """``{"popcount_bitmacs_per_s": {...}, "fp32_flops_per_s": {...}}`` per core (1t) and at ``threads``."""
    import tvm

    out = {}
    for kind, dtype, lanes in (("popcount", "uint64", 8), ("fp32", "float32", 16)):
        results = {}
        for n_threads in (1, threads):
            mod = tvm.compile(_schedule_peak(_peak_kernel(kind, lanes, dtype, n_threads)), target=target)
            rng = np.random.default_rng(0)
            if dtype == "uint64":
                a = rng.integers(0, 2**63, size=(ROWS, lanes), dtype=np.uint64)
                w = rng.integers(0, 2**63, size=(ACCUMULATORS, lanes), dtype=np.uint64)
            else:
                a = rng.uniform(0, 1e-6, size=(ROWS, lanes)).astype(np.float32)
                w = rng.uniform(0, 1e-6, size=(ACCUMULATORS, lanes)).astype(np.float32)
            args = [tvm.runtime.tensor(a), tvm.runtime.tensor(w), tvm.runtime.empty((n_threads, ACCUMULATORS, lanes), dtype)]
            fn = mod["main"]
            set_tvm_threads(n_threads)
            timing = measure(lambda: fn(*args), None, n_threads, repeat=5, number=1)
            ops = n_threads * REPS * ROWS * ACCUMULATORS * lanes * (64 if kind == "popcount" else 2)
            key = "per_core" if n_threads == 1 else f"{threads}_threads"
            seconds = timing["cpu_1t_s"] if n_threads == 1 else timing["wall_s"]
            results[key] = ops / seconds
        out["popcount_bitmacs_per_s" if kind == "popcount" else "fp32_flops_per_s"] = results
    per_core_ratio = out["popcount_bitmacs_per_s"]["per_core"] / (out["fp32_flops_per_s"]["per_core"] / 2)
    out["bitmacs_per_fp32_fma"] = per_core_ratio
    return out


def main():
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from codegen.build import cpu_target

    target = cpu_target(2)
    peaks = measure_peaks(target, threads=2)
    peaks["target"] = str(target)
    peaks["load_average"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    peaks["machine"] = machine_info()
    (RESULTS / "roofline.json").write_text(json.dumps(peaks, indent=2))
    pc, fp = peaks["popcount_bitmacs_per_s"], peaks["fp32_flops_per_s"]
    print(f"popcount peak: {pc['per_core'] / 1e9:.0f} Gbit-MAC/s per core, {pc['2_threads'] / 1e9:.0f} at 2 threads (wall)")
    print(f"fp32 peak:     {fp['per_core'] / 1e9:.0f} GFLOP/s per core, {fp['2_threads'] / 1e9:.0f} at 2 threads (wall)")
    print(f"one fp32 FMA costs as much as {peaks['bitmacs_per_fp32_fma']:.1f} bit-MACs; load average {peaks['load_average']}")


if __name__ == "__main__":
    main()
