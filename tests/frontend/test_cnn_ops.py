"""The ops real CNNs use, between and around quantized layers (``tvm_qnn.frontend.cnn_ops.TESTED_OPS``).

Per op family, a small torch model with quantizable convs before and after the op:
* float: ``from_torch`` and ``from_onnx`` (TorchScript export) compute what torch computes;
* quantized (slow per family; one combined mobile block in the default suite): w8a8 uniform
  per-channel PTQ, ``cpu`` equals ``cpu-reference`` (1e-5 of the output range) and both equal the
  torch fake-quant model of the same recipe;
* what stays unsupported is an ``UnsupportedOpError`` naming op and layer (one test per kind of
  failure: torch op without converter, ONNX op without converter, a quantized weight feeding a
  layer op that cannot be quantized).
"""

import io
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
import tvm
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from tvm import relax

import tvm_qnn
from relay_passes import patterns
from tvm_qnn.errors import UnsupportedOpError
from tvm_qnn.frontend.cnn_ops import TESTED_OPS
from tvm_qnn.targets import host_target
from tvm_qnn.train.fakequant import apply_recipe
from tvm_qnn.train.fold_bn import fold_batchnorm

SIZE = 8


class _Around(nn.Module):
    """conv -> relu -> op -> conv: the op sits between two quantizable layers."""

    def __init__(self, op, channels_after=8):
        super().__init__()
        self.before = nn.Conv2d(3, 8, 3, padding=1)
        self.op = op
        self.after = nn.Conv2d(channels_after, 8, 3, padding=1)

    def forward(self, x):
        return self.after(self.op(torch.relu(self.before(x))))


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


class _Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return torch.cat([x, self.conv(x)], 1)


class _SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


class _ChannelShuffle(nn.Module):
    def forward(self, x):
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class _SamePad(nn.Module):
    """TF-style "same" padding of a stride-2 3x3 conv: one extra row/column at the bottom/right."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class _Head(nn.Module):
    """conv -> flatten -> dense without bias -> dense; global mean pooling on a second branch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.hidden = nn.Linear(8 * SIZE * SIZE, 16, bias=False)
        self.pooled = nn.Linear(8, 16, bias=False)
        self.out = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.out(torch.relu(self.hidden(torch.flatten(h, 1)) + self.pooled(h.mean((2, 3)))))


FAMILIES = {
    "residual add": lambda: _Around(_Residual()),
    "concat": lambda: _Around(_Concat(), channels_after=16),
    "max pooling": lambda: _Around(nn.MaxPool2d(3, 2, ceil_mode=True)),
    "average pooling": lambda: _Around(nn.AvgPool2d(2)),
    "global pooling": lambda: _Around(nn.AdaptiveAvgPool2d(1)),
    "hardswish": lambda: _Around(nn.Hardswish()),
    "hardsigmoid": lambda: _Around(nn.Hardsigmoid()),
    "silu": lambda: _Around(nn.SiLU()),
    "sigmoid": lambda: _Around(nn.Sigmoid()),
    "gelu": lambda: _Around(nn.Sequential(nn.GELU(), nn.Conv2d(8, 8, 1), nn.GELU("tanh"))),
    "squeeze-excitation": lambda: _Around(_SqueezeExcite()),
    "leaky relu": lambda: _Around(nn.LeakyReLU(0.1)),
    "prelu": lambda: _Around(nn.PReLU(8)),
    "relu6 / clip": lambda: _Around(nn.ReLU6()),
    "reshape / flatten": lambda: _Head(),
    "channel shuffle": lambda: _Around(_ChannelShuffle()),
    "asymmetric same padding": lambda: _Around(_SamePad()),
    "depthwise / grouped conv": lambda: _Around(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
                                                              nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4))),
    "dense without bias": lambda: _Head(),
}


def test_every_tested_family_has_a_model():
    assert set(FAMILIES) == set(TESTED_OPS)


def _model(family):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    with torch.no_grad():  # PReLU slopes away from the 0.25 default, so a wrong slope shows
        for module in model.modules():
            if isinstance(module, nn.PReLU):
                module.weight.copy_(torch.linspace(-0.5, 0.5, module.weight.numel()))
    return model


def _graph_ops(model, x, importer):
    """ATen targets of ``torch.export`` / op types of the TorchScript ONNX export (TESTED_OPS' keys)."""
    if importer == "torch":
        exported = torch.export.export(fold_batchnorm(model), (x,))
        return sorted({str(n.target) for n in exported.graph.nodes if n.op == "call_function"})
    return sorted({node.op_type for node in _onnx_model(model, x).graph.node})


def _onnx_model(model, x):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(fold_batchnorm(model), (x,), buffer, dynamo=False, input_names=["x"],
                          do_constant_folding=False)  # folding renames a bias-less Linear weight onnx::MatMul_N
    return onnx.load_from_string(buffer.getvalue())


def _import(model, x, importer):
    if importer == "torch":
        return tvm_qnn.from_torch(model, x)
    return tvm_qnn.from_onnx(_onnx_model(model, x))


def _run_float(mod, params, x):
    target = tvm.target.Target(host_target())
    ex = tvm.compile(relax.transform.BindParams("main", params)(mod), target=target)
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _torch_layers(model):
    return {name for name, p in model.named_parameters() if name.endswith("weight") and p.dim() in (2, 4)}


