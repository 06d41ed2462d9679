"""A streaming ``LayerGraph`` from a quantized Relax module (``tvm_qnn.quantize`` output).

Walks ``main``'s bindings in order and keeps, for every Relax variable, the stream (layer) that
produces it:

* a call of a ``qnn.conv2d`` / ``qnn.dense`` composite becomes a conv2d/dense
  block read by ``relay_passes.composite.read_qnn_layer``; its ``a_bits`` is the bit width of
  the stream it reads;
* a float ``conv2d`` / ``matmul`` left in fp32 (NICE keeps the first and last layers) becomes
  a block with 8-bit weights (a streaming design has no float units; documented choice);
* ``max_pool2d``, ``avg_pool2d``, ``adaptive_avg_pool2d`` (to 1x1) become pool blocks, an ``add``
  of two streams becomes a join (a residual skip connection);
* everything else (bias ``add`` of a constant, ReLU, clip, reshape/flatten, casts, the
  quantizer ops) is a per-element step folded into the block that produces its input.

An op that changes shapes in a way the planner does not model raises ``UnsupportedOpError``
naming it.
"""

from __future__ import annotations

from tvm_qnn.errors import UnsupportedOpError

from vta_ext.streaming.graph import LayerGraph, StreamLayer

FLOAT_LAYER_W_BITS = 8
# ops folded into their producer: elementwise, quantizer steps and layout-only reshapes
PASS_THROUGH = {
    "relax.nn.relu", "relax.clip", "relax.astype", "relax.reshape", "relax.flatten", "relax.floor",
    "relax.round", "relax.multiply", "relax.divide", "relax.subtract", "relax.add", "relax.maximum",
    "relax.minimum", "relax.permute_dims", "relax.nn.dropout", "relax.squeeze", "relax.expand_dims",
}


def _shape(expr):
    return tuple(int(d) for d in expr.ty.shape)


def _is_constant(expr, constants):
    from tvm import relax
    from tvm.ir.expr import Constant

    return isinstance(expr, Constant) or (isinstance(expr, relax.Var) and expr in constants)


