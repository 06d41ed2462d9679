"""Short tunes: verified records, the compile hook, wrong schedules dropped, empty spaces, interruption."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tvm
from codegen_composites import chain_module
from codegen_layers import random_input, random_layer

from codegen.build import build_kernel, cpu_target, workload_module
from codegen.plan import kernel_args, layer_workload
from codegen.tuning import tuner
from codegen.tuning.cost_model import make_cost_model
from codegen.tuning.database import RECORD_FILE, TRIALS_DIR, open_database, open_trials_database
from codegen.tuning.space import BitserialSpace, design_space
from tvm_qnn.errors import TuningError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _layer(seed=1, **kw):
    args = dict(channels=70, out_channels=16, size=6, w_bits=2, a_bits=2)
    args.update(kw)
    return random_layer(np.random.default_rng(seed), **args)


def _run_layer(kernel, layer, wl, x):
    out = tvm.runtime.empty(wl.output_shape, "float32")
    kernel["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in kernel_args(layer, wl).as_list()], out)
    return out.numpy()


def test_cost_model_by_name(tmp_path):
    wl, target = layer_workload(_layer()), cpu_target(1)
    result = tuner.tune_workload(wl, target, 2, "bops-xgb", str(tmp_path / "a"), trials_per_iter=2)
    assert result.verified and result.best_ms > 0
    with pytest.raises(TuningError, match="unknown cost model 'xgboost'"):
        tuner.tune_workload(wl, target, 2, "xgboost", str(tmp_path / "b"), trials_per_iter=2)


def test_short_tune_records_a_verified_schedule_that_matches_the_reference(tmp_path):
    layer = _layer()
    wl, target = layer_workload(layer), cpu_target(2)
    # require_faster=False: commit the verified winner even if 3 random trials did not beat the hand schedule
    result = tuner.tune_workload(wl, target, 3, make_cost_model("random", seed=0), str(tmp_path), trials_per_iter=3,
                                 require_faster=False)
    assert result.verified and result.recorded and result.best_ms > 0 and result.hand_ms > 0
    database = open_database(tmp_path)
    assert database.query_schedule(workload_module(wl), target=target, workload_name="main") is not None
    # the lowering's hook picks the record up; the tuned kernel computes the layer (reference oracle)
    x = random_input(np.random.default_rng(2), layer)
    got = _run_layer(build_kernel(wl, target, database), layer, wl, x)
    expected = layer.reference(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))
    # and agrees bit for bit with the hand-scheduled kernel
    np.testing.assert_array_equal(got, _run_layer(build_kernel(wl, target, None), layer, wl, x))


def _patch_winner_runs(monkeypatch, change):
    """``tuner.run_kernel`` with every call after the first (the hand schedule; later ones are the
    winners being verified) passed through ``change(out, ms) -> (out, ms)``."""
    real_run = tuner.run_kernel
    calls = []

    def run(mod, target, args_np):
        out, ms = real_run(mod, target, args_np)
        calls.append(1)
        return (out, ms) if len(calls) == 1 else change(out, ms)

    monkeypatch.setattr(tuner, "run_kernel", run)


def test_a_verified_winner_slower_than_the_hand_schedule_is_not_recorded(tmp_path, monkeypatch):
    layer = _layer(seed=4)
    wl, target = layer_workload(layer), cpu_target(2)
    _patch_winner_runs(monkeypatch, lambda out, ms: (out, 1000.0 * ms))
    result = tuner.tune_workload(wl, target, 2, make_cost_model("random"), str(tmp_path), trials_per_iter=2)
    assert result.verified and not result.recorded and result.best_ms > result.hand_ms
    assert open_database(tmp_path).get_all_tuning_records() == []  # compile(..., tuning=) keeps the hand schedule
    monkeypatch.undo()
    faster = tuner.tune_workload(wl, target, 2, make_cost_model("random"), str(tmp_path / "again"), trials_per_iter=2,
                                 require_faster=False)
    assert faster.recorded and len(open_database(tmp_path / "again").get_all_tuning_records()) == 1


def test_a_winner_that_computes_a_wrong_answer_is_dropped(tmp_path, monkeypatch):
    layer = _layer(seed=3)
    wl, target = layer_workload(layer), cpu_target(2)
    _patch_winner_runs(monkeypatch, lambda out, ms: (out + 1.0, ms))
    with pytest.warns(UserWarning, match="differs from the hand schedule"):
        result = tuner.tune_workload(wl, target, 2, make_cost_model("random"), str(tmp_path), trials_per_iter=2)
    assert not result.verified and result.best_ms is None
    assert open_database(tmp_path).get_all_tuning_records() == []
    assert len(open_trials_database(tmp_path).get_all_tuning_records()) == 2  # measured, just not trusted


def test_space_without_a_valid_candidate_names_the_workload():
    wl = layer_workload(_layer(out_channels=6))
    with pytest.raises(TuningError, match=wl.key()):
        design_space(wl, BitserialSpace(lanes=(4, 8)))  # neither divides 6 output channels
    with pytest.raises(TuningError, match="parallel_axes"):
        BitserialSpace(parallel_axes=("everywhere",))


def test_tune_api_errors_name_the_workload_and_the_layer(tmp_path):
    from tvm_qnn.tuning import tune

    layer = _layer(out_channels=6)
    mod, read_layer = chain_module([layer], tail_add=False)
    with pytest.raises(TuningError, match=r"(?s)conv2d.*test\.layer"):
        tune(mod, trials=2, work_dir=tmp_path, space=BitserialSpace(lanes=(4,)), read_layer=read_layer)
    with pytest.raises(TuningError, match="known"):
        tune(mod, trials=2, cost_model="gbdt", work_dir=tmp_path, read_layer=read_layer)


_INTERRUPTED_TUNE = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from codegen_layers import random_layer
from codegen.build import cpu_target
from codegen.plan import layer_workload
from codegen.tuning.cost_model import make_cost_model
from codegen.tuning.tuner import tune_workload
layer = random_layer(np.random.default_rng(1), channels=70, out_channels=16, size=6)
tune_workload(layer_workload(layer), cpu_target(1), 400, make_cost_model("random"), {work_dir!r}, trials_per_iter=2)
"""


def test_interrupted_tune_leaves_a_readable_database(tmp_path):
    script = _INTERRUPTED_TUNE.format(tests=os.path.join(REPO, "tests", "codegen"), work_dir=str(tmp_path))
    records = tmp_path / TRIALS_DIR / RECORD_FILE
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if records.exists() and records.read_text().count("\n") >= 2:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "the tune ended before it could be interrupted"
    finally:
        proc.kill()
        proc.wait()
    # a kill during a write leaves half a line: simulate the worst case too
    with open(records, "a") as f:
        f.write('[0, [[["SampleCategorical"')
    with pytest.warns(UserWarning, match="truncated"):
        trials = open_trials_database(tmp_path)
    assert len(trials.get_all_tuning_records()) >= 2
    for line in records.read_text().splitlines():
        json.loads(line)
    verified = open_database(tmp_path)  # created empty at the start; nothing verified yet
    assert verified.get_all_tuning_records() == []


def test_missing_work_dir_is_a_tuning_error(tmp_path):
    with pytest.raises(TuningError, match="no database_workload.json"):
        open_database(tmp_path / "nowhere")
