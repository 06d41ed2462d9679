"""FoldBatchNorm: symbolic fold of inference BN into conv weight/bias, numerically equal."""

import numpy as np
import pytest
import tvm
from qnn_pass_helpers import FloatNet, build_and_run
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import FoldBatchNorm
from tvm_qnn.errors import UnsupportedOpError


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((3, 2, 1, 1), "float32"), b: R.Tensor((3,), "float32"),
             gamma: R.Tensor((3,), "float32"), beta: R.Tensor((3,), "float32"), mean: R.Tensor((3,), "float32"),
             var: R.Tensor((3,), "float32")) -> R.Tensor((1, 3, 4, 4), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, w)
            lv1 = R.reshape(b, R.shape([1, 3, 1, 1]))
            lv2 = R.add(lv, lv1)
            lv3 = R.nn.batch_norm(lv2, gamma, beta, mean, var, axis=1, epsilon=1e-5, training=False)
            lv4 = lv3[0]
            gv = R.nn.relu(lv4)
            R.output(gv)
        return gv


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((3, 2, 1, 1), "float32"), b: R.Tensor((3,), "float32"),
             gamma: R.Tensor((3,), "float32"), beta: R.Tensor((3,), "float32"), mean: R.Tensor((3,), "float32"),
             var: R.Tensor((3,), "float32")) -> R.Tensor((1, 3, 4, 4), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv1 = R.reshape(b, R.shape([1, 3, 1, 1]))
            eps = R.add(var, R.const(1e-5, "float32"))
            std = R.sqrt(eps)
            inv_std = R.divide(R.const(1.0, "float32"), std)
            scale = R.multiply(gamma, inv_std)
            scale4 = R.reshape(scale, R.shape([3, 1, 1, 1]))
            w_folded = R.multiply(w, scale4)
            conv = R.nn.conv2d(x, w_folded)
            bias = R.reshape(lv1, R.shape([3]))
            centered = R.subtract(bias, mean)
            shifted = R.multiply(centered, scale)
            shift = R.add(shifted, beta)
            shift4 = R.reshape(shift, R.shape([1, 3, 1, 1]))
            out = R.add(conv, shift4)
            gv = R.nn.relu(out)
            R.output(gv)
        return gv


def test_folds_conv_bias_batchnorm():
    tvm.ir.assert_structural_equal(FoldBatchNorm()(Before), Expected)


def test_no_batchnorm_is_unchanged_and_fold_is_idempotent():
    tvm.ir.assert_structural_equal(FoldBatchNorm()(FloatNet), FloatNet)
    once = FoldBatchNorm()(Before)
    tvm.ir.assert_structural_equal(FoldBatchNorm()(once), once)


def test_folded_graph_computes_the_same():
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((1, 2, 4, 4)).astype(np.float32), rng.standard_normal((3, 2, 1, 1)).astype(np.float32),
              rng.standard_normal(3).astype(np.float32), rng.uniform(0.5, 1.5, 3).astype(np.float32),
              rng.standard_normal(3).astype(np.float32), rng.standard_normal(3).astype(np.float32),
              rng.uniform(0.5, 2.0, 3).astype(np.float32)]
    expected = build_and_run(Before, *inputs)
    got = build_and_run(FoldBatchNorm()(Before), *inputs)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@I.ir_module
class Training:
    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), w: R.Tensor((3, 2, 1, 1), "float32"), gamma: R.Tensor((3,), "float32"),
             beta: R.Tensor((3,), "float32"), mean: R.Tensor((3,), "float32"), var: R.Tensor((3,), "float32")) -> R.Tensor((1, 3, 4, 4), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, w)
            lv3 = R.nn.batch_norm(lv, gamma, beta, mean, var, axis=1, training=True)
            gv = lv3[0]
            R.output(gv)
        return gv


def test_training_mode_batchnorm_is_rejected_naming_the_op():
    with pytest.raises(UnsupportedOpError, match="relax.nn.batch_norm.*training mode"):
        FoldBatchNorm()(Training)
