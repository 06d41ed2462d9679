"""AnnotateQuantLayers: outline every layer a recipe quantizes into an annotated function.

Matches (relax.dpl, through ``FuseOpsByPattern``) ``conv2d`` (any groups) and
``matmul(x, permute_dims(w))`` layers with an optional per-channel bias ``add`` and an optional
``relu`` / ``clip`` epilogue (see ``relay_passes.patterns``) whose weight is a ``main``
parameter named in ``recipe.layers``. Each match becomes a private global function
``qnn_<kind>_<layer>`` (params: input, weight[, bias]) carrying the attributes

    qnn.layer (recipe key), qnn.kind ("conv2d"|"dense"), qnn.w_bits, qnn.a_bits,
    qnn.a_clamp, qnn.a_zero_point, qnn.w_scheme

and ``main`` calls it. The body is still the float layer: InsertWeightLUT and InsertActQuant
then rewrite it, GroupQnnLayers turns it into the ``qnn.conv2d``/``qnn.dense`` composite.

Preconditions (checked, QnnError names the fault):
* the weights are ``main`` parameters named as in the recipe (``tvm_qnn.from_torch`` /
  ``from_onnx`` output, before ``BindParams``);
* the recipe covers exactly the conv2d/dense layers of the model (quantized or fp32_layers):
  RecipeError lists missing and extra names;
* a name the recipe quantizes is used by a layer op we can quantize, else UnsupportedOpError
  names the op that consumes it (e.g. ``relax.nn.conv2d_transpose``).
Postcondition: one annotated function per quantized layer; fp32 layers are untouched.
Idempotent: layers already outlined are recognised by their ``qnn.layer`` attribute.
"""

from __future__ import annotations

import tvm
import tvm.relax.utils
from tvm import relax
from tvm.ir.prim.expr import FloatImm, IntImm
from tvm.ir.expr import Constant
from tvm.relax.backend.utils import has_leaking_intermediate_variables
from tvm.relax.transform import FuseOpsByPattern, FusionPattern

from tvm_qnn.errors import QnnError, UnsupportedOpError
from tvm_qnn.recipe import load as load_recipe

from . import patterns

_PATTERN_PREFIX = "qnn_float."


def annotated_functions(mod):
    """``{layer name: (GlobalVar, Function)}`` of the functions this pass (or later ones) made."""
    found = {}
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and "qnn.layer" in func.attrs:
            found[str(func.attrs["qnn.layer"])] = (gvar, func)
    return found


def layer_attrs(layer_quant, kind):
    """The ``qnn.*`` attributes of one layer (what every later pass and backend reads)."""
    return {
        "qnn.layer": layer_quant.name,
        "qnn.kind": kind,
        "qnn.w_bits": int(layer_quant.w_bits),
        "qnn.a_bits": int(layer_quant.a_bits),
        "qnn.a_clamp": float(layer_quant.a_clamp),
        "qnn.a_zero_point": int(layer_quant.a_zero_point),
        "qnn.w_scheme": layer_quant.w_scheme,
    }


def _main(mod, pass_name):
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        raise QnnError(f"{pass_name}: the module has no 'main' function")
    return mod["main"]


def check_recipe_coverage(main, recipe, already):
    """Raise unless ``recipe`` covers exactly the model's conv2d/dense layers."""
    found = patterns.quantizable_layers(main)
    param_names = {p.name for p in main.params}
    for name in recipe.layers:
        if name in param_names and name not in found and name not in already:
            ops = patterns.consumers_of(main, name) or ["nothing (unused parameter)"]
            raise UnsupportedOpError(
                f"recipe quantizes layer {name!r}, but its weight feeds {', '.join(ops)}; only "
                f"{', '.join(patterns.KINDS)} layers (relax.nn.conv2d, relax.matmul with a "
                "permuted weight) can be quantized"
            )
    recipe.check_covers(set(found) | set(already), where="Relax module")
    return found


def _leaf_is_parameter_like(expr, bindings, params):
    """True when a bias operand is built only from parameters/constants (not from the data)."""
    for _ in range(8):
        if isinstance(expr, Constant) or (isinstance(expr, relax.Var) and expr in params):
            return True
        if isinstance(expr, relax.Var) and expr in bindings:
            expr = bindings[expr]
            continue
        if isinstance(expr, relax.Call):
            return all(_leaf_is_parameter_like(a, bindings, params) for a in expr.args
                       if isinstance(a, (relax.Var, relax.Call, Constant)))
        return False
    return False


def _bias_ok(expr, kind, out_channels):
    shape = [int(d) for d in expr.ty.shape] if hasattr(expr.ty, "shape") else None
    if shape is None:
        return False
    if kind == "conv2d":
        return shape == [1, out_channels, 1, 1]
    return shape in ([out_channels], [1, out_channels])


