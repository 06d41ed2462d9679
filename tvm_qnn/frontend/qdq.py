"""``from_qdq``: an ONNX QDQ model -> ``(mod, params, recipe)`` without re-quantizing.

QDQ is the quantized ONNX written by onnxruntime's ``quantize_static(quant_format=QDQ)`` and by
torch's exporter (fake-quant modules become QuantizeLinear/DequantizeLinear pairs): every
quantized tensor ``x`` is ``DequantizeLinear(QuantizeLinear(x, s, z), s, z)`` and every quantized
weight ``DequantizeLinear(w_int, s_w, z_w)`` (or a pair on a float initializer). The importer turns
it into the recipe that reproduces the user's quantization and a float graph for ``from_onnx``:

* **weights** of Conv and Gemm layers: 8-bit integers ``q`` (int8/uint8; 4-bit int4/uint4 too)
  with a per-tensor or per-output-channel scale ``s_w[o]`` and zero point ``z_w[o]`` become a
  uniform LUT of ``2^b`` levels: index ``idx = q - q_min`` (the stored integer shifted to
  ``0 .. 2^b - 1``) and ``lut[o, idx] = s_w[o] * (idx + q_min - z_w[o])`` in float32, exactly
  the values DequantizeLinear computes. The float graph gets those dequantized weights, so the
  recipe's bin edges (level midpoints) give back the stored integers.
* **activations**: the pair in front of a quantized layer gives ``a_bits = 8``,
  ``a_clamp = s * 255`` (chosen so that the contract's float32 ``s_a = a_clamp / 255`` is ``s``
  bit for bit) and ``a_zero_point = z`` (uint8) or ``z + 128`` (int8: codes and zero point
  shift by 128). The layer then reads the unquantized tensor; the recipe quantizes it.
* **every other pair** (a residual add's inputs/outputs, pooling outputs, the network output, a
  ReLU that onnxruntime folded into a quantizer's clip) stays in the graph as float
  quantize-dequantize arithmetic (``onnx_quant.fake_quant_nodes``), so the compiled model computes
  what onnxruntime computes.
* biases (int32 DequantizeLinear) and every other constant DequantizeLinear are folded to float.
* Conv/Gemm layers whose weight is float are ``fp32_layers``; a layer with a quantized weight but
  an unquantized input is computed in float with its dequantized weight (a warning says so);
  ``Gemm(transB=0)`` is rewritten to ``transB=1`` with the weight transposed;
  ``MatMul(x, Transpose(w))`` is a layer with weight ``w``; any other MatMul with a quantized
  weight is computed in float (warning).

Rounding: ONNX QuantizeLinear rounds half to even; the contract's codes are
``floor(x / s + 0.5)`` (half up). A value exactly halfway between two levels may therefore get the
next code up where onnxruntime picks the even one (at most one level, only at exact ties).

Raises UnsupportedOpError naming the op and node for what cannot be expressed: a per-channel or
16-bit activation quantizer in front of a quantized layer, 16-bit weights, blocked quantization,
QOperator-format ops (QLinearConv, ...) or an integer tensor consumed by anything but a
DequantizeLinear.
"""

from __future__ import annotations

import logging

import numpy as np

from tvm_qnn.errors import UnsupportedOpError
from tvm_qnn.frontend import onnx_quant as oq

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
LAYER_OPS = ("Conv", "Gemm")
QOPERATOR_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QGemm",
                 "DynamicQuantizeLinear", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool")
_LOG = logging.getLogger("tvm_qnn.frontend")

# ONNX integer element types: (lowest integer, bits)
_INT_RANGE = {"int8": (-128, 8), "uint8": (0, 8), "int16": (-32768, 16), "uint16": (0, 16),
              "int4": (-8, 4), "uint4": (0, 4)}


def is_qdq(model):
    return any(node.op_type in QDQ_OPS and node.domain in ("", "ai.onnx") for node in model.graph.node)


