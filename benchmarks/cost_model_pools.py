"""Measured schedule pools of the cost-model benchmark, cached so models can be iterated without re-measuring.

A pool is a set of distinct random schedules of one bit-serial workload (``codegen.tuning.space``,
MetaSchedule postprocs applied) with their measured latencies. Each pool is written to
``results/cost_model_pools/<name>.json`` (format ``tvm-qnn-cost-model-pool/1``): per schedule
the space structure, the sampling seed and the MetaSchedule trace as JSON (``Trace.as_json``,
replayed with ``Trace.apply_json_to_schedule``), plus the seconds of every measurement pass and a
``machine_info`` / ``os.getloadavg()`` stamp before and after each pass.

Measurement is made as quiet as this shared machine allows: kernels run on one thread (TVM thread
pool of 1, ``num-cores`` 1), and all schedules are built first so that each pass is only timing.
The other users of the machine come and go in episodes of seconds that slow every kernel by up to
2x (a first protocol, ``min`` over 7 back-to-back repeats, gave two passes whose ratios spread over
0.5-2x with an autocorrelation of 0.4-0.7 between consecutive schedules). So every candidate is
timed *paired* with the workload's hand schedule: ``rounds`` alternating ~1 ms calls of the
candidate and the reference, and the schedule's score is the median of the candidate/reference
ratios, which cancels any slowdown that lasts longer than a call pair. ``seconds`` = ratio x the
fastest reference call of the pass. ``passes`` such passes, each in its own shuffled order, give the
noise floor: the Spearman correlation between passes bounds any model's rank correlation.
"""

from __future__ import annotations

import json
import os

import numpy as np

POOL_FORMAT = "tvm-qnn-cost-model-pool/2"
# rounds: candidate/reference call pairs per schedule and pass; call_ms: length of one timed call
TIMING = {"threads": 1, "protocol": "paired-with-hand-schedule", "rounds": 9, "call_ms": 1.0, "passes": 5}


def set_single_thread():
    """TVM's runtime thread pool to one worker: parallel loops run serially, no thread wake-ups.

    ``config_threadpool`` also pins this thread to core 0; the pin is undone so that the OS can
    move the measurement to whichever core the other users of this shared machine leave idle.
    """
    import tvm

    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tvm.get_global_func("runtime.config_threadpool")(1, 1)
    if cores:
        os.sched_setaffinity(0, cores)


def _plain(obj):
    """A trace's ``as_json()`` with TVM scalars turned into Python ones (``json.dumps``-able)."""
    import tvm

    if isinstance(obj, dict) or type(obj).__name__ == "Map":
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "Array":
        return [_plain(v) for v in obj]
    if isinstance(obj, (tvm.tirx.IntImm, tvm.tirx.FloatImm)):
        return obj.value
    if isinstance(obj, str):
        return str(obj)
    return obj


def tune_context(mod, wl, space, target):
    from tvm.s_tir import meta_schedule as ms

    from codegen.tuning.space import design_space
    from codegen.tuning.tuner import _without_tensor_intrinsics

    with _without_tensor_intrinsics():
        return ms.TuneContext(mod, target=target, space_generator=design_space(wl, space),
                              search_strategy="replay-trace", task_name=wl.key(), rand_state=1, num_threads=1)


def _stamp():
    from report import machine_info

    return {**machine_info(), "loadavg": [round(v, 2) for v in os.getloadavg()]}


def _sample(mod, wl, space, postprocs, size, seed):
    """``size`` distinct postprocessed random schedules: (structure, seed, schedule)."""
    from codegen.tuning.space import sample_schedule

    structures = space.structures(wl)
    rng = np.random.default_rng(seed)
    seen, out = set(), []
    for _ in range(20 * size):
        if len(out) == size:
            break
        structure = structures[int(rng.integers(len(structures)))]
        sample_seed = int(rng.integers(1, 2**31 - 2))
        sch = sample_schedule(mod, wl, space, structure, sample_seed)
        trace = sch.trace
        key = (structure, tuple(str(trace.decisions[inst]) for inst in trace.insts if inst in trace.decisions))
        if key in seen or not all(p.apply(sch) for p in postprocs):
            continue
        seen.add(key)
        out.append((structure, sample_seed, sch))
    return out


def _timer(lib, dev, args):
    """A ``~call_ms`` timed call of ``lib`` (``number`` calibrated on one warm run)."""
    import time

    lib(*args)
    start = time.perf_counter()
    lib(*args)
    once_s = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(TIMING["call_ms"] * 1e-3 / once_s))
    timer = lib.time_evaluator("main", dev, number=number, repeat=1)
    return lambda: float(timer(*args).mean)


