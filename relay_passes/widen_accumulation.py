"""WidenQnnAccumulation: inside qnn composites, conv2d/matmul accumulate in float64.

Why: the stock lowering sums ``codes * s_a * lut`` products in float32 in one sequential order;
with fan-ins in the thousands (ResNet-18: 256 x 3 x 3 = 2304) the rounding error of that sum
reaches ~2e-5 of the output range, above the 1e-5 the numeric contract allows against the exact
integer-sum reference. Accumulating in float64 and rounding once to float32 keeps the
``cpu-reference`` target within the contract.

The operands are widened too: ``xq = codes * s_a`` is recomputed as ``float64(codes) *
float64(s_a)`` (exact: 8 x 24 bits; with a zero point ``(codes - z) * s_a`` as
``(float64(codes) - float64(z)) * float64(s_a)``, exact too) and the weight as ``float64(w)``, so the float64 sum is the
contract's ``s_a * sum_q lut[o, q] * S[o, q]`` to ~1e-16 and rounds to the same float32 as the
bit-serial kernels (which combine the exact integer sums in float64 and add the bias in float32
after the same rounding). With a float32 ``xq`` each product carries a 6e-8 rounding of its own,
the float32 results differ in the last bit now and then, and an activation sitting on a rounding
boundary of the next layer gets a different code (measured: 1 of 10,000 Fashion-MNIST test images
changed its top-1 between ``cpu`` and ``cpu-reference``). Only the *lowering* of ``cpu-reference`` applies
this pass; the quantized module itself stays float32 as the composite contract states (other backends
compute the exact integer sums instead).

Matches: ``relax.nn.conv2d`` / ``relax.matmul`` calls in functions with a ``qnn.*`` Composite
attribute (or the ``qnn.layer`` attribute once the Composite mark is stripped).
Emits: the same call on float64 operands (``xq`` rebuilt from the uint8 codes when its binding is
``multiply(astype(codes, "float32"), s_a)`` or ``multiply(subtract(astype(codes, "float32"), z), s_a)``, otherwise ``astype(xq, "float64")``) with
``out_dtype="float64"``, followed by ``astype(., "float32")``; the bias add stays float32.
Idempotent: calls that already produce float64 are left alone.

WidenFloatLayers: the same widening for the conv2d/matmul calls *outside* the qnn composites
(the fp32 layers, NICE's first conv and last dense), on float64 copies of their float32 operands
(constant weights become float64 constants), one rounding to float32, bias added after in float32.
Why: a float32 conv sums in its implementation's own order (TVM's loop order, oneDNN's blocked
order), so its last bits differ between TVM and torch; an activation of the next quantized layer
sitting on a code boundary then gets a different code and the change cascades (measured on a
random-weight densenet121 w8a8: 2 of 64 top-1 differ from the exact torch twin, 6 of 64 outputs
by more than 1e-4; with both sides widened, all 64 outputs are identical). ``quantize(...,
exact_float_layers=True)`` applies it to the quantized module, so every target computes it.
"""

from __future__ import annotations

import tvm
from tvm import relax

_WIDENED = {"relax.nn.conv2d": relax.op.nn.conv2d, "relax.matmul": relax.op.matmul}


def _is_layer_function(func):
    return func.attrs is not None and ("qnn.layer" in func.attrs or str(func.attrs.get("Composite", "")).startswith("qnn."))


def _call_of(expr, op_name):
    return isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == op_name


@relax.expr_functor.mutator
class _Widen(relax.PyExprMutator):
    """Quantized layers (default): a dequantized input is rebuilt from its uint8 codes.
    ``fp32_layers=True``: the float32 input is cast as it is (an fp32 layer reads whatever float
    feeds it) and a constant weight becomes a float64 constant (cast once, not at every run)."""

    def __init__(self, mod=None, fp32_layers=False):
        super().__init__(mod)
        self.fp32_layers = fp32_layers

    def _bound(self, expr):
        if isinstance(expr, relax.Var):
            value = self.lookup_binding(expr)
            if value is not None:
                return value
        return expr

    def _wide_activation(self, xq):
        """float64 ``codes * s_a`` from the uint8 codes when ``xq`` is the composite's dequantize."""
        value = self._bound(xq)
        if not self.fp32_layers and _call_of(value, "relax.multiply"):
            codes_f32, scale = (self._bound(arg) for arg in value.args)
            zero = None
            if _call_of(codes_f32, "relax.subtract") and isinstance(self._bound(codes_f32.args[1]), tvm.ir.expr.Constant):
                zero = self._bound(codes_f32.args[1])
                codes_f32 = self._bound(codes_f32.args[0])
            if _call_of(codes_f32, "relax.astype") and isinstance(scale, tvm.ir.expr.Constant):
                codes = codes_f32.args[0]
                if str(codes.ty.dtype) == "uint8":
                    wide = relax.op.astype(codes, "float64")
                    if zero is not None:
                        wide = relax.op.subtract(wide, relax.op.astype(zero, "float64"))
                    return relax.op.multiply(wide, relax.op.astype(scale, "float64"))
        return relax.op.astype(xq, "float64")

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        name = getattr(call.op, "name", None)
        if name not in _WIDENED or str(call.ty.dtype) != "float32":
            return call
        data = self.builder_.normalize(self._wide_activation(call.args[0]))
        weight = call.args[1]
        if self.fp32_layers and isinstance(weight, tvm.ir.expr.Constant):
            weight = relax.const(weight.value.numpy().astype("float64"), "float64")
        else:
            weight = self.builder_.normalize(relax.op.astype(weight, "float64"))
        if name == "relax.nn.conv2d":
            attrs = call.attrs
            wide = relax.op.nn.conv2d(data, weight, strides=attrs["strides"], padding=attrs["padding"],
                                      dilation=attrs["dilation"], groups=attrs["groups"],
                                      data_layout=attrs["data_layout"], kernel_layout=attrs["kernel_layout"],
                                      out_layout=attrs["out_layout"], out_dtype="float64")
        else:
            wide = relax.op.matmul(data, weight, out_dtype="float64")
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


@tvm.transform.module_pass(opt_level=0, name="WidenFloatLayers")
class WidenFloatLayers:
    """Accumulate the fp32 layers' conv2d/matmul (outside the qnn composites) in float64 (module doc)."""

    def transform_module(self, mod, ctx):
        out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function) and not _is_layer_function(func):
                out[gvar] = _Widen(fp32_layers=True).visit_expr(func)
        return out
