"""Tune one bit-serial workload with MetaSchedule; verify the winner before recording it.

``tune_workload`` runs MetaSchedule's ``tune_tasks`` on ``make_primfunc(wl)`` with the
``BitserialSpace`` design space and the chosen cost model, every candidate going to the trials
database. Then the best candidates are re-applied, built and run on random inputs, and their
output compared bit-exactly with the hand-scheduled kernel's (which the kernel tests check
against ``tvm_qnn.reference``); the first one that agrees is committed to the verified database.
A winner that disagrees is dropped with a warning, so a wrong schedule never reaches a model.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

from tvm_qnn.errors import TuningError

from ..bitpack import act_code_thresholds
from .database import TRIALS_DIR, open_database, open_trials_database
from .measure import InProcessBuilder, InProcessRunner
from .space import BitserialSpace, design_space

VERIFY_TOP_K = 5
_TENSOR_INTRIN = "tvm.s_tir.tensor_intrin"


@contextmanager
def _without_tensor_intrinsics():
    """Create a ``TuneContext`` without importing TVM's tensor-intrinsic library.

    TVM 0.27's ``TuneContext.__init__`` imports ``tvm.s_tir.tensor_intrin``, which parses ~250
    TVMScript functions through ``inspect.stack()``: ~45 s of CPU (3 min wall on this shared
    machine) per process. Our space never tensorizes (no ``meta_schedule.auto_tensorize``
    annotation, no schedule rules), so a placeholder module stands in while the context is built
    and is removed afterwards: a later real import in the same process still loads the library.
    """
    if _TENSOR_INTRIN in sys.modules:
        yield
        return
    placeholder = types.ModuleType(_TENSOR_INTRIN)
    sys.modules[_TENSOR_INTRIN] = placeholder
    try:
        yield
    finally:
        if sys.modules.get(_TENSOR_INTRIN) is placeholder:
            del sys.modules[_TENSOR_INTRIN]


@dataclass(frozen=True)
class TuneResult:
    """Outcome of tuning one workload."""

    workload: str
    trials: int
    best_ms: float | None  # the verified record's measured latency, None when none verified
    hand_ms: float
    verified: bool
    recorded: bool = False  # committed to the database (verified and no slower than the hand schedule)


@derived_object
class ProgressCallback(PyMeasureCallback):
    """Advance a tqdm bar by the number of candidates measured."""

    def __init__(self, bar):
        super().__init__()
        self.bar = bar
        self.best_ms = float("inf")

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        for result in runner_results:
            if result.run_secs:
                self.best_ms = min(self.best_ms, 1e3 * float(np.median([float(s) for s in result.run_secs])))
        self.bar.update(len(runner_results))
        if self.best_ms < float("inf"):
            self.bar.set_postfix(best_ms=f"{self.best_ms:.4f}")


def verification_args(arg_infos, seed: int):
    """Inputs of a float-output kernel: codes over the whole range, random planes and coefficients."""
    rng = np.random.default_rng(seed)
    arrays = []
    for i, info in enumerate(arg_infos):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        if i == 0 and dtype.startswith("float"):  # x: spans every activation code
            arrays.append(rng.uniform(0.0, 1.2, size=shape).astype(dtype))
        elif i == 1 and shape == [1]:  # act_scale: clamp 1.0 spread over the codes
            arrays.append(np.full(shape, 1.0 / 3.0, dtype=dtype))
        elif i == 1:  # act_thresholds of 2^b - 1 codes at the same scale (codegen.bitpack)
            arrays.append(act_code_thresholds(np.float32(1.0 / 3.0), (shape[0] + 1).bit_length() - 1).astype(dtype))
        elif dtype.startswith("uint"):
            arrays.append(rng.integers(0, 2**63, size=shape, dtype=np.uint64).astype(dtype))
        elif i == len(arg_infos) - 2 and shape == [2]:  # clip bounds (lo, hi)
            arrays.append(np.array([-1.0, 5.0], dtype=dtype))
        else:
            arrays.append(rng.standard_normal(size=shape).astype(dtype))
    return arrays


def run_kernel(mod, target, args_np):
    """Build ``mod`` and run it once on copies of ``args_np``; return the output and latency (ms)."""
    import tvm  # noqa: PLC0415

    dev = tvm.cpu()
    lib = tvm.compile(mod, target=target)
    args = [tvm.runtime.tensor(a, dev) for a in args_np]
    lib(*args)
    seconds = lib.mod.time_evaluator("main", dev, number=5, repeat=3, min_repeat_ms=5)(*args).median
    return args[-1].numpy(), 1e3 * float(seconds)


def _apply_record(record, mod):
    from tvm import s_tir  # noqa: PLC0415

    sch = s_tir.Schedule(mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch


def verify_and_commit(wl, mod, target, trials_db, verified_db, seed=0, require_faster=True):
    """Commit the best trial of ``mod`` that matches the hand schedule; return (best_ms, hand_ms, recorded).

    With ``require_faster`` a verified winner that measures slower than the hand schedule (both timed
    here, back to back) is not committed: ``compile(..., tuning=)`` then keeps the hand schedule.
    """
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.database import TuningRecord  # noqa: PLC0415

    from codegen.schedules import hand_schedule  # noqa: PLC0415

    args_np = verification_args(ArgInfo.from_prim_func(mod["main"]), seed)
    expected, hand_ms = run_kernel(hand_schedule(wl, mod["main"]).mod, target, args_np)
    records = trials_db.get_top_k(trials_db.commit_workload(mod), VERIFY_TOP_K)
    if not records:
        raise TuningError(f"workload {wl.key()}: no candidate of the search space built and ran; nothing to record")
    for rank, record in enumerate(records):
        try:
            got, best_ms = run_kernel(_apply_record(record, mod).mod, target, args_np)
        except Exception as err:  # noqa: BLE001 - a record that no longer applies is dropped, not fatal
            warnings.warn(f"workload {wl.key()}: tuned schedule #{rank + 1} failed to rebuild ({err}); dropped", stacklevel=2)
            continue
        if got.shape == expected.shape and np.array_equal(got, expected, equal_nan=True):
            if require_faster and best_ms > hand_ms:
                return best_ms, hand_ms, False
            workload = verified_db.commit_workload(mod)
            verified_db.commit_tuning_record(
                TuningRecord(record.trace, workload, record.run_secs, target, ArgInfo.from_prim_func(mod["main"]))
            )
            return best_ms, hand_ms, True
        mismatch = int(np.sum(got != expected))
        warnings.warn(f"workload {wl.key()}: tuned schedule #{rank + 1} differs from the hand schedule in "
                      f"{mismatch} outputs; dropped", stacklevel=2)
    return None, hand_ms, False


def tune_workload(wl, target, trials, cost_model, work_dir, builder=None, runner=None, seed=0, space=None, bar=None,
                  trials_per_iter=16, require_faster=True) -> TuneResult:
    """Tune ``codegen.make_primfunc(wl)`` for ``target``; records go to ``work_dir`` (see ``database``).

    ``cost_model``: a MetaSchedule cost model object or a name of ``cost_model.COST_MODELS``.
    ``require_faster``: record the verified winner only when it is no slower than the hand schedule.
    """
    from tvm.s_tir import meta_schedule as ms  # noqa: PLC0415
    from tvm.s_tir.meta_schedule.measure_callback import AddToDatabase, UpdateCostModel  # noqa: PLC0415

    from codegen.build import workload_module  # noqa: PLC0415

    space = space or BitserialSpace()
    if isinstance(cost_model, str):  # a name: build it here (MetaSchedule would only know "xgb"/"random")
        from .cost_model import make_cost_model  # noqa: PLC0415
        from .features import measure_peaks  # noqa: PLC0415

        peaks = measure_peaks(target) if cost_model == "bops-xgb" else None
        cost_model = make_cost_model(cost_model, peaks, seed=seed)
    mod = workload_module(wl)
    generator = design_space(wl, space)  # raises TuningError naming wl when the space is empty
    num_cores = int(target.attrs.get("num-cores", 1))
    # a small population: MetaSchedule's defaults (512, 4 genetic rounds) cost ~40 s per trial
    # batch on this shared 2-core machine, far more than measuring a ~1 ms kernel
    strategy = ms.search_strategy.EvolutionarySearch(population_size=64, init_measured_ratio=0.2, init_min_unmeasured=16,
                                                     genetic_num_iters=2, genetic_max_fail_count=4)
    with _without_tensor_intrinsics():
        context = ms.TuneContext(mod, target=target, space_generator=generator, search_strategy=strategy,
                                 task_name=wl.key(), rand_state=int(seed) % 2147483646 + 1, num_threads=num_cores)
    try:
        spaces = context.generate_design_space()
    except Exception as err:  # noqa: BLE001
        raise TuningError(f"workload {wl.key()}: the search space could not be generated: {err}") from err
    if not spaces:
        raise TuningError(f"workload {wl.key()}: the search space has no valid candidate")
    trials_db = open_trials_database(work_dir)
    verified_db = open_database(work_dir, create=True)
    builder = builder if builder is not None else InProcessBuilder()
    runner = runner if runner is not None else InProcessRunner(builder, seed=seed)
    # not MetaSchedule's default list: its RemoveBuildArtifact deletes the artifact's directory,
    # and in-process artifacts have none (the builder forgets each module once it has run)
    callbacks = [AddToDatabase(), UpdateCostModel()]
    if bar is not None:
        callbacks.append(ProgressCallback(bar))
    try:
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=os.path.join(os.fspath(work_dir), TRIALS_DIR),
                      max_trials_global=trials, num_trials_per_iter=min(trials, trials_per_iter), builder=builder,
                      runner=runner, database=trials_db, cost_model=cost_model, measure_callbacks=callbacks)
    except TuningError:
        raise
    except Exception as err:  # noqa: BLE001 - MetaSchedule errors become a TuningError naming the workload
        raise TuningError(f"workload {wl.key()}: MetaSchedule tuning failed: {err}") from err
    best_ms, hand_ms, recorded = verify_and_commit(wl, mod, target, trials_db, verified_db, seed, require_faster)
    return TuneResult(wl.key(), trials, best_ms, hand_ms, best_ms is not None, recorded)
