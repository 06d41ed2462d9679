"""GroupQnnLayers: rewritten layer functions become self-contained qnn.* composites."""

import pytest
import tvm
from qnn_pass_helpers import FloatNet, float_params, recipe
from tvm import relax

from relay_passes import AnnotateQuantLayers, GroupQnnLayers, InsertActQuant, InsertWeightLUT
from relay_passes.composite import is_qnn_composite
from tvm_qnn.errors import QnnError

REC = recipe(["w2", "w3"], ["w1", "w4"])


def rewritten(params=None):
    mod = AnnotateQuantLayers(REC)(FloatNet)
    mod = relax.transform.BindParams("main", params or float_params())(mod)
    return InsertActQuant()(InsertWeightLUT(REC)(mod))


def test_conv_without_bias_only_gains_the_composite_attributes():
    before = rewritten()
    after = GroupQnnLayers()(before)
    expected = before["qnn_conv2d_w2"].with_attrs({"Composite": "qnn.conv2d", "Primitive": True})
    tvm.ir.assert_structural_equal(after["qnn_conv2d_w2"], expected)


def test_dense_bias_is_inlined_and_the_call_keeps_only_the_input():
    params = float_params()
    before = rewritten(params)
    after = GroupQnnLayers()(before)
    func = after["qnn_dense_w3"]
    assert is_qnn_composite(func) and str(func.attrs["Composite"]) == "qnn.dense"
    assert len(func.params) == 1 and [int(d) for d in func.params[0].ty.shape] == [1, 64]
    bias_params = [p for p in before["qnn_dense_w3"].params if p.name == "b3"]
    expected = before["qnn_dense_w3"].bind_params({bias_params[0]: relax.const(params["b3"])})
    expected = expected.with_attrs({"Composite": "qnn.dense", "Primitive": True})
    tvm.ir.assert_structural_equal(func, expected)
    calls = [b.value for b in after["main"].body.blocks[0].bindings
             if isinstance(b.value.op, relax.GlobalVar) and b.value.op.name_hint == "qnn_dense_w3"]
    assert len(calls) == 1 and len(calls[0].args) == 1


def test_nothing_annotated_is_unchanged_and_pass_is_idempotent():
    tvm.ir.assert_structural_equal(GroupQnnLayers()(FloatNet), FloatNet)
    once = GroupQnnLayers()(rewritten())
    tvm.ir.assert_structural_equal(GroupQnnLayers()(once), once)


def test_missing_rewrites_are_reported_naming_the_layer():
    bound = relax.transform.BindParams("main", float_params())(AnnotateQuantLayers(REC)(FloatNet))
    with pytest.raises(QnnError, match="'w2'.*InsertWeightLUT"):
        GroupQnnLayers()(bound)
    with pytest.raises(QnnError, match="'w2'.*InsertActQuant"):
        GroupQnnLayers()(InsertWeightLUT(REC)(bound))
