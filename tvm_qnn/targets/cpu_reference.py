"""Target ``cpu-reference``: the quantized graph's stock Relax ops compiled by TVM as they are.

It is the executable form of the reference graph (``tvm_qnn.quantize``'s output) and the baseline
the ``cpu`` bit-serial kernels are checked against.
"""

from __future__ import annotations

from tvm_qnn.errors import CompileError
from tvm_qnn.targets import Artifact, Lowering, host_target


class CpuReferenceLowering(Lowering):
    """Stock Relax lowering: the quantized graph's ops (take, floor, clip, conv2d...) compiled by
    ``tvm.compile`` with ``relax.get_default_pipeline(target)`` (which fuses; without it the
    default build does no fusion). The ``qnn.*`` composites lose their Composite/Primitive marks
    first so the stock pipeline treats their bodies as ordinary Relax functions."""

    name = "cpu-reference"

    def build(self, qmod, options):
        import tvm
        from tvm import relax

        import relay_passes

        target_dict = options.target or host_target()
        target = tvm.target.Target(target_dict)
        # float64 accumulation inside the quantized layers keeps large fan-ins within the 1e-5
        # contract (relay_passes/widen_accumulation.py says why); then plain functions for the stock pipeline
        module = strip_composite_marks(relay_passes.WidenQnnAccumulation()(qmod))
        try:
            executable = tvm.compile(module, target=target, relax_pipeline=relax.get_default_pipeline(target))
        except Exception as err:
            raise CompileError(f"cpu-reference: building the module for {target_dict} failed: {err}") from err
        return Artifact(executable, dict(target_dict))


def strip_composite_marks(mod):
    """``mod`` with the Composite/Primitive marks removed so stock lowering treats them as plain ops."""
    import tvm
    from tvm import relax

    out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function) and func.attrs is not None and "Composite" in func.attrs:
            out[gvar] = func.without_attr("Composite").without_attr("Primitive")
    return out


