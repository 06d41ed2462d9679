"""Graph helpers shared by the quantized-ONNX importers (``qdq`` and ``qonnx``).

* :func:`normalize`: a copy of the model whose graph inputs backed by an initializer are dropped
  (they are parameters, not user inputs: the TorchScript exporter lists every weight as an input,
  torch's dynamo exporter lists Brevitas' quantizer constants), ``Constant`` nodes become
  initializers and standard-domain nodes computed only from initializers are folded (dynamo
  exports slice every weight before its quantizer). A fold that does not change its first input
  keeps that input's name, so weights stay named as in the source model.
* :func:`fake_quant_nodes`: a float expansion (standard ONNX ops) of a quantize-dequantize step
  ``(clip(R(x / s + z), lo, hi) - z) * s``; the importers keep it where the user's graph quantizes a
  tensor that is *not* the input of a quantized layer (a residual add, the output, a ReLU folded
  into a quantizer's clip), so the compiled graph computes what the framework computes.
  ``R`` is ONNX ``Round`` (half to even, as ONNX QuantizeLinear and QONNX's ``ROUND``) or
  QONNX's other modes (FLOOR, CEIL, UP, DOWN, HALF_UP, HALF_DOWN).
* :func:`exact_clamp`: the ``a_clamp`` whose float32 scale ``a_clamp / (2^b - 1)`` (the
  contract's ``s_a``, :func:`tvm_qnn.reference.act_scale`) equals the user's scale bit for bit.
* :func:`activation_codes_spec`: ``(a_bits, a_clamp, a_zero_point)`` of a per-tensor quantizer.
"""

from __future__ import annotations

import numpy as np

from tvm_qnn import reference
from tvm_qnn.errors import UnsupportedOpError

# ops that keep a quantized tensor on its grid (an activation quantizer before them is the
# quantizer of the layer after them)
PASS_THROUGH = ("Relu", "MaxPool", "Flatten", "Reshape", "Identity", "Squeeze", "Unsqueeze", "Transpose")


def where(node):
    return f"{node.op_type} node {node.name or node.output[0]!r}"


def attr(node, name, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def initializers(graph):
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in graph.initializer}


def consumers_of(graph):
    found = {}
    for node in graph.node:
        for name in node.input:
            if name:
                found.setdefault(name, []).append(node)
    return found


def layer_weight(node, producer):
    """``(weight tensor, is_layer)`` of a Conv/Gemm/MatMul node: Conv and Gemm(transB=1) are
    layers; so is ``MatMul(x, Transpose(w))`` (a linear layer without bias as Brevitas exports
    it), whose weight is ``w`` (out, in) -- the Relax importer makes it ``matmul(x,
    permute_dims(w))``, the dense pattern. Other MatMuls and Gemm(transB=0) are not layers here."""
    weight = node.input[1] if len(node.input) > 1 else ""
    if node.op_type == "Conv":
        return weight, True
    if node.op_type == "Gemm":
        return weight, bool(int(attr(node, "transB", 0))) and not int(attr(node, "transA", 0))
    if node.op_type == "MatMul":
        transpose = producer.get(weight)
        if transpose is not None and transpose.op_type == "Transpose" and list(attr(transpose, "perm", [1, 0])) == [1, 0]:
            return transpose.input[0], True
        return weight, False
    return weight, False


def _fold_node(node, values, opset=17):
    """Outputs of a standard-domain ``node`` whose inputs are all in ``values`` (onnx.reference)."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype), None)
              for name in dict.fromkeys(n for n in node.input if n)]
    outputs = [helper.make_tensor_value_info(name, 0, None) for name in node.output]
    graph = helper.make_graph([node], "fold", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {name: values[name] for name in dict.fromkeys(n for n in node.input if n)}
    return ReferenceEvaluator(model).run(None, feeds)


def normalize(model, keep_ops=()):
    """Copy of ``model`` ready for the quantized importers (module doc). ``keep_ops`` are op types
    never folded (the quantizers the importer reads)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    _restore_folded_names(graph)
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [17])
    values = initializers(graph)
    kept, rename = [], {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            values[node.output[0]] = numpy_helper.to_array(attr(node, "value", None)) if attr(
                node, "value", None) is not None else np.asarray(_fold_node(node, {}, opset)[0])
            continue
        foldable = (node.domain in ("", "ai.onnx") and node.op_type not in keep_ops and node.input
                    and all((not n) or n in values for n in node.input))
        if foldable:
            try:
                results = _fold_node(node, values, opset)
            except Exception:  # an op onnx.reference cannot evaluate: leave it to the importer
                kept.append(node)
                continue
            first = values[node.input[0]]
            for out, value in zip(node.output, results):
                value = np.asarray(value)
                if len(node.output) == 1 and value.shape == first.shape and value.dtype == first.dtype \
                        and np.array_equal(value, first):
                    rename[out] = node.input[0]  # a no-op (full slice, identity): keep the source name
                else:
                    values[out] = value
            continue
        kept.append(node)
    for output in graph.output:
        if output.name in rename:  # an output that is a renamed no-op keeps its name via Identity
            kept.append(onnx.helper.make_node("Identity", [rename[output.name]], [output.name]))
    used = {name for node in kept for name in node.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items() if k in used)
    inputs = [i for i in graph.input if i.name not in values]
    del graph.input[:]
    graph.input.extend(inputs)
    return model


def _restore_folded_names(graph):
    """Give back a source name to an initializer torch's dynamo exporter folded (its optimizer
    records ``pkg.onnxscript.optimizer.folded_from``: ``slice_1`` <- ``['conv1.weight', 'val_0', ...]``)."""
    import ast

    taken = {i.name for i in graph.initializer} | {i.name for i in graph.input} | {o.name for o in graph.output}
    taken |= {out for node in graph.node for out in node.output}
    rename = {}
    for value in list(graph.value_info) + list(graph.input):
        for prop in value.metadata_props:
            if prop.key != "pkg.onnxscript.optimizer.folded_from":
                continue
            try:
                sources = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                continue
            named = [n for n in sources if isinstance(n, str) and not n.startswith("val_") and n not in taken]
            if len(named) == 1 and named[0] not in rename.values():
                rename[value.name] = named[0]
    if not rename:
        return
    for init in graph.initializer:
        init.name = rename.get(init.name, init.name)
    for value in list(graph.input) + list(graph.value_info):
        value.name = rename.get(value.name, value.name)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)


