"""The import allow-list: ops whose float import we have tested against torch / onnxruntime.

A graph is imported only if every op in it is listed here; anything else is an
``UnsupportedOpError`` naming the op and where it is (torch module path, ONNX node name), raised
before TVM builds anything. The Relax importers accept more ops than this (LSTM, attention,
GELU...), but some of those compute wrong numbers even in float, and others would be quantized
as if their outputs were non-negative; refusing is better than a silent wrong answer.

One table per source format. Each entry says what the op is and how tvm-qnn treats it:
``QUANTIZABLE`` (a conv2d / dense layer a recipe may quantize), ``FLOAT`` (computed in float;
the model runs but this layer is never quantized -- reported with a warning on import and as
``fp32`` with the reason in ``tvm_qnn.bops``) or ``GRAPH`` (activations, pooling, shape ops).

To add an op: add its row here *and* a float example to ``tests/frontend/test_allowlist.py``
(``TORCH_EXAMPLES``); that test compiles every example in float and compares with torch and
onnxruntime, and fails for any listed op without an example. The CNN op families of
``tvm_qnn.frontend.cnn_ops.TESTED_OPS`` (float and quantized tests in
``tests/frontend/test_cnn_ops.py``) are admitted from that table.
"""

from __future__ import annotations

import warnings

from tvm_qnn.errors import UnsupportedOpError

QUANTIZABLE = "quantizable"
FLOAT = "float only"
GRAPH = "graph"

# torch.export ATen target (str(node.target)) -> (kind, note)
TORCH_OPS = {
    "aten.conv2d.default": (QUANTIZABLE, "Conv2d"),
    "aten.linear.default": (QUANTIZABLE, "Linear"),
    "aten.conv1d.default": (FLOAT, "Conv1d: only conv2d and dense layers are quantized"),
    "aten.conv_transpose2d.input": (FLOAT, "ConvTranspose2d: only conv2d and dense layers are quantized"),
    "aten.batch_norm.default": (GRAPH, "BatchNorm2d not folded into a conv"),
    "aten.relu.default": (GRAPH, "ReLU"),
    "aten.relu_.default": (GRAPH, "ReLU(inplace=True)"),
    "aten.relu6.default": (GRAPH, "ReLU6"),
    "aten.hardtanh.default": (GRAPH, "ReLU6 / Hardtanh"),
    "aten.hardtanh_.default": (GRAPH, "ReLU6(inplace=True) (torchvision MobileNetV2)"),
    "aten.hardswish_.default": (GRAPH, "Hardswish(inplace=True) (torchvision MobileNetV3)"),
    "aten.silu_.default": (GRAPH, "SiLU(inplace=True) (torchvision EfficientNet)"),
    "aten.max_pool2d.default": (GRAPH, "MaxPool2d"),
    "aten.avg_pool2d.default": (GRAPH, "AvgPool2d"),
    "aten.adaptive_avg_pool2d.default": (GRAPH, "AdaptiveAvgPool2d"),
    "aten.add.Tensor": (GRAPH, "elementwise add (residual)"),
    "aten.add_.Tensor": (GRAPH, "in-place add (torchvision's residual `out += identity`)"),
    "aten.mul.Tensor": (GRAPH, "elementwise multiply"),
    "aten.cat.default": (GRAPH, "torch.cat"),
    "aten.mean.dim": (GRAPH, "mean over axes"),
    "aten.flatten.using_ints": (GRAPH, "flatten"),
    "aten.view.default": (GRAPH, "view"),
    "aten.reshape.default": (GRAPH, "reshape"),
    "aten.dropout.default": (GRAPH, "Dropout (identity in eval mode)"),
    "aten.dropout_.default": (GRAPH, "Dropout(inplace=True) (identity in eval mode)"),
    "aten.chunk.default": (GRAPH, "Tensor.chunk (ShuffleNetV2's channel split)"),
    "<built-in function getitem>": (GRAPH, "one output of a multi-output op (chunk)"),
    "aten.contiguous.default": (GRAPH, "Tensor.contiguous (ShuffleNetV2's channel shuffle)"),
}

