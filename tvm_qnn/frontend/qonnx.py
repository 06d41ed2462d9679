"""``from_qonnx``: a QONNX graph -> ``(mod, params, recipe)``.

QONNX (FINN/Brevitas) marks quantization with ``Quant(x, scale, zero_point, bitwidth)`` and
``BipolarQuant(x, scale)`` nodes. They become a recipe plus a float graph:

* a Quant on a conv/Gemm *weight* initializer -> the layer's LUT: the levels
  ``scale * (q - zero_point)`` for the node's integer range (signed/unsigned, narrow), one row per
  output channel when the scale is per-channel; a narrow range has 2^b - 1 levels, so its last
  level is repeated (the duplicate is never chosen). BipolarQuant -> levels ``-scale, +scale``.
  The recipe's bin edges are the level midpoints: indices pick the nearest level, as QONNX's
  rounding does (ties may round differently, half-up vs half-even);
* an unsigned, zero-offset per-tensor Quant on an *activation* -> ``a_bits = bitwidth`` and
  ``a_clamp = scale * (2^b - 1)`` for every conv/Gemm it feeds (looking through Relu, MaxPool,
  Flatten, Reshape, Identity, which keep the values on the grid);
* the Quant nodes are removed (consumers read the float input) and the float graph goes through
  ``tvm_qnn.from_onnx``. Conv/Gemm layers without a weight Quant are ``fp32_layers``.

Errors name the node: a signed or offset activation Quant feeding a quantized layer (our codes
are unsigned), a weight Quant without an activation Quant before its layer, a Quant on a weight
of an op we cannot quantize (e.g. MatMul with an (in, out) weight, ConvTranspose).
"""

from __future__ import annotations

import numpy as np

from tvm_qnn.errors import RecipeError, UnsupportedOpError
from tvm_qnn.recipe import LayerQuant, Recipe

QUANT_OPS = ("Quant", "BipolarQuant")
LAYER_OPS = ("Conv", "Gemm")
_PASS_THROUGH = ("Relu", "MaxPool", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze")


def _initializers(graph):
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def _attr(node, name, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _where(node):
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def weight_levels(node, inits):
    """``(w_bits, lut rows)`` of a weight Quant/BipolarQuant node."""
    scale = np.asarray(inits[node.input[1]], dtype=np.float64)
    if node.op_type == "BipolarQuant":
        rows = scale.reshape(-1, 1)
        return 1, np.concatenate([-rows, rows], axis=1)
    zero_point = np.asarray(inits[node.input[2]], dtype=np.float64)
    bits = float(np.asarray(inits[node.input[3]]).reshape(-1)[0])
    if bits != int(bits) or not 1 <= bits <= 8:
        raise UnsupportedOpError(f"{_where(node)}: bitwidth {bits} is not an integer in 1..8")
    bits = int(bits)
    signed, narrow = int(_attr(node, "signed", 1)), int(_attr(node, "narrow", 0))
    low = -(1 << (bits - 1)) + narrow if signed else 0
    high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - narrow
    q = np.arange(low, high + 1, dtype=np.float64)
    rows = (q[None, :] - zero_point.reshape(-1, 1)) * scale.reshape(-1, 1)
    if rows.shape[1] < (1 << bits):  # narrow range: repeat the top level to fill 2^b entries
        rows = np.concatenate([rows, rows[:, -1:]], axis=1)
    return bits, rows


def _activation_params(node, inits):
    """``(a_bits, a_clamp)`` of an activation Quant, or raise naming the node."""
    if node.op_type == "BipolarQuant":
        raise UnsupportedOpError(f"{_where(node)}: bipolar (signed) activations are not supported; codes are unsigned")
    scale = np.asarray(inits[node.input[1]], dtype=np.float64).reshape(-1)
    zero_point = np.asarray(inits[node.input[2]], dtype=np.float64).reshape(-1)
    bits = float(np.asarray(inits[node.input[3]]).reshape(-1)[0])
    if int(_attr(node, "signed", 1)) or np.any(zero_point != 0) or scale.size != 1 or bits != int(bits):
        raise UnsupportedOpError(f"{_where(node)}: only unsigned, zero-offset, per-tensor activation quantization "
                                 "with an integer bitwidth maps to activation codes")
    bits = int(bits)
    return bits, float(scale[0]) * ((1 << bits) - 1)


def _layer_inputs_fed_by(tensor, consumers, seen=None):
    """Layer nodes whose *data* input is ``tensor`` (through value-preserving ops)."""
    seen = set() if seen is None else seen
    found = []
    for node in consumers.get(tensor, []):
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in LAYER_OPS and node.input[0] == tensor:
            found.append(node)
        elif node.op_type in _PASS_THROUGH:
            found.extend(_layer_inputs_fed_by(node.output[0], consumers, seen))
    return found


def strip_quant_nodes(model):
    """``(float ModelProto, recipe)`` from a QONNX ModelProto (see module doc)."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = _initializers(graph)
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    rename = {}  # Quant output -> its float input
    weight_quant, act_quant = {}, {}
    for node in graph.node:
        if node.op_type not in QUANT_OPS:
            continue
        rename[node.output[0]] = node.input[0]
        if node.input[0] in inits:
            weight_quant[node.input[0]] = node
        else:
            for layer in _layer_inputs_fed_by(node.output[0], consumers):
                act_quant[id(layer)] = node
    layers, fp32 = {}, []
    for node in graph.node:
        weight_name = None
        if node.op_type in LAYER_OPS or node.op_type in ("MatMul", "ConvTranspose"):
            weight_input = node.input[1] if len(node.input) > 1 else ""
            weight_name = rename.get(weight_input, weight_input)
        if weight_name is None or weight_name not in inits:
            continue
        if weight_name not in weight_quant:
            if node.op_type in LAYER_OPS:
                fp32.append(weight_name)
            continue
        if node.op_type not in LAYER_OPS or (node.op_type == "Gemm" and not int(_attr(node, "transB", 0))):
            raise UnsupportedOpError(f"{_where(weight_quant[weight_name])} quantizes the weight of {_where(node)}, "
                                     "which cannot be quantized (Conv and Gemm with transB=1 can)")
        if id(node) not in act_quant:
            raise RecipeError(f"{_where(node)} has a quantized weight {weight_name!r} but no activation Quant on its input")
        a_bits, a_clamp = _activation_params(act_quant[id(node)], inits)
        w_bits, levels = weight_levels(weight_quant[weight_name], inits)
        scheme = "uniform"
        layers[weight_name] = LayerQuant(weight_name, w_bits, scheme, levels.astype(np.float32), a_bits, a_clamp,
                                         (levels[:, 1:] + levels[:, :-1]) / 2.0)
    kept = [node for node in graph.node if node.op_type not in QUANT_OPS]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
    outputs = {o.name for o in graph.output}
    for output in graph.output:
        while output.name in rename and output.name in outputs:
            output.name = rename[output.name]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    return model, Recipe(layers, tuple(fp32), graph.name or "qonnx")


def from_qonnx(path_or_model, shape_dict=None):
    """QONNX model (path or ModelProto) -> ``(mod, params, recipe)`` (see module doc)."""
    from tvm_qnn.frontend import load_onnx_model, from_onnx

    float_model, recipe = strip_quant_nodes(load_onnx_model(path_or_model))
    mod, params = from_onnx(float_model, shape_dict)
    return mod, params, recipe
