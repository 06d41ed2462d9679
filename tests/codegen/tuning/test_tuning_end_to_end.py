"""A real short tune of a quantized model, then compile(..., tuning=work_dir) (slow)."""

import numpy as np
import pytest
import torch

import tvm_qnn
from codegen.tuning.database import open_database
from tvm_qnn.models import tiny_cnn


@pytest.mark.slow
def test_tune_then_compile_with_the_records(tmp_path):
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    x = torch.rand(2, 1, 28, 28)
    mod, params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(8, 1, 28, 28), w_bits=2, a_bits=2, progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    report = tvm_qnn.tune(qmod, target="cpu", trials=8, cost_model="bops-xgb", work_dir=tmp_path)
    assert report.results and all(r.trials == 8 for r in report.results)
    assert any(r.verified for r in report.results)
    # only winners no slower than the hand schedule are recorded
    assert len(open_database(tmp_path).get_all_tuning_records()) == sum(r.recorded for r in report.results)
    assert all(r.best_ms <= r.hand_ms for r in report.results if r.recorded)
    assert (tmp_path / "cost_model_bops_xgb.npz").exists()
    tuned = tvm_qnn.compile(qmod, target="cpu", tuning=tmp_path)
    hand = tvm_qnn.compile(qmod, target="cpu")
    reference = tvm_qnn.compile(qmod, target="cpu-reference")
    xs = x.numpy()
    got, want = tuned.run(xs), reference.run(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_array_equal(got, hand.run(xs))  # same integer sums, same float epilogue
    # a second tune reuses the stored cost model (its records grow)
    again = tvm_qnn.tune(qmod, trials=2, work_dir=tmp_path)
    assert len(again.results) == len(report.results)
