"""InsertActQuant: the layer input becomes act_codes(x) * s_a, exactly as reference.act_codes."""

import numpy as np
import pytest
import tvm
from qnn_pass_helpers import FloatNet, build_and_run, layer, recipe
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import AnnotateQuantLayers, InsertActQuant
from tvm_qnn import reference


@I.ir_module
class Annotated:
    @R.function(private=True)
    def qnn_conv2d_w2(lv3: R.Tensor((1, 4, 8, 8), dtype="float32"), w2: R.Tensor((4, 1, 3, 3), dtype="float32")) -> R.Tensor((1, 4, 8, 8), dtype="float32"):
        R.func_attr({"qnn.a_bits": 2, "qnn.a_clamp": 1.5, "qnn.kind": "conv2d", "qnn.layer": "w2", "qnn.w_bits": 2, "qnn.w_scheme": "uniform"})
        with R.dataflow():
            lv4 = R.nn.conv2d(lv3, w2, padding=[1, 1, 1, 1], groups=4)
            gv = R.clip(lv4, 0, 6)
            R.output(gv)
        return gv

    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w2: R.Tensor((4, 1, 3, 3), "float32")) -> R.Tensor((1, 4, 8, 8), "float32"):
        R.func_attr({"num_input": 1})
        cls = Annotated
        with R.dataflow():
            gv = cls.qnn_conv2d_w2(x, w2)
            R.output(gv)
        return gv


@I.ir_module
class Expected:
    @R.function(private=True)
    def qnn_conv2d_w2(lv3: R.Tensor((1, 4, 8, 8), dtype="float32"), w2: R.Tensor((4, 1, 3, 3), dtype="float32")) -> R.Tensor((1, 4, 8, 8), dtype="float32"):
        R.func_attr({"qnn.a_bits": 2, "qnn.a_clamp": 1.5, "qnn.kind": "conv2d", "qnn.layer": "w2", "qnn.w_bits": 2, "qnn.w_scheme": "uniform"})
        with R.dataflow():
            x_scaled = R.divide(lv3, R.const(0.5, "float32"))
            x_shifted = R.add(x_scaled, R.const(0.5, "float32"))
            x_floor = R.floor(x_shifted)
            x_clipped = R.clip(x_floor, 0, 3)
            codes = R.astype(x_clipped, dtype="uint8")
            codes_f32 = R.astype(codes, dtype="float32")
            xq = R.multiply(codes_f32, R.const(0.5, "float32"))
            lv4 = R.nn.conv2d(xq, w2, padding=[1, 1, 1, 1], groups=4)
            gv = R.clip(lv4, 0, 6)
            R.output(gv)
        return gv

    @R.function
    def main(x: R.Tensor((1, 4, 8, 8), "float32"), w2: R.Tensor((4, 1, 3, 3), "float32")) -> R.Tensor((1, 4, 8, 8), "float32"):
        R.func_attr({"num_input": 1})
        cls = Expected
        with R.dataflow():
            gv = cls.qnn_conv2d_w2(x, w2)
            R.output(gv)
        return gv


def test_inserts_codes_before_the_layer():
    tvm.ir.assert_structural_equal(InsertActQuant()(Annotated), Expected)


def test_nothing_annotated_is_unchanged_and_pass_is_idempotent():
    tvm.ir.assert_structural_equal(InsertActQuant()(FloatNet), FloatNet)
    once = InsertActQuant()(Annotated)
    tvm.ir.assert_structural_equal(InsertActQuant()(once), once)


@I.ir_module
class Identity:
    @R.function
    def main(x: R.Tensor((1, 64), "float32"), w: R.Tensor((64, 64), "float32")) -> R.Tensor((1, 64), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            lv = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(x, lv)
            R.output(gv)
        return gv


@pytest.mark.parametrize("zero_point", [0, 3, 4, 7])
def test_codes_match_the_reference_bit_exactly_at_rounding_boundaries(zero_point):
    # an identity dense layer returns (codes - z) * s_a: compare with reference.act_codes
    clamp, bits = 0.7, 3
    quantized = AnnotateQuantLayers(recipe([layer("w", a_bits=bits, a_clamp=clamp, a_zero_point=zero_point)]))(Identity)
    quantized = InsertActQuant()(quantized)
    s_a = reference.act_scale(clamp, bits)
    halves = (np.arange(64, dtype=np.float32) / 8.0 - 4.5) * s_a  # values at and near k + 1/2 steps, both signs
    x = np.stack([halves, np.nextafter(halves, np.float32(1)), np.nextafter(halves, np.float32(-1)),
                  np.linspace(-1, 2, 64, dtype=np.float32)]).reshape(4, 1, 64)
    for row in x:
        got = build_and_run(quantized, row, np.eye(64, dtype=np.float32))
        codes = reference.act_codes(row, clamp, bits, zero_point)
        expected = reference.dequant_act(codes, clamp, bits, zero_point)
        np.testing.assert_array_equal(got, expected)
        if zero_point:
            assert got.min() < 0  # negative inputs stay negative


@I.ir_module
class PaddedConv:
    @R.function
    def main(x: R.Tensor((1, 3, 5, 5), "float32"), w: R.Tensor((2, 3, 3, 3), "float32")) -> R.Tensor((1, 2, 5, 5), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            gv = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
            R.output(gv)
        return gv


@pytest.mark.parametrize("zero_point", [0, 5, 15])
def test_padded_conv_with_zero_point_equals_the_reference(zero_point):
    """The border of a padded conv holds x_hat = 0 (code z), as the reference's sums over q - z."""
    clamp, bits = 3.0, 4
    rng = np.random.default_rng(zero_point)
    w = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    lq = layer("w", w_bits=2, a_bits=bits, a_clamp=clamp, a_zero_point=zero_point)
    quantized = InsertActQuant()(AnnotateQuantLayers(recipe([lq]))(PaddedConv))
    x = rng.normal(size=(1, 3, 5, 5)).astype(np.float32) - 0.5
    wq = reference.dequant_weight(lq.indices(w), lq.lut)
    got = build_and_run(quantized, x, wq)
    codes = reference.act_codes(x, clamp, bits, zero_point)
    expected = reference.qconv2d(codes, lq.s_a, lq.indices(w), lq.lut, padding=1, zero_point=zero_point)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
