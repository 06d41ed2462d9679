"""InsertWeightLUT: float weight -> uint8 index constant + LUT constant, rebuilt by take/gather."""

import numpy as np
import pytest
import tvm
from qnn_pass_helpers import FloatNet, float_params, layer, recipe
from tvm import relax

from relay_passes import AnnotateQuantLayers, InsertWeightLUT
from tvm_qnn import reference
from tvm_qnn.errors import QnnError

ATTRS = {"qnn.a_bits": 2, "qnn.a_clamp": 3.0, "qnn.a_zero_point": 0, "qnn.kind": "conv2d", "qnn.layer": "w2", "qnn.w_bits": 2,
         "qnn.w_scheme": "uniform"}


def bound(rec, params):
    annotated = AnnotateQuantLayers(rec)(FloatNet)
    return relax.transform.BindParams("main", params)(annotated)


def expected_conv(rebuild):
    """The depthwise layer function of FloatNet with the weight built by ``rebuild(bb)``."""
    x = relax.Var("lv3", relax.TensorType((1, 4, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("qnn_conv2d_w2", [x], ATTRS, private=True):
        with bb.dataflow():
            w = rebuild(bb)
            conv = bb.emit(relax.op.nn.conv2d(x, w, padding=[1, 1, 1, 1], groups=4))
            out = bb.emit_output(relax.op.clip(conv, 0, 6))
        bb.emit_func_output(out)
    return bb.get()["qnn_conv2d_w2"]


def test_shared_lut_becomes_take():
    params = float_params()
    rec = recipe(["w2"], ["w1", "w3", "w4"])
    after = InsertWeightLUT(rec)(bound(rec, params))
    idx = rec["w2"].indices(params["w2"])
    lut = rec["w2"].lut[0]
    expected = expected_conv(lambda bb: bb.emit(relax.op.take(relax.const(lut), relax.const(idx), axis=0, mode="clip")))
    tvm.ir.assert_structural_equal(after["qnn_conv2d_w2"], expected)
    calls = [b.value for b in after["main"].body.blocks[0].bindings
             if isinstance(b.value.op, relax.GlobalVar) and b.value.op.name_hint == "qnn_conv2d_w2"]
    assert len(calls) == 1 and len(calls[0].args) == 1  # the weight argument is gone


def test_per_channel_lut_becomes_gather_elements():
    params = float_params()
    lut_rows, thresholds = reference.kquantile_params(params["w2"], 2, per_channel=True)
    per_channel = layer("w2", lut=lut_rows, scheme="kquantile")
    rec = recipe([per_channel], ["w1", "w3", "w4"])
    after = InsertWeightLUT(rec)(bound(rec, params))
    idx = rec["w2"].indices(params["w2"])

    def rebuild(bb):
        rows = bb.emit(relax.op.reshape(relax.const(idx), (4, -1)))
        wide = bb.emit(relax.op.astype(rows, "int64"))
        gathered = bb.emit(relax.op.gather_elements(relax.const(rec["w2"].lut), wide, axis=1))
        return bb.emit(relax.op.reshape(gathered, (4, 1, 3, 3)))

    attrs = dict(ATTRS, **{"qnn.w_scheme": "kquantile"})
    expected = expected_conv(rebuild).with_attrs(attrs)
    tvm.ir.assert_structural_equal(after["qnn_conv2d_w2"], expected)


def test_nothing_annotated_is_unchanged_and_pass_is_idempotent():
    rec = recipe(["w2", "w3"], ["w1", "w4"])
    tvm.ir.assert_structural_equal(InsertWeightLUT(rec)(FloatNet), FloatNet)
    once = InsertWeightLUT(rec)(bound(rec, float_params()))
    tvm.ir.assert_structural_equal(InsertWeightLUT(rec)(once), once)


def test_unbound_weight_is_rejected_naming_the_layer():
    rec = recipe(["w2"], ["w1", "w3", "w4"])
    with pytest.raises(QnnError, match="'w2'.*not a constant"):
        InsertWeightLUT(rec)(AnnotateQuantLayers(rec)(FloatNet))


def test_nan_weight_is_rejected_naming_the_layer():
    params = float_params()
    params["w2"][0, 0, 0, 0] = np.nan
    rec = recipe(["w2"], ["w1", "w3", "w4"])
    with pytest.raises(QnnError, match="'w2'.*NaN"):
        InsertWeightLUT(rec)(bound(rec, params))
