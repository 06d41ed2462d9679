"""AnnotateQuantLayers: Before/Expected IR, nothing-to-quantize, idempotence, recipe errors."""

import pytest
import tvm
from qnn_pass_helpers import FloatNet, recipe
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import AnnotateQuantLayers
from tvm_qnn.errors import RecipeError, UnsupportedOpError


@I.ir_module
class Expected:
    @R.function(private=True)
    def qnn_conv2d_w2(lv3: R.Tensor((1, 4, 8, 8), dtype="float32"), w2: R.Tensor((4, 1, 3, 3), dtype="float32")) -> R.Tensor((1, 4, 8, 8), dtype="float32"):
        R.func_attr({"qnn.a_bits": 2, "qnn.a_clamp": 3.0, "qnn.a_zero_point": 0, "qnn.kind": "conv2d", "qnn.layer": "w2", "qnn.w_bits": 2, "qnn.w_scheme": "uniform"})
        with R.dataflow():
            lv4 = R.nn.conv2d(lv3, w2, padding=[1, 1, 1, 1], groups=4)
            gv = R.clip(lv4, 0, 6)
            R.output(gv)
        return gv

    @R.function(private=True)
    def qnn_dense_w3(w3: R.Tensor((6, 64), dtype="float32"), lv7: R.Tensor((1, 64), dtype="float32"), b3: R.Tensor((6,), dtype="float32")) -> R.Tensor((1, 6), dtype="float32"):
        R.func_attr({"qnn.a_bits": 2, "qnn.a_clamp": 3.0, "qnn.a_zero_point": 0, "qnn.kind": "dense", "qnn.layer": "w3", "qnn.w_bits": 2, "qnn.w_scheme": "uniform"})
        with R.dataflow():
            lv8 = R.permute_dims(w3, axes=[1, 0])
            lv9 = R.matmul(lv7, lv8)
            lv10 = R.add(b3, lv9)
            gv = R.nn.relu(lv10)
            R.output(gv)
        return gv

    @R.function
    def main(x: R.Tensor((1, 2, 8, 8), "float32"), w1: R.Tensor((4, 2, 3, 3), "float32"), b1: R.Tensor((4,), "float32"),
             w2: R.Tensor((4, 1, 3, 3), "float32"), w3: R.Tensor((6, 64), "float32"), b3: R.Tensor((6,), "float32"),
             w4: R.Tensor((3, 6), "float32"), b4: R.Tensor((3,), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"num_input": 1})
        cls = Expected
        with R.dataflow():
            lv = R.nn.conv2d(x, w1, padding=[1, 1, 1, 1])
            lv1 = R.reshape(b1, R.shape([1, 4, 1, 1]))
            lv2 = R.add(lv, lv1)
            lv3 = R.nn.relu(lv2)
            lv_1 = cls.qnn_conv2d_w2(lv3, w2)
            lv6 = R.nn.max_pool2d(lv_1, pool_size=[2, 2], strides=[2, 2])
            lv7 = R.reshape(lv6, R.shape([1, 64]))
            lv_2 = cls.qnn_dense_w3(w3, lv7, b3)
            lv12 = R.permute_dims(w4, axes=[1, 0])
            lv13 = R.matmul(lv_2, lv12)
            gv = R.add(b4, lv13)
            R.output(gv)
        return gv


def test_outlines_depthwise_relu6_conv_and_dense_with_bias_relu():
    after = AnnotateQuantLayers(recipe(["w2", "w3"], ["w1", "w4"]))(FloatNet)
    tvm.ir.assert_structural_equal(after, Expected)


def test_nothing_to_quantize_leaves_the_module_unchanged():
    after = AnnotateQuantLayers(recipe([], ["w1", "w2", "w3", "w4"]))(FloatNet)
    tvm.ir.assert_structural_equal(after, FloatNet)


def test_idempotent_and_input_not_mutated():
    before_text = FloatNet.script()
    once = AnnotateQuantLayers(recipe(["w2", "w3"], ["w1", "w4"]))(FloatNet)
    twice = AnnotateQuantLayers(recipe(["w2", "w3"], ["w1", "w4"]))(once)
    tvm.ir.assert_structural_equal(once, twice)
    assert FloatNet.script() == before_text


def test_every_layer_kind_is_found():
    after = AnnotateQuantLayers(recipe(["w1", "w2", "w3", "w4"]))(FloatNet)
    names = sorted(gv.name_hint for gv in after.get_global_vars())
    assert names == ["main", "qnn_conv2d_w1", "qnn_conv2d_w2", "qnn_dense_w3", "qnn_dense_w4"]
    kinds = {str(after[n].attrs["qnn.layer"]): str(after[n].attrs["qnn.kind"]) for n in names if n != "main"}
    assert kinds == {"w1": "conv2d", "w2": "conv2d", "w3": "dense", "w4": "dense"}


def test_recipe_naming_an_absent_layer_is_rejected():
    with pytest.raises(RecipeError, match="absent.*'nope'"):
        AnnotateQuantLayers(recipe(["w2", "nope"], ["w1", "w3", "w4"]))(FloatNet)


def test_recipe_missing_a_layer_is_rejected():
    with pytest.raises(RecipeError, match=r"does not cover.*'w4'"):
        AnnotateQuantLayers(recipe(["w2"], ["w1", "w3"]))(FloatNet)


@I.ir_module
class TransposedConv:
    @R.function
    def main(x: R.Tensor((1, 2, 4, 4), "float32"), wt: R.Tensor((2, 3, 3, 3), "float32")) -> R.Tensor((1, 3, 6, 6), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            gv = R.nn.conv2d_transpose(x, wt)
            R.output(gv)
        return gv


def test_recipe_quantizing_an_unsupported_op_names_the_op():
    with pytest.raises(UnsupportedOpError, match="'wt'.*relax.nn.conv2d_transpose"):
        AnnotateQuantLayers(recipe(["wt"]))(TransposedConv)


@I.ir_module
class Residual:
    @R.function
    def main(x: R.Tensor((1, 4, 6, 6), "float32"), w: R.Tensor((4, 4, 3, 3), "float32")) -> R.Tensor((1, 4, 6, 6), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
            lv1 = R.add(lv, x)
            gv = R.nn.relu(lv1)
            R.output(gv)
        return gv


def test_residual_add_is_not_taken_for_a_bias():
    after = AnnotateQuantLayers(recipe(["w"]))(Residual)
    body = after["qnn_conv2d_w"].body.blocks[0].bindings
    assert [b.value.op.name for b in body] == ["relax.nn.conv2d"]
    main_ops = [b.value.op.name if hasattr(b.value.op, "name") else b.value.op.name_hint
                for b in after["main"].body.blocks[0].bindings]
    assert main_ops == ["qnn_conv2d_w", "relax.add", "relax.nn.relu"]
