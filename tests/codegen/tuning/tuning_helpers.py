"""Small workloads, fixed peaks and sampled candidates shared by the tuning tests."""

from __future__ import annotations

from codegen import ConvWorkload
from codegen.build import workload_module
from codegen.tuning.features import Peaks
from codegen.tuning.space import BitserialSpace, sample_schedule

# fixed peaks: the tests check the model's bookkeeping, not this machine's speed
PEAKS = Peaks(popcounts_per_s=1e10, bytes_per_s=2e10)


def small_workload(a_bits=2, w_bits=2, channels=64, out_channels=16, size=6):
    return ConvWorkload(kind="conv2d", batch=1, in_channels=channels, height=size, width=size,
                        out_channels=out_channels, kernel=(3, 3), padding=(1, 1, 1, 1), a_bits=a_bits, w_bits=w_bits)


def tune_context(wl, target, space=None):
    from tvm.s_tir import meta_schedule as ms

    from codegen.tuning.space import design_space
    from codegen.tuning.tuner import _without_tensor_intrinsics

    with _without_tensor_intrinsics():
        return ms.TuneContext(workload_module(wl), target=target, space_generator=design_space(wl, space),
                              search_strategy="replay-trace", task_name=wl.key(), rand_state=1, num_threads=1)


def candidates(wl, context, count, space=None, seed_stride=1):
    """``count`` random schedules (postprocs applied) as MetaSchedule MeasureCandidates.

    Schedule ``i`` is sampled with seed ``i * seed_stride``; a large stride spreads the decisions
    (the sampler's first draws for small consecutive seeds are alike).
    """
    from tvm.s_tir.meta_schedule import MeasureCandidate
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    space = space or BitserialSpace()
    mod = workload_module(wl)
    structures = space.structures(wl)
    out = []
    for i in range(count):
        sch = sample_schedule(mod, wl, space, structures[i % len(structures)], seed=i * seed_stride)
        assert all(p.apply(sch) for p in context.space_generator.postprocs)
        out.append(MeasureCandidate(sch, ArgInfo.from_prim_func(mod["main"])))
    return out
