"""relax.dpl patterns of the layers tvm-qnn quantizes, and the helpers that resolve their weights.

A *layer* is ``conv2d(x, w)`` (NCHW/OIHW, any groups: depthwise and grouped convs included) or
``matmul(x, permute_dims(w))`` (torch's ``Linear`` and ONNX ``Gemm(transB=1)`` as the Relax
importers emit them), optionally followed by a per-output-channel bias ``add`` and an epilogue
``relu`` / ``clip(lo, hi)`` (ReLU6 is ``clip(0, 6)``). A layer's name is the name of the ``main``
parameter its weight comes from (the recipe key, e.g. ``layer1.0.conv1.weight``), looking through
the elementwise ops FoldBatchNorm puts in front of a weight.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

KINDS = ("conv2d", "dense")
EPILOGUES = ("relu", "clip", None)
# ops a weight may pass through between its parameter and the layer (BN folding, casts)
_WEIGHT_PASS_THROUGH = ("relax.multiply", "relax.astype", "relax.divide")


def core_pattern(kind):
    """``(core, data, weight)`` patterns of the bare layer op."""
    data, weight = wildcard(), wildcard()
    if kind == "conv2d":
        return is_op("relax.nn.conv2d")(data, weight), data, weight
    if kind == "dense":
        return is_op("relax.matmul")(data, is_op("relax.permute_dims")(weight)), data, weight
    raise ValueError(f"layer kind {kind!r}; expected one of {list(KINDS)}")


def layer_pattern(kind, with_bias, epilogue):
    """One layer pattern and its annotations (``data``, ``weight``, ``core``, ``bias``, ``out``)."""
    core, data, weight = core_pattern(kind)
    annotations = {"data": data, "weight": weight, "core": core}
    out = core
    if with_bias:
        bias = is_op("relax.reshape")(wildcard(), wildcard()) | wildcard()
        out = is_op("relax.add")(core, bias) | is_op("relax.add")(bias, core)
        annotations["bias"] = bias
    if epilogue == "relu":
        out = is_op("relax.nn.relu")(out)
    elif epilogue == "clip":
        out = is_op("relax.clip")(out, wildcard(), wildcard())
    elif epilogue is not None:
        raise ValueError(f"epilogue {epilogue!r}; expected one of {list(EPILOGUES)}")
    annotations["out"] = out
    return out, annotations


def all_layer_patterns():
    """``[(kind, with_bias, epilogue, pattern, annotations)]`` longest match first."""
    return [
        (kind, with_bias, epilogue) + layer_pattern(kind, with_bias, epilogue)
        for kind in KINDS for with_bias in (True, False) for epilogue in EPILOGUES
    ]


# --------------------------------------------------------------------------- weights
def bindings_of(func):
    """``{var: value}`` of every binding in ``func``'s body."""
    table = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            table[binding.var] = binding.value
    return table


def weight_root(expr, bindings, params):
    """The ``main`` parameter a weight expression comes from, or None.

    Follows dataflow vars to their values and the first argument of the elementwise ops that
    BN folding / casts put in front of a weight; ``params`` is the set of parameter vars.
    """
    for _ in range(64):  # a chain this long is not a weight
        if isinstance(expr, relax.Var) and expr in params:
            return expr
        if isinstance(expr, relax.Var) and expr in bindings:
            expr = bindings[expr]
            continue
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name in _WEIGHT_PASS_THROUGH:
            expr = expr.args[0]
            continue
        return None
    return None


def weight_param_of_call(call, bindings, params):
    """Weight root parameter of a conv2d / dense ``call`` (or None), and the layer kind."""
    name = call.op.name if isinstance(call.op, tvm.ir.Op) else None
    if name == "relax.nn.conv2d":
        return weight_root(call.args[1], bindings, params), "conv2d"
    if name == "relax.matmul":
        rhs = call.args[1]
        rhs = bindings.get(rhs, rhs) if isinstance(rhs, relax.Var) else rhs
        if isinstance(rhs, relax.Call) and isinstance(rhs.op, tvm.ir.Op) and rhs.op.name == "relax.permute_dims":
            return weight_root(rhs.args[0], bindings, params), "dense"
    return None, None


def quantizable_layers(func):
    """``{weight name: kind}`` of every conv2d / dense layer of ``func`` with a named weight."""
    params = set(func.params)
    bindings = bindings_of(func)
    found = {}
    for value in bindings.values():
        if isinstance(value, relax.Call):
            root, kind = weight_param_of_call(value, bindings, params)
            if root is not None:
                found.setdefault(root.name, kind)
    return found


def consumers_of(func, name):
    """Names of the ops that use parameter ``name`` (directly or through pass-through ops)."""
    params = {p for p in func.params if p.name == name}
    bindings = bindings_of(func)
    ops = []
    for value in bindings.values():
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            if value.op.name in _WEIGHT_PASS_THROUGH:
                continue
            if any(weight_root(arg, bindings, params) is not None for arg in value.args
                   if isinstance(arg, (relax.Var, relax.Call))):
                ops.append(value.op.name)
    return sorted(set(ops))


def qnn_function_name(kind, layer_name):
    """Global name of a layer's function: ``qnn_conv2d_layer1_0_conv1``."""
    stem = layer_name[: -len(".weight")] if layer_name.endswith(".weight") else layer_name
    clean = "".join(ch if ch.isalnum() else "_" for ch in stem)
    return f"qnn_{kind}_{clean}"
