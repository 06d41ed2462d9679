"""The CNN ops checked end to end, and the importers' op checks that name an unsupported op and its layer.

:data:`TESTED_OPS` is the table of op families that ``tests/frontend/test_cnn_ops.py`` runs through
``from_torch`` and ``from_onnx`` (float equal to torch) and through quantize -> compile
(``cpu`` equal to ``cpu-reference``, and both equal to the torch fake-quant model), between and
around quantized layers: family -> the ATen targets and ONNX op types of the test models, as
``torch.export`` and the TorchScript exporter write them. ``tvm_qnn.frontend.allowlist`` admits
them (the import allow-list); the float test checks that each model uses exactly these ops.
"""

from __future__ import annotations

# family -> {"aten": torch.export targets (str(node.target), before decomposition), "onnx": op types of the
# TorchScript export (dynamo=False, do_constant_folding=False)} of the test models, conv2d/relu around the op included
TESTED_OPS = {
    "asymmetric same padding": {
        "aten": ["aten.conv2d.default", "aten.pad.default", "aten.relu.default"],
        "onnx": ["Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Gather", "Mul", "Pad", "Relu", "Reshape", "Shape", "Slice", "Sub", "Transpose"],
    },
    "average pooling": {
        "aten": ["aten.avg_pool2d.default", "aten.conv2d.default", "aten.relu.default"],
        "onnx": ["AveragePool", "Conv", "Relu"],
    },
    "channel shuffle": {
        "aten": ["aten.conv2d.default", "aten.relu.default", "aten.reshape.default", "aten.transpose.int", "aten.view.default"],
        "onnx": ["Concat", "Constant", "Conv", "Relu", "Reshape", "Transpose", "Unsqueeze"],
    },
    "concat": {
        "aten": ["aten.cat.default", "aten.conv2d.default", "aten.relu.default"],
        "onnx": ["Concat", "Conv", "Relu"],
    },
    "dense without bias": {
        "aten": ["aten.add.Tensor", "aten.conv2d.default", "aten.flatten.using_ints", "aten.linear.default", "aten.mean.dim", "aten.relu.default"],
        "onnx": ["Add", "Constant", "Conv", "Flatten", "Gemm", "MatMul", "ReduceMean", "Relu", "Transpose"],
    },
    "depthwise / grouped conv": {
        "aten": ["aten.conv2d.default", "aten.relu.default"],
        "onnx": ["Conv", "Relu"],
    },
    "gelu": {
        "aten": ["aten.conv2d.default", "aten.gelu.default", "aten.relu.default"],
        "onnx": ["Conv", "Gelu", "Relu"],
    },
    "global pooling": {
        "aten": ["aten.adaptive_avg_pool2d.default", "aten.conv2d.default", "aten.relu.default"],
        "onnx": ["Conv", "GlobalAveragePool", "Relu"],
    },
    "hardsigmoid": {
        "aten": ["aten.conv2d.default", "aten.hardsigmoid.default", "aten.relu.default"],
        "onnx": ["Conv", "HardSigmoid", "Relu"],
    },
    "hardswish": {
        "aten": ["aten.conv2d.default", "aten.hardswish.default", "aten.relu.default"],
        "onnx": ["Conv", "HardSwish", "Relu"],
    },
    "leaky relu": {
        "aten": ["aten.conv2d.default", "aten.leaky_relu.default", "aten.relu.default"],
        "onnx": ["Conv", "LeakyRelu", "Relu"],
    },
    "max pooling": {
        "aten": ["aten.conv2d.default", "aten.max_pool2d.default", "aten.relu.default"],
        "onnx": ["Conv", "MaxPool", "Relu"],
    },
    "prelu": {
        "aten": ["aten.conv2d.default", "aten.prelu.default", "aten.relu.default"],
        "onnx": ["Constant", "Conv", "PRelu", "Relu", "Unsqueeze"],
    },
    "relu6 / clip": {
        "aten": ["aten.conv2d.default", "aten.hardtanh.default", "aten.relu.default"],
        "onnx": ["Clip", "Constant", "Conv", "Relu"],
    },
    "reshape / flatten": {
        "aten": ["aten.add.Tensor", "aten.conv2d.default", "aten.flatten.using_ints", "aten.linear.default", "aten.mean.dim", "aten.relu.default"],
        "onnx": ["Add", "Constant", "Conv", "Flatten", "Gemm", "MatMul", "ReduceMean", "Relu", "Transpose"],
    },
    "residual add": {
        "aten": ["aten.add.Tensor", "aten.conv2d.default", "aten.relu.default"],
        "onnx": ["Add", "Conv", "Relu"],
    },
    "sigmoid": {
        "aten": ["aten.conv2d.default", "aten.relu.default", "aten.sigmoid.default"],
        "onnx": ["Conv", "Relu", "Sigmoid"],
    },
    "silu": {
        "aten": ["aten.conv2d.default", "aten.relu.default", "aten.silu.default"],
        "onnx": ["Conv", "Mul", "Relu", "Sigmoid"],
    },
    "squeeze-excitation": {
        "aten": ["aten.adaptive_avg_pool2d.default", "aten.conv2d.default", "aten.mul.Tensor", "aten.relu.default", "aten.sigmoid.default"],
        "onnx": ["Conv", "GlobalAveragePool", "Mul", "Relu", "Sigmoid"],
    },
}

