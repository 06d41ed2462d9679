"""LowerBatchNorm: an inference BatchNorm left after FoldBatchNorm -> ``x * alpha + beta``, rounded as torch rounds it.

A BatchNorm that no conv feeds (pre-activation nets such as DenseNet: ``BN -> ReLU -> conv``)
stays a float op in front of a quantized layer, so its last bit decides activation codes. TVM's
own legalization computes ``(x - mean) / sqrt(var + eps) * gamma + beta`` per element; torch's CPU
kernel (``aten`` ``batch_norm_cpu_collect_linear_and_constant_terms`` + the vectorized apply)
computes, in float32,

    inv   = 1 / sqrt(var + eps)
    alpha = gamma * inv
    beta' = fma(-mean, alpha, beta)
    y     = fma(x, alpha, beta')

The two differ in the last bit on ~1/6 of the elements (measured on random data), and a code
that flips at one layer cascades through the network. This pass emits torch's formula, so the
compiled model and the torch fake-quant twin (``apply_recipe``) see the same float input at
every quantized layer. Each fused multiply-add is written as a float64 multiply (exact for
float32 operands) and add, rounded once to float32; that equals the fma except when the float64
sum lies exactly on a float32 rounding midpoint (never seen in the tests' data).

Preconditions: BN in inference mode (else UnsupportedOpError naming the node), float32 data,
only the normalized output (tuple item 0) is used. Runs after FoldBatchNorm, so BN fed by a
conv has already been folded into its weight. Idempotent (no BatchNorm remains).
"""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import TupleGetItemPattern, is_op, rewrite_call, wildcard

from tvm_qnn.errors import UnsupportedOpError


def _pattern():
    data, gamma, beta, mean, var = wildcard(), wildcard(), wildcard(), wildcard(), wildcard()
    bn = is_op("relax.nn.batch_norm")(data, gamma, beta, mean, var)
    return TupleGetItemPattern(bn, 0), {"bn": bn}


def _broadcast(vector, axis, shape):
    """``vector`` (one value per channel) reshaped to broadcast along ``axis`` of ``shape``."""
    target = [1] * len(shape)
    target[axis] = shape[axis]
    return relax.op.reshape(vector, target)


@relax.transform.function_pass(opt_level=0, name="LowerBatchNorm")
class LowerBatchNorm:
    """Inference BatchNorm -> per-channel affine with torch's rounding (module doc)."""

    def __init__(self):
        self.pattern, self.parts = _pattern()

    def transform_function(self, func, mod, ctx):
        if func.attrs is not None and "Composite" in func.attrs:
            return func
        parts = self.parts

        def lower(expr, matches):
            bn = matches[parts["bn"]]
            data = bn.args[0]
            where = f"relax.nn.batch_norm on {data}"
            if bool(bn.attrs["training"]):
                raise UnsupportedOpError(f"LowerBatchNorm: {where} is in training mode; export the model in eval mode")
            if str(data.ty.dtype) != "float32":
                return expr  # only float32 has a torch rounding to reproduce
            shape = list(data.ty.shape)
            axis = int(bn.attrs["axis"]) % len(shape)
            _, gamma, beta, mean, var = bn.args
            f32 = lambda v: relax.const(np.float32(v))  # noqa: E731
            inv = relax.op.divide(f32(1.0), relax.op.sqrt(relax.op.add(var, f32(float(bn.attrs["epsilon"])))))
            alpha = relax.op.multiply(gamma, inv) if bool(bn.attrs["scale"]) else inv
            alpha64 = relax.op.astype(alpha, "float64")
            product = relax.op.multiply(relax.op.astype(mean, "float64"), alpha64)
            if bool(bn.attrs["center"]):
                shift = relax.op.astype(relax.op.subtract(relax.op.astype(beta, "float64"), product), "float32")
            else:
                shift = relax.op.negative(relax.op.astype(product, "float32"))
            scaled = relax.op.multiply(relax.op.astype(data, "float64"), _broadcast(alpha64, axis, shape))
            summed = relax.op.add(scaled, _broadcast(relax.op.astype(shift, "float64"), axis, shape))
            return relax.op.astype(summed, "float32")

        return rewrite_call(self.pattern, lower, func)
