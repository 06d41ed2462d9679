"""Small Relax modules with qnn composites built by hand in the form ``relay_passes.group_qnn_layers`` makes (tests of the lowering).

The composite bodies follow the contract (codes, dequantized codes, LUT weight, conv/matmul, bias,
epilogue); the layer data comes from ``QnnLayer`` objects, and ``read_layer`` maps a composite back
to its layer (standing in for ``relay_passes.composite.read_qnn_layer`` in these unit tests).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from tvm_qnn import reference


def _composite(layer):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(layer.input_shape, "float32"))
    s_a = relax.const(np.float32(layer.s_a))
    top = float((1 << layer.a_bits) - 1)
    weight = reference.dequant_weight(layer.weight_idx, layer.lut).astype(np.float32)
    with bb.function("composite", [x]):
        with bb.dataflow():
            q = bb.emit(relax.op.floor(relax.op.add(relax.op.divide(x, s_a), relax.const(np.float32(0.5)))))
            codes = bb.emit(relax.op.astype(relax.op.clip(q, 0.0, top), "uint8"))
            xq = bb.emit(relax.op.multiply(relax.op.astype(codes, "float32"), s_a))
            if layer.kind == "conv2d":
                y = bb.emit(relax.op.nn.conv2d(xq, relax.const(weight), strides=layer.stride, padding=layer.padding,
                                               dilation=layer.dilation, groups=layer.groups))
                bias_shape = (1, -1, 1, 1)
            else:
                y = bb.emit(relax.op.matmul(xq, relax.op.permute_dims(relax.const(weight))))
                bias_shape = (1, -1)
            if layer.bias is not None:
                y = bb.emit(relax.op.add(y, relax.const(layer.bias.reshape(bias_shape))))
            if layer.out_min is not None:
                hi = layer.out_max if layer.out_max is not None else 3.0e38
                y = bb.emit(relax.op.clip(y, float(layer.out_min), float(hi)))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    func = bb.get()["composite"]
    func = func.without_attr("global_symbol")
    return func.with_attrs({"Composite": f"qnn.{layer.kind}", "qnn.layer": layer.name})


def chain_module(layers, tail_add=True):
    """``main(x)``: the layers one after another (plus a float add at the end), each a composite call."""
    bb = relax.BlockBuilder()
    gvs = [bb.add_func(_composite(layer), f"qnn_{i}") for i, layer in enumerate(layers)]
    x = relax.Var("x", relax.TensorType(layers[0].input_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = x
            for gv, layer in zip(gvs, layers):
                out_shape = layer.output_shape
                h = bb.emit(relax.Call(gv, [h], ty_args=[relax.TensorType(out_shape, "float32")]))
            if tail_add:
                h = bb.emit(relax.op.add(h, relax.const(np.float32(1.0))))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    mod = bb.get()
    by_name = {layer.name: layer for layer in layers}
    assert len(by_name) == len(layers), "layer names must be unique: the lowering looks layers up by name"
    return mod, lambda func: by_name[str(func.attrs["qnn.layer"])]
