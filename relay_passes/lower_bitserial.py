"""``LowerQnnToBitserial``: replace ``qnn.conv2d`` / ``qnn.dense`` composites by bit-serial kernels.

Matches: a call to a module-level Relax function whose ``"Composite"`` attribute is
``"qnn.conv2d"`` or ``"qnn.dense"`` (COMPOSITE.md), with the layer's float input as its first
argument. Emits: ``R.call_tir(kernel, [x, act_scale, weight_planes, coef, alpha, bias,
clip_bounds], out_ty=float32 NCHW / (N, O))`` where ``kernel`` is the scheduled PrimFunc of
``codegen`` for the layer's workload (one PrimFunc per distinct workload) and the other
arguments are constants made once here (weight indices packed into bit planes).

Chained layers: when a quantized layer's output feeds exactly one other quantized layer and
nothing else, and neither has bias-free surprises in between (the call's result is the next
call's data argument directly), the first kernel emits the next layer's *packed codes* and the
second reads them (``packed_input``): consecutive quantized layers pass packed words, not
floats.

Pre: composites follow COMPOSITE.md (``relay_passes.composite.read_qnn_layer`` reads them);
static shapes. Post: no call to a qnn composite remains; the composite functions are removed;
everything else is untouched (the default Relax pipeline lowers it). Kernels are marked
``op_pattern = kOpaque`` so ``FuseOps`` keeps them whole. Optional ``database``: a MetaSchedule
database whose records replace the hand schedule of matching workloads (``codegen.build``).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from codegen.build import scheduled_primfunc
from codegen.plan import kernel_args, layer_workload
from tvm_qnn.errors import CompileError, QnnError, ShapeError

QNN_COMPOSITES = ("qnn.conv2d", "qnn.dense")


def _composite_name(func):
    attrs = getattr(func, "attrs", None)
    if attrs is None or "Composite" not in attrs:
        return None
    return str(attrs["Composite"])


def qnn_composites(mod):
    """``{GlobalVar: relax.Function}`` of the qnn composite functions of ``mod``."""
    return {gv: func for gv, func in mod.functions.items()
            if isinstance(func, relax.Function) and _composite_name(func) in QNN_COMPOSITES}


def _const(array):
    array = np.ascontiguousarray(array)
    return relax.const(array, str(array.dtype))  # relax.const would narrow float64 to float32


@relax.expr_functor.mutator
class _CompositeToKernel(relax.PyExprMutator):
    """Rewrites every call of a qnn composite into ``call_tir`` to its kernel."""

    def __init__(self, mod, composites, read_layer, target, database, word):
        super().__init__(mod)
        self.composites = composites
        self.read_layer = read_layer
        self.target, self.database, self.word = target, database, word
        self.kernels = {}  # workload key -> GlobalVar of the scheduled PrimFunc

    def _kernel(self, wl, layer_name):
        key = wl.key()
        if key not in self.kernels:
            try:
                func = scheduled_primfunc(wl, self.target, self.database)
            except QnnError:
                raise
            except Exception as err:  # noqa: BLE001 - TVM errors become CompileError naming the layer
                raise CompileError(f"layer {layer_name!r}: building its bit-serial kernel failed: {err}") from err
            self.kernels[key] = self.builder_.add_func(func.without_attr("global_symbol"), "qnn_bitserial_" + wl.kind)
        return self.kernels[key]

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.GlobalVar) or call.op not in self.composites:
            return call
        layer = self.read_layer(self.composites[call.op])
        data = call.args[0]
        data_type = getattr(data, "ty", None)
        shape = [int(d) for d in data_type.shape] if getattr(data_type, "shape", None) is not None else None
        if shape is None or tuple(shape) != tuple(layer.input_shape):
            raise ShapeError(f"layer {layer.name!r}: input shape {shape} does not match the layer's {layer.input_shape}; "
                             "the bit-serial lowering needs static shapes")
        wl = layer_workload(layer, self.word)
        args = kernel_args(layer, wl)
        out_type = relax.TensorType(wl.output_shape, "float32")
        return relax.call_tir(self._kernel(wl, layer.name), [data] + [_const(a) for a in args.as_list()], out_type)


def _default_reader():
    from relay_passes.composite import read_qnn_layer  # IMPORT's reader of the composite contract

    return read_qnn_layer


@tvm.transform.module_pass(opt_level=0, name="LowerQnnToBitserial")
class LowerQnnToBitserial:
    """Lower qnn composites to bit-serial ``call_tir`` kernels (see the module docstring).

    ``target``: the LLVM target the kernels are scheduled for (tuning records are per target);
    ``database``: optional MetaSchedule database; ``word``: packing word ("uint64" default);
    ``read_layer``: composite -> QnnLayer (default ``relay_passes.composite.read_qnn_layer``).
    """

    def __init__(self, target=None, database=None, word="uint64", read_layer=None):
        self.target, self.database, self.word = target, database, word
        self.read_layer = read_layer

    def transform_module(self, mod, _ctx):
        composites = qnn_composites(mod)
        if not composites:
            return mod
        read_layer = self.read_layer or _default_reader()
        mutator = _CompositeToKernel(mod, composites, read_layer, self.target, self.database, self.word)
        for gv, func in mod.functions.items():
            if isinstance(func, relax.Function) and gv not in composites:
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        lowered = mutator.builder_.get()
        for gv in composites:
            lowered = _without(lowered, gv)
        return lowered


def _without(mod, gv):
    funcs = {g: f for g, f in mod.functions.items() if not g.same_as(gv)}
    return tvm.IRModule(funcs, attrs=mod.attrs)
