"""``from_qonnx``: a QONNX graph (Brevitas ``export_qonnx``, FINN) -> ``(mod, params, recipe)``.

QONNX marks quantization with ``Quant``/``IntQuant(x, scale, zero_point, bitwidth)``,
``BipolarQuant(x, scale)`` and ``Trunc`` nodes. Both Brevitas 0.13 export paths are read: the
TorchScript one (``export_qonnx(..., dynamo=False)``; weights also listed as graph inputs) and the
dynamo one (quantizer constants are initializer-backed graph inputs, weights are sliced before
their quantizer): ``onnx_quant.normalize`` drops initializer-backed inputs (they become
parameters/constants, so ``run()`` takes only the real input) and folds the constant slices.
The nodes become a recipe plus a float graph:

* a Quant/BipolarQuant on a constant (a conv/Gemm *weight*, a bias) is evaluated with QONNX's own
  ``int_quant``/``binary_quant``; the float graph gets the quantized values and, for a layer
  weight, the recipe gets the LUT: the levels ``scale * (q - zero_point)`` of the node's integer
  range (signed/unsigned, narrow), one row per output channel when the scale is per-channel; a
  narrow range has 2^b - 1 levels, so its last level is repeated (the duplicate is never
  chosen). BipolarQuant and 1-bit signed Quant -> levels ``-scale, +scale``;
* a per-tensor Quant with an integer zero point on an *activation* -> ``a_bits = bitwidth``,
  ``a_clamp = scale * (2^b - 1)`` (float32 ``s_a`` equal to ``scale``) and
  ``a_zero_point = zero_point - q_min`` (``2^(b-1)`` for Brevitas' signed quantizers, e.g. the
  default signed 8-bit input quantizer) for every conv/Gemm it feeds, directly or through Relu,
  MaxPool, Flatten, Reshape, Identity, Squeeze, Unsqueeze, Transpose (they keep values on the
  grid). A ``Trunc`` (Brevitas' ``TruncAvgPool2d`` after its average pooling) is a quantizer
  of scale ``output_scale`` too;
* a layer reads the unquantized tensor where our codes reproduce the quantizer (rounding
  ``ROUND``, full range); everywhere else the quantizer stays in the graph as float arithmetic
  (``onnx_quant.fake_quant_nodes``: residual adds, narrow ranges, other rounding modes, Trunc,
  the output), so the compiled graph computes what QONNX/Brevitas compute;
* Conv/Gemm layers without a weight Quant are ``fp32_layers``; a layer with a quantized weight but
  no activation quantizer in front is computed in float with its quantized weight (warning).

Rounding: QONNX's ``ROUND`` is half to even (numpy/torch ``round``); the contract's codes are
``floor(x / s + 0.5)``: a value exactly halfway between two levels may get the next code up.

``MatMul(x, Transpose(Quant(w)))`` (a Brevitas linear layer without bias) is a layer with weight ``w``.

UnsupportedOpError names the node for what cannot be expressed: a per-channel, non-integer-zero-
point, wider-than-8-bit or bipolar activation quantizer in front of a quantized layer, a Quant on
the weight of an op we cannot quantize (a MatMul with an (in, out) weight, ConvTranspose, Gemm
with transB=0), a
non-constant quantizer parameter, ``FloatQuant`` and an unknown rounding mode.
"""

from __future__ import annotations

import logging

import numpy as np

from tvm_qnn.errors import UnsupportedOpError
from tvm_qnn.frontend import onnx_quant as oq
from tvm_qnn.recipe import Recipe

QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant")
QONNX_OPS = QUANT_OPS + ("Trunc", "FloatQuant")
LAYER_OPS = ("Conv", "Gemm")
_LOG = logging.getLogger("tvm_qnn.frontend")
_where = oq.where


def is_qonnx(model):
    return any(node.op_type in QONNX_OPS and node.domain not in ("", "ai.onnx") for node in model.graph.node)


def _int_range(signed, narrow, bits):
    if signed:
        return -(2.0 ** (bits - 1)) + narrow, 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1 - narrow


def _const(node, index, inits):
    name = node.input[index]
    if name not in inits:
        raise UnsupportedOpError(f"{_where(node)}: input {index} ({name!r}) is not a constant; quantizer "
                                 "parameters must be initializers or constant expressions")
    return np.asarray(inits[name])


def _bits(node, index, inits):
    return float(np.asarray(_const(node, index, inits), dtype=np.float64).reshape(-1)[0])


