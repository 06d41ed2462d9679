"""The BOPs-aware cost model (MetaSchedule ``PyCostModel``: load/save/update/predict, higher is better).

What a cost model must do for MetaSchedule is *rank* the candidates of one workload. What makes
ours BOPs-aware is that records of one layer / bit width inform the ranking of another:

* **features** that mean the same on every workload (``schedule_features``: the popcount register
  tile against the 32 vector registers, loads per popcount, lanes, unroll, reduction order, an
  analytic instruction count per popcount) joined with the workload's features (BOPs, b_w·b_a,
  popcounts per byte moved, the roofline-time prior; ``features.workload_features``). MetaSchedule's
  per-store features are absolute log-counts that shift with the layer's size and bit width, so
  trees split on them put every schedule of an unseen workload into the same leaves; they are
  optional here (``per_store=True``) and off by default (see ``benchmarks/cost_model.py``).
* **target**: ``log2(roofline_s / measured_s)``, the workload's throughput normalised by its
  roofline prior, so records of different layers and bit widths share one scale;
* **objective**: XGBoost ``rank:pairwise`` with one query group per workload (structural hash of
  the tuning context's module): the model is fitted on the order of schedules *within* a workload,
  which is all the search uses, and never on the offsets between workloads.

Cost models are looked up by name in ``COST_MODELS`` (``make_cost_model``).
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from tvm_qnn.errors import TuningError

from .features import WORKLOAD_FEATURE_NAMES, Peaks, workload_features
from .schedule_features import SCHEDULE_FEATURE_NAMES, schedule_features

FAILED_COST_S = 1e10  # MetaSchedule's cost of a candidate that failed to build or run
SAVE_FORMAT = 2  # 1: per-store features, fraction-of-roofline regression (no "format" entry)
OBJECTIVES = ("rank:pairwise", "reg:squarederror")


def _store_features(extractor, context, candidates) -> list[np.ndarray]:
    rows = []
    for tensor in extractor.extract_from(context, candidates):
        per_store = tensor.numpy().astype("float32")
        if per_store.size == 0:
            per_store = np.zeros((1, extractor.feature_vector_length), dtype="float32")
        rows.append(np.concatenate([per_store.sum(axis=0), per_store.max(axis=0)]))
    return rows


def _min_cost_s(result) -> float:
    if result.error_msg is not None or not result.run_secs:
        return FAILED_COST_S
    return float(np.min([float(s) for s in result.run_secs]))  # min: the repeat least disturbed by other load


@derived_object
class BopsXGBModel(PyCostModel):
    """XGBoost ranking of schedules on schedule + workload features, grouped by workload."""

    def __init__(self, peaks: Peaks, *, seed: int = 0, num_rounds: int = 100, num_threads: int = 1,
                 objective: str = "rank:pairwise", per_store: bool = False, max_depth: int = 2):
        super().__init__()
        from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature  # noqa: PLC0415

        if objective not in OBJECTIVES:
            raise TuningError(f"BopsXGBModel objective={objective!r}; known: {list(OBJECTIVES)}")
        self.peaks = peaks
        self.seed, self.num_rounds, self.num_threads = int(seed), int(num_rounds), int(num_threads)
        self.objective, self.per_store, self.max_depth = objective, bool(per_store), int(max_depth)
        self.extractor = PerStoreFeature(extract_workload=False)
        self.xs = np.zeros((0, self.feature_length), dtype="float32")
        self.ys = np.zeros((0,), dtype="float32")
        self.groups = np.zeros((0,), dtype="<U64")  # workload structural hash of every record
        self.booster = None
        self._workload_cache = {}
        self._rng = np.random.default_rng(seed)

    @property
    def feature_length(self) -> int:
        per_store = 2 * self.extractor.feature_vector_length if self.per_store else 0
        return len(SCHEDULE_FEATURE_NAMES) + len(WORKLOAD_FEATURE_NAMES) + per_store

    # ------------------------------------------------------------------ features
    def workload_vector(self, mod):
        """Workload features of the tuning context's module (cached by structural hash)."""
        key = _workload_key(mod)
        if key not in self._workload_cache:
            self._workload_cache[key] = workload_features(mod["main"], self.peaks)
        return self._workload_cache[key]

    def features(self, context, candidates) -> np.ndarray:
        """One row per candidate: [schedule features, workload features, (per-store sum and max)]."""
        if not candidates:
            return np.zeros((0, self.feature_length), "float32")
        workload = self.workload_vector(context.mod).vector()
        rows = [np.concatenate([schedule_features(c.sch), workload]) for c in candidates]
        if self.per_store:
            rows = [np.concatenate([row, store]) for row, store in
                    zip(rows, _store_features(self.extractor, context, candidates))]
        return np.stack(rows).astype("float32")

    def targets(self, context, results) -> np.ndarray:
        """``log2(roofline_s / measured_s)``: throughput normalised by the workload's roofline prior."""
        roofline_s = self.workload_vector(context.mod).roofline_s
        return np.array([math.log2(roofline_s / _min_cost_s(r)) for r in results], dtype="float32")

    # ------------------------------------------------------------------ PyCostModel
    def update(self, context, candidates, results) -> None:
        if len(candidates) != len(results):
            raise TuningError(f"cost model update: {len(candidates)} candidates but {len(results)} results")
        if not candidates:
            return
        self.add_records(self.features(context, candidates), self.targets(context, results), _workload_key(context.mod))

    def add_records(self, xs: np.ndarray, ys: np.ndarray, group: str) -> None:
        """Append feature rows of workload ``group`` with their targets and retrain."""
        self.xs = np.concatenate([self.xs, np.asarray(xs, "float32").reshape(-1, self.feature_length)])
        self.ys = np.concatenate([self.ys, np.asarray(ys, "float32")])
        self.groups = np.concatenate([self.groups, np.full(len(ys), group, dtype=self.groups.dtype)])
        self._train()

    def predict(self, context, candidates) -> np.ndarray:
        if self.booster is None or not candidates:
            return self._rng.uniform(0.0, 1.0, size=len(candidates)).astype("float64")
        return self.predict_rows(self.features(context, candidates))

    def predict_rows(self, xs: np.ndarray) -> np.ndarray:
        import xgboost as xgb  # noqa: PLC0415

        if self.booster is None:
            return self._rng.uniform(0.0, 1.0, size=len(xs)).astype("float64")
        return self.booster.predict(xgb.DMatrix(xs)).astype("float64")

    def save(self, path: str) -> None:
        booster = np.frombuffer(bytes(self.booster.save_raw("json")), dtype=np.uint8) if self.booster else np.zeros(0, np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, format=np.array(SAVE_FORMAT), xs=self.xs, ys=self.ys, groups=self.groups, booster=booster,
                 peaks=np.array([self.peaks.popcounts_per_s, self.peaks.bytes_per_s]),
                 config=np.array([self.seed, self.num_rounds, self.num_threads, int(self.per_store), self.max_depth]),
                 objective=np.array(self.objective))
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    def load(self, path: str) -> None:
        import xgboost as xgb  # noqa: PLC0415

        try:
            with np.load(path) as data:
                arrays = {key: data[key] for key in data.files}
            peaks = arrays["peaks"]
        except (OSError, KeyError, ValueError) as err:
            raise TuningError(f"cost model file {path!r} is not a saved BopsXGBModel: {err}") from err
        self.peaks = Peaks(float(peaks[0]), float(peaks[1]))
        if int(arrays.get("format", 1)) != SAVE_FORMAT:
            # an older model's records carry other features: keep its peaks, start the records afresh
            warnings.warn(f"cost model file {path!r} was saved by an older BopsXGBModel (format "
                          f"{int(arrays.get('format', 1))}, now {SAVE_FORMAT}); its records are not reused", stacklevel=2)
            return
        self.seed, self.num_rounds, self.num_threads, per_store, self.max_depth = (int(v) for v in arrays["config"])
        self.per_store, self.objective = bool(per_store), str(arrays["objective"])
        self.booster = None
        self.xs, self.ys, self.groups = arrays["xs"].astype("float32"), arrays["ys"].astype("float32"), arrays["groups"]
        if arrays["booster"].size:
            self.booster = xgb.Booster()
            self.booster.load_model(bytearray(arrays["booster"].tobytes()))

    # ------------------------------------------------------------------ training
    def _train(self) -> None:
        import xgboost as xgb  # noqa: PLC0415

        finite = np.isfinite(self.ys)
        if finite.sum() < 2:
            return
        # rows of one workload must be contiguous for XGBoost's query groups: a stable sort by group
        order = np.argsort(self.groups, kind="stable")
        order = order[finite[order]]
        xs, ys, groups = self.xs[order], self.ys[order], self.groups[order]
        matrix = xgb.DMatrix(xs, label=ys)
        if self.objective.startswith("rank:"):
            _, sizes = np.unique(groups, return_counts=True)  # np.unique sorts: same order as the stable sort
            matrix.set_group(sizes)
        # chosen by leave-one-workload-out cross-validation on the benchmark's training pools only
        # (benchmarks/cost_model.py): shallow trees, pairs sampled uniformly within each workload
        params = {"objective": self.objective, "max_depth": self.max_depth, "eta": 0.1, "subsample": 0.9,
                  "min_child_weight": 1, "seed": self.seed, "nthread": self.num_threads, "verbosity": 0,
                  "lambdarank_pair_method": "mean", "lambdarank_num_pair_per_sample": 32}
        if not self.objective.startswith("rank:"):
            del params["lambdarank_pair_method"], params["lambdarank_num_pair_per_sample"]
        self.booster = xgb.train(params, matrix, num_boost_round=self.num_rounds)


