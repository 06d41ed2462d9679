"""InsertActQuant: the layer input becomes act_codes(x) * s_a, exactly as reference.act_codes."""

import numpy as np
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


def test_codes_match_the_reference_bit_exactly_at_rounding_boundaries():
    # an identity dense layer returns codes * s_a: compare with reference.act_codes
    clamp, bits = 0.7, 3
    quantized = AnnotateQuantLayers(recipe([layer("w", a_bits=bits, a_clamp=clamp)]))(Identity)
    quantized = InsertActQuant()(quantized)
    s_a = reference.act_scale(clamp, bits)
    halves = (np.arange(64, dtype=np.float32) / 8.0 - 0.5) * s_a  # values at and near k + 1/2 steps
    x = np.stack([halves, np.nextafter(halves, np.float32(1)), np.nextafter(halves, np.float32(-1)),
                  np.linspace(-1, 2, 64, dtype=np.float32)]).reshape(4, 1, 64)
    for row in x:
        got = build_and_run(quantized, row, np.eye(64, dtype=np.float32))
        expected = reference.dequant_act(reference.act_codes(row, clamp, bits), clamp, bits)
        np.testing.assert_array_equal(got, expected)