def weight_levels(node, inits):
    """``(w_bits, lut rows)`` of a weight Quant/BipolarQuant node."""
    scale = np.asarray(_const(node, 1, inits), dtype=np.float64)
    if node.op_type == "BipolarQuant":
        rows = scale.reshape(-1, 1)
        return 1, np.concatenate([-rows, rows], axis=1)
    zero_point = np.asarray(_const(node, 2, inits), dtype=np.float64)
    bits = _bits(node, 3, inits)
    if bits != int(bits) or not 1 <= bits <= 8:
        raise UnsupportedOpError(f"{_where(node)}: bitwidth {bits} is not an integer in 1..8")
    bits = int(bits)
    signed, narrow = int(oq.attr(node, "signed", 1)), int(oq.attr(node, "narrow", 0))
    if bits == 1 and signed:  # QONNX's int_quant makes 1-bit signed values bipolar
        rows = scale.reshape(-1, 1)
        return 1, np.concatenate([-rows, rows], axis=1)
    low, high = _int_range(signed, narrow, bits)
    q = np.arange(low, high + 1, dtype=np.float64)
    rows = (q[None, :] - zero_point.reshape(-1, 1)) * scale.reshape(-1, 1)
    if rows.shape[1] < (1 << bits):  # narrow range: repeat the top level to fill 2^b entries
        rows = np.concatenate([rows, rows[:, -1:]], axis=1)
    return bits, rows


def _quantize_constant(node, inits):
    """Value of a quantizer applied to a constant, with QONNX's own reference functions."""
    from qonnx.custom_op.general.bipolar_quant import binary_quant
    from qonnx.custom_op.general.quant import quant

    value = np.asarray(inits[node.input[0]], dtype=np.float32)
    if node.op_type == "BipolarQuant":
        return np.asarray(binary_quant(value, _const(node, 1, inits)), dtype=np.float32)
    if node.op_type not in ("Quant", "IntQuant"):
        raise UnsupportedOpError(f"{_where(node)}: {node.op_type} on a constant is not supported")
    return np.asarray(quant(value, _const(node, 1, inits), _const(node, 2, inits), _const(node, 3, inits),
                            int(oq.attr(node, "signed", 1)), int(oq.attr(node, "narrow", 0)),
                            oq.attr(node, "rounding_mode", "ROUND")), dtype=np.float32)


def _grid(node, inits):
    """``(scale, zero_point, bits, low, reproducible)``: the grid an activation quantizer's output
    lies on; ``reproducible`` when our codes equal it from the unquantized input (up to ties)."""
    if node.op_type in ("Quant", "IntQuant"):
        bits = _bits(node, 3, inits)
        signed, narrow = int(oq.attr(node, "signed", 1)), int(oq.attr(node, "narrow", 0))
        rounding = str(oq.attr(node, "rounding_mode", "ROUND")).upper()
        if bits == 1 and signed:
            raise UnsupportedOpError(f"{_where(node)}: a 1-bit signed (bipolar) activation quantizer feeds a "
                                     "quantized layer; activation codes with a zero point cannot hold -s, +s")
        low, _ = _int_range(signed, 0, bits)
        reproducible = rounding in ("ROUND", "HALF_EVEN") and not narrow
        return _const(node, 1, inits), _const(node, 2, inits), bits, low, reproducible
    if node.op_type == "Trunc" and len(node.input) == 6:
        scale, zero = _const(node, 1, inits), _const(node, 2, inits)
        out_scale, out_bits = _const(node, 4, inits), _bits(node, 5, inits)
        trunc_scale = 2.0 ** np.round(np.log2(np.asarray(out_scale, np.float64) / np.asarray(scale, np.float64)))
        low, _ = _int_range(int(oq.attr(node, "signed", 1)), 0, out_bits)
        return out_scale, np.asarray(zero, np.float64) / trunc_scale, out_bits, low, False
    if node.op_type == "BipolarQuant":
        raise UnsupportedOpError(f"{_where(node)}: a bipolar activation quantizer feeds a quantized layer; "
                                 "activation codes with a zero point cannot hold -s, +s")
    return None