def _qparams(node, inits, strict=True):
    """``(scale, zero_point, low, bits, axis)`` of a QuantizeLinear/DequantizeLinear node."""
    if int(oq.attr(node, "block_size", 0)):
        raise UnsupportedOpError(f"{oq.where(node)}: blocked quantization (block_size) is not supported")
    if node.input[1] not in inits or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits):
        raise UnsupportedOpError(f"{oq.where(node)}: scale/zero point must be constants")
    scale = np.asarray(inits[node.input[1]], dtype=np.float32)
    if len(node.input) > 2 and node.input[2]:
        zero = inits[node.input[2]]
        kind = str(zero.dtype)
    else:
        zero, kind = np.zeros(scale.shape, dtype=np.uint8), "uint8"
        if node.op_type == "DequantizeLinear":
            kind = None  # the integer input's own type decides
    if kind is not None and kind not in _INT_RANGE:
        if not strict:
            return scale, np.asarray(zero).astype(np.int64), None, None, int(oq.attr(node, "axis", 1))
        raise UnsupportedOpError(f"{oq.where(node)}: quantized type {kind} is not supported "
                                 f"({', '.join(_INT_RANGE)} are)")
    low, bits = _INT_RANGE[kind] if kind else (None, None)
    return scale, np.asarray(zero).astype(np.int64), low, bits, int(oq.attr(node, "axis", 1))


def _weight_spec(name, q, scale, zero, low, bits, axis, node):
    """LUT rows ``(rows, 2^bits)`` float32 of an integer weight with output channels on axis 0."""
    if bits > 8:
        raise UnsupportedOpError(f"{oq.where(node)}: {bits}-bit weights; weight indices have 1..8 bits")
    if scale.size > 1 and (axis % q.ndim) != 0:
        raise UnsupportedOpError(f"{oq.where(node)}: per-channel weight scale on axis {axis}; "
                                 "only the output-channel axis (0) maps to LUT rows")
    rows = scale.size
    levels = np.arange(1 << bits, dtype=np.int64) + low
    centred = (levels[None, :] - zero.reshape(-1, 1)).astype(np.float32)
    lut = centred * scale.reshape(-1, 1).astype(np.float32)  # float32 product, as DequantizeLinear
    if rows not in (1, q.shape[0]):
        raise UnsupportedOpError(f"{oq.where(node)}: weight {name!r} has {q.shape[0]} output channels "
                                 f"but {rows} scales")
    wide = lut.astype(np.float64)
    return {"w_bits": bits, "w_scheme": "uniform", "lut": lut, "thresholds": (wide[:, 1:] + wide[:, :-1]) / 2.0,
            "indices": (q.astype(np.int64) - low).astype(np.uint8)}