def exact_clamp(scale, bits):
    """``a_clamp`` (float) with ``reference.act_scale(a_clamp, bits) == float32(scale)`` exactly."""
    target = np.float32(scale)
    levels = (1 << bits) - 1
    clamp = np.float32(np.float64(target) * levels)
    for _ in range(64):
        got = reference.act_scale(float(clamp), bits)
        if got == target:
            return float(clamp)
        clamp = np.nextafter(clamp, np.float32(np.inf) if got < target else np.float32(0))
    return float(np.float64(target) * levels)  # unreachable for normal scales; within 1 ulp anyway


def activation_codes_spec(scale, zero_point, bits, low, node):
    """``(a_bits, a_clamp, a_zero_point)`` for integer codes ``q in [low, low + 2^bits - 1]`` with
    value ``scale * (q - zero_point)``: our codes are ``q - low``, our zero point ``zero_point - low``.
    """
    scale = np.asarray(scale, dtype=np.float64).reshape(-1)
    zero_point = np.asarray(zero_point, dtype=np.float64).reshape(-1)
    if scale.size != 1 or zero_point.size != 1:
        raise UnsupportedOpError(f"{where(node)}: a per-channel activation quantizer (scale shape "
                                 f"{scale.size}) feeds a quantized layer; activation codes have one scale per tensor")
    if zero_point[0] != np.round(zero_point[0]):
        raise UnsupportedOpError(f"{where(node)}: zero point {zero_point[0]} is not an integer")
    if not scale[0] > 0 or not np.isfinite(scale[0]):
        raise UnsupportedOpError(f"{where(node)}: activation scale {scale[0]} must be finite and > 0")
    if bits != int(bits) or not 1 <= bits <= 8:
        raise UnsupportedOpError(f"{where(node)}: {bits}-bit activations feed a quantized layer; "
                                 "activation codes have 1..8 bits")
    bits = int(bits)
    return bits, exact_clamp(scale[0], bits), int(zero_point[0]) - int(low)


def fake_quant_nodes(x, out, scale, zero_point, low, high, rounding="ROUND", prefix=None, what=None):
    """``(nodes, initializers)`` computing ``out = (clip(R(x / scale + zero_point), low, high) - zero_point)
    * scale`` in float32 with standard ONNX ops (module doc). ``scale``/``zero_point`` are arrays
    already shaped for broadcasting against ``x``. The clip comes before the rounding, as in QONNX;
    with integer bounds the order does not change the result."""
    from onnx import helper

    prefix = prefix or f"{out}__fq"
    consts = {
        "s": np.asarray(scale, dtype=np.float32), "z": np.asarray(zero_point, dtype=np.float32),
        "lo": np.asarray(low, dtype=np.float32), "hi": np.asarray(high, dtype=np.float32),
    }
    n = lambda *parts: "_".join((prefix,) + parts)  # noqa: E731
    nodes = [const_node(n(key), value) for key, value in consts.items()]
    nodes += [
        helper.make_node("Div", [x, n("s")], [n("div")]),
        helper.make_node("Add", [n("div"), n("z")], [n("shift")]),
        helper.make_node("Max", [n("shift"), n("lo")], [n("low")]),
        helper.make_node("Min", [n("low"), n("hi")], [n("clip")]),
    ]
    nodes += rounding_nodes(n("clip"), n("int"), rounding, prefix, what or f"quantizer of tensor {x!r}")
    nodes += [helper.make_node("Sub", [n("int"), n("z")], [n("centred")]),
              helper.make_node("Mul", [n("centred"), n("s")], [out])]
    return nodes, []


def const_node(name, value):
    """A ``Constant`` node (a constant, not a parameter, after import) holding float32 ``value``."""
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, np.float32), name))


