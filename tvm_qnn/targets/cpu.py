"""Target ``cpu``: quantized layers run as bit-serial kernels, the rest through Relax's default pipeline.

Listed under ``"cpu"`` in ``tvm_qnn.targets.BUILTIN_TARGETS``
(``cpu-reference`` stays the stock lowering). Steps of ``build``:

1. ``relay_passes.LowerQnnToBitserial`` replaces each ``qnn.*`` composite by ``call_tir`` to its
   hand-scheduled (or tuned, when ``options.tuning`` names a MetaSchedule database / work dir
   with a record for the workload) bit-serial kernel, or for a uniform-weight layer where the cost
   model (``codegen.kernel_choice.choose_float_kernel``) or the recipe's ``kernel`` pin says so,
   the float-contract int8 (VNNI) kernel; ``info["layer_kernels"]`` shows the choice
   (``BuildOptions.extra["auto_int8"] = False`` keeps unpinned layers on popcount);
2. any remaining composite marks are dropped (stock ops);
3. ``tvm.compile`` with :func:`cpu_pipeline`: Relax's default CPU pipeline (legalize, fuse) plus,
   after fusion, ``codegen.float_schedules.FloatCpuSchedule`` on the float PrimFuncs (parallel,
   vectorized; the stock pipeline leaves them single-threaded scalar loops).
"""

from __future__ import annotations

import os

from tvm_qnn.errors import CompileError, QnnError, TuningError
from tvm_qnn.targets import Artifact, Lowering, host_target
from tvm_qnn.targets.cpu_reference import strip_composite_marks


def open_tuning_database(tuning):
    """A MetaSchedule database from ``tuning``: None, a ``Database`` or a work dir of JSON records."""
    if tuning is None:
        return None
    from tvm.s_tir import meta_schedule as ms

    if isinstance(tuning, ms.database.Database):
        return tuning
    work_dir = os.fspath(tuning)
    if not os.path.isdir(work_dir):
        raise TuningError(f"tuning={work_dir!r}: no such tuning work directory")
    from codegen.tuning.database import open_database

    return open_database(work_dir)


def cpu_pipeline(target):
    """Relax's default CPU pipeline with a default schedule for the float ops after fusion."""
    import tvm
    from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
    from tvm.s_tir import dlight

    from codegen.float_schedules import FloatCpuSchedule

    @tvm.transform.module_pass(opt_level=0, name="tvm_qnn.cpu_pipeline")
    def _pipeline(mod, _ctx):
        with target:
            steps = (cpu_generic.library_dispatch_passes(target)
                     + cpu_generic.legalize_passes(target)  # legalize + FuseOps/FuseTIR
                     + [dlight.ApplyDefaultSchedule(FloatCpuSchedule())]  # after fusion, before lowering
                     + cpu_generic.dataflow_lower_passes(target)
                     + cpu_generic.finalize_passes(target))
            return tvm.transform.Sequential(steps)(mod)

    return _pipeline


class CpuBitserialLowering(Lowering):
    """Quantized layers -> bit-serial popcount kernels (``codegen``); everything else stock."""

    name = "cpu"

    def build(self, qmod, options):
        import tvm

        from relay_passes.lower_bitserial import LowerQnnToBitserial

        from tvm_qnn.targets.cpu_int import recipe_kernel_pins

        target_dict = dict(options.target or host_target())
        target = tvm.target.Target(target_dict)
        database = open_tuning_database(options.tuning)
        word = options.extra.get("word", "uint64") if options.extra else "uint64"
        auto_int8 = options.extra.get("auto_int8", True) if options.extra else True
        try:
            lower = LowerQnnToBitserial(target=target, database=database, word=word, pins=recipe_kernel_pins(qmod),
                                        auto_int8=auto_int8)
            lowered = lower(qmod)
        except QnnError:
            raise
        except Exception as err:  # noqa: BLE001 - TVM errors stop here, named
            raise CompileError(f"cpu: lowering the quantized layers to bit-serial kernels failed: {err}") from err
        kernels = sorted(gv.name_hint for gv, f in lowered.functions.items()
                         if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint.startswith("qnn_bitserial"))
        lowered = strip_composite_marks(lowered)
        try:
            executable = tvm.compile(lowered, target=target, relax_pipeline=cpu_pipeline(target))
        except Exception as err:  # noqa: BLE001
            raise CompileError(f"cpu: building the lowered module for {target_dict} failed: {err}") from err
        return Artifact(executable, target_dict, info={"bitserial_kernels": kernels, "tuned": database is not None,
                                                       "layer_kernels": dict(lower.layer_kernels)})


