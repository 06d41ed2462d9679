"""``LowerQnnToBitserial``: replace ``qnn.conv2d`` / ``qnn.dense`` composites by bit-serial kernels.

Matches: a call to a module-level Relax function whose ``"Composite"`` attribute is
``"qnn.conv2d"`` or ``"qnn.dense"`` (``relay_passes.group_qnn_layers``), with the layer's float input as its first
argument. Emits: ``R.call_tir(kernel, [x, act_scale, weight_planes, coef, alpha, (zero_sums,) bias,
clip_bounds], out_ty=float32 NCHW / (N, O))`` (``zero_sums`` for a layer with a zero point) where ``kernel`` is the scheduled PrimFunc of
``codegen`` for the layer's workload (one PrimFunc per distinct workload) and the other
arguments are constants made once here (weight indices packed into bit planes).

Per layer the kernel is chosen by ``codegen.kernel_choice.choose_float_kernel`` (or pinned by the
recipe's ``kernel`` field, ``pins``): the bit-serial popcount kernel above, for a uniform-LUT
layer with many bit-plane products the float-contract int8 kernel (``codegen.vnni_int8``,
``R.call_tir(kernel, [x, act_scale, weight_s8, alpha, beta, weight_zero, bias, clip_bounds])``,
``dot_16x4`` VNNI where the target has it), for a depthwise layer the float-contract depthwise
kernel (``codegen.depthwise_int``, ``[x, act_scale, weight, bias, clip_bounds]``).
``layer_kernels`` records the choice per layer.

Chained layers: when a quantized conv's result is used once, directly as the data argument
of another quantized conv (no op in between), the first kernel emits the next layer's *packed codes* and the
second reads them (``packed_input``): consecutive quantized layers pass packed words, not
floats (``pass_packed=False`` turns this off). Only conv2d -> conv2d chains of two popcount
kernels are fused this way.

Residual blocks: when a quantized conv's float result is used once, by ``R.add`` with a float32
tensor of the same shape (a ResNet block's shortcut), the add moves into the conv kernel's epilogue,
and so does an ``R.nn.relu`` that is the add result's only use
(``ConvWorkload.residual``; popcount and int8 kernels, not depthwise, not a packed-chain producer,
``fuse_residual=False`` turns it off): the same float32 add and ReLU, one pass over the output
fewer. Popcount layers stay unfused when a tuning ``database`` is given (its records are of the
unfused workload).

NHWC chains: float-contract int8 convs (of at least ``NHWC_MIN_CHANNELS`` input channels) that pass
each other their results run as NHWC kernels (``Int8Kernel.layout``) when :func:`nhwc_convs` finds
their component worth it: a conv reads another NHWC kernel's result directly, an NCHW tensor from
outside the chain is transposed once (``R.permute_dims``) however many kernels read it, and each NHWC
result keeps an NCHW transposition for the float ops that read it, removed as dead code when none
does (``nhwc=False`` keeps every kernel NCHW). The float ops that make such an input (an fp32 stem:
conv with a constant weight, bias, activation, pool) are redone in NHWC where nothing else reads
their results, so the transposition moves to the image (``_CompositeToKernel._float_in_nhwc``).

Pre: composites as ``GroupQnnLayers`` makes them (``relay_passes.composite.read_qnn_layer`` reads them);
static shapes. Post: no call to a qnn composite remains; the composite functions are removed;
everything else is untouched (the default Relax pipeline lowers it). Kernels are marked
``op_pattern = kOpaque`` so ``FuseOps`` keeps them whole. Optional ``database``: a MetaSchedule
database whose records replace the hand schedule of matching workloads (``codegen.build``).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.expr import Constant

from codegen.build import scheduled_primfunc
from codegen.depthwise_int import DepthwiseKernel, float_depthwise_kernel_args, scheduled_depthwise_primfunc
from codegen.kernel_choice import choose_float_kernel, int8_kind
from codegen.plan import kernel_args, layer_workload
from codegen.vnni_int8 import Int8Kernel, float_int8_kernel_args, with_avx2_sums
from codegen.vnni_schedule import scheduled_int8_primfunc, target_int8_instructions
from tvm_qnn.errors import CompileError, QnnError, ShapeError

QNN_COMPOSITES = ("qnn.conv2d", "qnn.dense")
# float-contract int8 convs of at least this many channels per group read and write NHWC (an RGB stem
# keeps NCHW: it quantizes its few channels per image row)
NHWC_MIN_CHANNELS = 16
NCHW_TO_NHWC, NHWC_TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
# ops applied per element of their first argument (the rest scalars): redone as they are on an NHWC tensor
ELEMENTWISE_UNARY = ("relax.nn.relu", "relax.clip", "relax.nn.silu", "relax.sigmoid", "relax.tanh", "relax.nn.gelu")


def _composite_name(func):
    attrs = getattr(func, "attrs", None)
    if attrs is None or "Composite" not in attrs:
        return None
    return str(attrs["Composite"])


def qnn_composites(mod):
    """``{GlobalVar: relax.Function}`` of the qnn composite functions of ``mod``."""
    return {gv: func for gv, func in mod.functions.items()
            if isinstance(func, relax.Function) and _composite_name(func) in QNN_COMPOSITES}


def tensor_const(array):
    """A Relax constant of ``array`` with its own dtype (``relax.const`` would narrow float64 to float32)."""
    array = np.ascontiguousarray(array)
    return relax.const(array, str(array.dtype))


@relax.expr_functor.visitor
class _VarUses(relax.PyExprVisitor):
    """How many times each variable is used (not defined) in a function."""

    def __init__(self):
        super().__init__()
        self.uses = {}

    def _count(self, var):
        self.uses[var] = self.uses.get(var, 0) + 1

    def visit_var_(self, var):
        self._count(var)

    def visit_dataflow_var_(self, var):
        self._count(var)


def packed_chains(func, composites):
    """``[(producer call, consumer call)]``: a qnn.conv2d whose result feeds only another qnn.conv2d.

    Such a producer can emit the consumer's packed codes directly (one use, as the consumer's data).
    """
    calls = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar) and value.op in composites \
                    and _composite_name(composites[value.op]) == "qnn.conv2d":
                calls[binding.var] = value
    if len(calls) < 2:
        return []
    counter = _VarUses()
    counter.visit_expr(func)
    chains = []
    for consumer in calls.values():
        data = consumer.args[0]
        if isinstance(data, relax.Var) and data in calls and counter.uses.get(data, 0) == 1:
            chains.append((calls[data], consumer))
    return chains


def residual_fusions(func, composites):
    """``[{"conv", "conv_var", "add", "add_var", "residual", "relu", "relu_var"}]``: a qnn.conv2d whose result is
    used once, by ``R.add`` with a float32 tensor of the same static shape (the residual); ``relu`` is the
    ``R.nn.relu`` of the add's result (bound to ``relu_var``) when that is the result's only use, else None.
    The conv's kernel can add the residual (and apply that ReLU) in its epilogue."""
    add_op, relu_op = tvm.ir.Op.get("relax.add"), tvm.ir.Op.get("relax.nn.relu")
    convs, relus, relu_vars = {}, {}, {}
    bindings = [binding for block in func.body.blocks for binding in block.bindings]
    for binding in bindings:
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar) and value.op in composites \
                and _composite_name(composites[value.op]) == "qnn.conv2d":
            convs[binding.var] = value
        if isinstance(value, relax.Call) and value.op.same_as(relu_op) and isinstance(value.args[0], relax.Var):
            relus[value.args[0]] = value
            relu_vars[value.args[0]] = binding.var
    if not convs:
        return []
    counter = _VarUses()
    counter.visit_expr(func)
    fusions = []
    for binding in bindings:
        value = binding.value
        if not (isinstance(value, relax.Call) and value.op.same_as(add_op)):
            continue
        for i in (0, 1):
            conv_var, other = value.args[i], value.args[1 - i]
            if not (isinstance(conv_var, relax.Var) and conv_var in convs and counter.uses.get(conv_var, 0) == 1):
                continue
            if not _same_float32_tensor(conv_var, other) or (isinstance(other, relax.Var) and other.same_as(conv_var)):
                continue
            relu = relus.get(binding.var) if counter.uses.get(binding.var, 0) == 1 else None
            fusions.append({"conv": convs[conv_var], "conv_var": conv_var, "add": value, "add_var": binding.var,
                            "residual": other, "relu": relu, "relu_var": relu_vars.get(binding.var)})
            break
    return fusions


