"""WidenQnnAccumulation: quantized layers accumulate in float64 (cpu-reference lowering only)."""

import tvm
from qnn_pass_helpers import FloatNet
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import WidenQnnAccumulation


@I.ir_module
class Before:
    @R.function(private=True)
    def qnn_dense_w(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            lv = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(x, lv)
            R.output(gv)
        return gv

    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        cls = Before
        with R.dataflow():
            gv = cls.qnn_dense_w(x, w)
            R.output(gv)
        return gv


@I.ir_module
class Expected:
    @R.function(private=True)
    def qnn_dense_w(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            lv = R.permute_dims(w, axes=[1, 0])
            x64 = R.astype(x, "float64")
            w64 = R.astype(lv, "float64")
            wide = R.matmul(x64, w64, out_dtype="float64")
            gv = R.astype(wide, "float32")
            R.output(gv)
        return gv

    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        cls = Expected
        with R.dataflow():
            gv = cls.qnn_dense_w(x, w)
            R.output(gv)
        return gv


@I.ir_module
class DequantBefore:
    @R.function(private=True)
    def qnn_dense_w(codes: R.Tensor((1, 4), "uint8"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            codes_f32 = R.astype(codes, "float32")
            xq = R.multiply(codes_f32, R.const(0.1, "float32"))
            lv = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(xq, lv)
            R.output(gv)
        return gv


@I.ir_module
class DequantExpected:
    @R.function(private=True)
    def qnn_dense_w(codes: R.Tensor((1, 4), "uint8"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            codes_f32 = R.astype(codes, "float32")
            xq = R.multiply(codes_f32, R.const(0.1, "float32"))
            lv = R.permute_dims(w, axes=[1, 0])
            codes64 = R.astype(codes, "float64")
            scale64 = R.astype(R.const(0.1, "float32"), "float64")
            x64 = R.multiply(codes64, scale64)
            w64 = R.astype(lv, "float64")
            wide = R.matmul(x64, w64, out_dtype="float64")
            gv = R.astype(wide, "float32")
            R.output(gv)
        return gv


def test_dequantized_input_is_rebuilt_exactly_from_the_codes():
    # codes * s_a in float64 is exact (8 x 24 bits); the float32 xq would round every product
    tvm.ir.assert_structural_equal(WidenQnnAccumulation()(DequantBefore)["qnn_dense_w"], DequantExpected["qnn_dense_w"])


def test_widens_layer_ops_only_inside_qnn_functions():
    tvm.ir.assert_structural_equal(WidenQnnAccumulation()(Before), Expected)


def test_float_graph_unchanged_and_idempotent():
    tvm.ir.assert_structural_equal(WidenQnnAccumulation()(FloatNet), FloatNet)
    once = WidenQnnAccumulation()(Before)
    tvm.ir.assert_structural_equal(WidenQnnAccumulation()(once), once)


@I.ir_module
class ZeroPointBefore:
    @R.function(private=True)
    def qnn_dense_w(codes: R.Tensor((1, 4), "uint8"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            codes_f32 = R.astype(codes, "float32")
            centred = R.subtract(codes_f32, R.const(128.0, "float32"))
            xq = R.multiply(centred, R.const(0.1, "float32"))
            lv = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(xq, lv)
            R.output(gv)
        return gv


@I.ir_module
class ZeroPointExpected:
    @R.function(private=True)
    def qnn_dense_w(codes: R.Tensor((1, 4), "uint8"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        R.func_attr({"Composite": "qnn.dense", "qnn.layer": "w"})
        with R.dataflow():
            codes_f32 = R.astype(codes, "float32")
            centred = R.subtract(codes_f32, R.const(128.0, "float32"))
            xq = R.multiply(centred, R.const(0.1, "float32"))
            lv = R.permute_dims(w, axes=[1, 0])
            codes64 = R.astype(codes, "float64")
            zero64 = R.astype(R.const(128.0, "float32"), "float64")
            centred64 = R.subtract(codes64, zero64)
            scale64 = R.astype(R.const(0.1, "float32"), "float64")
            x64 = R.multiply(centred64, scale64)
            w64 = R.astype(lv, "float64")
            wide = R.matmul(x64, w64, out_dtype="float64")
            gv = R.astype(wide, "float32")
            R.output(gv)
        return gv


def test_zero_point_input_is_rebuilt_exactly_from_the_codes():
    # (codes - z) * s_a in float64 is exact too (9 x 24 bits)
    widened = WidenQnnAccumulation()(ZeroPointBefore)["qnn_dense_w"]
    tvm.ir.assert_structural_equal(widened, ZeroPointExpected["qnn_dense_w"])