def _clip_ok(call):
    return all(isinstance(arg, (IntImm, FloatImm)) for arg in call.args[1:])


@tvm.transform.module_pass(opt_level=0, name="AnnotateQuantLayers")
class AnnotateQuantLayers:
    """Outline each quantized layer of ``recipe`` into an annotated function (module doc)."""

    def __init__(self, recipe):
        self.recipe = load_recipe(recipe)

    def transform_module(self, mod, ctx):
        main = _main(mod, "AnnotateQuantLayers")
        already = annotated_functions(mod)
        kinds = check_recipe_coverage(main, self.recipe, already)
        todo = {name for name in self.recipe.layers if name not in already}
        if not todo:
            return mod
        bindings = patterns.bindings_of(main)
        params = set(main.params)

        def check(kind, with_bias, epilogue):
            def accept(context):
                root = patterns.weight_root(context.annotated_expr["weight"], bindings, params)
                if root is None or root.name not in todo or kinds.get(root.name) != kind:
                    return False
                out_channels = int(root.ty.shape[0])
                if with_bias:
                    bias = context.annotated_expr["bias"]
                    if not (_bias_ok(bias, kind, out_channels) and _leaf_is_parameter_like(bias, bindings, params)):
                        return False
                if epilogue == "clip" and not _clip_ok(context.annotated_expr["out"]):
                    return False
                return not has_leaking_intermediate_variables(context)

            return accept

        fusion = [
            FusionPattern(f"{_PATTERN_PREFIX}{kind}", pattern, annotations, check(kind, with_bias, epilogue))
            for kind, with_bias, epilogue, pattern, annotations in patterns.all_layer_patterns()
        ]
        fused = FuseOpsByPattern(fusion, bind_constants=False, annotate_codegen=False)(mod)
        return _name_and_annotate(fused, self.recipe)


def _weight_param_index(func):
    """Index of the weight parameter in an outlined layer function."""
    bindings = patterns.bindings_of(func)
    for value in bindings.values():
        if isinstance(value, relax.Call):
            root, _ = patterns.weight_param_of_call(value, bindings, set(func.params))
            if root is not None:
                return list(func.params).index(root)
    raise QnnError("AnnotateQuantLayers: outlined function has no conv2d/dense weight parameter")


def _name_and_annotate(mod, recipe):
    """One ``qnn_<kind>_<layer>`` function per call site, with qnn.* attrs instead of Composite.

    FuseOpsByPattern shares one function between structurally identical layers; every quantized
    layer needs its own (its own LUT, clamp, name), so each call site gets a renamed copy.
    """
    main = mod["main"]
    main_bindings = patterns.bindings_of(main)
    main_params = set(main.params)
    outlined = {gv.name_hint: f for gv, f in mod.functions.items()
                if isinstance(f, relax.Function) and f.attrs is not None
                and str(f.attrs.get("Composite", "")).startswith(_PATTERN_PREFIX)}
    out = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint not in outlined}, attrs=mod.attrs)
    used = {gv.name_hint for gv in out.get_global_vars()}
    new_blocks = []
    for block in main.body.blocks:
        bindings = []
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, relax.GlobalVar) and value.op.name_hint in outlined:
                func = outlined[value.op.name_hint]
                kind = str(func.attrs["Composite"])[len(_PATTERN_PREFIX):]
                root = patterns.weight_root(value.args[_weight_param_index(func)], main_bindings, main_params)
                base = patterns.qnn_function_name(kind, root.name)
                new_name, suffix = base, 1
                while new_name in used:
                    new_name, suffix = f"{base}_{suffix}", suffix + 1
                used.add(new_name)
                copy = relax.utils.copy_with_new_vars(func)  # a var may be bound in one function only
                out[new_name] = (copy.without_attr("Composite").without_attr("Primitive")
                                 .with_attrs(layer_attrs(recipe.layers[root.name], kind)))
                new_gv = out.get_global_var(new_name)
                relax.expr._update_type(new_gv, out[new_gv].ty)  # a fresh GlobalVar is untyped
                value = relax.Call(new_gv, value.args, value.attrs, value.ty_args, value.span, ret_ty=value.ty)
                binding = relax.VarBinding(binding.var, value)
            bindings.append(binding)
        block_type = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) else relax.BindingBlock
        new_blocks.append(block_type(bindings))
    body = relax.BlockBuilder().normalize(relax.SeqExpr(new_blocks, main.body.body))
    out["main"] = relax.Function(main.params, body, main.ret_ty, main.is_pure, main.attrs)
    return out
