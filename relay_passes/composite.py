"""Read a ``qnn.conv2d`` / ``qnn.dense`` composite function into a ``tvm_qnn.layer.QnnLayer``.

The composite (made by ``relay_passes.group_qnn_layers.GroupQnnLayers``, whose docstring gives its form) has one parameter, the float
activation input, and constants for the weight indices, the LUT and the bias; its attributes
carry the recipe key, bits, clamp, zero point and scheme. Backends call ``read_qnn_layer`` and never look at
the IR themselves, so the composite's exact op sequence can evolve in one place.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant
from tvm.ir.prim.expr import FloatImm, IntImm

from tvm_qnn.errors import QnnError
from tvm_qnn.layer import QnnLayer

from . import patterns

COMPOSITE_NAMES = ("qnn.conv2d", "qnn.dense")


def is_qnn_composite(func):
    """True for a Relax function with ``"Composite"`` = ``"qnn.conv2d"`` or ``"qnn.dense"``."""
    return (isinstance(func, relax.Function) and func.attrs is not None
            and str(func.attrs.get("Composite", "")) in COMPOSITE_NAMES)


def qnn_composites(mod):
    """``{GlobalVar: Function}`` of every qnn composite of an IRModule."""
    return {gv: f for gv, f in mod.functions.items() if is_qnn_composite(f)}


def _op_name(value):
    return value.op.name if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) else None


def _constant_value(expr, bindings):
    """numpy value of a constant, looking through vars and reshapes of constants."""
    for _ in range(8):
        if isinstance(expr, Constant):
            return expr.value.numpy()
        if isinstance(expr, relax.Var) and expr in bindings:
            expr = bindings[expr]
            continue
        if _op_name(expr) in ("relax.reshape", "relax.astype"):
            inner = _constant_value(expr.args[0], bindings)
            if inner is None:
                return None
            shape = [int(d) for d in expr.ty.shape]
            return inner.reshape(shape).astype(str(expr.ty.dtype))
        return None
    return None


def _prim(value):
    if isinstance(value, (IntImm, FloatImm)):
        return float(value.value)
    return float(value)


def read_qnn_layer(func):
    """Plain numpy data of one qnn composite (``QnnLayer``); QnnError when it is malformed."""
    if not is_qnn_composite(func):
        raise QnnError("read_qnn_layer: the function is not a qnn.conv2d/qnn.dense composite")
    attrs = func.attrs
    name = str(attrs["qnn.layer"])
    kind = str(attrs["Composite"]).split(".", 1)[1]
    bindings = patterns.bindings_of(func)
    idx = lut = bias = None
    layer_call = None
    out_min = out_max = None
    for var, value in bindings.items():
        op = _op_name(value)
        if op == "relax.take" and str(value.ty.dtype) == "float32":
            lut = np.atleast_2d(_constant_value(value.args[0], bindings))
            idx = _constant_value(value.args[1], bindings)
        elif op == "relax.gather_elements":
            lut = _constant_value(value.args[0], bindings)
            idx_source = value.args[1]
            while isinstance(idx_source, relax.Var) and idx_source in bindings:
                idx_source = bindings[idx_source]
                if _op_name(idx_source) in ("relax.astype", "relax.reshape"):
                    idx_source = idx_source.args[0]
            if isinstance(idx_source, Constant):
                idx = idx_source.value.numpy()
        elif op in ("relax.nn.conv2d", "relax.matmul"):
            layer_call = value
        elif op == "relax.add" and layer_call is not None and bias is None:
            for arg in value.args:
                candidate = _constant_value(arg, bindings)
                if candidate is not None:
                    bias = candidate.reshape(-1).astype(np.float32)
        elif op == "relax.nn.relu" and layer_call is not None:
            out_min = 0.0
        elif op == "relax.clip" and layer_call is not None:
            out_min, out_max = _prim(value.args[1]), _prim(value.args[2])
    if idx is None or lut is None or layer_call is None:
        raise QnnError(f"read_qnn_layer: composite of layer {name!r} lacks the LUT weight or the layer op")
    input_shape = tuple(int(d) for d in func.params[0].ty.shape)
    options = {}
    if kind == "conv2d":
        conv_attrs = layer_call.attrs
        options = {
            "stride": tuple(int(v) for v in conv_attrs["strides"]),
            "padding": tuple(int(v) for v in conv_attrs["padding"]),
            "dilation": tuple(int(v) for v in conv_attrs["dilation"]),
            "groups": int(conv_attrs["groups"]),
        }
    return QnnLayer(
        name=name, kind=kind, weight_idx=np.asarray(idx, dtype=np.uint8), lut=lut, bias=bias,
        w_bits=int(attrs["qnn.w_bits"]), w_scheme=str(attrs["qnn.w_scheme"]), a_bits=int(attrs["qnn.a_bits"]),
        a_clamp=float(attrs["qnn.a_clamp"]), input_shape=input_shape, out_min=out_min, out_max=out_max,
        a_zero_point=int(attrs["qnn.a_zero_point"]) if "qnn.a_zero_point" in attrs else 0, **options,
    )


def read_qnn_layers(mod):
    """``{layer name: QnnLayer}`` of every composite in ``mod`` (in name order)."""
    layers = {}
    for _, func in sorted(qnn_composites(mod).items(), key=lambda item: item[0].name_hint):
        layer = read_qnn_layer(func)
        layers[layer.name] = layer
    return layers
