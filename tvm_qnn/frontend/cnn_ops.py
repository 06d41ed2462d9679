"""The CNN ops checked end to end, and the importers' op checks that name an unsupported op and its layer.

:data:`TESTED_OPS` is the table of op families that ``tests/frontend/test_cnn_ops.py`` runs through
``from_torch`` and ``from_onnx`` (float equal to torch) and through quantize -> compile
(``cpu`` equal to ``cpu-reference``, and both equal to the torch fake-quant model), between and
around quantized layers: family -> (torch callables / modules, ONNX op types, the Relax ops the
importers emit). It is data for an import allow-list.

:func:`check_torch_ops` / :func:`check_onnx_ops` run before the Relax importers: an op they have
no converter for raises ``UnsupportedOpError`` naming the op and the layer (torch module path /
ONNX node name) instead of the importer's own error.
"""

from __future__ import annotations

from tvm_qnn.errors import UnsupportedOpError

# family -> {"torch": [...], "onnx": [...], "relax": [...]}
TESTED_OPS = {
    "residual add": {"torch": ["operator.add", "torch.add"], "onnx": ["Add"], "relax": ["add"]},
    "concat": {"torch": ["torch.cat"], "onnx": ["Concat"], "relax": ["concat"]},
    "max pooling": {"torch": ["nn.MaxPool2d (ceil_mode too)"], "onnx": ["MaxPool"], "relax": ["nn.max_pool2d"]},
    "average pooling": {"torch": ["nn.AvgPool2d"], "onnx": ["AveragePool"], "relax": ["nn.avg_pool2d"]},
    "global pooling": {"torch": ["nn.AdaptiveAvgPool2d(1)", "x.mean((2, 3))"], "onnx": ["GlobalAveragePool", "ReduceMean"],
                       "relax": ["nn.adaptive_avg_pool2d", "mean"]},
    "hardswish": {"torch": ["nn.Hardswish"], "onnx": ["HardSwish"], "relax": ["nn.hardswish", "clip", "multiply"]},
    "hardsigmoid": {"torch": ["nn.Hardsigmoid"], "onnx": ["HardSigmoid"], "relax": ["clip", "divide", "add"]},
    "silu": {"torch": ["nn.SiLU"], "onnx": ["Sigmoid", "Mul"], "relax": ["nn.silu", "sigmoid", "multiply"]},
    "sigmoid": {"torch": ["nn.Sigmoid"], "onnx": ["Sigmoid"], "relax": ["sigmoid"]},
    "gelu": {"torch": ["nn.GELU", "nn.GELU('tanh')"], "onnx": ["Erf", "Div", "Mul", "Add", "Tanh", "Pow"],
             "relax": ["nn.gelu", "nn.gelu_tanh", "erf", "tanh"]},
    "squeeze-excitation": {"torch": ["x * sigmoid(fc(pool(x)))"], "onnx": ["GlobalAveragePool", "Mul"],
                           "relax": ["multiply (broadcast)"]},
    "leaky relu": {"torch": ["nn.LeakyReLU"], "onnx": ["LeakyRelu"], "relax": ["nn.leakyrelu"]},
    "prelu": {"torch": ["nn.PReLU"], "onnx": ["PRelu"], "relax": ["nn.prelu"]},
    "relu6 / clip": {"torch": ["nn.ReLU6", "torch.clamp"], "onnx": ["Clip"], "relax": ["clip"]},
    "reshape / flatten": {"torch": ["torch.flatten", "Tensor.view", "Tensor.reshape"], "onnx": ["Flatten", "Reshape"],
                          "relax": ["reshape"]},
    "channel shuffle": {"torch": ["view -> transpose(1, 2) -> reshape"], "onnx": ["Reshape", "Transpose"],
                        "relax": ["reshape", "permute_dims"]},
    "asymmetric same padding": {"torch": ["F.pad(x, (0, 1, 0, 1))"], "onnx": ["Pad (constant pads after folding)"],
                                "relax": ["nn.pad"]},
    "depthwise / grouped conv": {"torch": ["nn.Conv2d(groups=g)"], "onnx": ["Conv(group=g)"], "relax": ["nn.conv2d"]},
    "dense without bias": {"torch": ["nn.Linear(bias=False)"], "onnx": ["MatMul (constant weight)", "Gemm(transB=0)"],
                           "relax": ["matmul(x, permute_dims(w))"]},
}


def _torch_layer_of(node):
    """Module path of an exported FX node (``layer1.0.conv1``) or its own name."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        return path or "<top level>"
    return node.name


def check_torch_ops(exported):
    """UnsupportedOpError naming each op of ``exported`` (a decomposed ExportedProgram) the Relax importer lacks."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    known = ExportedProgramImporter().create_convert_map()
    missing = {}
    for node in exported.graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))  # the importer's own key ("conv2d.default")
        if name in known:
            continue
        missing.setdefault(name, []).append(_torch_layer_of(node))
    if missing:
        parts = [f"{op} (in {', '.join(sorted(set(layers))[:4])})" for op, layers in sorted(missing.items())]
        raise UnsupportedOpError(f"from_torch: unsupported op(s): {'; '.join(parts)}")


def check_onnx_ops(model):
    """UnsupportedOpError naming each ONNX node whose op type the Relax ONNX importer lacks."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    missing = {}
    for index, node in enumerate(model.graph.node):
        if node.op_type not in known or node.domain not in ("", "ai.onnx"):
            label = f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
            missing.setdefault(label, []).append(node.name or f"node {index} -> {', '.join(node.output)}")
    if missing:
        parts = [f"{op} (node {', '.join(names[:4])})" for op, names in sorted(missing.items())]
        raise UnsupportedOpError(f"from_onnx: unsupported op(s): {'; '.join(parts)}")
