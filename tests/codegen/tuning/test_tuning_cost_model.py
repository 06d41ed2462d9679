"""BOPs-aware cost model: workload and schedule features, update/predict, save/load, transfer across bit widths, registry."""

import math

import numpy as np
import pytest
from tuning_helpers import PEAKS, candidates, small_workload, tune_context
from tvm.s_tir.meta_schedule.runner import RunnerResult

from codegen.build import cpu_target, workload_module
from codegen.tuning.cost_model import COST_MODELS, FAILED_COST_S, BopsXGBModel, load_bops_xgb, make_cost_model
from codegen.tuning.features import WORKLOAD_FEATURE_NAMES, Peaks, workload_features
from codegen.tuning.schedule_features import SCHEDULE_FEATURE_NAMES, schedule_features
from codegen.tuning.space import BitserialSpace
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


def _decisions(sch):
    """(x tile, o tile, unroll index) as sampled: the space's decisions, read from the trace."""
    tiles, unroll = [], None
    for inst in sch.trace.insts:
        if inst.kind.name == "SamplePerfectTile":
            tiles.append([int(v) for v in sch.trace.decisions[inst]])
        elif inst.kind.name == "SampleCategorical":
            unroll = int(inst.attrs[0][int(sch.trace.decisions[inst])])
    return tiles, unroll


def test_schedule_features_read_the_space_decisions():
    target = cpu_target(1)
    wl = small_workload(a_bits=2, w_bits=2, channels=130, out_channels=32, size=8)
    space = BitserialSpace()
    context = tune_context(wl, target, space)
    structures = space.structures(wl)
    names = list(SCHEDULE_FEATURE_NAMES)
    seen_spill = seen_fit = False
    for i, cand in enumerate(candidates(wl, context, 32, space, seed_stride=7919)):
        lanes, order, _ = structures[i % len(structures)]
        feats = dict(zip(names, schedule_features(cand.sch)))
        ((_, x_inner), (_, o_vectors)), unroll = _decisions(cand.sch)
        acc_vectors = x_inner * wl.w_planes * wl.a_bits * o_vectors
        assert (feats["lanes"], feats["x_inner"], feats["o_vectors"]) == (lanes, x_inner, o_vectors)
        assert math.isclose(feats["log2_acc_vectors"], math.log2(acc_vectors), rel_tol=1e-6)
        loads = x_inner * wl.a_bits + o_vectors * wl.w_planes
        assert math.isclose(feats["log2_popcounts_per_load"], math.log2(acc_vectors / loads), rel_tol=1e-5)
        # "window-first" puts the kernel window outermost, so the packed words (130 ch -> 3 words) are
        # innermost; "words-first" leaves a kernel row (3 taps) innermost
        assert feats["innermost_reduction_is_words"] == (1.0 if order == "window-first" else 0.0)
        assert math.isclose(feats["log2_innermost_reduction"], math.log2(3), rel_tol=1e-6)
        assert math.isclose(feats["log2_unroll_step"], math.log2(1 + unroll), rel_tol=1e-6)
        assert (feats["spilled_vectors_per_acc"] > 0) == (acc_vectors + 2 > 32)
        seen_spill |= acc_vectors + 2 > 32
        seen_fit |= acc_vectors + 2 <= 32
    assert seen_spill and seen_fit  # both sides of the register budget were exercised


def test_schedule_features_are_missing_for_a_foreign_schedule():
    from tvm import s_tir

    sch = s_tir.Schedule(workload_module(small_workload()))  # unscheduled: no popcount_acc_update block
    assert np.isnan(schedule_features(sch)).all()


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
    # targets: log2 of the throughput normalised by the roofline prior, one query group per workload
    roofline = workload_features(workload_module(wl)["main"], PEAKS).roofline_s
    measured = np.array([float(r.run_secs[0]) for r in _fake_results(6, np.random.default_rng(0))])
    assert np.allclose(model.ys, np.log2(roofline / measured), rtol=1e-5)
    assert len(set(model.groups)) == 1 and len(model.groups) == 6
    assert model.xs.shape[1] == len(SCHEDULE_FEATURE_NAMES) + len(WORKLOAD_FEATURE_NAMES)
    path = str(tmp_path / "model.npz")
    model.save(path)
    loaded = load_bops_xgb(path)
    np.testing.assert_array_equal(loaded.predict(context, cands), pred)
    np.testing.assert_array_equal(loaded.xs, model.xs)
    np.testing.assert_array_equal(loaded.groups, model.groups)
    assert loaded.peaks == PEAKS and loaded.objective == model.objective


def test_ranking_learned_on_one_workload_transfers_to_another_bit_width():
    """Synthetic latencies that grow with spilled accumulators: learned at 1 bit, ranked at 3 bits."""
    from scipy.stats import spearmanr

    target = cpu_target(1)

    def fake_seconds(cands):
        feats = np.stack([schedule_features(c.sch) for c in cands])
        spilled = feats[:, list(SCHEDULE_FEATURE_NAMES).index("spilled_vectors_per_acc")]
        lanes = feats[:, list(SCHEDULE_FEATURE_NAMES).index("lanes")]
        return 1e-4 * (1.0 + 4.0 * spilled) * (8.0 / lanes)

    model = BopsXGBModel(PEAKS, seed=0, num_rounds=30)
    for bits in (1, 2):
        wl = small_workload(a_bits=bits, w_bits=bits, out_channels=32)
        context = tune_context(wl, target)
        cands = candidates(wl, context, 24)
        model.update(context, cands, [RunnerResult([s], None) for s in fake_seconds(cands)])
    assert len(set(model.groups)) == 2
    held = small_workload(a_bits=3, w_bits=3, out_channels=32)
    context = tune_context(held, target)
    cands = candidates(held, context, 24)
    rho = spearmanr(model.predict(context, cands), 1.0 / fake_seconds(cands)).statistic
    assert rho > 0.8


def test_an_older_model_file_keeps_its_peaks_and_drops_its_records(tmp_path):
    path = tmp_path / "old.npz"
    np.savez(path, xs=np.ones((3, 5), "float32"), ys=np.ones(3, "float32"), booster=np.zeros(0, np.uint8),
             peaks=np.array([3e9, 4e9]), config=np.array([0, 200, 1]))
    with pytest.warns(UserWarning, match="older"):
        model = load_bops_xgb(str(path))
    assert model.peaks == Peaks(3e9, 4e9) and model.booster is None and len(model.ys) == 0


def test_failed_runs_score_lowest_and_bad_file_is_a_tuning_error(tmp_path):
    target = cpu_target(1)
    wl = small_workload()
    context = tune_context(wl, target)
    model = BopsXGBModel(PEAKS)
    targets = model.targets(context, [RunnerResult(None, "build failed"), RunnerResult([1e-3], None)])
    # a failure scores as if it took FAILED_COST_S: below anything measured
    roofline = workload_features(workload_module(wl)["main"], PEAKS).roofline_s
    assert math.isclose(targets[0], math.log2(roofline / FAILED_COST_S), rel_tol=1e-5)
    assert math.isclose(targets[1], math.log2(roofline / 1e-3), rel_tol=1e-5) and targets[0] < targets[1] - 30
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
