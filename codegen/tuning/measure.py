"""In-process MetaSchedule builder and runner for the bit-serial kernels.

MetaSchedule's ``LocalBuilder``/``LocalRunner`` start fresh Python worker processes for every
batch; each one imports TVM, which takes 10+ s on this shared 2-core machine, so a 4-trial tune
spent minutes in ``import tvm`` and then hit the 30 s worker timeout with every candidate
failing. Our candidates come from one ``ScheduleFn`` space whose schedules are valid by
construction and build in ~50 ms, so building and timing them in the tuning process is safe and
two orders of magnitude cheaper. Tuning over RPC (``tvm_qnn.tune(rpc=...)``) uses MetaSchedule's
``RPCRunner`` with these artifacts, which are exported as MetaSchedule's own builder does (tar).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import PyRunner, PyRunnerFuture, RunnerResult


def random_args(arg_infos, rng: np.random.Generator):
    """Random numpy arguments matching MetaSchedule ``TensorInfo``s.

    Unsigned words get every bit random (packed bit planes); signed integers and floats get
    small values. Comparing two schedules of one PrimFunc needs only that both see the same data.
    """
    arrays = []
    for info in arg_infos:
        shape = [int(d) for d in info.shape]
        dtype = str(info.dtype)
        if dtype.startswith("uint"):
            bits = int(dtype[4:])
            arrays.append(rng.integers(0, 2 ** min(bits, 63), size=shape, dtype=np.uint64).astype(dtype))
        elif dtype.startswith("int"):
            arrays.append(rng.integers(0, 4, size=shape).astype(dtype))
        else:
            arrays.append(rng.standard_normal(size=shape).astype(dtype))
    return arrays


@derived_object
class InProcessBuilder(PyBuilder):
    """Build candidates with ``tvm.compile`` in this process; keep the module in memory."""

    def __init__(self, export: bool = False):
        super().__init__()
        self.export = export  # an RPC runner needs the library on disk; in-process runs do not
        self.export_dir = tempfile.mkdtemp(prefix="tvm_qnn_build_") if export else None
        self.modules = {}
        self._count = 0

    def build(self, build_inputs):
        import tvm  # noqa: PLC0415
        from tvm.support.tar import tar  # noqa: PLC0415 - MetaSchedule's own artifact format

        results = []
        for build_input in build_inputs:
            try:
                lib = tvm.compile(build_input.mod, target=build_input.target)
                self._count += 1
                if self.export:
                    path = os.path.join(self.export_dir, f"candidate_{self._count}.tar")
                    lib.export_library(path, fcompile=tar)
                else:
                    path = f"in-process:candidate_{self._count}"
                    self.modules[path] = lib
                results.append(BuilderResult(path, None))
            except Exception as err:  # noqa: BLE001 - reported to MetaSchedule as a failed build
                results.append(BuilderResult(None, f"{type(err).__name__}: {err}"))
        return results

    def forget(self, path: str) -> None:
        self.modules.pop(path, None)
        if self.export and path and os.path.exists(path):
            os.remove(path)


@derived_object
class _DoneFuture(PyRunnerFuture):
    def __init__(self, result):
        super().__init__()
        self._result = result

    def done(self):
        return True

    def result(self):
        return self._result


@derived_object
class InProcessRunner(PyRunner):
    """Time candidates built by ``InProcessBuilder`` with ``time_evaluator`` (median of repeats)."""

    def __init__(self, builder: InProcessBuilder, number: int = 3, repeat: int = 3, min_repeat_ms: int = 10, seed: int = 0):
        super().__init__()
        self.builder = builder
        self.number, self.repeat, self.min_repeat_ms = number, repeat, min_repeat_ms
        self.rng = np.random.default_rng(seed)

    def run(self, runner_inputs):
        import tvm  # noqa: PLC0415

        futures = []
        dev = tvm.cpu()
        for runner_input in runner_inputs:
            path = runner_input.artifact_path
            try:
                lib = self.builder.modules.get(path)
                module = lib.mod if lib is not None else tvm.runtime.load_module(path)
                args = [tvm.runtime.tensor(a, dev) for a in random_args(runner_input.args_info, self.rng)]
                timer = module.time_evaluator(
                    module.entry_name if hasattr(module, "entry_name") else "main",
                    dev,
                    number=self.number,
                    repeat=self.repeat,
                    min_repeat_ms=self.min_repeat_ms,
                )
                run_secs = [float(s) for s in timer(*args).results]
                futures.append(_DoneFuture(RunnerResult(run_secs, None)))
            except Exception as err:  # noqa: BLE001 - reported to MetaSchedule as a failed run
                futures.append(_DoneFuture(RunnerResult(None, f"{type(err).__name__}: {err}")))
            finally:
                self.builder.forget(path)
        return futures