def _workload_key(mod) -> str:
    from tvm.s_tir.meta_schedule.utils import shash2hex  # noqa: PLC0415

    return str(shash2hex(mod))


def load_bops_xgb(path: str) -> BopsXGBModel:
    """A saved ``BopsXGBModel`` (``TuningError`` naming the file when it is not one).

    Calls through the MetaSchedule object turn Python exceptions into TVM ``RuntimeError``s, so
    the file is checked here, on the Python side, before the model loads it.
    """
    try:
        with np.load(path) as data:
            peaks = data["peaks"]
    except (OSError, KeyError, ValueError) as err:
        raise TuningError(f"cost model file {path!r} is not a saved BopsXGBModel: {err}") from err
    model = BopsXGBModel(Peaks(float(peaks[0]), float(peaks[1])))
    model.load(path)
    return model


# --------------------------------------------------------------------------- registry
def _bops_xgb(peaks, seed, num_threads):
    return BopsXGBModel(peaks, seed=seed, num_threads=num_threads)


def _plain_xgb(peaks, seed, num_threads):
    from tvm.s_tir.meta_schedule.cost_model import XGBModel  # noqa: PLC0415

    return XGBModel(num_tuning_cores=num_threads)


def _random(peaks, seed, num_threads):
    from tvm.s_tir.meta_schedule.cost_model import RandomModel  # noqa: PLC0415

    return RandomModel(seed=seed % (2**31 - 1) + 1)


COST_MODELS = {"bops-xgb": _bops_xgb, "xgb": _plain_xgb, "random": _random}


def make_cost_model(name: str, peaks: Peaks | None = None, seed: int = 0, num_threads: int = 1):
    """The cost model called ``name`` (``bops-xgb`` needs the measured ``peaks``)."""
    if name not in COST_MODELS:
        raise TuningError(f"unknown cost model {name!r}; known: {sorted(COST_MODELS)}")
    if name == "bops-xgb" and peaks is None:
        raise TuningError("cost model 'bops-xgb' needs the measured peaks (features.measure_peaks)")
    return COST_MODELS[name](peaks, seed, num_threads)