@pytest.mark.parametrize("importer", ["torch", "onnx"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_imports_and_computes_in_float(family, importer):
    model = _model(family)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert _graph_ops(model, x, importer) == TESTED_OPS[family]["aten" if importer == "torch" else "onnx"]
    mod, params = _import(model, x, importer)
    # every conv/linear weight is a quantizable layer of the imported module (dense without bias included)
    assert set(patterns.quantizable_layers(mod["main"])) == _torch_layers(model)
    with torch.no_grad():
        expected = model(x).numpy()
    got = _run_float(mod, params, x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))


def _quantized_check(family, importer, bits=8):
    model = _model(family)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    mod, params = _import(model, torch.from_numpy(data[:2]), importer)
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=bits, a_bits=bits, w_scheme="uniform", per_channel=True,
                               fp32_layers=None, progress=False)
    assert set(recipe.layers) == _torch_layers(model)  # every layer quantized, the first and last too
    qmod = tvm_qnn.quantize(mod, params, recipe)
    x = rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)
    ref = tvm_qnn.compile(qmod, target="cpu-reference").run(x)
    cpu = tvm_qnn.compile(qmod, target="cpu").run(x)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(cpu, ref, rtol=1e-5, atol=1e-5 * scale)
    with torch.no_grad():
        fake = apply_recipe(model, recipe)(torch.from_numpy(x)).numpy()
    # float32 summation order may flip a rare activation code (README: float32 caveat); 1e-3 of the range allows one
    np.testing.assert_allclose(ref, fake, rtol=1e-4, atol=1e-3 * scale)


def test_mobile_block_quantized_cpu_equals_reference_and_fake_quant():
    _quantized_check("squeeze-excitation", "torch")


@pytest.mark.slow
@pytest.mark.parametrize("importer", ["torch", "onnx"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_quantized(family, importer):
    _quantized_check(family, importer)


# --------------------------------------------------------------------------- ONNX dense forms
def _onnx_dense(form):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((12, 5)).astype(np.float32)  # (in, out): MatMul's and Gemm(transB=0)'s layout
    b = rng.standard_normal(5).astype(np.float32)
    w_first = rng.standard_normal((12, 6)).astype(np.float32)  # a first (fp32) Gemm(transB=1) layer
    inits = [numpy_helper.from_array(w, "dense.weight"), numpy_helper.from_array(w_first, "first.weight")]
    nodes = [helper.make_node("Gemm", ["x", "first.weight"], ["h0"], transB=1), helper.make_node("Relu", ["h0"], ["h"])]
    if form == "matmul":
        nodes.append(helper.make_node("MatMul", ["h", "dense.weight"], ["y"]))
    else:
        inits.append(numpy_helper.from_array(b, "dense.bias"))
        nodes.append(helper.make_node("Gemm", ["h", "dense.weight", "dense.bias"], ["y"], transB=0))
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 6)).astype(np.float32)
    h = np.maximum(x @ w_first.T, 0)
    return model, x, h, w, (b if form == "gemm" else np.zeros(5, np.float32))


@pytest.mark.parametrize("form", ["matmul", "gemm"])
def test_onnx_matmul_and_gemm_transb0_on_constant_weight_become_quantizable_dense(form):
    from tvm_qnn import reference

    model, x, h, w, b = _onnx_dense(form)
    mod, params = tvm_qnn.from_onnx(model)
    assert patterns.quantizable_layers(mod["main"]) == {"first.weight": "dense", "dense.weight": "dense"}
    np.testing.assert_array_equal(params["dense.weight"], w.T)  # stored as (out, in), like torch's Linear
    np.testing.assert_allclose(_run_float(mod, params, x), h @ w + b, rtol=1e-5, atol=1e-5)
    recipe = tvm_qnn.calibrate(mod, params, x, w_bits=4, a_bits=4, w_scheme="uniform", per_channel=True,
                               fp32_layers=["first.weight"], progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    ref = tvm_qnn.compile(qmod, target="cpu-reference").run(x)
    cpu = tvm_qnn.compile(qmod, target="cpu").run(x)
    layer = recipe.layers["dense.weight"]
    codes = reference.act_codes(h.astype(np.float32), layer.a_clamp, layer.a_bits)
    expected = reference.act_scale(layer.a_clamp, layer.a_bits) * codes @ reference.dequant_weight(
        layer.indices(w.T), layer.lut).T + b
    np.testing.assert_allclose(ref, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(cpu, ref, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


# --------------------------------------------------------------------------- unsupported
class _Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(3, 4, 3))

    def forward(self, x):
        return torch.fft.fft2(self.block(x)).real


def test_torch_op_without_converter_names_op_and_layer():
    with pytest.raises(UnsupportedOpError, match=r"fft.* in module .* is not supported"):
        tvm_qnn.from_torch(_Spectral().eval(), torch.randn(1, 3, 8, 8))


def test_onnx_op_without_converter_names_op_and_node():
    node = helper.make_node("DeformConv", ["x", "w", "offset"], ["y"], name="stage1.deform")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in
                                            (("x", [1, 2, 5, 5]), ("w", [2, 2, 3, 3]), ("offset", [1, 18, 3, 3]))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(UnsupportedOpError, match=r"DeformConv at node 'stage1.deform'"):
        tvm_qnn.from_onnx(model)


def test_quantizing_a_weight_of_a_layer_op_that_cannot_be_quantized_names_op_and_layer():
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)

        def forward(self, x):
            return self.up(torch.relu(self.conv(x)))

    x = torch.randn(1, 3, 8, 8)
    mod, params = tvm_qnn.from_torch(Up().eval(), x)
    recipe = tvm_qnn.calibrate(mod, params, x.numpy(), w_bits=8, a_bits=8, w_scheme="uniform", fp32_layers=None,
                               progress=False)
    layers = dict(recipe.layers)
    layers["up.weight"] = layers["conv.weight"].__class__.from_weight("up.weight", params["up.weight"], 8, 8, 1.0,
                                                                       "uniform", False)
    with pytest.raises(UnsupportedOpError, match=r"up\.weight.*conv2d_transpose"):
        tvm_qnn.quantize(mod, params, recipe.__class__(layers, recipe.fp32_layers, ""))
