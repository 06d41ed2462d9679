"""FoldBatchNorm: ``batch_norm(conv2d(x, w) [+ b])[0]`` in inference mode -> ``conv2d(x, w') + b'``.

For graphs that still carry BatchNorm after import (ONNX and other importers; ``from_torch``
folds BN in torch with ``tvm_qnn.train.fold_bn.fold_batchnorm`` before export so that the torch
fake-quant model and TVM see bit-identical weights). TVM's own
``relax.transform.FoldBatchnormToConv2D`` needs constant weights and no conv bias; tvm-qnn
keeps the weights as *named parameters* until the recipe has been matched, so this pass folds
symbolically:

    scale = gamma / sqrt(var + eps)            (gamma = 1 when scale=False)
    w'    = w * reshape(scale, (O, 1, 1, 1))
    b'    = (b - mean) * scale + beta          (b = 0 without conv bias, beta = 0 when center=False)

``w'`` stays rooted at the parameter ``w`` (the recipe key); BindParams + FoldConstant later turn
it into a constant. Preconditions: NCHW/OIHW conv, BN on axis 1 in inference mode, else
UnsupportedOpError naming the node. BatchNorms not fed by a conv are left alone.
Idempotent (no BatchNorm remains after one application).
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_op, rewrite_call, wildcard

from tvm_qnn.errors import UnsupportedOpError


def _bn_pattern():
    data, weight, bias = wildcard(), wildcard(), wildcard()
    conv = is_op("relax.nn.conv2d")(data, weight)
    conv_bias = is_op("relax.add")(conv, bias) | is_op("relax.add")(bias, conv)
    gamma, beta, mean, var = wildcard(), wildcard(), wildcard(), wildcard()
    bn = is_op("relax.nn.batch_norm")(conv_bias | conv, gamma, beta, mean, var)
    return TupleGetItemPattern(bn, 0), locals()


def _channels_only(expr, out_channels):
    shape = [int(d) for d in expr.ty.shape]
    return int(np.prod(shape)) == out_channels and (shape[1:2] == [out_channels] or shape == [out_channels])


@relax.transform.function_pass(opt_level=0, name="FoldBatchNorm")
class FoldBatchNorm:
    """Fold inference BatchNorm into the preceding conv2d's weight and bias (module doc)."""

    def __init__(self):
        self.pattern, self.parts = _bn_pattern()

    def transform_function(self, func, mod, ctx):
        if func.attrs is not None and "Composite" in func.attrs:
            return func
        parts = self.parts

        def fold(expr, matches):
            bn = matches[parts["bn"]]
            conv = matches[parts["conv"]]
            where = f"relax.nn.batch_norm after conv2d {conv.args[0]}"
            if bool(bn.attrs["training"]):
                raise UnsupportedOpError(f"FoldBatchNorm: {where} is in training mode; export the model in eval mode")
            if int(bn.attrs["axis"]) != 1 or str(conv.attrs["kernel_layout"]) != "OIHW" \
                    or str(conv.attrs["data_layout"]) != "NCHW":
                raise UnsupportedOpError(f"FoldBatchNorm: {where}: only NCHW/OIHW conv with BN on axis 1 is folded")
            out_channels = int(conv.args[1].ty.shape[0])
            eps = relax.const(np.float32(float(bn.attrs["epsilon"])))
            inv_std = relax.op.divide(relax.const(np.float32(1.0)), relax.op.sqrt(relax.op.add(matches[parts["var"]], eps)))
            scale = relax.op.multiply(matches[parts["gamma"]], inv_std) if bool(bn.attrs["scale"]) else inv_std
            weight = relax.op.multiply(conv.args[1], relax.op.reshape(scale, (out_channels, 1, 1, 1)))
            mean = matches[parts["mean"]]
            if parts["bias"] in matches:
                bias = matches[parts["bias"]]
                if not _channels_only(bias, out_channels):
                    return expr  # the add is not a per-channel bias (e.g. a residual): leave it
                centered = relax.op.subtract(relax.op.reshape(bias, (out_channels,)), mean)
            else:
                centered = relax.op.negative(mean)
            shift = relax.op.multiply(centered, scale)
            if bool(bn.attrs["center"]):
                shift = relax.op.add(shift, matches[parts["beta"]])
            new_conv = relax.Call(conv.op, [conv.args[0], weight], conv.attrs)
            return relax.op.add(new_conv, relax.op.reshape(shift, (1, out_channels, 1, 1)))

        return rewrite_call(self.pattern, fold, func)
