"""Partition quantized layers onto the VTA-style accelerator (BYOC style).

Pipeline (``partition_for_vta``), each step a ``tvm.transform`` pass:

1. ``AnnotateVtaLayers(config)`` — every ``qnn.conv2d`` / ``qnn.dense`` composite (made by the
   importer, see ``relay_passes.composite``) the core can run is re-tagged
   ``Composite = "vta_qnn.<kind>"``: the prefix is the codegen name that
   ``MergeCompositeFunctions`` reads. Grouped convs stay ``qnn.*`` and run on the CPU; a layer
   whose bits exceed the core's raises ``HwConfigError`` (a config that cannot run the recipe
   is an error, not a silent fallback).
2. ``relax.transform.MergeCompositeFunctions()`` (TVM's own) — neighbouring ``vta_qnn``
   composites become one function with ``Codegen = "vta_qnn"``: consecutive accelerator layers
   can then keep activations as codes.
3. ``CompileVtaFunctions(config, on_segment)`` — the codegen step: each ``Codegen = "vta_qnn"``
   function is compiled by ``vta_ext`` into a ``vta_ext.segment.Segment`` and its call in
   ``main`` replaced by ``R.call_dps_packed("<symbol>", args, out_sinfo)``; ``on_segment(symbol,
   segment)`` receives each one (the FPGA lowering registers the runtime function and exports it).

Why not ``relax.transform.RunCodegen`` with a Python ``relax.ext.vta_qnn``: in TVM 0.27 an
external codegen must return ``runtime.Module`` objects that the build links and exports; from
Python only C-source or DSO modules can be made (``tvm_ffi.Module`` has no Python-defined
subclass), so a simulator written in Python cannot be returned as one. Step 3 produces what
``RunCodegen`` would (an ``ExternFunc`` call per partitioned function) but resolves the symbol
to a global packed function registered by ``tvm_qnn.targets.fpga`` at compile/load time.
"""

from __future__ import annotations

import hashlib

import tvm
import tvm_ffi
from tvm import relax

from tvm_qnn import errors
from tvm_qnn.errors import CompileError, QnnError

CODEGEN = "vta_qnn"

# A Python exception raised inside a pass crosses TVM's C++ pass manager; registered classes come
# back as themselves (a HwConfigError stays a HwConfigError), unregistered ones as RuntimeError.
for _error_cls in (errors.QnnError, errors.HwConfigError, errors.UnsupportedOpError, errors.CompileError,
                   errors.ShapeError, errors.QuantizationError):
    tvm_ffi.register_error(_error_cls)
QNN_COMPOSITES = ("qnn.conv2d", "qnn.dense")


def _default_reader(func):
    from relay_passes.composite import read_qnn_layer

    return read_qnn_layer(func)


def _composite(func):
    if isinstance(func, relax.Function) and func.attrs is not None and "Composite" in func.attrs:
        return str(func.attrs["Composite"])
    return None


@tvm.transform.module_pass(opt_level=0, name="AnnotateVtaLayers")
class AnnotateVtaLayers:
    """Re-tag the composites the core runs as ``vta_qnn.<kind>`` (see the module docstring)."""

    def __init__(self, config, read_layer=None):
        self.config = config
        self.read_layer = read_layer or _default_reader

    def transform_module(self, mod, ctx):
        updates = {}
        for gvar, func in mod.functions.items():
            if _composite(func) not in QNN_COMPOSITES:
                continue
            layer = self.read_layer(func)
            if layer.groups != 1:
                continue  # grouped / depthwise conv: the CPU runs it (see ReleaseHostFunctions)
            self.config.check_layer_bits(layer.name, layer.a_bits, layer.w_bits)
            updates[gvar] = func.with_attr("Composite", f"{CODEGEN}.{layer.kind}")
        if not updates:
            return mod
        mod = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod


class _SegmentReader:
    """Reads one merged ``Codegen = vta_qnn`` function into layers, sources and outputs."""

    def __init__(self, func, read_layer):
        self.func, self.read_layer = func, read_layer

    def read(self):
        params = {p: i for i, p in enumerate(self.func.params)}
        local_funcs, node_of, layers, sources = {}, {}, [], []
        aliases = {}
        body = self.func.body
        for block in body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Function):
                    local_funcs[binding.var] = value
                elif isinstance(value, relax.Call) and value.op in local_funcs:
                    composite = local_funcs[value.op]
                    qnn_func = composite.with_attr("Composite", "qnn." + _composite(composite).split(".", 1)[1])
                    layers.append(self.read_layer(qnn_func))
                    sources.append(self._source(value.args[0], params, node_of, aliases))
                    node_of[binding.var] = len(layers) - 1
                elif isinstance(value, relax.Var):
                    aliases[binding.var] = value
                else:
                    raise CompileError(f"{CODEGEN} function holds an unexpected binding {type(value).__name__}")
        result = body.body
        fields = list(result.fields) if isinstance(result, relax.Tuple) else [result]
        outputs = [self._resolve(f, node_of, aliases) for f in fields]
        shapes = [tuple(int(d) for d in p.ty.shape) for p in self.func.params]
        return layers, sources, outputs, shapes

    @staticmethod
    def _resolve(var, node_of, aliases):
        while var in aliases:
            var = aliases[var]
        if var not in node_of:
            raise CompileError(f"{CODEGEN} function returns {var}, which no accelerator layer computes")
        return node_of[var]

    def _source(self, arg, params, node_of, aliases):
        while arg in aliases:
            arg = aliases[arg]
        if arg in params:
            return ("input", params[arg])
        if arg in node_of:
            return ("node", node_of[arg])
        raise CompileError(f"{CODEGEN} layer input {arg} is neither a function input nor a layer output")