def analyze(model):
    """``(float ModelProto, {weight name: layer spec}, [fp32 weight names])`` of a QDQ model.

    A layer spec is a dict with the recipe fields ``w_bits, w_scheme, lut, thresholds, a_bits,
    a_clamp, a_zero_point`` plus ``indices`` (the stored weight integers shifted to 0..2^b-1) and
    ``scale``/``zero_point`` (the ONNX activation parameters it came from).
    """
    from onnx import helper

    model = oq.normalize(model, keep_ops=QDQ_OPS)
    graph = model.graph
    inits = oq.initializers(graph)
    for node in graph.node:
        if node.op_type in QOPERATOR_OPS:
            raise UnsupportedOpError(f"{oq.where(node)}: QOperator-format ops are not supported; "
                                     "export the model in QDQ format (quantize_static(quant_format=QuantFormat.QDQ))")
    producer = {out: node for node in graph.node for out in node.output}
    consumers = oq.consumers_of(graph)
    used_names = set(inits) | {o for node in graph.node for o in node.output} | {i.name for i in graph.input}
    # onnx.reference implements QuantizeLinear/DequantizeLinear from opset 19 (same int8/uint8 semantics)
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] + [19])

    removed = set()  # ids of Q/DQ nodes the importer consumed
    new_inits = {}  # name -> float32 array
    weight_of = {}  # DQ output name -> (float weight name, spec or None)

    # ---- constant DequantizeLinear (weights, biases): fold to float initializers
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        q_node = producer.get(source)
        if source in inits:
            q = np.asarray(inits[source])
        elif q_node is not None and q_node.op_type == "QuantizeLinear" and q_node.input[0] in inits:
            q = np.asarray(oq._fold_node(q_node, inits, opset)[0])
            removed.add(id(q_node))
        else:
            continue
        scale, zero, low, bits, axis = _qparams(node, inits, strict=False)
        if low is None and str(q.dtype) in _INT_RANGE:
            low, bits = _INT_RANGE[str(q.dtype)]
        value = np.asarray(oq._fold_node(node, {**inits, source: q}, opset)[0], dtype=np.float32)
        base = source[: -len("_quantized")] if source.endswith("_quantized") else None
        if q_node is not None and source not in inits and len(consumers.get(q_node.input[0], [])) == 1:
            base = q_node.input[0]  # torch's fake-quant on a float initializer read only by it: keep its name
            used_names.discard(base)
        name = base if base and base not in used_names else node.output[0]
        new_inits[name] = value
        spec = None
        if low is not None and q.ndim >= 2:  # a weight (16-bit ones are refused when a layer uses them)
            spec = (q, scale, zero, low, bits, axis, node)
        weight_of[node.output[0]] = (name, spec)
        removed.add(id(node))

    # ---- layers, their weights and their input quantizers
    layers, fp32 = {}, []
    direct_input = {}  # id(layer) -> raw tensor the layer reads instead of a DQ output
    for node in graph.node:
        if node.op_type not in LAYER_OPS + ("MatMul",) or len(node.input) < 2:
            continue
        weight_in, is_layer = oq.layer_weight(node, producer)
        if node.op_type == "Gemm" and not int(oq.attr(node, "transA", 0)):
            is_layer = True  # transB=0 is rewritten below
        if weight_in in weight_of:
            name, spec = weight_of[weight_in]
        elif weight_in in inits and np.issubdtype(np.asarray(inits[weight_in]).dtype, np.floating):
            name, spec = weight_in, None
        else:
            continue
        if not is_layer:
            if spec is not None:
                _LOG.warning("from_onnx (QDQ): %s has a quantized weight %r but is computed in float with the "
                             "dequantized weight (Conv, Gemm and MatMul(x, Transpose(w)) layers map to quantized "
                             "kernels)", oq.where(node), name)
            continue
        if node.op_type == "Gemm" and not int(oq.attr(node, "transB", 0)):
            # (in, out) weight: transpose it so the layer is matmul(x, permute_dims(w)) as from torch
            if name in new_inits:
                new_inits[name] = np.ascontiguousarray(new_inits[name].T)
            else:
                new_inits[f"{name}_T"] = np.ascontiguousarray(np.asarray(inits[name]).T)
                name = node.input[1] = f"{name}_T"
            for attribute in node.attribute:
                if attribute.name == "transB":
                    attribute.i = 1
                    break
            else:
                node.attribute.append(helper.make_attribute("transB", 1))
            if spec is not None:
                q, scale, zero, low, bits, axis, dq = spec
                spec = (q.T, scale, zero, low, bits, 1 - (axis % 2), dq)
        if spec is None:
            fp32.append(name)
            continue
        act = _input_quantizer(node.input[0], producer, inits)
        if act is None:
            _LOG.warning("from_onnx (QDQ): %s has a quantized weight %r but its input is not quantized; "
                         "it is computed in float with the dequantized weight", oq.where(node), name)
            fp32.append(name)
            continue
        q_node, dq_node, direct = act
        scale, zero, low, bits, _ = _qparams(q_node, inits)
        if bits > 8:
            raise UnsupportedOpError(f"{oq.where(q_node)}: {bits}-bit activations feed {oq.where(node)}; "
                                     "activation codes have 1..8 bits")
        a_bits, a_clamp, a_zero = oq.activation_codes_spec(scale, zero, bits, low, q_node)
        q, w_scale, w_zero, w_low, w_bits, w_axis, dq = spec
        entry = _weight_spec(name, q, w_scale, w_zero, w_low, w_bits, w_axis, dq)
        entry.update(a_bits=a_bits, a_clamp=a_clamp, a_zero_point=a_zero, scale=float(scale.reshape(-1)[0]),
                     zero_point=int(zero.reshape(-1)[0]), quantizer=q_node.name or q_node.output[0])
        layers[name] = entry
        if direct:
            direct_input[id(node)] = q_node.input[0]

    # ---- rewrite: weights -> float initializers, activation pairs -> raw input / fake-quant
    rename = {dq_out: name for dq_out, (name, _) in weight_of.items()}
    out_nodes, extra_inits = [], []
    graph_outputs = {o.name for o in graph.output}
    for node in graph.node:
        if id(node) in removed:
            continue
        if node.op_type == "QuantizeLinear":
            continue  # handled with its DequantizeLinear consumers below
        if node.op_type == "DequantizeLinear":
            q_node = producer.get(node.input[0])
            if q_node is None or q_node.op_type != "QuantizeLinear":
                raise UnsupportedOpError(f"{oq.where(node)}: dequantizes {node.input[0]!r}, which is neither a "
                                         "constant nor a QuantizeLinear output (integer model inputs are not supported)")
            others = [c for c in consumers.get(q_node.output[0], []) if c.op_type != "DequantizeLinear"]
            if others:
                raise UnsupportedOpError(f"{oq.where(others[0])} consumes the integer output of {oq.where(q_node)}; "
                                         "only DequantizeLinear may")
            oq.expand_if_read(node, consumers, direct_input, graph_outputs,
                              lambda: _pair_expansion(q_node, node, inits), out_nodes, extra_inits)
            continue
        oq.keep_node(node, direct_input, rename, out_nodes)
    oq.rebuild_graph(graph, out_nodes, rename, new_inits, extra_inits)
    return model, layers, fp32