ROUNDING_MODES = ("ROUND", "HALF_EVEN", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def rounding_nodes(x, out, rounding, prefix, what):
    """ONNX nodes ``out = R(x)`` for a QONNX/ONNX rounding mode (QONNX's resolve_rounding_mode)."""
    from onnx import helper

    mode = str(rounding).upper()
    n = lambda *parts: "_".join((prefix, "r") + parts)  # noqa: E731
    simple = {"ROUND": "Round", "HALF_EVEN": "Round", "FLOOR": "Floor", "CEIL": "Ceil"}
    if mode in simple:
        return [helper.make_node(simple[mode], [x], [out])]
    magnitude = {"UP": ("Ceil", None), "DOWN": ("Floor", None), "HALF_UP": ("Floor", 0.5), "HALF_DOWN": ("Ceil", -0.5)}
    if mode not in magnitude:
        raise UnsupportedOpError(f"{what}: rounding_mode {rounding!r} is not supported ({', '.join(ROUNDING_MODES)} are)")
    op, offset = magnitude[mode]
    nodes = [helper.make_node("Abs", [x], [n("abs")]), helper.make_node("Sign", [x], [n("sign")])]
    source = n("abs")
    if offset is not None:
        nodes.append(const_node(n("off"), offset))
        nodes.append(helper.make_node("Add", [n("abs"), n("off")], [n("shifted")]))
        source = n("shifted")
    nodes += [helper.make_node(op, [source], [n("mag")]), helper.make_node("Mul", [n("mag"), n("sign")], [out])]
    return nodes


def drop_unused_initializers(graph):
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def topo_sort(graph):
    """Reorder ``graph.node`` topologically (inserted expansions may follow their consumers)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    pending, ordered = list(graph.node), []
    while pending:
        progress = []
        for node in pending:
            if all((not name) or name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                progress.append(node)
        if len(progress) == len(pending):
            missing = sorted({n for node in progress for n in node.input if n and n not in available})
            raise UnsupportedOpError(f"quantized ONNX import: tensors {missing[:5]} are never produced "
                                     f"(consumed by {where(progress[0])})")
        pending = progress
    del graph.node[:]
    graph.node.extend(ordered)


def layer_quant(name, spec):
    """``recipe.LayerQuant`` from an importer's layer spec (dict with the recipe fields).

    A zero point other than 0 needs the recipe format with ``a_zero_point`` (tvm-qnn-recipe/2).
    """
    from tvm_qnn.errors import RecipeError
    from tvm_qnn.recipe import LayerQuant

    fields = dict(name=name, w_bits=spec["w_bits"], w_scheme=spec["w_scheme"], lut=spec["lut"],
                  a_bits=spec["a_bits"], a_clamp=spec["a_clamp"], thresholds=spec["thresholds"])
    if "a_zero_point" in getattr(LayerQuant, "__dataclass_fields__", {}):
        fields["a_zero_point"] = int(spec["a_zero_point"])
    elif int(spec["a_zero_point"]) != 0:
        raise RecipeError(f"layer {name!r}: activation zero point {spec['a_zero_point']} needs a recipe with "
                          "a_zero_point (tvm-qnn-recipe/2); this tvm_qnn.recipe has unsigned codes only")
    return LayerQuant(**fields)


def expand_if_read(node, consumers, direct_input, graph_outputs, expansion, out_nodes, extra_inits):
    """Keep a quantizer ``node`` as float ops (``expansion()`` -> ``(nodes, initializers)``) when
    anything other than a quantized layer's own input (``direct_input``: id(layer node) -> the
    float tensor it reads instead) reads its output, or the output is a graph output."""
    readers = [c for c in consumers.get(node.output[0], [])
               if not (id(c) in direct_input and c.input[0] == node.output[0])]
    if readers or node.output[0] in graph_outputs:
        nodes, consts = expansion()
        out_nodes.extend(nodes)
        extra_inits.extend(consts)


def keep_node(node, direct_input, rename, out_nodes):
    """Append ``node`` to ``out_nodes`` reading its rewired inputs: a quantized layer reads the float
    tensor in ``direct_input``, every other input goes through ``rename``."""
    if id(node) in direct_input:
        node.input[0] = direct_input[id(node)]
    for i, name in enumerate(node.input):
        node.input[i] = rename.get(name, name)
    out_nodes.append(node)


def rebuild_graph(graph, nodes, rename, new_inits, extra_inits):
    """Replace ``graph``'s nodes by ``nodes`` and its rewritten initializers (``new_inits``: name ->
    array, replacing the same names; ``extra_inits``: TensorProtos to add), keep every graph output
    computable (an output that was folded into a constant gets an ``Identity``), drop unused
    initializers and sort the nodes topologically. Shared by the QDQ and QONNX importers."""
    from onnx import helper, numpy_helper

    nodes = list(nodes)
    for output in graph.output:
        if output.name in rename:
            nodes.append(helper.make_node("Identity", [rename[output.name]], [output.name]))
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [init for init in graph.initializer if init.name not in new_inits]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in new_inits.items())
    graph.initializer.extend(extra_inits)
    drop_unused_initializers(graph)
    topo_sort(graph)
