"""WidenQnnAccumulation: quantized layers accumulate in float64 (cpu-reference lowering only).
WidenFloatLayers: the fp32 layers outside the qnn composites do (quantize(exact_float_layers=True))."""

import numpy as np
import tvm
from qnn_pass_helpers import FloatNet
from tvm.script import ir as I
from tvm.script import relax as R

from relay_passes import WidenFloatLayers, WidenQnnAccumulation


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


@I.ir_module
class FloatDense:
    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        with R.dataflow():
            lv = R.permute_dims(w, axes=[1, 0])
            gv = R.matmul(x, lv)
            R.output(gv)
        return gv


@I.ir_module
class FloatDenseWide:
    @R.function
    def main(x: R.Tensor((1, 4), "float32"), w: R.Tensor((3, 4), "float32")) -> R.Tensor((1, 3), "float32"):
        with R.dataflow():
            lv = R.permute_dims(w, axes=[1, 0])
            x64 = R.astype(x, "float64")
            w64 = R.astype(lv, "float64")
            wide = R.matmul(x64, w64, out_dtype="float64")
            gv = R.astype(wide, "float32")
            R.output(gv)
        return gv


def test_float_layers_widen_outside_qnn_functions_only_and_idempotently():
    tvm.ir.assert_structural_equal(WidenFloatLayers()(FloatDense), FloatDenseWide)
    tvm.ir.assert_structural_equal(WidenFloatLayers()(FloatDenseWide), FloatDenseWide)
    # the composite's matmul is a quantized layer's (WidenQnnAccumulation's job), main has none
    tvm.ir.assert_structural_equal(WidenFloatLayers()(Before), Before)


def test_float_layer_constant_weight_becomes_a_float64_constant():
    from tvm import relax

    weight = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    with builder.function("main", [x]):
        with builder.dataflow():
            out = builder.emit_output(relax.op.matmul(x, relax.const(weight)))
        builder.emit_func_output(out)
    widened = WidenFloatLayers()(builder.get())
    text = widened.script(show_meta=True)
    assert 'R.astype(metadata' not in text and '"float64"' in text
    constants = [c.value.numpy() for c in _constants(widened["main"])]
    assert [c.dtype for c in constants] == [np.float64]
    np.testing.assert_array_equal(constants[0], weight.astype(np.float64))


def _constants(func):
    found = []
    tvm.relax.analysis.post_order_visit(func, lambda e: found.append(e) if isinstance(e, tvm.ir.expr.Constant) else None)
    return [c for c in found if hasattr(c.value, "numpy")]  # tensor constants, not shape integers