def nhwc_convs(func, composites, eligible, fusions):
    """The qnn.conv2d calls of ``func`` to run as NHWC kernels: ``eligible(call)`` ones (float-contract int8
    convs) grouped into components by the tensors they pass each other (a conv's result as another's
    data or residual; a fused conv's result is its add's / ReLU's), each component NHWC when its internal
    edges outnumber twice the transpositions it would need (an NCHW tensor read from outside it, an
    NHWC result read by an op outside it). ResNet's blocks form one component with two transpositions
    (the max pool's output, the global pool's input); in MobileNetV2 each 1x1 conv sits between
    depthwise convs (NCHW kernels), and NHWC 1x1 convs there took 1.2x as long with the transpositions."""
    results = {}  # conv call -> the var holding its (fused) result
    inputs = {}  # conv call -> [data, residual]
    for binding in (binding for block in func.body.blocks for binding in block.bindings):
        value = binding.value
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.GlobalVar) and value.op in composites \
                and _composite_name(composites[value.op]) == "qnn.conv2d" and eligible(value):
            results[value] = binding.var
            inputs[value] = [value.args[0]]
    for fusion in fusions:
        conv = next((call for call in results if call.same_as(fusion["conv"])), None)
        if conv is not None:
            results[conv] = fusion["relu_var"] if fusion["relu"] is not None else fusion["add_var"]
            inputs[conv].append(fusion["residual"])
    if not results:
        return []
    producer = {var: call for call, var in results.items()}
    component = {call: call for call in results}

    def root(call):
        while not component[call].same_as(call):
            call = component[call]
        return call

    for call, reads in inputs.items():
        for var in reads:
            if isinstance(var, relax.Var) and var in producer:
                component[root(call)] = root(producer[var])
    counter = _VarUses()
    counter.visit_expr(func)
    internal, outside_in, outside_out = {}, {}, {}
    kernel_reads = {}
    for call, reads in inputs.items():
        for var in reads:
            kernel_reads[var] = kernel_reads.get(var, 0) + 1
            group = root(call)
            if isinstance(var, relax.Var) and var in producer and root(producer[var]).same_as(group):
                internal[group] = internal.get(group, 0) + 1
            else:
                outside_in.setdefault(group, set()).add(var)
    for call, var in results.items():
        if counter.uses.get(var, 0) > kernel_reads.get(var, 0):  # a float op (or the output) reads it
            outside_out[root(call)] = outside_out.get(root(call), 0) + 1
    chosen = []
    for call in results:
        group = root(call)
        transpositions = len(outside_in.get(group, ())) + outside_out.get(group, 0)
        if internal.get(group, 0) > 2 * transpositions:
            chosen.append(call)
    return chosen


