"""The BOPs-aware cost model (MetaSchedule ``PyCostModel``: load/save/update/predict, higher is better).

MetaSchedule's own XGB model learns ``min_cost_of_this_workload / cost`` from per-store features:
a score that only means something inside one workload, so what it learned on a 1-bit layer says
little about how fast a 3-bit layer will be. This model instead learns the *fraction of the
roofline* a schedule reaches, ``roofline_s / measured_s`` (``features.workload_features``), from
the per-store features (summed and max-pooled over stores) joined with the workload features
(BOPs, b_w·b_a, popcounts per byte moved, the roofline time itself). That target is comparable
across layers and bit widths, so records of one inform the ranking of another; inside one
workload it orders schedules exactly as ``1 / measured_s`` does.

Cost models are looked up by name in ``COST_MODELS`` (``make_cost_model``).
"""

from __future__ import annotations

import io
import math

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.cost_model import PyCostModel

from tvm_qnn.errors import TuningError

from .features import Peaks, workload_features

FAILED_COST_S = 1e10  # MetaSchedule's cost of a candidate that failed to build or run


def _store_features(extractor, context, candidates) -> list[np.ndarray]:
    rows = []
    for tensor in extractor.extract_from(context, candidates):
        per_store = tensor.numpy().astype("float32")
        if per_store.size == 0:
            per_store = np.zeros((1, extractor.feature_vector_length), dtype="float32")
        rows.append(np.concatenate([per_store.sum(axis=0), per_store.max(axis=0)]))
    return rows


def _mean_cost_s(result) -> float:
    if result.error_msg is not None or not result.run_secs:
        return FAILED_COST_S
    return float(np.median([float(s) for s in result.run_secs]))


@derived_object
class BopsXGBModel(PyCostModel):
    """XGBoost on per-store + workload features, trained on fraction-of-roofline throughput."""

    def __init__(self, peaks: Peaks, *, seed: int = 0, num_rounds: int = 200, num_threads: int = 1):
        super().__init__()
        from tvm.s_tir.meta_schedule.feature_extractor import PerStoreFeature  # noqa: PLC0415

        self.peaks = peaks
        self.seed = int(seed)
        self.num_rounds = int(num_rounds)
        self.num_threads = int(num_threads)
        self.extractor = PerStoreFeature(extract_workload=False)
        self.xs = np.zeros((0, 0), dtype="float32")
        self.ys = np.zeros((0,), dtype="float32")
        self.booster = None
        self._workload_cache = {}
        self._rng = np.random.default_rng(seed)

    # ------------------------------------------------------------------ features
    def workload_vector(self, mod) -> np.ndarray:
        """Workload features of the tuning context's module (cached by structural hash)."""
        from tvm.s_tir.meta_schedule.utils import shash2hex  # noqa: PLC0415

        key = shash2hex(mod)
        if key not in self._workload_cache:
            self._workload_cache[key] = workload_features(mod["main"], self.peaks)
        return self._workload_cache[key]

    def features(self, context, candidates) -> np.ndarray:
        """One row per candidate: [sum over stores, max over stores, workload features]."""
        workload = self.workload_vector(context.mod).vector()
        rows = _store_features(self.extractor, context, candidates)
        return np.stack([np.concatenate([row, workload]) for row in rows]) if rows else np.zeros((0, 0), "float32")

    def targets(self, context, results) -> np.ndarray:
        """Fraction of the roofline each measured candidate reached (0 for failures)."""
        roofline_s = self.workload_vector(context.mod).roofline_s
        return np.array([roofline_s / _mean_cost_s(r) for r in results], dtype="float32")

    # ------------------------------------------------------------------ PyCostModel
    def update(self, context, candidates, results) -> None:
        if len(candidates) != len(results):
            raise TuningError(f"cost model update: {len(candidates)} candidates but {len(results)} results")
        if not candidates:
            return
        self.add_records(self.features(context, candidates), self.targets(context, results))

    def add_records(self, xs: np.ndarray, ys: np.ndarray) -> None:
        """Append feature rows with their fraction-of-roofline targets and retrain."""
        self.xs = xs if self.xs.size == 0 else np.concatenate([self.xs, xs])
        self.ys = np.concatenate([self.ys, ys])
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
        np.savez(
            buffer,
            xs=self.xs,
            ys=self.ys,
            booster=booster,
            peaks=np.array([self.peaks.popcounts_per_s, self.peaks.bytes_per_s]),
            config=np.array([self.seed, self.num_rounds, self.num_threads]),
        )
        with open(path, "wb") as f:
            f.write(buffer.getvalue())

    def load(self, path: str) -> None:
        import xgboost as xgb  # noqa: PLC0415

        try:
            with np.load(path) as data:
                xs, ys, booster = data["xs"], data["ys"], data["booster"]
                peaks, config = data["peaks"], data["config"]
        except (OSError, KeyError, ValueError) as err:
            raise TuningError(f"cost model file {path!r} is not a saved BopsXGBModel: {err}") from err
        self.xs, self.ys = xs.astype("float32"), ys.astype("float32")
        self.peaks = Peaks(float(peaks[0]), float(peaks[1]))
        self.seed, self.num_rounds, self.num_threads = (int(v) for v in config)
        self.booster = None
        if booster.size:
            self.booster = xgb.Booster()
            self.booster.load_model(bytearray(booster.tobytes()))

    # ------------------------------------------------------------------ training
    def _train(self) -> None:
        import xgboost as xgb  # noqa: PLC0415

        if len(self.ys) < 2 or not math.isfinite(float(self.ys.sum())):
            return
        params = {
            "objective": "reg:squarederror",
            "max_depth": 6,
            "eta": 0.1,
            "subsample": 0.9,
            "min_child_weight": 1,
            "seed": self.seed,
            "nthread": self.num_threads,
            "verbosity": 0,
        }
        self.booster = xgb.train(params, xgb.DMatrix(self.xs, label=self.ys), num_boost_round=self.num_rounds)


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
