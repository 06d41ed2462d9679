"""WidenQnnAccumulation: inside qnn composites, conv2d/matmul accumulate in float64.

Why: the stock lowering sums ``codes * s_a * lut`` products in float32 in one sequential order;
with fan-ins in the thousands (ResNet-18: 256 x 3 x 3 = 2304) the rounding error of that sum
reaches ~2e-5 of the output range, above the 1e-5 the numeric contract allows against the exact
integer-sum reference. Accumulating in float64 and rounding once to float32 keeps the
``cpu-reference`` target within the contract. Only the *lowering* of ``cpu-reference`` applies
this pass; the quantized module itself stays float32 as COMPOSITE.md states (other backends
compute the exact integer sums instead).

Matches: ``relax.nn.conv2d`` / ``relax.matmul`` calls in functions with a ``qnn.*`` Composite
attribute (or the ``qnn.layer`` attribute once the Composite mark is stripped).
Emits: the same call with ``out_dtype="float64"`` followed by ``astype(., "float32")``.
Idempotent: calls that already produce float64 are left alone.
"""

from __future__ import annotations

import tvm
from tvm import relax

_WIDENED = {"relax.nn.conv2d": relax.op.nn.conv2d, "relax.matmul": relax.op.matmul}


def _is_layer_function(func):
    return func.attrs is not None and ("qnn.layer" in func.attrs or str(func.attrs.get("Composite", "")).startswith("qnn."))


@relax.expr_functor.mutator
class _Widen(relax.PyExprMutator):
    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        name = getattr(call.op, "name", None)
        if name not in _WIDENED or str(call.ty.dtype) != "float32":
            return call
        if name == "relax.nn.conv2d":
            attrs = call.attrs
            wide = relax.op.nn.conv2d(call.args[0], call.args[1], strides=attrs["strides"], padding=attrs["padding"],
                                      dilation=attrs["dilation"], groups=attrs["groups"],
                                      data_layout=attrs["data_layout"], kernel_layout=attrs["kernel_layout"],
                                      out_layout=attrs["out_layout"], out_dtype="float64")
        else:
            wide = relax.op.matmul(call.args[0], call.args[1], out_dtype="float64")
        return relax.op.astype(self.builder_.normalize(wide), "float32")


@tvm.transform.module_pass(opt_level=0, name="WidenQnnAccumulation")
class WidenQnnAccumulation:
    """Accumulate quantized layers' conv2d/matmul in float64 (module doc)."""

    def transform_module(self, mod, ctx):
        out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function) and _is_layer_function(func):
                out[gvar] = _Widen().visit_expr(func)
        return out