def _same_float32_tensor(a, b):
    shapes = []
    for expr in (a, b):
        ty = getattr(expr, "ty", None)
        if ty is None or str(getattr(ty, "dtype", "")) != "float32" or getattr(ty, "shape", None) is None:
            return False
        try:
            shapes.append([int(d) for d in ty.shape])
        except (TypeError, ValueError):  # symbolic dimensions: no fusion
            return False
    return shapes[0] == shapes[1]


def _index_of(call, calls):
    return next((i for i, other in enumerate(calls) if other.same_as(call)), None)


@relax.expr_functor.mutator
class _CompositeToKernel(relax.PyExprMutator):
    """Rewrites every call of a qnn composite into ``call_tir`` to its kernel."""

    def __init__(self, mod, composites, read_layer, target, database, word, chains=(), choose=None,
                 instructions="plain", fusions=(), nhwc=(), uses=None, float_nhwc=True):
        super().__init__(mod)
        self.fusions = list(fusions)
        # bindings that disappear: the fused conv's own result, and the add when a ReLU follows it
        self.skip = [f["conv_var"] for f in self.fusions] + [f["add_var"] for f in self.fusions if f["relu"] is not None]
        self.composites = composites
        self.read_layer = read_layer
        self.target, self.database, self.word = target, database, word
        self.kernels = {}  # (workload key, packed input) -> GlobalVar of the scheduled PrimFunc
        self.producers = [producer for producer, _ in chains]
        self.consumers = [consumer for _, consumer in chains]
        self.choose = choose
        self.instructions = instructions  # the int8 kernels' instructions on the target: "vnni", "avx2" or "plain"
        self.nhwc = list(nhwc)  # the conv calls lowered to NHWC int8 kernels
        self.nhwc_of = {}  # NCHW result var of an NHWC int8 kernel (its transposition) -> the kernel's NHWC var
        self.transposed = {}  # any other float var -> its NHWC transposition, emitted once
        self.pending_nhwc = None  # the NHWC kernel var behind the binding being rewritten
        self.uses = dict(uses or {})  # var -> times the function being rewritten reads it
        self.float_nhwc = float_nhwc  # redo the float ops under an NHWC chain's inputs in NHWC
        self.float_nhwc_convs = 0  # float convs redone in NHWC

    def _direct_call(self, layer, data, kind, residual=None, residual_kind="", nhwc=False):
        """``call_tir`` to the float-contract int8 (``kind="vnni"``) or depthwise kernel of ``layer``; ``nhwc``:
        the int8 conv reads and writes NHWC (:func:`nhwc_convs`)."""
        wl = layer_workload(layer, self.word, scheme="onehot", residual=residual_kind)
        if kind == "depthwise":
            kernel, make = DepthwiseKernel(wl, "float", "float", contract="float"), scheduled_depthwise_primfunc
            args, symbol = float_depthwise_kernel_args(layer, kernel), "depthwise"
        else:
            kernel = Int8Kernel(wl, "float", "float", self.instructions, contract="float",
                                layout="NHWC" if nhwc else "NCHW")
            make, args = scheduled_int8_primfunc, float_int8_kernel_args(layer, kernel)
            kernel = with_avx2_sums(kernel, args[1])  # same arguments: int16 sums or unsplit codes where exact (AVX2)
            symbol = int8_kind(self.instructions).replace("-", "_")
        key = (kernel.key(), False)
        if key not in self.kernels:
            try:
                func = make(kernel)
            except QnnError:
                raise
            except Exception as err:  # noqa: BLE001
                raise CompileError(f"layer {layer.name!r}: building its {symbol} kernel failed: {err}") from err
            self.kernels[key] = self.builder_.add_func(func.without_attr("global_symbol"),
                                                       f"qnn_{symbol}_float_{layer.kind}")
        out_type = relax.TensorType(kernel.output_shape, "float32")
        if getattr(kernel, "nhwc", False):
            data = self._as_nhwc(data)
            residual = self._as_nhwc(residual) if residual is not None else None
        extra = [residual] if residual is not None else []
        call = relax.call_tir(self.kernels[key], [data] + [tensor_const(a) for a in args] + extra, out_type)
        if not getattr(kernel, "nhwc", False):
            return call
        # the binding keeps its NCHW value (a transposition, dropped as dead code when only NHWC kernels read it)
        self.pending_nhwc = self.builder_.emit(call)
        return relax.op.permute_dims(self.pending_nhwc, NHWC_TO_NCHW)

    def _as_nhwc(self, var, follow=True):
        """``var`` (float NCHW) in NHWC: an NHWC kernel's own result, the float ops that made it redone in
        NHWC (:meth:`_float_in_nhwc`, when ``follow``), or one transposition per var."""
        known = self.nhwc_of.get(var, self.transposed.get(var))
        if known is not None:
            return known
        nhwc = self._float_in_nhwc(var) if follow and self.float_nhwc else None
        if nhwc is None:
            nhwc = self.builder_.emit(relax.op.permute_dims(var, NCHW_TO_NHWC))
        self.transposed[var] = nhwc
        return nhwc

    def _float_in_nhwc(self, var):
        """``var`` recomputed in NHWC when a float 2-D pool, elementwise activation (:data:`ELEMENTWISE_UNARY`),
        per-channel constant add or conv with a constant weight made it (a stem: conv, bias, ReLU, max
        pool), the transposition moved to that chain's input. The ops below the one making ``var`` are
        followed only while their result has no other reader (the NCHW chain becomes dead code; a pool or
        activation read elsewhere as well runs twice, and a conv whose NCHW result stays alive makes
        ``LowerQnnToBitserial`` lower the function again without this). The NHWC conv sums in the NCHW
        one's order (``codegen.float_schedules``), so the values are unchanged; channels run in vector
        lanes and the pool's and the conv's stores are contiguous."""
        value = self.builder_.lookup_binding(var) if isinstance(var, relax.Var) else None
        if isinstance(value, relax.TupleGetItem):  # a field of a tuple built here: that field's value
            tup = value.tuple_value
            packed = self.builder_.lookup_binding(tup) if isinstance(tup, relax.Var) else None
            if isinstance(packed, relax.Tuple):
                return self._as_nhwc(packed.fields[value.index])
        if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
            return None
        name, attrs, args = value.op.name, value.attrs, value.args

        def below():  # the op's input in NHWC, its own ops followed when nothing else reads it
            single = isinstance(args[0], relax.Var) and self.uses.get(args[0], 0) == 1
            return self._as_nhwc(args[0], follow=single)

        if name in ("relax.nn.max_pool2d", "relax.nn.avg_pool2d") and attrs.layout == "NCHW" \
                and attrs.out_layout == "NCHW":
            pool = relax.op.nn.max_pool2d if name == "relax.nn.max_pool2d" else relax.op.nn.avg_pool2d
            return self.builder_.emit(pool(below(), attrs.pool_size, attrs.strides,
                                           attrs.padding, attrs.dilation, attrs.ceil_mode, attrs.count_include_pad,
                                           layout="NHWC", out_layout="NHWC"))
        if name in ELEMENTWISE_UNARY:  # same op and attributes on the NHWC tensor
            return self.builder_.emit(relax.Call(value.op, [below(), *args[1:]], value.attrs))
        if name == "relax.add" and isinstance(args[0], Constant) != isinstance(args[1], Constant):
            if isinstance(args[0], Constant):
                args = [args[1], args[0]]
            shift = args[1].value.numpy()
            shape = getattr(value.ty, "shape", None)
            channels = int(shape[1]) if shape is not None and len(shape) == 4 else -1
            if shift.shape == (1, channels, 1, 1):
                shift = np.ascontiguousarray(shift.transpose(NCHW_TO_NHWC))
                return self.builder_.emit(relax.op.add(below(), relax.const(shift)))
        layouts = ("NCHW", "OIHW", "NCHW")
        if name == "relax.nn.conv2d" and self.uses.get(var, 0) == 1 and isinstance(args[1], Constant) \
                and int(attrs.groups) == 1 and (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) == layouts:
            weight = np.ascontiguousarray(args[1].value.numpy().transpose(2, 3, 1, 0))  # OIHW -> HWIO
            self.float_nhwc_convs += 1
            return self.builder_.emit(relax.op.nn.conv2d(
                below(), relax.const(weight), attrs.strides, attrs.padding,
                attrs.dilation, 1, data_layout="NHWC", kernel_layout="HWIO", out_layout="NHWC",
                out_dtype=attrs.out_dtype))
        return None

    def _kernel(self, wl, layer_name, packed_input):
        key = (wl.key(), packed_input)
        if key not in self.kernels:
            try:
                func = scheduled_primfunc(wl, self.target, self.database, packed_input)
            except QnnError:
                raise
            except Exception as err:  # noqa: BLE001 - TVM errors become CompileError naming the layer
                raise CompileError(f"layer {layer_name!r}: building its bit-serial kernel failed: {err}") from err
            self.kernels[key] = self.builder_.add_func(func.without_attr("global_symbol"), "qnn_bitserial_" + wl.kind)
        return self.kernels[key]

    def visit_dataflow_block_(self, block):
        self.nhwc_of, self.transposed = {}, {}  # dataflow vars do not outlive their block
        return super().visit_dataflow_block_(block)

    def visit_binding_block_(self, block):
        self.nhwc_of, self.transposed = {}, {}
        return super().visit_binding_block_(block)

    def visit_var_binding_(self, binding):
        if any(binding.var.same_as(var) for var in self.skip):
            return  # folded into a fused kernel call further down
        super().visit_var_binding_(binding)
        if self.pending_nhwc is not None:
            self.nhwc_of[self.get_var_remap(binding.var)] = self.pending_nhwc
            self.pending_nhwc = None

    def visit_call_(self, call):
        for fusion in self.fusions:  # the add (or the ReLU after it) becomes the conv kernel with the residual
            if call.same_as(fusion["relu"] if fusion["relu"] is not None else fusion["add"]):
                kind = "add_relu" if fusion["relu"] is not None else "add"
                return self._lower(fusion["conv"], self.visit_expr(fusion["residual"]), kind)
        if not isinstance(call.op, tvm.ir.GlobalVar) or call.op not in self.composites:
            return super().visit_call_(call)
        return self._lower(call)

    def _lower(self, call, residual=None, residual_kind=""):
        original = call
        # not super().visit_call_: re-normalizing a consumer's composite call would reject its
        # (now packed) argument; the composite call is replaced wholesale anyway
        layer = self.read_layer(self.composites[call.op])
        data = self.visit_expr(call.args[0])
        packed_input = _index_of(original, self.consumers) is not None
        if not packed_input:
            data_type = getattr(data, "ty", None)
            shape = [int(d) for d in data_type.shape] if getattr(data_type, "shape", None) is not None else None
            if shape is None or tuple(shape) != tuple(layer.input_shape):
                raise ShapeError(f"layer {layer.name!r}: input shape {shape} does not match the layer's "
                                 f"{layer.input_shape}; the bit-serial lowering needs static shapes")
            kind = self.choose(layer) if self.choose is not None else "popcount"
            if kind != "popcount":
                nhwc = _index_of(original, self.nhwc) is not None
                return self._direct_call(layer, data, kind, residual, residual_kind, nhwc)
        chain = _index_of(original, self.producers)
        extra_args, output = [], {}
        if chain is not None:
            consumer = self.read_layer(self.composites[self.consumers[chain].op])
            output = dict(output="packed", next_a_bits=consumer.a_bits, next_padding=consumer.padding,
                          next_groups=consumer.groups, next_a_zero_point=consumer.a_zero_point)
            extra_args = [tensor_const(np.array([consumer.s_a], dtype=np.float32))]
        if residual is not None:
            output["residual"] = residual_kind
            extra_args = extra_args + [residual]
        wl = layer_workload(layer, self.word, **output)
        args = kernel_args(layer, wl)
        out_type = relax.TensorType(wl.output_shape, wl.word if chain is not None else "float32")
        kernel = self._kernel(wl, layer.name, packed_input)
        return relax.call_tir(kernel, [data] + [tensor_const(a) for a in args.as_list()] + extra_args, out_type)


