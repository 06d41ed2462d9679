"""Quantized ONNX importers: QDQ (onnxruntime ``quantize_static``, torch's exporter) and QONNX
(Brevitas 0.13 ``export_qonnx``, TorchScript and dynamo paths) -> (mod, params, recipe).

The recipe fields are checked against the ONNX scales/zero points (bit for bit), and the compiled
models against their own framework: onnxruntime on the QDQ model, Brevitas' forward on the QONNX
model. Real exports need the ``interop`` extra (``pip install -e '.[interop]'``; ``make test``
installs it)."""

import logging
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import tvm_qnn
from tvm_qnn import reference
from tvm_qnn.errors import UnsupportedOpError
from tvm_qnn.frontend import onnx_format, qdq, qonnx

ort_quant = pytest.importorskip("onnxruntime.quantization", reason="onnxruntime (extra 'interop') is not installed")


def _brevitas():
    return pytest.importorskip("brevitas", reason="brevitas (extra 'interop': pip install -e '.[interop]') "
                                                  "is not installed")


# --------------------------------------------------------------------------- onnxruntime QDQ
class ResCNN(torch.nn.Module):
    """conv-relu, a residual block (two convs + add), a stride-2 conv, global pool, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.c4 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        y = torch.relu(self.c3(torch.relu(self.c2(h))) + h)
        y = torch.relu(self.c4(y))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


def _images(rng, n, signed):
    data = rng.standard_normal((n, 3, 16, 16)).astype(np.float32)
    return data if signed else np.abs(data)


def ort_qdq(tmp_path, signed=True, per_channel=True, activation_type="QInt8", seed=0):
    """(QDQ ModelProto, data) from onnxruntime's quantize_static with a calibration data reader."""
    torch.manual_seed(seed)
    model = ResCNN().eval()
    float_path, q_path = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 16, 16),), str(float_path), dynamo=False, input_names=["x"])
    rng = np.random.default_rng(seed)

    class Reader(ort_quant.CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": image[None]} for image in _images(rng, 32, signed)])

        def get_next(self):
            return next(self.batches, None)

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's pre-processing advice
    ort_quant.quantize_static(str(float_path), str(q_path), Reader(), quant_format=ort_quant.QuantFormat.QDQ,
                              per_channel=per_channel, activation_type=getattr(ort_quant.QuantType, activation_type),
                              weight_type=ort_quant.QuantType.QInt8)
    return onnx.load(str(q_path)), _images(rng, 64, signed)


def _ort_run(model, data, optimize=True):
    """onnxruntime's outputs; ``optimize=False`` runs the QDQ graph as written (float ops between
    QuantizeLinear/DequantizeLinear) instead of its fused int8 kernels."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": image[None]})[0] for image in data])


@pytest.mark.parametrize("activation_type", ["QInt8", "QUInt8"])
def test_qdq_recipe_fields_are_the_onnx_scales_and_zero_points(tmp_path, activation_type):
    model, _ = ort_qdq(tmp_path, signed=True, activation_type=activation_type)
    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    float_model, layers, fp32 = qdq.analyze(model)
    assert sorted(layers) == ["c1.weight", "c2.weight", "c3.weight", "c4.weight", "fc.weight"] and fp32 == []
    float_inits = {init.name: numpy_helper.to_array(init) for init in float_model.graph.initializer}
    layer_input = {node.input[1].replace("_DequantizeLinear_Output", ""): node.input[0]
                   for node in model.graph.node if node.op_type in ("Conv", "Gemm")}
    shift = 128 if activation_type == "QInt8" else 0
    for name, spec in layers.items():
        # activations: s_a is the ONNX scale bit for bit, codes shift by 128 for int8
        dq_out = layer_input[name]
        q_node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear"
                      and any(d.output[0] == dq_out and d.input[0] == n.output[0] for d in model.graph.node))
        scale, zero = inits[q_node.input[1]], inits[q_node.input[2]]
        assert spec["a_bits"] == 8
        assert reference.act_scale(spec["a_clamp"], 8) == np.float32(scale)
        assert spec["a_zero_point"] == int(zero) + shift
        # weights: LUT row o = s_w[o] * (idx - 128 - zp_w[o]); indices = stored int8 + 128
        w_q, w_s, w_z = (inits[f"{name}_quantized"], inits[f"{name}_scale"], inits[f"{name}_zero_point"])
        expected = (np.arange(256) - 128)[None, :] - w_z.astype(np.int64).reshape(-1, 1)
        np.testing.assert_array_equal(spec["lut"], expected.astype(np.float32) * w_s.reshape(-1, 1))
        np.testing.assert_array_equal(spec["indices"], (w_q.astype(np.int64) + 128).astype(np.uint8))
        weight = float_inits[name]
        np.testing.assert_array_equal(reference.assign_indices(weight, spec["thresholds"]), spec["indices"])
    assert not {n.op_type for n in float_model.graph.node} & {"QuantizeLinear", "DequantizeLinear"}


def _agreement(out, ref):
    return float((out.argmax(1) == ref.argmax(1)).mean())


@pytest.mark.parametrize("target", ["cpu-reference", "cpu"])
def test_onnxruntime_qdq_residual_cnn_with_signed_input_matches_onnxruntime(tmp_path, target):
    model, data = ort_qdq(tmp_path, signed=True)
    mod, params, recipe = tvm_qnn.from_onnx(model)
    assert recipe["c1.weight"].a_zero_point not in (0, None)  # signed input: a zero point, not a clip at 0
    expected = _ort_run(model, data)
    compiled = tvm_qnn.compile(mod, target=target, recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data])
    agreement, max_abs = _agreement(out, expected), float(np.abs(out - expected).max())
    print(f"{target}: top-1 agreement {agreement:.4f} on {len(data)} inputs, max |diff| {max_abs:.3g} "
          f"(output range {float(np.ptp(expected)):.3g})")
    assert len(data) >= 64 and agreement >= 0.95


def _without_output_quantizer(model):
    """The QDQ model with its final QuantizeLinear/DequantizeLinear removed (float logits out)."""
    graph = model.graph
    out = graph.output[0].name
    dq = next(n for n in graph.node if n.output[0] == out)
    q = next(n for n in graph.node if n.output[0] == dq.input[0])
    graph.node.remove(dq)
    graph.node.remove(q)
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == q.input[0]:
                node.output[i] = out
    return model


def test_onnxruntime_qdq_logits_match_before_the_output_quantizer(tmp_path):
    """Without the output quantizer hiding small differences, the logits still agree to float32
    rounding: every quantizer of the model is reproduced (ties aside).

    The reference is the QDQ graph as written (onnxruntime without graph optimizations): its fused
    u8 x s8 QLinearConv uses vpmaddubsw on CPUs without AVX-512 VNNI, whose int16 pair sums
    saturate (onnxruntime's documented caveat for U8S8 on AVX2), so there the fused model's logits
    differ from the model's own arithmetic by up to 1e-2 (measured on a Zen 3); with VNNI both agree."""
    model, data = ort_qdq(tmp_path, signed=True)
    model = _without_output_quantizer(model)
    expected = _ort_run(model, data, optimize=False)
    mod, params, recipe = tvm_qnn.from_onnx(model)
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data])
    print(f"logits: max |diff| {np.abs(out - expected).max():.3g} of range {float(np.ptp(expected)):.3g}")
    assert np.abs(out - expected).max() <= 1e-5 * float(np.ptp(expected))


