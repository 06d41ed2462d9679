"""MetaSchedule tuning of the bit-serial kernels.

* ``space``: ``BitserialSpace`` (the search space as data) and ``design_space(wl, space)``, a
  MetaSchedule ``ScheduleFn`` over ``codegen.make_primfunc(wl)``: output-pixel / output-channel
  tiles (sampled perfect tiles), words per vector (lanes), reduction order and parallel axis
  (one design space each), unroll (sampled categorical).
* ``features``: ``workload_features(func, peaks)`` (BOPs, popcounts, bytes, popcounts per byte,
  planes, roofline time) and ``measure_peaks(target)`` (this CPU's popcount and copy peaks).
* ``schedule_features``: ``schedule_features(sch)``: the register tile, loads per popcount,
  lanes, unroll, reduction order of a scheduled candidate, in workload-independent units.
* ``cost_model``: ``BopsXGBModel`` (MetaSchedule ``PyCostModel``; XGBoost ``rank:pairwise`` on
  schedule + workload features, grouped by workload, target log2(roofline / measured)),
  ``make_cost_model(name)`` for ``"bops-xgb" | "xgb" | "random"``, ``load_bops_xgb(path)``.
* ``measure``: in-process ``InProcessBuilder`` / ``InProcessRunner`` (MetaSchedule Py* classes).
* ``database``: ``open_database(work_dir)`` — the verified records ``compile(..., tuning=work_dir)``
  reads; ``open_trials_database(work_dir)`` — every measured candidate.
* ``tuner``: ``tune_workload(wl, target, trials, cost_model, work_dir)``: MetaSchedule
  ``tune_tasks`` + bit-exact check of the winner against the hand schedule before recording.

The public entry point is ``tvm_qnn.tune``.
"""

from .cost_model import COST_MODELS, BopsXGBModel, load_bops_xgb, make_cost_model
from .database import open_database, open_trials_database
from .features import Peaks, WorkloadFeatures, measure_peaks, workload_features
from .schedule_features import SCHEDULE_FEATURE_NAMES, schedule_features
from .space import BitserialSpace, design_space
from .tuner import TuneResult, tune_workload

__all__ = ["COST_MODELS", "SCHEDULE_FEATURE_NAMES", "BitserialSpace", "BopsXGBModel", "Peaks", "TuneResult",
           "WorkloadFeatures", "design_space", "load_bops_xgb", "make_cost_model", "measure_peaks", "open_database",
           "open_trials_database", "schedule_features", "tune_workload", "workload_features"]
