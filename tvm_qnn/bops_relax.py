"""Layer shapes of a Relax module for ``tvm_qnn.bops`` (which dispatches here for IRModules).

Quantized layers are read from their ``qnn.conv2d``/``qnn.dense`` composites (bits included);
float conv2d / dense layers left in ``main`` count as fp32. A float layer keeps its weight
parameter's name when the module still has named weights (``from_torch``/``from_onnx`` output);
after ``quantize`` its weight is a constant and it is named ``fp32_<kind>_<k>`` by graph order.
"""

from __future__ import annotations

import numpy as np


def _composite_entry(layer):
    positions = int(np.prod(layer.output_shape[2:])) if layer.kind == "conv2d" else 1
    return {"name": layer.name, "kind": layer.kind, "in_channels": layer.in_channels,
            "out_channels": layer.out_channels, "kernel": tuple(layer.kernel), "groups": layer.groups,
            "out_positions": positions, "b_w": layer.w_bits, "b_a": layer.a_bits}


def _float_entry(call, kind, name):

    out_shape = [int(d) for d in call.ty.shape]
    data_shape = [int(d) for d in call.args[0].ty.shape]
    if kind == "conv2d":
        weight_shape = [int(d) for d in call.args[1].ty.shape]
        groups = int(call.attrs["groups"])
        return {"name": name, "kind": kind, "in_channels": data_shape[1], "out_channels": out_shape[1],
                "kernel": tuple(weight_shape[2:]), "groups": groups,
                "out_positions": int(np.prod(out_shape[2:])), "b_w": None, "b_a": None}
    return {"name": name, "kind": kind, "in_channels": data_shape[-1], "out_channels": out_shape[-1],
            "kernel": (1, 1), "groups": 1, "out_positions": 1, "b_w": None, "b_a": None}


def relax_layer_shapes(mod):
    """``[{name, kind, in_channels, out_channels, kernel, groups, out_positions, b_w, b_a}]`` in
    graph order (``b_w``/``b_a`` None for fp32 layers)."""
    from tvm import relax

    from relay_passes import patterns
    from relay_passes.composite import is_qnn_composite, read_qnn_layer

    main = mod["main"]
    bindings = patterns.bindings_of(main)
    params = set(main.params)
    entries, float_count = [], {"conv2d": 0, "dense": 0}
    for value in bindings.values():
        if not isinstance(value, relax.Call):
            continue
        if isinstance(value.op, relax.GlobalVar):
            func = mod[value.op]
            if is_qnn_composite(func):
                entries.append(_composite_entry(read_qnn_layer(func)))
            continue
        kind = {"relax.nn.conv2d": "conv2d", "relax.matmul": "dense"}.get(getattr(value.op, "name", None))
        if kind is None:
            continue
        root, found_kind = patterns.weight_param_of_call(value, bindings, params)
        if kind == "dense" and found_kind is None and not _is_permuted_constant(value, bindings):
            continue  # activation x activation matmul: not a layer
        name = root.name if root is not None else f"fp32_{kind}_{float_count[kind]}"
        float_count[kind] += 1
        entries.append(_float_entry(value, kind, name))
    return entries


def _is_permuted_constant(call, bindings):
    """``matmul(x, W)`` with a constant W (a bound dense layer after quantize/FoldConstant)."""
    from tvm import relax
    from tvm.ir.expr import Constant

    rhs = call.args[1]
    rhs = bindings.get(rhs, rhs) if isinstance(rhs, relax.Var) else rhs
    return isinstance(rhs, Constant) or (isinstance(rhs, relax.Call) and getattr(rhs.op, "name", "") == "relax.permute_dims")
