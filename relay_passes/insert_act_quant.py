"""InsertActQuant: a quantized layer consumes ``act_codes(x) * s_a`` instead of ``x``.

Matches the layer functions AnnotateQuantLayers made (``qnn.layer``, ``qnn.a_bits``,
``qnn.a_clamp``, ``qnn.a_zero_point`` attributes). Prepends, in float32 (DESIGN.md,
``reference.act_codes``):

    s_a   = float32(a_clamp) / float32(2^a_bits - 1)          (a scalar constant)
    codes = astype(clip(floor(x / s_a + 0.5) + z, 0, 2^a_bits - 1), "uint8")
    xq    = (astype(codes, "float32") - z) * s_a

(with ``z = 0`` the two ``z`` steps are left out: the graph is the unsigned one of before).
The layer's own zero padding then pads ``xq`` with 0 = ``x_hat`` of code ``z``, as the contract
says.

and the layer op reads ``xq``. The division is a real divide (not a multiply by 1/s_a) so that
codes agree bit-exactly with the numpy reference and the torch fake-quant model.

Precondition: AnnotateQuantLayers ran. Idempotent: a function whose input already goes through
the codes is skipped.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tvm_qnn import reference

from . import rewrite
from .annotate import annotated_functions


def act_quant_chain(a_clamp, a_bits, a_zero_point=0):
    """``[(name, expr-builder)]`` computing ``codes`` and ``xq`` from the input (module doc)."""
    s_a = relax.const(np.float32(reference.act_scale(a_clamp, a_bits)))
    z = reference.check_zero_point(a_zero_point, a_bits)
    top = (1 << int(a_bits)) - 1
    chain = [
        ("x_scaled", lambda v: relax.op.divide(v["input"], s_a)),
        ("x_shifted", lambda v: relax.op.add(v["x_scaled"], relax.const(np.float32(0.5)))),
        ("x_floor", lambda v: relax.op.floor(v["x_shifted"])),
    ]
    if z:
        zero = relax.const(np.float32(z))
        chain += [
            ("x_offset", lambda v: relax.op.add(v["x_floor"], zero)),
            ("x_clipped", lambda v: relax.op.clip(v["x_offset"], 0, top)),
            ("codes", lambda v: relax.op.astype(v["x_clipped"], "uint8")),
            ("codes_f32", lambda v: relax.op.astype(v["codes"], "float32")),
            ("codes_centred", lambda v: relax.op.subtract(v["codes_f32"], zero)),
            ("xq", lambda v: relax.op.multiply(v["codes_centred"], s_a)),
        ]
    else:
        chain += [
            ("x_clipped", lambda v: relax.op.clip(v["x_floor"], 0, top)),
            ("codes", lambda v: relax.op.astype(v["x_clipped"], "uint8")),
            ("codes_f32", lambda v: relax.op.astype(v["codes"], "float32")),
            ("xq", lambda v: relax.op.multiply(v["codes_f32"], s_a)),
        ]
    return chain


def has_act_quant(func):
    """True when the layer function already computes activation codes (a uint8 astype)."""
    for binding in rewrite.single_block(func, "InsertActQuant").bindings:
        value = binding.value
        if (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.astype"
                and str(binding.var.ty.dtype) == "uint8" and str(value.args[0].ty.dtype) == "float32"):
            return True
    return False


@tvm.transform.module_pass(opt_level=0, name="InsertActQuant")
class InsertActQuant:
    """Quantize the input of each annotated layer to its activation codes (module doc)."""

    def transform_module(self, mod, ctx):
        out = mod
        for layer, (gvar, func) in sorted(annotated_functions(mod).items()):
            if has_act_quant(func):
                continue
            data = rewrite.data_param(func)
            new_input = relax.Var(data.name, data.ty)
            zero_point = int(func.attrs["qnn.a_zero_point"]) if "qnn.a_zero_point" in func.attrs else 0
            chain = act_quant_chain(float(func.attrs["qnn.a_clamp"]), int(func.attrs["qnn.a_bits"]), zero_point)
            new_func = rewrite.replace_param(func, data, chain, new_param=new_input)
            out = rewrite.swap_function(out, gvar, new_func)
        return out
