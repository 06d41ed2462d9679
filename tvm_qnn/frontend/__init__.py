"""Import torch / ONNX / QONNX models into a float Relax module with *named* weight parameters.

Every importer returns ``(mod, params)``: ``mod["main"]`` takes the user input(s) first
(``num_input`` attribute) and then one parameter per weight, named as in the source model
(``layer1.0.conv1.weight`` for torch, the initializer name for ONNX), and ``params`` maps those
names to numpy arrays. Keeping weights as named parameters is what lets a recipe keyed by torch
parameter names find its layers (``tvm_qnn.quantize`` binds them after matching).

* ``from_torch(model, example_input)``: BatchNorm is folded in torch first with
  ``tvm_qnn.train.fold_bn.fold_batchnorm`` -- the same float64 arithmetic the torch fake-quant
  model and QAT use -- so TVM sees bit-identical folded weights; then ``torch.export`` and
  ``relax.frontend.torch.from_exported_program(keep_params_as_input=True)``, whose parameter
  vars (``p_layer1_0_conv1_weight``) are renamed back to the torch names via the export's
  graph signature.
* ``from_onnx(path_or_model, shape_dict=None)``: ``relax.frontend.onnx.from_onnx(
  keep_params_in_input=True)``; integer initializers (shapes, axes) are turned into constants
  first so only tensors stay parameters. Export a torch model for it with
  ``torch.onnx.export(fold_batchnorm(model), (x,), path, dynamo=False, input_names=["x"])``:
  the TorchScript exporter keeps parameter names as initializer names (fold BN in torch first,
  or the exporter's own conv-BN fusion renames the weights to ``onnx::Conv_NN``).
  A quantized ONNX model is recognised and imported with its recipe: QDQ
  (``tvm_qnn.frontend.qdq``) and QONNX (``tvm_qnn.frontend.qonnx``); ``from_float_onnx``
  imports any model as float. Before the Relax importer, ``tvm_qnn.frontend.onnx_rewrite`` folds
  constant-only nodes (TF-style "same" pads) and turns ``MatMul``/``Gemm(transB=0)`` on a constant
  weight into ``Gemm(transB=1)`` with the weight stored transposed, ``(out, in)``, under its
  initializer name (a quantizable dense layer).
* ``from_qonnx``: see ``tvm_qnn.frontend.qonnx``.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from tvm_qnn.errors import ArgumentError, QnnError, ShapeError, UnsupportedOpError

_LOG = logging.getLogger("tvm_qnn.frontend")


def _rename_params(mod, names, values):
    """``mod`` whose ``main`` params after ``num_input`` are renamed by ``names`` (old -> new)."""
    from tvm import relax

    main = mod["main"]
    binds, new_params = {}, []
    for param in main.params:
        if param.name in names:
            new_var = relax.Var(names[param.name], param.ty)
            binds[param] = new_var
            new_params.append(new_var)
        else:
            new_params.append(param)
    bound = main.bind_params(binds) if binds else main
    attrs = {key: main.attrs[key] for key in main.attrs.keys() if key != "params"}
    func = relax.Function(new_params, bound.body, main.ret_ty, main.is_pure)
    func = func.with_attrs(attrs) if attrs else func
    out = mod.clone() if hasattr(mod, "clone") else mod
    out["main"] = func
    missing = [p.name for p in new_params[int(attrs.get("num_input", 1)):] if p.name not in values]
    if missing:
        raise QnnError(f"import: no value for parameter(s) {missing}")
    return out


def _static_shape(shape, where):
    dims = []
    for dim in shape:
        if not isinstance(dim, (int, np.integer)) or int(dim) <= 0:
            raise ShapeError(f"{where} has a dynamic or unknown dimension {dim!r} in shape {list(shape)}; "
                             "pass a static shape (shape_dict / example input)")
        dims.append(int(dim))
    return dims


# --------------------------------------------------------------------------- torch
def from_torch(model, example_input, fold_bn=True):
    """torch.nn.Module -> ``(mod, params)`` (see module doc). ``example_input`` fixes the shape."""
    import torch
    from tvm.relax.frontend.torch import from_exported_program

    from tvm_qnn.frontend.allowlist import check_torch_graph
    from tvm_qnn.train.fold_bn import fold_batchnorm

    if not isinstance(model, torch.nn.Module):
        hint = " (a path: load it first, e.g. torch.load(path, weights_only=False))" \
            if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else ""
        raise ArgumentError(f"from_torch: model must be a torch.nn.Module, got {type(model).__name__} "
                            f"{str(model)[:60]!r}{hint}")
    if isinstance(example_input, np.ndarray):
        example_input = torch.from_numpy(example_input)
    if not isinstance(example_input, torch.Tensor):
        raise ShapeError(f"from_torch: example_input must be a tensor, got {type(example_input).__name__}")
    _static_shape(tuple(example_input.shape), "from_torch: example_input")
    model = fold_batchnorm(model) if fold_bn else model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(model, (example_input.float(),))
    except Exception as err:
        raise UnsupportedOpError(f"from_torch: torch.export failed for {type(model).__name__}: {err}") from err
    check_torch_graph(exported, type(model).__name__)  # before the Relax importer builds anything
    try:
        mod = from_exported_program(exported, keep_params_as_input=True, unwrap_unit_return_tuple=True)
    except Exception as err:
        raise UnsupportedOpError(f"from_torch: the Relax importer rejected {type(model).__name__}: {err}") from err
    kinds = torch.export.graph_signature.InputKind
    names, values = {}, {}
    for spec in exported.graph_signature.input_specs:
        if spec.kind is kinds.PARAMETER:
            names[spec.arg.name] = spec.target
            values[spec.target] = exported.state_dict[spec.target].detach().cpu().numpy().copy()
    return _rename_params(mod, names, values), values


# --------------------------------------------------------------------------- ONNX
def load_onnx_model(path_or_model):
    import onnx

    if isinstance(path_or_model, onnx.ModelProto):
        model = path_or_model
    else:
        if not isinstance(path_or_model, (str, bytes)) and not hasattr(path_or_model, "__fspath__"):
            raise ArgumentError(f"from_onnx: expected an ONNX file path or onnx.ModelProto, "
                                f"got {type(path_or_model).__name__}")
        import os

        path = os.fsdecode(path_or_model)
        if not os.path.isfile(path):
            raise QnnError(f"from_onnx: ONNX model {path!r} does not exist or is not a file")
        if os.path.getsize(path) == 0:
            raise QnnError(f"from_onnx: ONNX model {path!r} is empty (0 bytes)")
        try:
            model = onnx.load(path)
        except Exception as err:
            raise QnnError(f"from_onnx: cannot read ONNX model {path!r}: {err}") from err
        where = repr(path)
    if not model.graph.node or model.ir_version == 0:
        where = "the ModelProto" if isinstance(path_or_model, onnx.ModelProto) else where
        raise QnnError(f"from_onnx: {where} is not an ONNX model (no graph nodes, IR version "
                       f"{model.ir_version})")
    return model


def _integer_initializers_to_constants(model):
    """Copy of ``model`` whose non-float initializers are Constant nodes (shape/axes operands)."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    keep, constants = [], []
    for init in graph.initializer:
        if init.data_type in floats:
            keep.append(init)
        else:
            constants.append(helper.make_node("Constant", [], [init.name], value=init))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = constants + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    initializer_names = {init.name for init in keep} | {node.output[0] for node in constants}
    inputs = [i for i in graph.input if i.name not in initializer_names]
    del graph.input[:]
    graph.input.extend(inputs)
    return model