def _default_reader():
    from relay_passes.composite import read_qnn_layer

    return read_qnn_layer


@tvm.transform.module_pass(opt_level=0, name="LowerQnnToBitserial")
class LowerQnnToBitserial:
    """Lower qnn composites to bit-serial ``call_tir`` kernels (see the module docstring).

    ``target``: the LLVM target the kernels are scheduled for (tuning records are per target);
    ``database``: optional MetaSchedule database; ``word``: packing word ("uint64" default);
    ``read_layer``: composite -> QnnLayer (default ``relay_passes.composite.read_qnn_layer``).
    """

    def __init__(self, target=None, database=None, word="uint64", read_layer=None, pass_packed=True, pins=None,
                 auto_int8=True, fuse_residual=True, nhwc=True):
        self.target, self.database, self.word = target, database, word
        self.fuse_residual = fuse_residual
        self.nhwc = nhwc
        self.read_layer = read_layer
        self.pass_packed = pass_packed
        self.pins, self.auto_int8 = dict(pins or {}), auto_int8
        # layer name -> "popcount" | "vnni" | "int8-avx2" | "int8-plain" | "depthwise", after the pass ran
        self.layer_kernels = {}
        # the int8 kernels' instructions on the target ("vnni", "avx2" or "plain")
        self.instructions = target_int8_instructions(target) if target is not None else "plain"

    def _choose(self, layer):
        """The kernel kind: "popcount", "vnni" (any int8 kernel) or "depthwise" (``layer_kernels`` names
        the int8 build)."""
        if layer.name not in self.layer_kernels:
            kind = choose_float_kernel(layer, self.pins.get(layer.name), self.instructions, self.auto_int8)
            self.layer_kernels[layer.name] = int8_kind(self.instructions) if kind == "vnni" else kind
        kind = self.layer_kernels[layer.name]
        return "vnni" if kind.startswith("int8-") else kind

    def _nhwc_eligible(self, layer):
        """A float-contract int8 conv of at least :data:`NHWC_MIN_CHANNELS` input channels per group."""
        return layer.kind == "conv2d" and self._choose(layer) == "vnni" \
            and layer_workload(layer, self.word).channels_per_group >= NHWC_MIN_CHANNELS

    def transform_module(self, mod, _ctx):
        composites = qnn_composites(mod)
        if not composites:
            return mod
        read_layer = self.read_layer or _default_reader()
        transposes = False
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, relax.Function) or gv in composites:
                continue
            chains = packed_chains(func, composites) if self.pass_packed else []
            chains = [(producer, consumer) for producer, consumer in chains  # popcount -> popcount only
                      if all(self._choose(read_layer(composites[call.op])) == "popcount" for call in (producer, consumer))]
            producers = [producer for producer, _ in chains]
            # popcount layers keep their float-output kernel when tuning records are given (the records
            # are of that workload); int8 kernels have no tuning space and always take the residual
            fusable = ("vnni",) if self.database is not None else ("popcount", "vnni")
            fusions = [fusion for fusion in residual_fusions(func, composites) if self.fuse_residual
                       and self._choose(read_layer(composites[fusion["conv"].op])) in fusable
                       and _index_of(fusion["conv"], producers) is None]
            nhwc = nhwc_convs(func, composites, lambda call: self._nhwc_eligible(read_layer(composites[call.op])),
                              fusions) if self.nhwc else []
            uses = _VarUses()
            uses.visit_expr(func)

            def lower(float_nhwc, mod=mod, gv=gv, func=func, chains=chains, fusions=fusions, nhwc=nhwc, uses=uses):
                mutator = _CompositeToKernel(mod, composites, read_layer, self.target, self.database, self.word,
                                             chains, self._choose, self.instructions, fusions, nhwc, uses.uses,
                                             float_nhwc)
                return _with_func(mutator, gv, func), mutator.float_nhwc_convs

            lowered, redone = lower(True)
            # a float conv redone in NHWC whose NCHW result is still read elsewhere would run twice
            if redone and _float_convs(relax.transform.DeadCodeElimination()(lowered)[gv]) > _float_convs(func):
                lowered, _ = lower(False)
            mod = lowered
            transposes = transposes or bool(nhwc)
        for gv in composites:
            mod = _without(mod, gv)
        # the NCHW transpositions of NHWC results that only NHWC kernels read
        return relax.transform.DeadCodeElimination()(mod) if transposes else mod


def _float_convs(func):
    """Number of ``relax.nn.conv2d`` calls in ``func``."""
    found = []
    relax.analysis.post_order_visit(func, lambda expr: found.append(
        isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.nn.conv2d"))
    return sum(found)


def _with_func(mutator, gv, func):
    mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


def _without(mod, gv):
    funcs = {g: f for g, f in mod.functions.items() if not g.same_as(gv)}
    return tvm.IRModule(funcs, attrs=mod.attrs)
