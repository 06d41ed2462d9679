"""Frontends: torch (names kept, BN folded), ONNX (same numbers as onnxruntime and as torch
fake-quant after quantization), QONNX (recipe from Quant nodes), and their errors."""

import io

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import tvm_qnn
from tvm_qnn.errors import ShapeError, UnsupportedOpError
from tvm_qnn.models import fmnist_resnet, quantizable_layers, tiny_cnn
from tvm_qnn.train.fakequant import apply_recipe
from tvm_qnn.train.fold_bn import fold_batchnorm


def onnx_bytes(model, x, **kwargs):
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"], output_names=["y"], **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(3)
    model = fmnist_resnet().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
            module.running_mean.uniform_(-0.2, 0.2)
    return model, torch.rand(2, 1, 28, 28)


def test_from_torch_keeps_torch_names_and_folds_batchnorm(resnet):
    model, x = resnet
    mod, params = tvm_qnn.from_torch(model, x)
    folded = fold_batchnorm(model)
    weights = quantizable_layers(model)
    names = [p.name for p in mod["main"].params[1:]]
    assert [name for name in names if name in weights] == weights  # torch names, torch order
    assert sorted(names) == sorted(params) and not any("bn" in name for name in params)
    for name in weights:
        np.testing.assert_array_equal(params[name], folded.state_dict()[name].numpy())
    out = tvm_qnn.compile(mod, params=params).run(x)
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_tiny_onnx_import_quantizes_like_torch():
    torch.manual_seed(5)
    model, x = tiny_cnn().eval(), torch.rand(2, 1, 28, 28)
    mod, params = tvm_qnn.from_onnx(onnx.load_from_string(onnx_bytes(model, x)))
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(8, 1, 28, 28), w_bits=3, a_bits=3, w_scheme="uniform",
                               progress=False)
    assert sorted(recipe.layers) == ["conv2.weight", "fc1.weight"]
    got = tvm_qnn.compile(mod, recipe=recipe, params=params).run(x)
    expected = apply_recipe(model, recipe)(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.slow
def test_from_onnx_matches_onnxruntime_and_quantizes_like_torch(resnet):
    model, x = resnet
    data = onnx_bytes(fold_batchnorm(model), x)
    mod, params = tvm_qnn.from_onnx(onnx.load_from_string(data))
    assert set(quantizable_layers(model)) <= set(params)
    ref = onnxruntime.InferenceSession(data).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(tvm_qnn.compile(mod, params=params).run(x), ref, rtol=1e-5, atol=1e-5)
    torch_mod, torch_params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(torch_mod, torch_params, torch.rand(8, 1, 28, 28), progress=False)
    got = tvm_qnn.compile(mod, recipe=recipe, params=params).run(x)
    expected = apply_recipe(model, recipe)(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_onnx_graph_with_batchnorm_is_folded_by_the_relax_pass(tmp_path):
    torch.manual_seed(4)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 2, 3), torch.nn.ReLU()).eval()
    model[1].running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 1, 8, 8)
    path = tmp_path / "bn.onnx"
    path.write_bytes(onnx_bytes(model, x, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False))
    mod, params = tvm_qnn.from_onnx(path)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert "BatchNormalization" in ops
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 8, 8), fp32_layers=["0.weight"], progress=False)
    assert sorted(recipe.layers) == ["3.weight"]
    got = tvm_qnn.compile(mod, recipe=recipe, params=params).run(x)
    expected = apply_recipe(model, recipe)(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_dynamic_onnx_input_needs_a_shape():
    model = tiny_cnn().eval()
    data = onnx_bytes(model, torch.rand(1, 1, 28, 28), dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(ShapeError, match="input 'x'.*dynamic"):
        tvm_qnn.from_onnx(onnx.load_from_string(data))
    mod, params = tvm_qnn.from_onnx(onnx.load_from_string(data), shape_dict={"x": (3, 1, 28, 28)})
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [3, 1, 28, 28]


def test_unsupported_onnx_op_is_named():
    node = helper.make_node("NoSuchOp", ["x"], ["y"], domain="example.custom")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("example.custom", 1)])
    with pytest.raises(UnsupportedOpError, match="NoSuchOp"):
        tvm_qnn.from_onnx(model)


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


