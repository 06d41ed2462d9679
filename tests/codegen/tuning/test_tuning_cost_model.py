"""BOPs-aware cost model: workload features, update/predict, save/load round trip, registry."""

import math

import numpy as np
import pytest
from tuning_helpers import PEAKS, candidates, small_workload, tune_context
from tvm.s_tir.meta_schedule.runner import RunnerResult

from codegen.build import cpu_target, workload_module
from codegen.tuning.cost_model import COST_MODELS, BopsXGBModel, load_bops_xgb, make_cost_model
from codegen.tuning.features import WORKLOAD_FEATURE_NAMES, workload_features
from tvm_qnn import reference
from tvm_qnn.errors import TuningError


def test_workload_features_count_the_kernel_work():
    wl = small_workload(a_bits=3, w_bits=2)
    feats = workload_features(workload_module(wl)["main"], PEAKS)
    kh, kw = wl.kernel
    hot = wl.out_height * wl.out_width * wl.w_planes * wl.a_bits * wl.out_channels * kh * kw * wl.words_per_group
    totals = wl.out_height * wl.out_width * wl.groups * kh * kw * wl.words_per_group * wl.a_bits
    assert feats.popcounts == hot + totals
    assert (feats.a_bits, feats.w_bits, feats.word_bits) == (3, wl.w_planes, 64)
    # BOPs as UNIQ counts them, on the padded fan-in the kernel reads (64 channels = one word)
    fan_in = kh * kw * wl.words_per_group * 64
    macs = wl.out_height * wl.out_width * wl.out_channels * fan_in
    assert math.isclose(feats.bops, macs * (3 * wl.w_planes + 3 + wl.w_planes + math.log2(fan_in)), rel_tol=1e-9)
    assert math.isclose(feats.roofline_s, max(feats.popcounts / PEAKS.popcounts_per_s,
                                              feats.bytes_moved / PEAKS.bytes_per_s))
    # the BOPs fields are in the vector the model sees
    vector = dict(zip(WORKLOAD_FEATURE_NAMES, feats.vector()))
    assert math.isclose(vector["log2_bops"], math.log2(1 + feats.bops), rel_tol=1e-6)
    assert vector["w_planes_times_a_bits"] == 3 * wl.w_planes
    assert math.isclose(vector["log2_roofline_s"], math.log2(feats.roofline_s), rel_tol=1e-6)
    assert macs > 0 and reference.layer_bops(64, 16, 3, 36, 3, 2) > 0


def _fake_results(count, rng):
    return [RunnerResult([float(s)], None) for s in rng.uniform(1e-4, 1e-3, size=count)]


def test_update_predict_save_load_round_trip(tmp_path):
    target = cpu_target(1)
    wl = small_workload()
    context = tune_context(wl, target)
    cands = candidates(wl, context, 6)
    model = BopsXGBModel(PEAKS, seed=0, num_rounds=20)
    rng = np.random.default_rng(0)
    model.update(context, cands, _fake_results(len(cands), rng))
    pred = model.predict(context, cands)
    assert pred.shape == (6,) and pred.dtype == np.float64 and np.all(np.isfinite(pred))
    # targets are fractions of the roofline: roofline / measured
    roofline = workload_features(workload_module(wl)["main"], PEAKS).roofline_s
    assert np.allclose(model.ys, roofline / np.array([float(r.run_secs[0]) for r in _fake_results(6, np.random.default_rng(0))]))
    # the rows carry per-store features (sum and max) and the workload features
    assert model.xs.shape[1] == 2 * model.extractor.feature_vector_length + len(WORKLOAD_FEATURE_NAMES)
    path = str(tmp_path / "model.npz")
    model.save(path)
    loaded = load_bops_xgb(path)
    np.testing.assert_array_equal(loaded.predict(context, cands), pred)
    np.testing.assert_array_equal(loaded.xs, model.xs)
    assert loaded.peaks == PEAKS


def test_failed_runs_score_zero_and_bad_file_is_a_tuning_error(tmp_path):
    target = cpu_target(1)
    wl = small_workload()
    context = tune_context(wl, target)
    model = BopsXGBModel(PEAKS)
    targets = model.targets(context, [RunnerResult(None, "build failed"), RunnerResult([1e-3], None)])
    assert targets[0] < 1e-9 < targets[1]
    bad = tmp_path / "not_a_model.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(TuningError, match="not_a_model"):
        load_bops_xgb(str(bad))


def test_registry_lists_known_models():
    assert set(COST_MODELS) == {"bops-xgb", "xgb", "random"}
    with pytest.raises(TuningError, match="known"):
        make_cost_model("nonsense")
    with pytest.raises(TuningError, match="peaks"):
        make_cost_model("bops-xgb")
