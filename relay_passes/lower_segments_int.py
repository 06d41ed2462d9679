"""``LowerSegmentsToIntegerKernels``: run the accelerator's segments as integer-only CPU kernels.

Matches: ``R.call_dps_packed("<symbol>", (inputs...), out_ty)`` calls whose symbol names a
``vta_ext.segment.Segment`` -- what ``relay_passes.partition_fpga.partition_for_vta`` leaves in
``main`` for every group of accelerator layers. Emits, in place of each call, one ``call_tir``
per segment node to an integer kernel chosen per layer by ``codegen.kernel_choice`` (popcount
``codegen.bitserial_int``, VNNI ``codegen.vnni_int8``), wired as the segment wires its nodes:

* a node reading a segment input quantizes it in the kernel (``act_codes`` with the node's
  ``a_clamp``/``a_bits``/``a_zero_point``, as ``Segment.run`` does on the host); with a zero point
  the kernel pads with code ``z`` itself, where the accelerator's host pads its input
  (``LayerProgram.host_padding``): the same codes, so the same integers;
* a node whose program emits codes (``LayerProgram.outputs_codes``: every consumer is another
  node with the same activation quantizer) writes uint8 codes with the program's requant
  parameters; a node with ``input_is_codes`` reads them;
* any other node writes float32 ``acc * s_a * s_w`` + clip (``LayerProgram.dequantize``).

The decisions and the integer parameters (``lut_int``, ``bias_int``, ``multiplier``, ``shift``,
``lo``/``hi``, ``s_w``) are read from the segment itself, so this CPU path and the simulator
agree by construction; only the arithmetic is re-implemented (exact integers, the same float64
product for dequantization). ``layers`` supplies each node's weight indices (by layer name).

Pre: ``partition_for_vta`` ran; ``segments`` maps every symbol it produced to its Segment.
Post: no ``call_dps_packed`` to a known segment remains; one PrimFunc per distinct kernel,
named ``qnn_<kernel kind>_int_<layer kind>`` with attribute ``"qnn.kernel"`` = the kernel's ``key()``.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from codegen.kernel_choice import integer_layer_kernel
from tvm_qnn import reference
from tvm_qnn.errors import CompileError, QnnError, ShapeError

from .lower_bitserial import tensor_const

_CALL_DPS_PACKED = tvm.ir.Op.get("relax.call_dps_packed")


def _shape_of(expr):
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


@relax.expr_functor.mutator
class _SegmentCallToKernels(relax.PyExprMutator):
    def __init__(self, mod, segments, layers, word, target, pins):
        super().__init__(mod)
        self.segments, self.layers, self.word = segments, layers, word
        self.target, self.pins = target, pins
        self.kernels = {}  # kernel key -> GlobalVar
        self.layer_kernels = {}  # layer name -> kernel kind ("popcount", "vnni", ...)

    def _symbol(self, call):
        if not call.op.same_as(_CALL_DPS_PACKED) or not isinstance(call.args[0], relax.ExternFunc):
            return None
        symbol = str(call.args[0].global_symbol)
        return symbol if symbol in self.segments else None

    def visit_call_(self, call):
        symbol = self._symbol(call)
        if symbol is None:
            return super().visit_call_(call)
        inputs = [self.visit_expr(arg) for arg in call.args[1].fields]
        outputs = self._emit_segment(self.segments[symbol], inputs)
        ret = call.ty_args[0]
        if isinstance(ret, relax.TupleType):
            return relax.Tuple([self._reshaped(v, f.shape) for v, f in zip(outputs, ret.fields)])
        return self._reshaped(outputs[0], ret.shape)

    def _reshaped(self, value, shape):
        shape = tuple(int(d) for d in shape)
        return value if _shape_of(value) == shape else self.builder_.emit(relax.op.reshape(value, shape))

    def _emit_segment(self, segment, inputs):
        if len(inputs) != len(segment.input_shapes):
            raise ShapeError(f"segment {segment.name!r} takes {len(segment.input_shapes)} inputs, the call passes "
                             f"{len(inputs)}")
        values = []
        for node in segment.nodes:
            kind, k = node.source
            data = inputs[k] if kind == "input" else values[k]
            values.append(self._emit_node(node, self._reshaped(data, node.program.input_shape)))
        return [values[i] for i in segment.outputs]

    def _emit_node(self, node, data):
        program = node.program
        layer = self.layers.get(program.name)
        if layer is None:
            raise CompileError(f"layer {program.name!r}: compiled into a segment but not among the layers read")
        chosen = integer_layer_kernel(layer, program.params, "codes" if node.input_is_codes else "float",
                                      "codes" if program.outputs_codes else "float", self.target,
                                      self.pins.get(layer.name), self.word)
        self.layer_kernels[layer.name] = chosen.kind
        args = [data]
        if chosen.kernel.input == "float":
            args.append(tensor_const(np.array([reference.act_scale(node.a_clamp, node.a_bits)], np.float32)))
        args += [tensor_const(a) for a in chosen.args]
        out_type = relax.TensorType(program.output_shape, chosen.kernel.output_dtype)
        return self.builder_.emit(relax.call_tir(self._kernel(chosen, layer.name), args, out_type))

    def _kernel(self, chosen, layer_name):
        key = chosen.key()
        if key not in self.kernels:
            try:
                func = chosen.make_primfunc(chosen.kernel)
            except QnnError:
                raise
            except Exception as err:  # noqa: BLE001 - TVM errors become CompileError naming the layer
                raise CompileError(f"layer {layer_name!r}: building its integer kernel failed: {err}") from err
            func = func.without_attr("global_symbol").with_attr("qnn.kernel", key)
            self.kernels[key] = self.builder_.add_func(func, f"qnn_{chosen.kind.replace('-', '_')}_int_{chosen.kernel.wl.kind}")
        return self.kernels[key]


@tvm.transform.module_pass(opt_level=0, name="LowerSegmentsToIntegerKernels")
class LowerSegmentsToIntegerKernels:
    """Replace segment calls by integer-only ``call_tir`` kernels (see the module docstring).

    ``segments``: ``{symbol: vta_ext.segment.Segment}``; ``layers``: ``{layer name: QnnLayer}``;
    ``word``: packing word of the popcount kernels ("uint64"); ``target``: the build target (dict
    or Target; decides VNNI or the plain int8 kernel); ``pins``: ``{layer name: kernel}`` from the
    recipe's ``kernel`` fields. After the pass, ``layer_kernels`` maps each layer to the kernel
    kind it got (``codegen.kernel_choice``).
    """

    def __init__(self, segments, layers, word="uint64", target=None, pins=None):
        self.segments, self.layers, self.word = dict(segments), dict(layers), word
        self.target, self.pins = target, dict(pins or {})
        self.layer_kernels = {}

    def transform_module(self, mod, _ctx):
        if not self.segments:
            return mod
        target = self.target
        if target is None:
            from codegen.build import cpu_target

            target = cpu_target()
        mutator = _SegmentCallToKernels(mod, self.segments, self.layers, self.word, target, self.pins)
        for gvar, func in list(mod.functions.items()):
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gvar, mutator.visit_expr(func))
        self.layer_kernels = dict(mutator.layer_kernels)
        return mutator.builder_.get()