def _expansion(node, inits):
    """Float ONNX nodes + initializers computing an activation quantizer's output."""
    from onnx import helper

    out = node.output[0]
    prefix = f"{out}__qonnx"
    if node.op_type in ("Quant", "IntQuant"):
        bits = _bits(node, 3, inits)
        signed, narrow = int(oq.attr(node, "signed", 1)), int(oq.attr(node, "narrow", 0))
        if bits == 1 and signed:
            node = helper.make_node("BipolarQuant", node.input[:2], node.output)
        else:
            low, high = _int_range(signed, narrow, bits)
            return oq.fake_quant_nodes(node.input[0], out, _const(node, 1, inits), _const(node, 2, inits), low, high,
                                       oq.attr(node, "rounding_mode", "ROUND"), prefix, _where(node))
    if node.op_type == "BipolarQuant":  # where(x >= 0, 1, -1) * scale
        consts = {"s": _const(node, 1, inits), "zero": 0.0, "one": 1.0, "minus": -1.0}
        inits_out = []
        nodes = [oq.const_node(f"{prefix}_{k}", v) for k, v in consts.items()]
        nodes += [helper.make_node("GreaterOrEqual", [node.input[0], f"{prefix}_zero"], [f"{prefix}_ge"]),
                 helper.make_node("Where", [f"{prefix}_ge", f"{prefix}_one", f"{prefix}_minus"], [f"{prefix}_pm"]),
                 helper.make_node("Mul", [f"{prefix}_pm", f"{prefix}_s"], [out])]
        return nodes, inits_out
    if node.op_type == "Trunc":
        return _trunc_expansion(node, inits, prefix)
    raise UnsupportedOpError(f"{_where(node)}: {node.op_type} is not supported")


def _trunc_expansion(node, inits, prefix):
    """QONNX Trunc (v2: x, scale, zero_point, in_bits, out_scale, out_bits; v1 without out_scale)."""
    from onnx import helper

    x, out = node.input[0], node.output[0]
    scale, zero = np.asarray(_const(node, 1, inits), np.float32), np.asarray(_const(node, 2, inits), np.float32)
    rounding = oq.attr(node, "rounding_mode", "FLOOR")
    if len(node.input) == 6:
        out_scale = np.asarray(_const(node, 4, inits), np.float32)
        out_bits = _bits(node, 5, inits)
        trunc_scale = 2.0 ** np.round(np.log2(out_scale.astype(np.float64) / scale.astype(np.float64)))
        low, high = _int_range(int(oq.attr(node, "signed", 1)), int(oq.attr(node, "narrow", 0)), out_bits)
        clip = True
    elif len(node.input) == 5:
        trunc_scale = 2.0 ** (_bits(node, 3, inits) - _bits(node, 4, inits))
        out_scale, clip = scale, False
    else:
        raise UnsupportedOpError(f"{_where(node)}: Trunc with {len(node.input)} inputs; expected 5 or 6")
    consts = {"s": scale, "z": zero, "t": np.asarray(trunc_scale, np.float32), "os": out_scale,
              "oz": (zero / np.asarray(trunc_scale, np.float32)) if clip else zero}
    if clip:
        consts.update(lo=np.float32(low), hi=np.float32(high))
    n = lambda *parts: "_".join((prefix,) + parts)  # noqa: E731
    inits_out = []
    nodes = [oq.const_node(n(k), v) for k, v in consts.items()]
    nodes += [helper.make_node("Div", [x, n("s")], [n("div")]), helper.make_node("Add", [n("div"), n("z")], [n("sh")]),
             helper.make_node("Round", [n("sh")], [n("int")]), helper.make_node("Div", [n("int"), n("t")], [n("tr")])]
    last = n("tr")
    if clip:
        nodes += [helper.make_node("Max", [last, n("lo")], [n("max")]), helper.make_node("Min", [n("max"), n("hi")], [n("clip")])]
        last = n("clip")
    nodes += oq.rounding_nodes(last, n("rnd"), rounding, prefix, _where(node))
    nodes += [helper.make_node("Sub", [n("rnd"), n("oz")], [n("c")]), helper.make_node("Mul", [n("c"), n("os")], [out])]
    return nodes, inits_out


def _input_quantizer(tensor, producer):
    """``(quantizer node, direct)`` in front of a layer input, through value-preserving ops."""
    direct = True
    for _ in range(16):
        node = producer.get(tensor)
        if node is None:
            return None
        if node.op_type in QONNX_OPS:
            return node, direct
        if node.op_type not in oq.PASS_THROUGH:
            return None
        tensor, direct = node.input[0], False
    return None


