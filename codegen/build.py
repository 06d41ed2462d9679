"""Schedule and build one kernel: a tuned MetaSchedule record when there is one, else the hand schedule.

The tuning hook (shared with ``codegen.tuning``): a MetaSchedule ``Database`` is queried with
``tvm.IRModule({"main": make_primfunc(wl, packed_input)})`` and the kernel target; a record
found there replaces the hand schedule. ``codegen.tuning`` tunes exactly that module, so the structural
hash matches. Kernels carry ``op_pattern = kOpaque`` so Relax's ``FuseOps`` leaves them alone.
"""

from __future__ import annotations

import os

import tvm

from tvm_qnn.errors import CompileError

from .bitserial_conv2d import make_primfunc
from .schedules import hand_schedule
from .workload import ConvWorkload

OPAQUE_PATTERN = 8  # relax OpPatternKind.kOpaque: never fused with neighbours


def cpu_target(num_cores=None):
    """This machine's LLVM target (e.g. mcpu=znver4) with ``num-cores`` (MetaSchedule needs it)."""
    config = dict(tvm.target.Target.from_device("cpu").export())
    config = {k: v for k, v in config.items() if k in ("kind", "mtriple", "mcpu", "mattr")}
    config["num-cores"] = int(num_cores or os.cpu_count() or 1)
    return tvm.target.Target(config)


def generic_x86_target(num_cores=None):
    """A baseline x86-64 target without AVX-512 (the kernels must still run there)."""
    return tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64",
                              "num-cores": int(num_cores or os.cpu_count() or 1)})


def workload_module(wl: ConvWorkload, packed_input=False) -> tvm.IRModule:
    """The module MetaSchedule tunes and the database is queried with."""
    return tvm.IRModule({"main": make_primfunc(wl, packed_input)})


def scheduled_primfunc(wl: ConvWorkload, target=None, database=None, packed_input=False):
    """The kernel's PrimFunc: the database's tuned schedule for ``wl`` if any, else the hand schedule."""
    mod = workload_module(wl, packed_input)
    scheduled = None
    if database is not None:
        target = target if target is not None else cpu_target()
        sch = database.query_schedule(mod, target=target, workload_name="main")
        if sch is not None:
            scheduled = sch.mod["main"]
    if scheduled is None:
        try:
            scheduled = hand_schedule(wl, mod["main"]).mod["main"]
        except Exception as err:  # noqa: BLE001 - a TVM schedule error becomes a CompileError naming the workload
            raise CompileError(f"hand schedule failed for workload {wl.key()}: {err}") from err
    # opaque: FuseOps keeps the kernel whole; is_scheduled: dlight-style default schedules skip it
    return scheduled.with_attr("op_pattern", OPAQUE_PATTERN).with_attr("tirx.is_scheduled", True)


def build_kernel(wl: ConvWorkload, target=None, database=None, packed_input=False):
    """Compile one kernel to a runnable ``tvm.runtime.Executable`` (function ``"main"``)."""
    target = target if target is not None else cpu_target()
    func = scheduled_primfunc(wl, target, database, packed_input)
    try:
        return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    except Exception as err:  # noqa: BLE001 - wrap TVM build errors at our boundary
        raise CompileError(f"building kernel {wl.key()} for {target} failed: {err}") from err


def kernel_asm(executable) -> str:
    """Assembly of a built kernel (to check the instructions LLVM chose)."""
    return executable.mod.inspect_source("asm")
