"""Where a compiled model's time goes: per-kernel wall time of one ``main`` call, with the kernel kind.

``CompiledModel.profile(x)`` runs ``main`` on a fresh ``relax.VirtualMachine`` with TVM's VM
instrument hook (``VirtualMachine.set_instrument``: a callback before and after every call
instruction; TVM 0.27's Relax VM has no built-in profiler object) and accumulates the wall time
between the two callbacks per called function. Each quantized layer is its own PrimFunc, so a
row is a layer's kernel (identical layers may share one); the kind comes from the kernel's symbol,
which ``codegen`` names after the kernel it chose:

* ``popcount`` / ``vnni`` / ``int8_avx2`` / ``int8_plain`` / ``depthwise``: integer kernels (``qnn_<kind>_int_*``);
* ``bit-serial``: the float-contract popcount kernels (``qnn_bitserial_*``);
* ``vnni`` / ``int8_avx2`` / ``int8_plain`` too for the float-contract int8 kernels (``qnn_<kind>_float_*``);
* ``float``: every other compiled function (fp32 layers, pooling, adds, (de)quantize, packing);
* ``runtime``: the VM's own builtins (allocation, shape checks).

The instrument callback is Python, so each call costs a few microseconds more than in
``benchmark()``; ``overhead_ms`` is the difference between the instrumented run and the time of
the same ``main`` without the hook, so shares are read against kernel time, not inflated totals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

KINDS = ("popcount", "vnni", "int8_avx2", "int8_plain", "depthwise", "bit-serial", "float", "runtime")


def kernel_kind(symbol):
    """The kind (module doc) of a function the VM calls, from its symbol name."""
    if symbol.startswith("vm.builtin.") or symbol.startswith("vm."):
        return "runtime"
    if symbol.startswith("qnn_bitserial"):
        return "bit-serial"
    if symbol.startswith("qnn_") and "_int_" in symbol:
        return symbol[len("qnn_"):].split("_int_")[0]
    if symbol.startswith("qnn_") and "_float_" in symbol:  # float-contract int8 kernels
        return symbol[len("qnn_"):].split("_float_")[0]
    return "float"


@dataclass
class Profile:
    """Per-function time of one ``main`` call (mean over ``repeat`` runs), slowest first."""

    rows: list = field(default_factory=list)  # {"name", "kind", "calls", "ms", "share"}
    total_ms: float = 0.0  # sum of the rows (instrumented)
    plain_ms: float = 0.0  # the same main without the instrument hook
    repeat: int = 1

    @property
    def overhead_ms(self):
        return max(self.total_ms - self.plain_ms, 0.0)

    def by_kind(self):
        """``{kind: ms}`` summed over the rows."""
        out = {}
        for row in self.rows:
            out[row["kind"]] = out.get(row["kind"], 0.0) + row["ms"]
        return out

    def quantized_share(self):
        """Fraction of the profiled time spent in quantized kernels (integer or bit-serial)."""
        kinds = self.by_kind()
        quantized = sum(ms for kind, ms in kinds.items() if kind not in ("float", "runtime"))
        return quantized / self.total_ms if self.total_ms else 0.0

    def table(self, top=None):
        lines = [f"{'function':<60} {'kind':<11} {'calls':>5} {'ms':>9} {'share':>7}"]
        for row in self.rows[:top]:
            lines.append(f"{row['name'][:60]:<60} {row['kind']:<11} {row['calls']:>5} {row['ms']:>9.3f} "
                         f"{100 * row['share']:>6.1f}%")
        kinds = ", ".join(f"{kind} {ms:.3f} ms" for kind, ms in sorted(self.by_kind().items(), key=lambda kv: -kv[1]))
        lines.append(f"total {self.total_ms:.3f} ms instrumented ({self.plain_ms:.3f} ms without the hook), "
                     f"mean of {self.repeat}; by kind: {kinds}; quantized kernels "
                     f"{100 * self.quantized_share():.1f}% of the time")
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def profile_vm(executable, device, inputs, repeat=5):
    """:class:`Profile` of ``main`` on TVM inputs (module doc)."""
    from tvm import relax

    vm = relax.VirtualMachine(executable, device)
    vm["main"](*inputs)  # warm-up: first-call allocation and lazy loading
    start = time.perf_counter()
    for _ in range(repeat):
        vm["main"](*inputs)
    plain_ms = (time.perf_counter() - start) * 1e3 / repeat

    totals, stack = {}, []

    def instrument(func, symbol, before_run, ret_value, *args):
        now = time.perf_counter()
        if before_run:
            stack.append(now)
        else:
            entry = totals.setdefault(str(symbol), [0, 0.0])
            entry[0] += 1
            entry[1] += now - stack.pop()
        return 0  # VMInstrumentReturnKind.NO_OP: run the call as usual

    vm.set_instrument(instrument)
    for _ in range(repeat):
        vm["main"](*inputs)
    total = sum(seconds for _, seconds in totals.values()) * 1e3 / repeat
    rows = [{"name": name, "kind": kernel_kind(name), "calls": calls // repeat, "ms": seconds * 1e3 / repeat,
             "share": (seconds * 1e3 / repeat) / total if total else 0.0}
            for name, (calls, seconds) in totals.items()]
    rows.sort(key=lambda row: -row["ms"])
    return Profile(rows, total, plain_ms, repeat)