def analyze(model):
    """``(float ModelProto, {weight name: layer spec}, [fp32 weight names])`` of a QONNX model
    (spec: the recipe fields ``w_bits, w_scheme, lut, thresholds, a_bits, a_clamp, a_zero_point``)."""
    model = oq.normalize(model, keep_ops=QONNX_OPS)
    graph = model.graph
    inits = oq.initializers(graph)
    for node in graph.node:
        if node.op_type == "FloatQuant":
            raise UnsupportedOpError(f"{_where(node)}: FloatQuant (minifloat) is not supported")
    producer = {out: node for node in graph.node for out in node.output}
    consumers = oq.consumers_of(graph)

    # ---- quantizers on constants: evaluate them; a layer weight keeps its initializer's name
    rename, new_inits, weight_quant = {}, {}, {}
    for node in graph.node:
        if node.op_type in QONNX_OPS and node.input[0] in inits:
            value = _quantize_constant(node, inits)
            source = node.input[0]
            name = source if len(consumers.get(source, [])) == 1 else node.output[0]
            new_inits[name] = value
            rename[node.output[0]] = name
            weight_quant[name] = node

    layers, fp32 = {}, []
    direct_input = {}
    for node in graph.node:
        if node.op_type not in LAYER_OPS + ("MatMul", "ConvTranspose") or len(node.input) < 2:
            continue
        weight, is_layer = oq.layer_weight(node, producer)
        weight = rename.get(weight, weight)
        if weight not in inits and weight not in new_inits:
            continue
        if weight not in weight_quant:
            if is_layer:
                fp32.append(weight)
            continue
        if not is_layer:
            raise UnsupportedOpError(f"{_where(weight_quant[weight])} quantizes the weight of {_where(node)}, "
                                     "which cannot be quantized (Conv and Gemm with transB=1 can)")
        found = _input_quantizer(node.input[0], producer)
        grid = _grid(found[0], inits) if found else None
        if grid is None:
            _LOG.warning("from_qonnx: %s has a quantized weight %r but no activation quantizer on its input; "
                         "it is computed in float with the quantized weight", _where(node), weight)
            fp32.append(weight)
            continue
        quantizer, direct = found
        scale, zero, bits, low, reproducible = grid
        a_bits, a_clamp, a_zero = oq.activation_codes_spec(scale, zero, bits, low, quantizer)
        w_bits, levels = weight_levels(weight_quant[weight], inits)
        lut = levels.astype(np.float32)
        wide = lut.astype(np.float64)
        layers[weight] = {"w_bits": w_bits, "w_scheme": "uniform", "lut": lut,
                          "thresholds": (wide[:, 1:] + wide[:, :-1]) / 2.0, "a_bits": a_bits, "a_clamp": a_clamp,
                          "a_zero_point": a_zero, "quantizer": quantizer.name or quantizer.output[0]}
        if direct and reproducible:
            direct_input[id(node)] = quantizer.input[0]

    # ---- rewrite: constants folded, activation quantizers -> raw input / float expansion
    out_nodes, extra_inits = [], []
    graph_outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type in QONNX_OPS and node.output[0] in rename:
            continue
        if node.op_type in QONNX_OPS:
            oq.expand_if_read(node, consumers, direct_input, graph_outputs, lambda: _expansion(node, inits),
                              out_nodes, extra_inits)
            continue
        oq.keep_node(node, direct_input, rename, out_nodes)
    oq.rebuild_graph(graph, out_nodes, rename, new_inits, extra_inits)
    # custom-domain opsets are no longer needed by the float graph
    custom = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]
    for opset in custom:
        model.opset_import.remove(opset)
    return model, layers, fp32


def strip_quant_nodes(model):
    """``(float ModelProto, recipe)`` from a QONNX ModelProto (see module doc)."""
    float_model, layers, fp32 = analyze(model)
    recipe = Recipe({name: oq.layer_quant(name, spec) for name, spec in layers.items()}, tuple(fp32),
                    model.graph.name or "qonnx")
    return float_model, recipe


def from_qonnx(path_or_model, shape_dict=None):
    """QONNX model (path or ModelProto) -> ``(mod, params, recipe)`` (see module doc)."""
    from tvm_qnn.frontend import from_float_onnx, load_onnx_model
    from tvm_qnn.frontend.allowlist import check_onnx_graph

    source = load_onnx_model(path_or_model)
    float_model, recipe = strip_quant_nodes(source)  # refuses quantizers it cannot read, by name
    check_onnx_graph(source, handled=QONNX_OPS)  # the user's other ops (the Quant nodes are rewritten)
    mod, params = from_float_onnx(float_model, shape_dict, checked=True)
    return mod, params, recipe