def graph_from_relax(mod, name="relax_model", input_bits=8):
    """The ``LayerGraph`` of ``mod["main"]`` (one image input, batch 1)."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import Constant

    from relay_passes.composite import is_qnn_composite, read_qnn_layer

    main = mod["main"]
    tensor_params = [p for p in main.params if isinstance(p.ty, relax.TensorType)]
    if len(tensor_params) != 1:
        raise UnsupportedOpError(f"model {name!r}: main has {len(tensor_params)} tensor inputs; the planner streams one image")
    image = tensor_params[0]
    shape = _shape(image)[1:]
    layers = [StreamLayer("input", "input", shape=shape if len(shape) == 3 else (shape[0], 1, 1), bits=input_bits)]
    stream_of = {image: "input"}
    reads_bits = {}
    constants = set()
    local_funcs = {}
    counter = {}

    def fresh(prefix):
        counter[prefix] = counter.get(prefix, 0) + 1
        return f"{prefix}_{counter[prefix]}"

    def source(expr, op_name):
        if isinstance(expr, relax.Var) and expr in stream_of:
            return stream_of[expr]
        raise UnsupportedOpError(f"model {name!r}: {op_name} reads {expr!s:.60} which is not an activation stream")

    for block in main.body.blocks:
        for binding in block.bindings:
            var, value = binding.var, binding.value
            if isinstance(value, relax.Function):
                local_funcs[var] = value
                continue
            if isinstance(value, Constant):
                constants.add(var)
                continue
            if isinstance(value, relax.TupleGetItem):
                stream_of[var] = source(value.tuple_value, "TupleGetItem")
                continue
            if not isinstance(value, relax.Call):
                if isinstance(value, relax.Var) and value in stream_of:
                    stream_of[var] = stream_of[value]
                continue
            callee = value.op
            func = mod[callee] if isinstance(callee, relax.GlobalVar) else local_funcs.get(callee)
            if func is not None and is_qnn_composite(func):
                layer = read_qnn_layer(func)
                src = source(value.args[0], f"layer {layer.name!r}")
                reads_bits[src] = layer.a_bits
                layers.append(StreamLayer(layer.name, layer.kind, (src,), out_channels=layer.out_channels,
                                          kernel=layer.kernel if layer.kind == "conv2d" else None,
                                          stride=layer.stride, padding=layer.padding, groups=layer.groups,
                                          w_bits=layer.w_bits))
                stream_of[var] = layer.name
                continue
            if not isinstance(callee, tvm.ir.Op):
                raise UnsupportedOpError(f"model {name!r}: call of {callee!s:.60} is neither an op nor a qnn composite")
            op_name = callee.name
            args = value.args
            if op_name == "relax.nn.conv2d" and _is_constant(args[1], constants):
                out_ch, _, kh, kw = _shape(args[1])
                attrs = value.attrs
                layer_name = fresh("conv2d")
                layers.append(StreamLayer(layer_name, "conv2d", (source(args[0], op_name),), out_channels=out_ch,
                                          kernel=(kh, kw), stride=tuple(int(v) for v in attrs.strides),
                                          padding=tuple(int(v) for v in attrs.padding), groups=int(attrs.groups),
                                          w_bits=FLOAT_LAYER_W_BITS))
                stream_of[var] = layer_name
            elif op_name == "relax.matmul" and not (isinstance(args[1], relax.Var) and args[1] in stream_of):
                layer_name = fresh("dense")
                layers.append(StreamLayer(layer_name, "dense", (source(args[0], op_name),),
                                          out_channels=_shape(value)[-1], w_bits=FLOAT_LAYER_W_BITS))
                stream_of[var] = layer_name
            elif op_name in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d"):
                attrs = value.attrs
                layer_name = fresh("maxpool" if "max" in op_name else "avgpool")
                layers.append(StreamLayer(layer_name, "maxpool" if "max" in op_name else "avgpool",
                                          (source(args[0], op_name),), kernel=tuple(int(v) for v in attrs.pool_size),
                                          stride=tuple(int(v) for v in attrs.strides),
                                          padding=tuple(int(v) for v in attrs.padding)))
                stream_of[var] = layer_name
            elif op_name == "relax.nn.adaptive_avg_pool2d":
                if _shape(value)[2:] != (1, 1):
                    raise UnsupportedOpError(f"model {name!r}: adaptive_avg_pool2d to {_shape(value)[2:]}; the planner models 1x1")
                layer_name = fresh("avgpool")
                layers.append(StreamLayer(layer_name, "avgpool", (source(args[0], op_name),)))
                stream_of[var] = layer_name
            elif op_name == "relax.add" and all(isinstance(a, relax.Var) and a in stream_of for a in args[:2]):
                first, second = stream_of[args[0]], stream_of[args[1]]
                if first == second:
                    stream_of[var] = first  # x + x: elementwise on one stream
                    continue
                layer_name = fresh("add")
                layers.append(StreamLayer(layer_name, "add", (first, second)))
                stream_of[var] = layer_name
            elif op_name in PASS_THROUGH:
                streams = [a for a in args if isinstance(a, relax.Var) and a in stream_of]
                if streams:
                    stream_of[var] = stream_of[streams[0]]
                elif all(_is_constant(a, constants) or not isinstance(a, relax.Var) for a in args):
                    constants.add(var)
            else:
                raise UnsupportedOpError(f"model {name!r}: op {op_name} is not modelled by the streaming planner")
    # a stream's bits are those its quantized reader expects (the codes it is quantized to)
    layers = [StreamLayer(**{**_fields(layer), "bits": reads_bits[layer.name]}) if layer.name in reads_bits
              else layer for layer in layers]
    return LayerGraph(name, tuple(layers))


def _fields(layer):
    from dataclasses import fields

    return {f.name: getattr(layer, f.name) for f in fields(layer)}