def segment_symbol(segment):
    """A content-derived symbol so that two models never share a runtime function name."""
    digest = hashlib.sha1()
    for node in segment.nodes:
        digest.update(node.program.dram.tobytes())
        digest.update(repr(node.program.insns).encode())
    digest.update(segment.config.to_json().encode())
    return f"{CODEGEN}.{segment.name}.{digest.hexdigest()[:12]}"


@relax.expr_functor.mutator
class _CallReplacer(relax.PyExprMutator):
    def __init__(self, mod, symbols):
        super().__init__(mod)
        self.symbols = symbols  # GlobalVar -> (symbol, ret struct info)

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if isinstance(call.op, relax.GlobalVar) and call.op in self.symbols:
            symbol, ret = self.symbols[call.op]
            out_sinfo = list(ret.fields) if isinstance(ret, relax.TupleType) else ret
            return relax.call_dps_packed(relax.ExternFunc(symbol), relax.Tuple(list(call.args)), out_sinfo)
        return call


@tvm.transform.module_pass(opt_level=0, name="CompileVtaFunctions")
class CompileVtaFunctions:
    """Compile ``Codegen = vta_qnn`` functions to segments and call them through ``call_dps_packed``."""

    def __init__(self, config, on_segment, read_layer=None):
        self.config, self.on_segment = config, on_segment
        self.read_layer = read_layer or _default_reader

    def transform_module(self, mod, ctx):
        from vta_ext.segment import Segment

        symbols = {}
        for gvar, func in mod.functions.items():
            if not (isinstance(func, relax.Function) and func.attrs is not None
                    and str(func.attrs.get("Codegen", "")) == CODEGEN):
                continue
            layers, sources, outputs, shapes = _SegmentReader(func, self.read_layer).read()
            try:
                segment = Segment.build(gvar.name_hint, self.config, layers, sources, outputs, shapes)
            except QnnError:
                raise
            except Exception as err:  # a bug here must still name the function being compiled
                raise CompileError(f"compiling {gvar.name_hint} for {CODEGEN} failed: {err}") from err
            symbol = segment_symbol(segment)
            self.on_segment(symbol, segment)
            symbols[gvar] = (symbol, func.ret_ty)
        if not symbols:
            return mod
        replacer = _CallReplacer(mod, symbols)
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function) and gvar not in symbols:
                replacer.builder_.update_func(gvar, replacer.visit_expr(func))
        out = replacer.builder_.get()
        for gvar in symbols:
            out = _without(out, gvar)
        return out


def _without(mod, gvar):
    functions = {g: f for g, f in mod.functions.items() if g != gvar}
    return tvm.IRModule(functions, attrs=mod.attrs)


@tvm.transform.module_pass(opt_level=0, name="ReleaseHostFunctions")
class ReleaseHostFunctions:
    """Give the composites left for the CPU back to the host build.

    ``MergeCompositeFunctions`` also groups the remaining ``qnn.*`` composites into functions
    with ``Codegen = "qnn"`` holding local functions; no external codegen exists for them.
    ``LambdaLift`` (run next) lifts the local functions; here the ``Codegen`` mark goes so the
    host pipeline compiles them as ordinary Relax functions.
    """

    def transform_module(self, mod, ctx):
        out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
        for gvar, func in mod.functions.items():
            if isinstance(func, relax.Function) and func.attrs is not None and "Codegen" in func.attrs:
                out[gvar] = func.without_attr("Codegen")
        return out


def partition_for_vta(mod, config, on_segment, read_layer=None):
    """Run the three passes; returns ``main`` with accelerator calls and CPU ops only."""
    seq = tvm.transform.Sequential([
        AnnotateVtaLayers(config, read_layer),  # tag what the core runs (needs the importer's composites)
        relax.transform.MergeCompositeFunctions(),  # group neighbours -> Codegen=vta_qnn functions
        CompileVtaFunctions(config, on_segment, read_layer),  # vta_ext compiles, main calls packed funcs
        relax.transform.DeadCodeElimination(),  # the now-unused composite functions
        ReleaseHostFunctions(),  # merged CPU-bound composites become plain functions ...
        relax.transform.LambdaLift(),  # ... whose local composite functions are lifted to globals
    ])
    return seq(mod)