def test_onnxruntime_qdq_uint8_per_tensor_matches_onnxruntime(tmp_path):
    model, data = ort_qdq(tmp_path, signed=True, per_channel=False, activation_type="QUInt8", seed=1)
    mod, params, recipe = tvm_qnn.from_onnx(model)
    assert not recipe["c2.weight"].per_channel
    expected = _ort_run(model, data)
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data])
    assert _agreement(out, expected) >= 0.95


# --------------------------------------------------------------------------- torch's exporter (QDQ)
class TorchFakeQuant(torch.nn.Module):
    """torch fake-quant ops, exported by torch.onnx as QuantizeLinear/DequantizeLinear pairs."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        x = torch.fake_quantize_per_tensor_affine(x, 0.02, 3, -128, 127)
        w = self.conv.weight
        scale = w.detach().abs().amax(dim=(1, 2, 3)) / 127
        w = torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(8, dtype=torch.int32), 0, -128, 127)
        h = torch.relu(torch.nn.functional.conv2d(x, w, self.conv.bias, padding=1))
        h = torch.fake_quantize_per_tensor_affine(h, 0.01, 0, 0, 255)
        fw = torch.fake_quantize_per_tensor_affine(self.fc.weight, 0.005, 0, -128, 127)
        return torch.nn.functional.linear(h.flatten(1), fw, self.fc.bias)


def test_torch_exporter_qdq_imports_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = TorchFakeQuant().eval()
    path = tmp_path / "torch_qdq.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, input_names=["x"], opset_version=17)
    assert onnx_format(str(path)) == "qdq"
    mod, params, recipe = tvm_qnn.from_onnx(str(path))
    assert sorted(recipe.layers) == ["conv.weight", "fc.weight"]
    conv, fc = recipe["conv.weight"], recipe["fc.weight"]
    assert reference.act_scale(conv.a_clamp, 8) == np.float32(0.02) and conv.a_zero_point == 3 + 128
    assert fc.a_zero_point == 0 and reference.act_scale(fc.a_clamp, 8) == np.float32(0.01)
    assert conv.per_channel and not fc.per_channel
    data = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(data)).numpy()
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data])
    # torch rounds half to even, the contract half up: only exact ties can differ (none here)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# --------------------------------------------------------------------------- format detection
def test_from_onnx_says_which_format_it_used(tmp_path, caplog):
    model, _ = ort_qdq(tmp_path, signed=False)
    with caplog.at_level(logging.INFO, logger="tvm_qnn.frontend"):
        mod, params, recipe = tvm_qnn.from_onnx(model)
    assert "QDQ model" in caplog.text and str(mod.attrs["tvm_qnn.import_format"]) == "qdq"
    assert len(recipe.layers) == 5
    float_model = onnx.load(str(tmp_path / "float.onnx"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tvm_qnn.frontend"):
        result = tvm_qnn.from_onnx(float_model)
    assert len(result) == 2 and "float ONNX model" in caplog.text
    assert str(result[0].attrs["tvm_qnn.import_format"]) == "float"


def test_qoperator_model_is_refused_naming_the_node():
    graph = helper.make_graph(
        [helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s", "z"], ["y"], name="conv_q")], "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 4, 4])],
        initializer=[numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(0), "z"),
                     numpy_helper.from_array(np.ones((1, 1, 1, 1), np.uint8), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["w", "s", "z"], ["unused"]))
    with pytest.raises(UnsupportedOpError, match="QLinearConv node 'conv_q'"):
        tvm_qnn.from_onnx(model)


def test_qdq_per_channel_activation_into_a_layer_is_refused(tmp_path):
    model, _ = ort_qdq(tmp_path, signed=True)
    for node in model.graph.node:  # make the input quantizer per-channel (3 scales)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[1] == "x_scale":
            node.input[1], node.input[2] = "x_scale3", "x_zero3"
            node.attribute.append(helper.make_attribute("axis", 1))
    model.graph.initializer.extend([numpy_helper.from_array(np.full(3, 0.02, np.float32), "x_scale3"),
                                    numpy_helper.from_array(np.zeros(3, np.int8), "x_zero3")])
    with pytest.raises(UnsupportedOpError, match="QuantizeLinear node .*per-channel activation"):
        tvm_qnn.from_onnx(model)


# --------------------------------------------------------------------------- Brevitas QONNX
def brevitas_model(signed=True, seed=0):
    """Signed 8-bit input quantizer, 2..8-bit layers, a residual add, a requantizer after it,
    TruncAvgPool2d (exported as AveragePool + Trunc) and a 2-bit linear layer; calibrated."""
    _brevitas()
    import brevitas.nn as qnn
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.quant import Int8ActPerTensorFloat, Uint8ActPerTensorFloat

    act = Int8ActPerTensorFloat if signed else Uint8ActPerTensorFloat

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=act)
            self.conv1 = qnn.QuantConv2d(3, 16, 3, padding=1, weight_bit_width=8, bias=True)
            self.relu1 = qnn.QuantReLU(bit_width=4)
            self.conv2 = qnn.QuantConv2d(16, 16, 3, padding=1, weight_bit_width=3, bias=True)
            self.relu2 = qnn.QuantReLU(bit_width=2)
            self.conv3 = qnn.QuantConv2d(16, 16, 3, padding=1, weight_bit_width=5, bias=True)
            self.requant = qnn.QuantIdentity(act_quant=act, bit_width=6, return_quant_tensor=True)
            self.pool = qnn.TruncAvgPool2d(kernel_size=2, bit_width=7)
            self.fc = qnn.QuantLinear(16 * 4 * 4, 10, weight_bit_width=2, bias=True)

        def forward(self, x):
            h = self.relu1(self.conv1(self.inp(x)))
            y = self.conv3(self.relu2(self.conv2(h))) + h
            return self.fc(self.pool(self.requant(y)).flatten(1))

    torch.manual_seed(seed)
    model = Net()
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((80, 3, 8, 8)).astype(np.float32)
    data = data if signed else np.abs(data)
    with torch.no_grad(), calibration_mode(model):
        model(torch.from_numpy(data[:64]))
    return model.eval(), data[64:]


def brevitas_export(model, path, dynamo):
    from brevitas.export import export_qonnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros(1, 3, 8, 8), export_path=str(path), dynamo=dynamo)
    return onnx.load(str(path))


@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("target", ["cpu-reference", "cpu"])
def test_brevitas_qonnx_signed_input_residual_matches_brevitas(tmp_path, dynamo, target):
    model, data = brevitas_model(signed=True)
    exported = brevitas_export(model, tmp_path / "brevitas.onnx", dynamo)
    assert onnx_format(exported) == "qonnx"
    mod, params, recipe = tvm_qnn.from_onnx(exported)
    assert int(mod["main"].attrs["num_input"]) == 1 and len(mod["main"].params) == 1 + len(params)
    bits = {name: (layer.w_bits, layer.a_bits, layer.a_zero_point) for name, layer in recipe.layers.items()}
    # 8-bit signed input: zero point 128; ReLU outputs: 0; signed 6-bit requant -> Trunc 7-bit: 64
    assert bits == {"conv1.weight": (8, 8, 128), "conv2.weight": (3, 4, 0), "conv3.weight": (5, 2, 0),
                    "fc.weight": (2, 7, 64)}, bits
    with torch.no_grad():
        expected = model(torch.from_numpy(data)).numpy()
    compiled = tvm_qnn.compile(mod, target=target, recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data])
    span = float(np.ptp(expected))
    print(f"{target} ({'dynamo' if dynamo else 'torchscript'}): max |diff| {np.abs(out - expected).max():.3g} "
          f"of output range {span:.3g}")
    assert np.abs(out - expected).max() <= 1e-3 * span


def test_brevitas_qonnx_recipe_fields_are_the_quant_node_parameters(tmp_path):
    model, _ = brevitas_model(signed=True)
    exported = brevitas_export(model, tmp_path / "b.onnx", dynamo=False)
    _, layers, _ = qonnx.analyze(exported)
    assert reference.act_scale(layers["conv1.weight"]["a_clamp"], 8) == np.float32(
        model.inp.act_quant.scale().detach().numpy())
    w_scale = model.conv2.quant_weight().scale.detach().numpy().reshape(-1)
    np.testing.assert_allclose(layers["conv2.weight"]["lut"][:, :7],  # 3-bit narrow: -3..3
                               (np.arange(-3, 4)[None, :] * w_scale.reshape(-1, 1)).astype(np.float32), rtol=1e-6)


def test_qonnx_bipolar_activation_into_a_layer_is_refused():
    domain = "qonnx.custom_op.general"
    graph = helper.make_graph(
        [helper.make_node("BipolarQuant", ["x", "s"], ["xb"], domain=domain, name="act_bipolar"),
         helper.make_node("Quant", ["w", "s", "z", "b"], ["wq"], domain=domain, signed=1, narrow=1),
         helper.make_node("Conv", ["xb", "wq"], ["y"], kernel_shape=[1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        initializer=[numpy_helper.from_array(np.float32(0.5), "s"), numpy_helper.from_array(np.float32(0), "z"),
                     numpy_helper.from_array(np.float32(2), "b"),
                     numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    with pytest.raises(UnsupportedOpError, match="BipolarQuant node 'act_bipolar'.*bipolar"):
        tvm_qnn.from_onnx(model)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_brevitas_int32_bias_and_linear_without_bias(tmp_path, dynamo):
    """Int32Bias exports a Quant on the bias (folded with QONNX's int_quant); a QuantLinear
    without bias exports MatMul(x, Transpose(Quant(w))), which is a dense layer."""
    _brevitas()
    import brevitas.nn as qnn
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.quant import Int8ActPerTensorFloat, Int32Bias

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(3, 8, 3, padding=1, weight_bit_width=4, bias=True, bias_quant=Int32Bias)
            self.relu = qnn.QuantReLU(bit_width=3)
            self.fc = qnn.QuantLinear(8 * 8 * 8, 4, weight_bit_width=2, bias=False)

        def forward(self, x):
            return self.fc(self.relu(self.conv(self.inp(x))).flatten(1))

    torch.manual_seed(0)
    model = Net()
    data = np.random.default_rng(0).standard_normal((20, 3, 8, 8)).astype(np.float32)
    with torch.no_grad(), calibration_mode(model):
        model(torch.from_numpy(data[:16]))
    model.eval()
    mod, params, recipe = tvm_qnn.from_onnx(brevitas_export(model, tmp_path / "bias.onnx", dynamo))
    assert {name: (q.w_bits, q.a_bits, q.a_zero_point) for name, q in recipe.layers.items()} == {
        "conv.weight": (4, 8, 128), "fc.weight": (2, 3, 0)}
    with torch.no_grad():
        expected = model(torch.from_numpy(data[16:])).numpy()
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    out = np.concatenate([compiled.run(image[None]) for image in data[16:]])
    assert np.abs(out - expected).max() <= 1e-3 * float(np.ptp(expected))


def test_intquant_is_read_like_quant():
    from test_frontend import qonnx_model

    model = qonnx_model(np.random.default_rng(0))
    _, reference_layers, _ = qonnx.analyze(model)
    for node in model.graph.node:
        if node.op_type == "Quant":
            node.op_type = "IntQuant"
    _, layers, _ = qonnx.analyze(model)
    assert sorted(layers) == sorted(reference_layers)
    for name, spec in layers.items():
        np.testing.assert_array_equal(spec["lut"], reference_layers[name]["lut"])
        assert (spec["a_bits"], spec["a_clamp"], spec["a_zero_point"]) == (
            reference_layers[name]["a_bits"], reference_layers[name]["a_clamp"], reference_layers[name]["a_zero_point"])


def test_qdq_gemm_without_transposed_weight_is_rewritten_and_matches_onnxruntime():
    """Gemm(transB=0) with an (in, out) int8 weight quantized per output column (axis 1)."""
    rng = np.random.default_rng(0)
    w_q = rng.integers(-128, 128, (12, 5)).astype(np.int8)
    w_s = rng.uniform(0.01, 0.03, 5).astype(np.float32)
    w_z = rng.integers(-3, 4, 5).astype(np.int8)
    inits = [numpy_helper.from_array(w_q, "fc.weight_quantized"), numpy_helper.from_array(w_s, "fc.weight_scale"),
             numpy_helper.from_array(w_z, "fc.weight_zero_point"), numpy_helper.from_array(np.float32(0.05), "x_s"),
             numpy_helper.from_array(np.uint8(100), "x_z"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc.bias")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["fc.weight_quantized", "fc.weight_scale", "fc.weight_zero_point"],
                              ["wd"], axis=1),
             helper.make_node("Gemm", ["xd", "wd", "fc.bias"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    mod, params, recipe = tvm_qnn.from_onnx(model)
    fc = recipe["fc.weight"]
    assert fc.lut.shape == (5, 256) and fc.a_zero_point == 100 and params["fc.weight"].shape == (5, 12)
    np.testing.assert_array_equal(fc.lut[:, 0], (-128 - w_z.astype(np.int64)).astype(np.float32) * w_s)
    data = rng.uniform(-5, 7, (16, 12)).astype(np.float32)
    expected = _ort_run(model, data)
    compiled = tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)
    out = np.concatenate([compiled.run(row[None]) for row in data])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("rounding", ["FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
def test_qonnx_quantizers_our_codes_cannot_reproduce_stay_as_float_arithmetic(rounding):
    """A narrow signed activation Quant with another rounding mode in front of a conv: the conv
    reads the float expansion (not the raw input), the recipe still gets the grid (zero point
    2^(b-1)), and the float graph computes exactly what QONNX's own execution computes."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    import onnxruntime

    domain = "qonnx.custom_op.general"
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.float32(0), "z"),
             numpy_helper.from_array(np.float32(4), "b4"), numpy_helper.from_array(np.float32(0.05), "sw"),
             numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "conv.weight")]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b4"], ["xq"], domain=domain, signed=1, narrow=1,
                              rounding_mode=rounding, name="act_q"),
             helper.make_node("Quant", ["conv.weight", "sw", "z", "b4"], ["wq"], domain=domain, signed=1, narrow=0,
                              rounding_mode="ROUND"),
             helper.make_node("Conv", ["xq", "wq"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 5, 5])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    float_model, layers, _ = qonnx.analyze(model)
    conv = next(n for n in float_model.graph.node if n.op_type == "Conv")
    assert conv.input[0] == "xq" and layers["conv.weight"]["a_zero_point"] == 8
    x = (rng.standard_normal((2, 2, 5, 5)) * 0.5).astype(np.float32)
    x.flat[:8] = np.float32([0.05, 0.15, -0.25, 0.35, -0.05, 1.0, -1.0, 0.45])  # ties and the clip
    expected = execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x})["y"]
    session = onnxruntime.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-6, atol=1e-6)


def test_qonnx_unknown_rounding_mode_is_refused_naming_the_node():
    from test_frontend import qonnx_model

    model = qonnx_model(np.random.default_rng(0))
    for node in model.graph.node:
        if node.output[0] == "h_q":
            node.attribute[[a.name for a in node.attribute].index("rounding_mode")].s = b"STOCHASTIC"
            node.name = "h_quant"
    with pytest.raises(UnsupportedOpError, match="Quant node 'h_quant': rounding_mode 'STOCHASTIC'"):
        tvm_qnn.from_onnx(model)