def _pair_expansion(q_node, dq_node, inits):
    """Float nodes (and constants) computing a QuantizeLinear -> DequantizeLinear pair's output."""
    scale, zero, low, bits, axis = _qparams(q_node, inits)
    d_scale, d_zero, _, _, _ = _qparams(dq_node, inits)
    if not (np.array_equal(scale, d_scale) and np.array_equal(zero, d_zero)):
        raise UnsupportedOpError(f"{oq.where(dq_node)}: dequantizes with other parameters than "
                                 f"{oq.where(q_node)} quantized with")
    if scale.size > 1:
        raise UnsupportedOpError(f"{oq.where(q_node)}: per-channel activation quantization (axis {axis}) "
                                 "is not supported")
    return oq.fake_quant_nodes(q_node.input[0], dq_node.output[0], scale.reshape(()), zero.reshape(()),
                               low, low + (1 << bits) - 1, "ROUND", prefix=f"{dq_node.output[0]}__qdq")


def _input_quantizer(tensor, producer, inits):
    """``(QuantizeLinear, DequantizeLinear, direct)`` quantizing a layer's input ``tensor``, through
    value-preserving ops (``direct`` when the DequantizeLinear output is the input itself)."""
    direct = True
    for _ in range(16):
        node = producer.get(tensor)
        if node is None:
            return None
        if node.op_type == "DequantizeLinear":
            q_node = producer.get(node.input[0])
            if q_node is not None and q_node.op_type == "QuantizeLinear" and q_node.input[0] not in inits:
                return q_node, node, direct
            return None
        if node.op_type not in oq.PASS_THROUGH:
            return None
        tensor, direct = node.input[0], False
    return None


def build_recipe(layers, fp32, model_name):
    """A Recipe from ``analyze``'s layer specs (``a_zero_point`` needs recipe format 2)."""
    from tvm_qnn.recipe import Recipe

    return Recipe({name: oq.layer_quant(name, spec) for name, spec in layers.items()}, tuple(fp32), model_name)


def from_qdq(path_or_model, shape_dict=None):
    """QDQ ONNX model (path or ModelProto) -> ``(mod, params, recipe)`` (see module doc)."""
    from tvm_qnn.frontend import from_float_onnx, load_onnx_model
    from tvm_qnn.frontend.allowlist import check_onnx_graph

    source = load_onnx_model(path_or_model)
    float_model, layers, fp32 = analyze(source)  # refuses what it cannot read (QOperator nodes...) by name
    check_onnx_graph(source, handled=("QuantizeLinear", "DequantizeLinear"))  # the user's other ops
    recipe = build_recipe(layers, fp32, source.graph.name or "qdq")
    mod, params = from_float_onnx(float_model, shape_dict, checked=True)  # + the arithmetic analyze emitted
    return mod, params, recipe
