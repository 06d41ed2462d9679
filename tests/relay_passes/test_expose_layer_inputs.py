"""ExposeLayerInputs: main also returns each layer's input and weight (for calibration)."""

import numpy as np
import pytest
import tvm
from qnn_pass_helpers import FloatNet, build_and_run, float_params
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import ExposeLayerInputs
from tvm_qnn.errors import QnnError, RecipeError


@I.ir_module
class Before:
    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.relu(x)
            lv1 = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(lv, lv1)
            R.output(gv)
        return gv


@I.ir_module
class Expected:
    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")):
        R.func_attr({"num_input": 1, "qnn.exposed_layers": ["w"]})
        with R.dataflow():
            lv = R.nn.relu(x)
            lv1 = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(lv, lv1)
            input_0 = lv
            weight_1 = w
            R.output(gv, input_0, weight_1)
        return (gv, input_0, weight_1)


def test_exposes_input_and_weight():
    tvm.ir.assert_structural_equal(ExposeLayerInputs()(Before), Expected)


def test_exposed_values_are_the_layer_inputs():
    params = float_params()
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 8)).astype(np.float32)
    exposed = ExposeLayerInputs(["w2", "w3"])(FloatNet)
    outputs = build_and_run(exposed, x, *[params[k] for k in ("w1", "b1", "w2", "w3", "b3", "w4", "b4")])
    plain = build_and_run(FloatNet, x, *[params[k] for k in ("w1", "b1", "w2", "w3", "b3", "w4", "b4")])
    np.testing.assert_array_equal(outputs[0], plain)
    conv1 = np.maximum(outputs[1], 0)  # the depthwise conv's input is a ReLU output
    np.testing.assert_array_equal(conv1, outputs[1])
    assert outputs[1].shape == (1, 4, 8, 8) and outputs[2].shape == (1, 64)
    np.testing.assert_array_equal(outputs[3], params["w2"])
    np.testing.assert_array_equal(outputs[4], params["w3"])


def test_unknown_layer_and_double_exposure_are_rejected():
    with pytest.raises(RecipeError, match="'nope'"):
        ExposeLayerInputs(["nope"])(Before)
    with pytest.raises(QnnError, match="already"):
        ExposeLayerInputs()(ExposeLayerInputs()(Before))