def _paired_pass(timers, reference, rng, bar):
    """One timing pass in shuffled order: (median candidate/reference ratio, fastest reference call)."""
    ratios, reference_s = np.zeros(len(timers)), []
    for i in rng.permutation(len(timers)):
        pairs = []
        for _ in range(TIMING["rounds"]):
            candidate_s, ref_s = timers[i](), reference()
            pairs.append(candidate_s / ref_s)
            reference_s.append(ref_s)
        ratios[i] = float(np.median(pairs))
        bar.update(1)
    return ratios, float(np.min(reference_s))


def measure_pool(name, wl, space, target, size, seed, bar):
    """Sample, build and time ``size`` schedules of ``wl`` (``TIMING["passes"]`` paired timing passes)."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from codegen.build import workload_module
    from codegen.schedules import hand_schedule
    from codegen.tuning.tuner import verification_args

    mod = workload_module(wl)
    context = tune_context(mod, wl, space, target)
    sampled = _sample(mod, wl, space, context.space_generator.postprocs, size, seed)
    dev = tvm.cpu()
    args = [tvm.runtime.tensor(a, dev) for a in verification_args(ArgInfo.from_prim_func(mod["main"]), seed)]
    reference = _timer(tvm.compile(hand_schedule(wl, mod["main"]).mod, target=target).mod, dev, args)
    timers = []
    for _, _, sch in sampled:
        timers.append(_timer(tvm.compile(sch.mod, target=target).mod, dev, args))
        bar.update(1)
    rng = np.random.default_rng(seed)
    passes, stamps = [], []
    for _ in range(TIMING["passes"]):
        before = _stamp()
        ratios, reference_s = _paired_pass(timers, reference, rng, bar)
        passes.append(ratios)
        stamps.append({"before": before, "after_loadavg": [round(v, 2) for v in os.getloadavg()],
                       "hand_schedule_s": reference_s})
    hand_s = min(stamp["hand_schedule_s"] for stamp in stamps)
    return {
        "format": POOL_FORMAT, "name": name, "workload": wl.key(), "space": repr(space),
        "target": str(target), "timing": TIMING, "passes": stamps, "hand_schedule_s": hand_s,
        "schedules": [{"structure": list(structure), "seed": sample_seed, "trace": _plain(sch.trace.as_json()),
                       "ratio_to_hand": [p[i] for p in passes]}
                      for i, (structure, sample_seed, sch) in enumerate(sampled)],
    }


def pool_path(out_dir, name):
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return os.path.join(out_dir, "cost_model_pools", f"{safe}.json")


def load_pool(record, wl, space, target):
    """A measured pool ready for the models: context, MeasureCandidates (traces replayed), seconds."""
    from tvm import s_tir
    from tvm.s_tir.meta_schedule import MeasureCandidate
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.schedule import Trace

    from codegen.build import workload_module

    if record.get("format") != POOL_FORMAT or record.get("workload") != wl.key():
        raise ValueError(f"pool {record.get('name')!r}: format/workload {record.get('format')}/{record.get('workload')} "
                         f"is not {POOL_FORMAT}/{wl.key()}; re-run with --remeasure")
    mod = workload_module(wl)
    args_info = ArgInfo.from_prim_func(mod["main"])
    candidates = []
    for entry in record["schedules"]:
        sch = s_tir.Schedule(mod)
        Trace.apply_json_to_schedule(entry["trace"], sch)
        candidates.append(MeasureCandidate(sch, args_info))
    # (schedules, passes) in seconds: each pass's ratios to the hand schedule x its fastest call
    ratios = np.array([entry["ratio_to_hand"] for entry in record["schedules"]], dtype="float64")
    passes = ratios * record["hand_schedule_s"]
    return {"name": record["name"], "wl": wl, "context": tune_context(mod, wl, space, target), "candidates": candidates,
            "passes": passes, "seconds": np.median(passes, axis=1), "stamps": record["passes"],
            "hand_schedule_s": record["hand_schedule_s"], "timing": record["timing"],
            "structures": [tuple(entry["structure"]) for entry in record["schedules"]]}


def get_pools(named_workloads, space, target, size, seed0, out_dir, remeasure, bar):
    """Pools of ``{name: wl}``: read from the cache, or measured (and cached) when absent or ``remeasure``."""
    pools = []
    for i, (name, wl) in enumerate(named_workloads.items()):
        path = pool_path(out_dir, name)
        record = None
        if not remeasure and os.path.exists(path):
            with open(path) as f:
                record = json.load(f)
            if (record.get("format") != POOL_FORMAT or record.get("workload") != wl.key()
                    or len(record.get("schedules", [])) < size):
                record = None  # stale: older format, another workload or a smaller pool than asked for
        if record is None:
            record = measure_pool(name, wl, space, target, size, seed0 + i, bar)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                json.dump(record, f)
        else:
            bar.update((1 + TIMING["passes"]) * size)
        pools.append(load_pool(record, wl, space, target))
    return pools
