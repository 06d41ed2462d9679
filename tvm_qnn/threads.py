"""How many threads TVM's runtime uses: one per physical core this process may run on.

TVM sizes its thread pool once, when the first parallel kernel runs, from ``TVM_NUM_THREADS``
or ``OMP_NUM_THREADS`` and otherwise from ``hardware_concurrency() / 2`` on x86 (it assumes two
hyperthreads per core). On a machine without SMT -- a 2-vCPU cloud VM, for one -- that halves
the pool: 2 cores give 1 thread, and ``runtime.config_threadpool(1, 2)`` cannot grow it later.
:func:`configure` (called when ``tvm_qnn`` is imported) sets ``TVM_NUM_THREADS`` to the physical
cores in this process's CPU affinity when the user set neither variable; a user's setting wins.
"""

from __future__ import annotations

import os
from pathlib import Path

_TOPOLOGY = Path("/sys/devices/system/cpu")


def physical_cores(cpus=None, topology=_TOPOLOGY) -> int:
    """Physical cores among ``cpus`` (default: this process's affinity), from Linux's sysfs topology.

    Hyperthreads of one core share ``(physical_package_id, core_id)``; where sysfs does not say,
    every logical CPU counts as a core.
    """
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        base = Path(topology) / f"cpu{cpu}" / "topology"
        try:
            cores.add((base.joinpath("physical_package_id").read_text().strip(),
                       base.joinpath("core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def configure(environ=None) -> int | None:
    """Set ``TVM_NUM_THREADS`` to :func:`physical_cores` unless ``TVM_NUM_THREADS`` or
    ``OMP_NUM_THREADS`` is set; returns the value set (``None`` when the user's setting stands)."""
    environ = os.environ if environ is None else environ
    if environ.get("TVM_NUM_THREADS") or environ.get("OMP_NUM_THREADS"):
        return None
    threads = physical_cores()
    environ["TVM_NUM_THREADS"] = str(threads)
    return threads
