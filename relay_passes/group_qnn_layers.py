"""GroupQnnLayers: each fully quantized layer function becomes a ``qnn.conv2d``/``qnn.dense`` composite.

Matches the layer functions AnnotateQuantLayers made once InsertWeightLUT and InsertActQuant
have rewritten them. Inlines the constant arguments of the call site (the bias) into the
function, so the composite is self-contained with the activation input as its only parameter,
and sets ``"Composite": "qnn.<kind>"`` and ``"Primitive": True`` (the form ``FuseOpsByPattern``
produces, so ``MergeCompositeFunctions`` and the backends' partitioning accept it). The
``qnn.*`` attributes stay. This is the unit the CPU and FPGA lowerings replace;
``relay_passes.composite.read_qnn_layer`` reads it.

Preconditions (QnnError naming the layer): the weight is rebuilt from a LUT, the input goes
through activation codes, every argument other than the input is a constant.
Idempotent: functions that already are composites are skipped.
"""

from __future__ import annotations

import tvm

from tvm_qnn.errors import QnnError

from . import rewrite
from .annotate import annotated_functions
from .insert_act_quant import has_act_quant

COMPOSITE_PREFIX = "qnn."


@tvm.transform.module_pass(opt_level=0, name="GroupQnnLayers")
class GroupQnnLayers:
    """Turn each quantized layer function into a ``qnn.*`` composite (module doc)."""

    def transform_module(self, mod, ctx):
        out = mod
        for layer, (gvar, func) in sorted(annotated_functions(mod).items()):
            if "Composite" in func.attrs:
                continue
            if rewrite.weight_param(func) is not None:
                raise QnnError(f"GroupQnnLayers: layer {layer!r} still has a float weight; run InsertWeightLUT first")
            if not has_act_quant(func):
                raise QnnError(f"GroupQnnLayers: layer {layer!r} has no activation codes; run InsertActQuant first")
            main = out["main"]
            call = rewrite.single_call(main, gvar, layer, "GroupQnnLayers")
            data = rewrite.data_param(func)
            inline = {}
            for param, arg in zip(func.params, call.args):
                if param.same_as(data):
                    continue
                if not rewrite.is_constant(arg):
                    raise QnnError(
                        f"GroupQnnLayers: layer {layer!r}: argument {param.name!r} is not a constant; "
                        "bind the parameters first"
                    )
                inline[param] = arg
            keep = [param.same_as(data) for param in func.params]
            composite = func.bind_params(inline).with_attrs(
                {"Composite": COMPOSITE_PREFIX + str(func.attrs["qnn.kind"]), "Primitive": True}
            )
            out = rewrite.swap_function(out, gvar, composite, keep)
        return out
