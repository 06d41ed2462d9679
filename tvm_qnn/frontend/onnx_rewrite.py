"""ONNX graph rewrites ``from_onnx`` applies before the Relax importer (each returns a new model).

* :func:`fold_constant_nodes`: a node whose inputs are all ``Constant`` outputs is evaluated with
  ``onnx.reference.ReferenceEvaluator`` and replaced by a ``Constant``. The TorchScript exporter
  writes TF-style asymmetric "same" padding (``F.pad(x, (0, 1, 0, 1))``) as a ``Pad`` whose pads
  come from a ``ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast`` chain; Relax's importer
  refuses such "dynamic pads", although they are constants. A ``Shape`` node of a tensor whose
  shape ONNX's shape inference knows statically is a constant too: ``Tensor.chunk`` exports its
  split points as ``Shape -> Gather -> Add -> Div -> Mul -> Slice`` (torchvision's ShuffleNetV2).
  Float initializers are never folded (they are the model's named parameters).
* :func:`dense_weights_out_in`: ``MatMul(x, W)`` with a 2-D float initializer ``W`` of shape
  ``(in, out)`` and a 2-D ``x`` (torch's bias-less ``Linear`` exports this way), and
  ``Gemm(x, W, transB=0)`` become ``Gemm(x, W', transB=1)`` with ``W' = W^T`` stored under the same
  initializer name. Relax then imports them as ``matmul(x, permute_dims(W'))``, the dense layer
  pattern the quantizer recognises, and the parameter has torch's ``(out, in)`` layout (the
  recipe's per-output-channel LUT rows). ``params[name]`` is therefore the transposed initializer.
"""

from __future__ import annotations

import numpy as np


def _copy(model):
    import onnx

    return onnx.ModelProto.FromString(model.SerializeToString())


def _static_shapes(model):
    """``{tensor name: shape}`` of every tensor whose shape ONNX's shape inference fixes completely."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without inference no Shape node is folded; the importer decides
        return {}
    shapes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        tensor = info.type.tensor_type
        if not tensor.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if all(d is not None for d in dims):
            shapes[info.name] = dims
    return shapes


def fold_constant_nodes(model):
    """Copy of ``model`` with every all-constant-input node replaced by a ``Constant`` (module doc).

    Folding a ``Shape`` chain can fix the shape of a later ``Reshape`` whose own ``Shape`` then
    folds (ShuffleNet's channel shuffle), so the pass repeats while it still removes nodes.
    """
    while True:
        folded = _fold_once(model)
        if _computed_nodes(folded) == _computed_nodes(model):
            return folded
        model = folded


def _computed_nodes(model):
    return sum(node.op_type != "Constant" for node in model.graph.node)


def _fold_once(model):
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = _copy(model)
    graph = model.graph
    constants = {}  # name -> numpy value of a Constant node's output
    new_nodes = []
    opset = [helper.make_opsetid(o.domain, o.version) for o in model.opset_import]
    static_shapes = _static_shapes(model) if any(node.op_type == "Shape" for node in graph.node) else {}
    for node in graph.node:
        if node.op_type == "Shape" and node.input[0] in static_shapes:
            attr = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            shape = static_shapes[node.input[0]]
            value = np.asarray(shape[slice(attr.get("start", 0), attr.get("end"))], dtype=np.int64)
            constants[node.output[0]] = value
            new_nodes.append(helper.make_node("Constant", [], [node.output[0]],
                                              value=numpy_helper.from_array(value, node.output[0])))
            continue
        if node.op_type == "Constant" and len(node.output) == 1:
            attr = {a.name: a for a in node.attribute}
            if "value" in attr:
                constants[node.output[0]] = numpy_helper.to_array(attr["value"].t)
            new_nodes.append(node)
            continue
        inputs = [name for name in node.input if name]
        foldable = (node.domain in ("", "ai.onnx") and inputs and all(name in constants for name in inputs)
                    and node.op_type not in ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike"))
        if not foldable:
            new_nodes.append(node)
            continue
        try:
            feeds = {name: constants[name] for name in inputs}
            graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
                            for name, value in feeds.items()]
            outputs = [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None) for name in node.output]
            sub = helper.make_model(helper.make_graph([node], "fold", graph_inputs, outputs), opset_imports=opset)
            values = ReferenceEvaluator(sub).run(None, feeds)
        except Exception:  # noqa: BLE001 - an op the evaluator cannot run stays for the importer
            new_nodes.append(node)
            continue
        for name, value in zip(node.output, values):
            value = np.asarray(value)
            constants[name] = value
            new_nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name)))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model


def _rank_2_inputs(model):
    """Names of 2-D tensors per ONNX shape inference (graph inputs, value_info, outputs)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without shapes nothing is rewritten
        return set()
    names = set()
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and len(tensor.shape.dim) == 2:
            names.add(value.name)
    return names


def dense_weights_out_in(model):
    """Copy of ``model`` with MatMul / Gemm(transB=0) dense layers on constant weights as Gemm(transB=1)."""
    from onnx import helper, numpy_helper

    model = _copy(model)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    uses = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    rank2 = None
    for index, node in enumerate(graph.node):
        if node.op_type not in ("MatMul", "Gemm") or len(node.input) < 2:
            continue
        weight = node.input[1]
        if weight not in inits or uses.get(weight, 0) != 1 or len(inits[weight].dims) != 2:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Gemm" and attrs.get("transB", 0) != 0:
            continue
        if node.op_type == "MatMul":
            rank2 = _rank_2_inputs(model) if rank2 is None else rank2
            if node.input[0] not in rank2:
                continue  # batched MatMul (rank > 2) stays a matmul
        value = numpy_helper.to_array(inits[weight])
        if value.dtype.kind != "f":
            continue
        inits[weight].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(value.T), weight))
        new_attrs = dict(attrs, transB=1) if node.op_type == "Gemm" else {"transB": 1}
        replacement = helper.make_node("Gemm", list(node.input), list(node.output), name=node.name, **new_attrs)
        graph.node[index].CopyFrom(replacement)
    return model