def onnx_input_shapes(model, shape_dict=None):
    """``{input name: static shape}`` of the graph inputs (ShapeError names a dynamic one)."""
    shape_dict = dict(shape_dict or {})
    initializers = {init.name for init in model.graph.initializer}
    shapes = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.name in shape_dict:
            shapes[value.name] = _static_shape(shape_dict[value.name], f"from_onnx: input {value.name!r}")
            continue
        dims = []
        for dim in value.type.tensor_type.shape.dim:
            dims.append(dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?"))
        shapes[value.name] = _static_shape(dims, f"from_onnx: input {value.name!r}")
    unknown = sorted(set(shape_dict) - set(shapes))
    if unknown:
        raise ShapeError(f"from_onnx: shape_dict names input(s) {unknown} that the graph does not have; "
                         f"inputs: {sorted(shapes)}")
    return shapes


def onnx_format(path_or_model):
    """``"qonnx"`` (Quant/BipolarQuant/Trunc nodes), ``"qdq"`` (QuantizeLinear/DequantizeLinear)
    or ``"float"``: which importer ``from_onnx`` uses for the model."""
    from tvm_qnn.frontend.qdq import is_qdq
    from tvm_qnn.frontend.qonnx import is_qonnx

    model = load_onnx_model(path_or_model)
    return "qonnx" if is_qonnx(model) else "qdq" if is_qdq(model) else "float"


def from_onnx(path_or_model, shape_dict=None):
    """ONNX model (path or ModelProto) -> ``(mod, params)``, or ``(mod, params, recipe)`` for a
    quantized model.

    The format is recognised from the graph (:func:`onnx_format`) and logged on the
    ``tvm_qnn.frontend`` logger: a float model goes through :func:`from_float_onnx`; a QDQ model
    (onnxruntime ``quantize_static``, torch's exporter) through ``tvm_qnn.frontend.qdq.from_qdq``
    and a QONNX model (Brevitas, FINN) through ``from_qonnx``, which return the recipe that
    carries the model's own quantization as a third item. The module records the format in its
    ``tvm_qnn.import_format`` attribute.
    """
    model = load_onnx_model(path_or_model)
    kind = onnx_format(model)
    if kind == "qonnx":
        mod, params, recipe = from_qonnx(model, shape_dict)
    elif kind == "qdq":
        from tvm_qnn.frontend.qdq import from_qdq

        mod, params, recipe = from_qdq(model, shape_dict)
    else:
        mod, params = from_float_onnx(model, shape_dict)
        recipe = None
    mod = mod.with_attr("tvm_qnn.import_format", kind)
    if recipe is None:
        _LOG.info("from_onnx: float ONNX model (%d weight parameters)", len(params))
        return mod, params
    _LOG.info("from_onnx: %s model -> recipe with %d quantized layer(s), %d fp32 layer(s)",
              "QONNX" if kind == "qonnx" else "QDQ", len(recipe.layers), len(recipe.fp32_layers))
    return mod, params, recipe


def from_float_onnx(path_or_model, shape_dict=None, checked=False):
    """A float ONNX model -> ``(mod, params)`` (see module doc), no format detection.

    ``checked``: the caller (the QDQ / QONNX importer) already ran the allow-list on the user's
    graph; the float graph it hands over also holds the arithmetic its own rewrite emitted.

    Inputs with dynamic dimensions need a static shape in ``shape_dict`` (ShapeError otherwise);
    an op the Relax ONNX importer does not support raises UnsupportedOpError naming it.
    """
    from tvm.relax.frontend.onnx import from_onnx as relax_from_onnx

    from tvm_qnn.frontend.allowlist import check_onnx_graph
    from tvm_qnn.frontend.onnx_rewrite import dense_weights_out_in, fold_constant_nodes

    # constant-only chains (pads from shape ops, weight scales) -> Constants, then the allow-list on
    # what computes at run time, before the Relax importer builds anything
    model = fold_constant_nodes(_integer_initializers_to_constants(load_onnx_model(path_or_model)))
    if not checked:
        check_onnx_graph(model)
    model = dense_weights_out_in(model)  # MatMul / Gemm(transB=0) on a constant weight -> dense layers
    shapes = onnx_input_shapes(model, shape_dict)
    float_inits = [init for init in model.graph.initializer]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = relax_from_onnx(model, shape_dict=shapes, keep_params_in_input=True)
    except Exception as err:
        ops = sorted({node.op_type for node in model.graph.node})
        raise UnsupportedOpError(f"from_onnx: the Relax ONNX importer failed ({err}); graph ops: {ops}") from err
    main = mod["main"]
    num_input = int(main.attrs["num_input"])
    weight_params = list(main.params)[num_input:]
    tensors = list(main.attrs["params"]) if "params" in main.attrs else []
    if len(weight_params) != len(float_inits) or len(tensors) != len(float_inits):
        raise QnnError(f"from_onnx: {len(weight_params)} weight parameters for {len(float_inits)} initializers")
    names, values = {}, {}
    for param, init, tensor in zip(weight_params, float_inits, tensors):
        value = tensor.numpy().copy()
        if tuple(value.shape) != tuple(int(d) for d in param.ty.shape):
            raise QnnError(f"from_onnx: initializer {init.name!r} does not line up with parameter {param.name!r}")
        names[param.name] = init.name
        values[init.name] = value
    return _rename_params(mod, names, values), values


def from_qonnx(path_or_model, shape_dict=None):
    """QONNX model -> ``(mod, params, recipe)``: see ``tvm_qnn.frontend.qonnx``."""
    from tvm_qnn.frontend.qonnx import from_qonnx as _from_qonnx

    return _from_qonnx(path_or_model, shape_dict)
