"""Small IR-surgery helpers shared by the layer passes (no pass logic here).

The layer functions AnnotateQuantLayers outlines have one dataflow block; the passes rewrite them
by *prepending* bindings (the weight rebuild, the activation codes) and substituting a parameter,
and by dropping arguments at their single call site in ``main``.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.ir.expr import Constant

from tvm_qnn.errors import QnnError

from . import patterns


def single_block(func, where):
    """The one dataflow block of an outlined layer function (precondition of every layer pass)."""
    blocks = list(func.body.blocks)
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        raise QnnError(f"{where}: expected one dataflow block in the layer function, found {len(blocks)} block(s)")
    return blocks[0]


def replace_param(func, param, named_values, new_param=None):
    """``func`` with ``param`` replaced by the last of ``named_values`` (prepended bindings).

    ``named_values`` is ``[(name, expr or callable(vars_so_far) -> expr)]``; callables receive the
    dict of earlier binding vars (and ``new_param`` under the key ``"input"``). With
    ``new_param`` the parameter keeps its position (re-declared as ``new_param``); otherwise it is
    removed from the signature.
    """
    single_block(func, f"layer {func.attrs.get('qnn.layer', '?')}")
    builder = relax.BlockBuilder()
    scope = {"input": new_param} if new_param is not None else {}
    prefix = []
    var = None
    for name, value in named_values:
        expr = value if isinstance(value, tvm.ir.expr.Expr) else value(scope)  # Exprs are callable too
        normalized = builder.normalize(expr)
        var = relax.DataflowVar(name, normalized.ty)
        prefix.append(relax.VarBinding(var, normalized))
        scope[name] = var
    position = [p.same_as(param) for p in func.params].index(True)
    bound = func.bind_params({param: var})
    params = list(bound.params)
    if new_param is not None:
        params.insert(position, new_param)
    bound_block = single_block(bound, "replace_param")
    body = relax.BlockBuilder().normalize(
        relax.SeqExpr([relax.DataflowBlock(prefix + list(bound_block.bindings))], bound.body.body))
    return relax.Function(params, body, func.ret_ty, func.is_pure, func.attrs)


def call_sites(main, gvar):
    """Bindings of ``main`` whose value calls ``gvar``."""
    return [binding for block in main.body.blocks for binding in block.bindings
            if isinstance(binding.value, relax.Call) and _is_callee(binding.value.op, gvar)]


def _is_callee(op, gvar):
    # by name: passes such as FoldConstant may leave main holding another GlobalVar object of the same name
    return isinstance(op, relax.GlobalVar) and op.name_hint == gvar.name_hint


def single_call(main, gvar, layer, pass_name):
    sites = call_sites(main, gvar)
    if len(sites) != 1:
        raise QnnError(f"{pass_name}: layer {layer!r} is called {len(sites)} time(s) from main; expected once")
    return sites[0].value


@relax.expr_functor.mutator
class _CallRewriter(relax.PyExprMutator):
    def __init__(self, old_gvar, new_gvar, keep, replace):
        super().__init__()
        self.old_gvar, self.new_gvar, self.keep, self.replace = old_gvar, new_gvar, keep, replace

    def visit_call_(self, call):
        call = self.visit_expr_post_order(call)
        if _is_callee(call.op, self.old_gvar):
            args = [self.replace.get(i, a) for i, a in enumerate(call.args)]
            args = args if self.keep is None else [a for a, k in zip(args, self.keep) if k]
            return relax.Call(self.new_gvar, args, call.attrs, call.ty_args, call.span)
        return call


def swap_function(mod, gvar, func, keep=None, replace=None):
    """A new module where ``gvar``'s function is ``func`` and main's calls drop args per ``keep``.

    ``replace`` maps an argument position (before dropping) to the expression passed there instead.

    The function gets a fresh GlobalVar (same name) typed with its new signature: the input
    module's GlobalVar is never re-typed, so the input module stays valid and unchanged.
    """
    new_gvar = relax.GlobalVar(gvar.name_hint)
    relax.expr._update_type(new_gvar, func.ty)
    main_gvar = mod.get_global_var("main")
    main = _CallRewriter(gvar, new_gvar, keep, dict(replace or {})).visit_expr(mod["main"])
    functions = {gv: f for gv, f in mod.functions.items() if gv.name_hint not in (gvar.name_hint, "main")}
    functions[new_gvar] = func
    functions[main_gvar] = main
    return tvm.IRModule(functions, attrs=mod.attrs)


def layer_op(func):
    """The conv2d / matmul call of an outlined layer function and its weight expression."""
    for binding in single_block(func, "layer").bindings:
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            if value.op.name == "relax.nn.conv2d":
                return value, value.args[1]
            if value.op.name == "relax.matmul":
                return value, value.args[1]
    raise QnnError(f"layer {func.attrs.get('qnn.layer', '?')!r}: no conv2d/matmul in its function")


def weight_param(func):
    """The parameter of ``func`` holding the float weight, or None once InsertWeightLUT ran."""
    bindings = patterns.bindings_of(func)
    _, weight = layer_op(func)
    root = patterns.weight_root(_through_permute(weight, bindings), bindings, set(func.params))
    return root


def data_param(func):
    """The parameter of ``func`` that is the layer's activation input."""
    call, _ = layer_op(func)
    bindings = patterns.bindings_of(func)
    expr = call.args[0]
    for _ in range(32):
        if isinstance(expr, relax.Var) and any(expr.same_as(p) for p in func.params):
            return expr
        if isinstance(expr, relax.Var) and expr in bindings:
            value = bindings[expr]
            if isinstance(value, relax.Call) and value.args:
                expr = value.args[0]
                continue
        break
    raise QnnError(f"layer {func.attrs.get('qnn.layer', '?')!r}: cannot find the layer's input parameter")


def bias_param(func):
    """The parameter of ``func`` holding the layer's bias, or None for a layer without one."""
    data, weight = data_param(func), weight_param(func)
    others = [p for p in func.params if not p.same_as(data) and not (weight is not None and p.same_as(weight))]
    return others[0] if len(others) == 1 else None


def _through_permute(expr, bindings):
    value = bindings.get(expr, expr) if isinstance(expr, relax.Var) else expr
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.permute_dims":
        return value.args[0]
    return expr


def is_constant(expr):
    return isinstance(expr, Constant)
