"""``tvm_qnn.quantize(mod, params, recipe)``: float Relax module -> quantized Relax module.

The result runs on stock TVM (target ``cpu-reference``) and holds one ``qnn.conv2d`` /
``qnn.dense`` composite per quantized layer for the backends to replace.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import QnnError, RecipeError, ShapeError
from .recipe import load as load_recipe

RECIPE_ATTR = "tvm_qnn.recipe"  # IRModule attribute: the recipe (JSON text) a module was quantized with
PARAM_COUNT_ATTR = "tvm_qnn.param_count"  # IRModule attribute: float weight elements of the imported model


def parameter_count(values):
    """Number of weight elements in ``params`` (what ``bench --baseline`` compares with torch)."""
    return int(sum(int(np.size(value)) for value in values.values()))


def quantization_pipeline(recipe, params):
    """The ``tvm.transform.Sequential`` of ``quantize``; one note per step on why and what first."""
    import tvm
    from tvm import relax

    import relay_passes

    return tvm.transform.Sequential(
        [
            # BN left by the importer (ONNX, ...) goes into the conv weight/bias *expressions*;
            # first, because the layer patterns expect conv [+ bias] and names must still resolve.
            relay_passes.FoldBatchNorm(),
            # BN that no conv feeds (pre-activation nets) -> affine rounded as torch rounds it, so the
            # quantized layers after it see the float input the torch twin sees.
            relay_passes.LowerBatchNorm(),
            # Match conv2d/dense layers, check the recipe covers exactly them, outline each quantized
            # one with its qnn.* attributes. Needs the weights as *named* parameters: before BindParams.
            relay_passes.AnnotateQuantLayers(recipe),
            # Weights become constants (InsertWeightLUT reads their values) ...
            relax.transform.BindParams("main", params),
            # ... and BN-folded weight/bias expressions become plain constants.
            relax.transform.FoldConstant(),
            # Float weights -> uint8 indices + LUT (recipe bin edges); needs constant weights.
            relay_passes.InsertWeightLUT(recipe),
            # Layer inputs -> activation codes * s_a; independent of the weights, needs the annotation.
            relay_passes.InsertActQuant(),
            # Each rewritten layer -> self-contained qnn.conv2d/qnn.dense composite; must be last.
            relay_passes.GroupQnnLayers(),
        ],
        name="tvm_qnn.quantize",
    )


def check_params(mod, params):
    """Every weight parameter of ``main`` has a float32 value of the declared shape."""
    main = mod["main"]
    num_input = int(main.attrs["num_input"]) if main.attrs is not None and "num_input" in main.attrs else 1
    values = {}
    for param in list(main.params)[num_input:]:
        if param.name not in params:
            raise RecipeError(f"params has no value for the module parameter {param.name!r}")
        value = np.asarray(params[param.name])
        expected = tuple(int(d) for d in param.ty.shape)
        if value.shape != expected:
            raise ShapeError(f"params[{param.name!r}] has shape {value.shape}; the module expects {expected}")
        values[param.name] = value.astype(str(param.ty.dtype), copy=False)
    return values


def check_recipe_shapes(recipe, values):
    """RecipeError at the first layer whose recorded weight shape differs from the model's."""
    for name, layer in recipe.layers.items():
        if name in values:
            layer.check_weight_shape(np.shape(values[name]))


def quantize(mod, params, recipe, exact_float_layers=False):
    """Quantize a float Relax module (``from_torch``/``from_onnx`` output) with ``recipe``.

    ``params`` maps the weight parameter names of ``main`` to numpy arrays; ``recipe`` is a
    Recipe, a dict or a path. Layers in ``recipe.fp32_layers`` stay float. Raises RecipeError when
    the recipe does not cover exactly the model's conv/dense layers, UnsupportedOpError when it
    names a weight used by an op that cannot be quantized. The input module is not modified.

    ``exact_float_layers=True``: the fp32 layers' conv2d/matmul accumulate in float64 and round
    once (``relay_passes.WidenFloatLayers``), as ``train.fakequant.apply_recipe(exact=True)``
    does, so every target's output can be compared with that torch twin bit for bit; without it
    they sum in float32 in the target's own order (faster; the first conv in float64 costs about
    twice its float32 time), and a code boundary downstream may resolve differently than in torch.
    """
    import tvm

    import relay_passes

    from .checks import ArgumentError, check_module

    check_module(mod, "quantize")
    if recipe is None:
        raise RecipeError("quantize: recipe is None; pass a Recipe, a recipe dict or a recipe JSON path "
                          "(tvm_qnn.calibrate or `tvm-qnn train` makes one)")
    recipe = load_recipe(recipe)
    if params is not None and not hasattr(params, "items"):
        raise ArgumentError(f"quantize: params must be a dict of weight name -> array, got {type(params).__name__}")
    values = check_params(mod, dict(params or {}))
    check_recipe_shapes(recipe, values)
    try:
        with tvm.transform.PassContext(opt_level=3):
            qmod = quantization_pipeline(recipe, values)(mod)
            if exact_float_layers:
                qmod = relay_passes.WidenFloatLayers()(qmod)
        # the recipe travels with the module so compile(qmod).export() can write recipe.json
        qmod = qmod.with_attr(RECIPE_ATTR, json.dumps(recipe.to_json()))
        return qmod.with_attr(PARAM_COUNT_ATTR, str(parameter_count(values)))
    except QnnError:
        raise
    except Exception as err:  # a TVM error inside a pass: name the step
        raise QnnError(f"quantize: a Relax pass failed: {err}") from err
