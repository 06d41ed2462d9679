"""InsertWeightLUT: a quantized layer's float weight becomes a uint8 index + a float32 LUT.

Matches the layer functions AnnotateQuantLayers made (``qnn.layer`` attribute) whose weight is
still a parameter fed by a constant at the call site in ``main``. Emits, inside the function,

    shared LUT (one row):  w = take(lut[L], idx, axis=0, mode="clip")
    per-channel LUT:       w = reshape(gather_elements(lut[O, L], astype(reshape(idx, (O, K)), "int64"), axis=1), shape)

with ``idx = LayerQuant.indices(weight)`` (the recipe's bin edges) as a uint8 constant of the
weight's shape and ``lut`` a float32 constant; the weight argument is dropped from the call.
Stock TVM runs the result (``take``/``gather_elements`` rebuild exactly ``lut[o, idx]``).
A layer whose recipe entry has ``bias_correction`` gets it added to its constant bias argument
(RecipeError when the layer has no bias to add it to).

Preconditions: AnnotateQuantLayers ran; the weight argument is a constant (``BindParams`` and
``FoldConstant`` ran); the recipe has the layer. Violations raise QnnError naming the layer.
Idempotent: a function whose weight is already rebuilt has no weight parameter and is skipped.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_qnn.errors import QnnError, RecipeError
from tvm_qnn.recipe import load as load_recipe

from . import rewrite
from .annotate import annotated_functions


def weight_rebuild(idx, lut):
    """``[(name, expr)]`` rebuilding ``lut[o, idx]`` from constants (see module doc)."""
    idx = np.ascontiguousarray(idx, dtype=np.uint8)
    lut = np.atleast_2d(np.asarray(lut, dtype=np.float32))
    if lut.shape[0] == 1:
        return [("w", relax.op.take(relax.const(lut[0]), relax.const(idx), axis=0, mode="clip"))]
    out_channels = idx.shape[0]
    return [
        ("idx_rows", relax.op.reshape(relax.const(idx), (out_channels, -1))),
        ("idx_wide", lambda v: relax.op.astype(v["idx_rows"], "int64")),
        ("w_rows", lambda v: relax.op.gather_elements(relax.const(lut), v["idx_wide"], axis=1)),
        ("w", lambda v: relax.op.reshape(v["w_rows"], idx.shape)),
    ]


@tvm.transform.module_pass(opt_level=0, name="InsertWeightLUT")
class InsertWeightLUT:
    """Replace each quantized layer's weight by ``lut[o, idx]`` constants (module doc)."""

    def __init__(self, recipe):
        self.recipe = load_recipe(recipe)

    def transform_module(self, mod, ctx):
        out = mod
        for layer, (gvar, func) in sorted(annotated_functions(mod).items()):
            param = rewrite.weight_param(func)
            if param is None:
                continue  # already rebuilt from a LUT
            if layer not in self.recipe.layers:
                raise RecipeError(f"InsertWeightLUT: layer {layer!r} is annotated but the recipe does not quantize it")
            main = out["main"]
            call = rewrite.single_call(main, gvar, layer, "InsertWeightLUT")
            position = [p.same_as(param) for p in func.params].index(True)
            weight = call.args[position]
            if not rewrite.is_constant(weight):
                raise QnnError(
                    f"InsertWeightLUT: layer {layer!r}: the weight argument is not a constant; bind the "
                    "parameters first (relax.transform.BindParams, then FoldConstant)"
                )
            layer_quant = self.recipe.layers[layer]
            weight_value = weight.value.numpy()
            try:
                idx = layer_quant.indices(weight_value)
            except QnnError as err:
                message = str(err) if repr(layer) in str(err) else f"layer {layer!r}: {err}"
                raise type(err)(message) from None
            replace = _corrected_bias(func, call, layer, layer_quant)
            new_func = rewrite.replace_param(func, param, weight_rebuild(idx, layer_quant.lut))
            keep = [i != position for i in range(len(call.args))]
            out = rewrite.swap_function(out, gvar, new_func, keep, replace)
        return out


def _corrected_bias(func, call, layer, layer_quant):
    """``{argument position: bias + recipe bias_correction}`` for ``swap_function`` ({} without one)."""
    correction = layer_quant.bias_correction
    if correction is None:
        return {}
    param = rewrite.bias_param(func)
    if param is None:
        raise RecipeError(f"InsertWeightLUT: layer {layer!r} has a bias_correction in the recipe but no bias")
    position = [p.same_as(param) for p in func.params].index(True)
    bias = call.args[position]
    if not rewrite.is_constant(bias):
        raise QnnError(f"InsertWeightLUT: layer {layer!r}: the bias argument is not a constant; bind the "
                       "parameters first (relax.transform.BindParams, then FoldConstant)")
    value = bias.value.numpy()
    if value.size != correction.size:
        raise RecipeError(f"InsertWeightLUT: layer {layer!r}: bias_correction has {correction.size} entries; "
                          f"the bias has {value.size}")
    corrected = (value.astype(np.float64) + correction.reshape(value.shape)).astype(value.dtype)
    return {position: relax.const(corrected)}