# ONNX op_type (default domain) -> (kind, note)
ONNX_OPS = {
    "Conv": (QUANTIZABLE, "Conv (2-D)"),
    "Gemm": (QUANTIZABLE, "Gemm (dense)"),
    "ConvTranspose": (FLOAT, "ConvTranspose: only conv2d and dense layers are quantized"),
    "BatchNormalization": (GRAPH, "BatchNormalization (folded into the conv by quantize)"),
    "Relu": (GRAPH, "Relu"),
    "Clip": (GRAPH, "Clip (ReLU6)"),
    "MaxPool": (GRAPH, "MaxPool"),
    "AveragePool": (GRAPH, "AveragePool"),
    "GlobalAveragePool": (GRAPH, "GlobalAveragePool"),
    "Add": (GRAPH, "Add"),
    "Mul": (GRAPH, "Mul"),
    "Concat": (GRAPH, "Concat"),
    "ReduceMean": (GRAPH, "ReduceMean"),
    "Flatten": (GRAPH, "Flatten"),
    "Reshape": (GRAPH, "Reshape"),
    "Constant": (GRAPH, "Constant"),
    "Identity": (GRAPH, "Identity (exports without constant folding)"),
}



def _admit_tested_cnn_ops():
    """The op families ``tests/frontend/test_cnn_ops.py`` checks in float (and quantized around
    conv/dense layers) through both importers: ``tvm_qnn.frontend.cnn_ops.TESTED_OPS``."""
    from tvm_qnn.frontend.cnn_ops import TESTED_OPS

    for family, ops in TESTED_OPS.items():
        for target in ops["aten"]:
            TORCH_OPS.setdefault(target, (GRAPH, family))
        for op_type in ops["onnx"]:
            ONNX_OPS.setdefault(op_type, (GRAPH, family))


_admit_tested_cnn_ops()


class FloatOnlyWarning(UserWarning):
    """A layer of an imported model stays in float: tvm-qnn does not quantize its op."""


def _torch_location(node):
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return f"node {node.name!r} at the top level of the model"
    path, kind = list(stack.values())[-1]
    kind = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
    return f"module {path or '<root>'!r} ({kind}), node {node.name!r}"


def check_torch_graph(exported, model_name="model"):
    """UnsupportedOpError for the first op of ``exported`` (torch.export) not in ``TORCH_OPS``.

    Returns ``[(location, note)]`` of the float-only layers, each also warned about once.
    """
    float_only = []
    for node in exported.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(node.target)
        entry = TORCH_OPS.get(target)
        if entry is None:
            raise UnsupportedOpError(
                f"from_torch: {model_name}: op {target} in {_torch_location(node)} is not supported: "
                f"tvm-qnn imports only ops tested in float against torch "
                f"(tvm_qnn.frontend.allowlist.TORCH_OPS); nothing was compiled")
        if entry[0] == FLOAT:
            float_only.append((_torch_location(node), entry[1]))
    _warn(float_only)
    return float_only


def check_onnx_graph(model, handled=()):
    """UnsupportedOpError for the first node of an ONNX ``model`` whose op is not in ``ONNX_OPS``.

    ``handled``: op types the calling importer replaces itself (QuantizeLinear / DequantizeLinear
    for QDQ, QONNX's Quant nodes), accepted in any domain; the importer's tests check them. Nodes
    whose inputs are all constant are folded at import, not compiled, and are not checked.
    """
    float_only = []
    constant = {init.name for init in model.graph.initializer} | {""}  # "" = an omitted optional input
    for index, node in enumerate(model.graph.node):
        domain = node.domain or ""
        if node.op_type in handled:
            continue
        if node.op_type == "Constant" or all(name in constant for name in node.input):
            # evaluated once at import (frontend.onnx_rewrite.fold_constant_nodes, ONNX's own
            # reference evaluator), never compiled: e.g. a weight scale max(|w|)/127
            constant.update(node.output)
            continue
        entry = ONNX_OPS.get(node.op_type) if domain in ("", "ai.onnx") else None
        where = f"node {node.name!r} (#{index})" if node.name else f"node #{index}"
        if entry is None:
            shown = f"{domain}.{node.op_type}" if domain else node.op_type
            raise UnsupportedOpError(
                f"from_onnx: op {shown} at {where} is not supported: tvm-qnn imports only ops tested in "
                f"float against onnxruntime (tvm_qnn.frontend.allowlist.ONNX_OPS); nothing was compiled")
        if entry[0] == FLOAT:
            float_only.append((where, entry[1]))
    _warn(float_only)
    return float_only


def _warn(float_only):
    for where, note in float_only:
        warnings.warn(f"{where} stays fp32: {note}", FloatOnlyWarning, stacklevel=4)
