"""ExposeLayerInputs: ``main`` also returns each conv2d/dense layer's input (and weight).

For calibration (``tvm_qnn.calibrate``): running the float module built from this pass yields
the activation that each quantized layer would see, so its clamp can be chosen from statistics,
and the effective weight (after FoldBatchNorm, if the graph carried BN), so the LUT is derived
from the weight the layer really uses.

Emits: ``main`` returns ``(original_output, input_1 .. input_n, weight_1 .. weight_n)`` for the
layers ``names`` (default: every conv2d/dense layer with a named weight, in graph order); the
order is recorded in the function attribute ``"qnn.exposed_layers"``.
Preconditions: weights are named ``main`` parameters (before BindParams); every named layer exists
(RecipeError lists the unknown names); main ends in one dataflow block.
Not idempotent by design (exposing twice would nest the tuple): it refuses a module it already ran on.
"""

from __future__ import annotations

import tvm
from tvm import relax

from tvm_qnn.errors import QnnError, RecipeError

from . import patterns


def layer_operands(main, names):
    """``{name: (input expr, weight expr)}`` of the layers ``names`` in ``main``."""
    bindings = patterns.bindings_of(main)
    params = set(main.params)
    found = {}
    for value in bindings.values():
        if not isinstance(value, relax.Call):
            continue
        root, kind = patterns.weight_param_of_call(value, bindings, params)
        if root is None or root.name not in names or root.name in found:
            continue
        weight = value.args[1]
        if kind == "dense":  # matmul(x, permute_dims(w)): expose w itself, (out, in)
            rhs = bindings.get(weight, weight) if isinstance(weight, relax.Var) else weight
            weight = rhs.args[0]
        found[root.name] = (value.args[0], weight)
    return found


@tvm.transform.module_pass(opt_level=0, name="ExposeLayerInputs")
class ExposeLayerInputs:
    """Make ``main`` return each layer's input and weight too (module doc)."""

    def __init__(self, names=None):
        self.names = None if names is None else list(names)

    def transform_module(self, mod, ctx):
        main = mod["main"]
        if main.attrs is not None and "qnn.exposed_layers" in main.attrs:
            raise QnnError("ExposeLayerInputs: main already exposes its layer inputs")
        available = list(patterns.quantizable_layers(main))
        names = available if self.names is None else self.names
        unknown = sorted(set(names) - set(available))
        if unknown:
            raise RecipeError(f"ExposeLayerInputs: layer(s) {unknown} are not conv2d/dense layers of the module; "
                              f"known: {available}")
        operands = layer_operands(main, set(names))
        blocks = list(main.body.blocks)
        if not blocks or not isinstance(blocks[-1], relax.DataflowBlock):
            raise QnnError("ExposeLayerInputs: main must end in a dataflow block")
        extra_bindings, outputs = [], []
        for role, position in (("input", 0), ("weight", 1)):
            for name in names:
                expr = operands[name][position]
                var = relax.Var(f"{role}_{len(outputs)}", expr.ty)
                extra_bindings.append(relax.VarBinding(var, expr))
                outputs.append(var)
        last = relax.DataflowBlock(list(blocks[-1].bindings) + extra_bindings)
        body = relax.BlockBuilder().normalize(relax.SeqExpr(blocks[:-1] + [last], relax.Tuple([main.body.body] + outputs)))
        ret_ty = relax.TupleType([main.body.body.ty] + [var.ty for var in outputs])
        func = relax.Function(main.params, body, ret_ty, main.is_pure, main.attrs)
        func = func.with_attr("qnn.exposed_layers", list(names))
        out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
        out["main"] = func
        return out