def test_model_that_fails_to_export_is_reported():
    with pytest.raises(UnsupportedOpError, match="torch.export failed for DataDependent"):
        tvm_qnn.from_torch(DataDependent(), torch.rand(1, 4))


# --------------------------------------------------------------------------- QONNX
def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def qonnx_model(rng):
    """x -> Relu -> Quant(u2, s=0.4) -> Conv(Quant(W: s3 narrow, per-channel)) + b -> Relu
    -> Quant(u3, s=0.25) -> Flatten -> Gemm(Bipolar W) -> Relu -> Gemm (fp32)."""
    w_conv = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    w_fc = rng.standard_normal((5, 64)).astype(np.float32)
    w_out = rng.standard_normal((3, 5)).astype(np.float32)
    inits = [
        _const("conv.weight", w_conv), _const("conv.bias", rng.standard_normal(4)), _const("fc.weight", w_fc),
        _const("fc.bias", rng.standard_normal(5)), _const("out.weight", w_out), _const("out.bias", np.zeros(3)),
        _const("s_in", 0.4), _const("zero", 0.0), _const("bits2", 2.0), _const("bits3", 3.0),
        _const("s_w", np.array([0.3, 0.2, 0.25, 0.35]).reshape(4, 1, 1, 1)), _const("s_h", 0.25), _const("s_fc", 0.1),
    ]
    domain = "qonnx.custom_op.general"
    nodes = [
        helper.make_node("Relu", ["x"], ["x_relu"]),
        helper.make_node("Quant", ["x_relu", "s_in", "zero", "bits2"], ["x_q"], domain=domain, signed=0, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("Quant", ["conv.weight", "s_w", "zero", "bits3"], ["w_q"], domain=domain, signed=1, narrow=1,
                         rounding_mode="ROUND"),
        helper.make_node("Conv", ["x_q", "w_q", "conv.bias"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["c_relu"]),
        helper.make_node("Quant", ["c_relu", "s_h", "zero", "bits3"], ["h_q"], domain=domain, signed=0, narrow=0,
                         rounding_mode="ROUND"),
        helper.make_node("Flatten", ["h_q"], ["flat"]),
        helper.make_node("BipolarQuant", ["fc.weight", "s_fc"], ["fc_q"], domain=domain),
        helper.make_node("Gemm", ["flat", "fc_q", "fc.bias"], ["f"], transB=1),
        helper.make_node("Relu", ["f"], ["f_relu"]),
        helper.make_node("Gemm", ["f_relu", "out.weight", "out.bias"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "qnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])


def test_from_qonnx_builds_recipe_and_matches_qonnx_execution():
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    rng = np.random.default_rng(0)
    model = qonnx_model(rng)
    mod, params, recipe = tvm_qnn.from_qonnx(model)
    assert sorted(recipe.layers) == ["conv.weight", "fc.weight"] and recipe.fp32_layers == ("out.weight",)
    conv, fc = recipe["conv.weight"], recipe["fc.weight"]
    assert (conv.w_bits, conv.a_bits, fc.w_bits, fc.a_bits) == (3, 2, 1, 3)
    assert conv.a_clamp == pytest.approx(0.4 * 3) and fc.a_clamp == pytest.approx(0.25 * 7)
    np.testing.assert_allclose(conv.lut[1], 0.2 * np.array([-3, -2, -1, 0, 1, 2, 3, 3]), rtol=1e-6)
    np.testing.assert_allclose(fc.lut[0], [-0.1, 0.1], rtol=1e-6)
    compiled = tvm_qnn.compile(mod, recipe=recipe, params=params)
    x = rng.uniform(-0.5, 1.5, (1, 2, 4, 4)).astype(np.float32)
    expected = execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x})["y"]
    np.testing.assert_allclose(compiled.run(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_qonnx_signed_activation_into_a_quantized_layer_gets_a_zero_point():
    model = qonnx_model(np.random.default_rng(0))
    for node in model.graph.node:
        if node.output[0] == "x_q":
            node.attribute[[a.name for a in node.attribute].index("signed")].i = 1
    _, _, recipe = tvm_qnn.from_qonnx(model)
    conv = recipe["conv.weight"]  # signed 2-bit: integers -2..1, our codes 0..3 with zero point 2
    assert (conv.a_bits, conv.a_zero_point) == (2, 2)
    from tvm_qnn import reference

    assert reference.act_scale(conv.a_clamp, 2) == np.float32(0.4)
