"""What executes a compiled layer's instruction stream: the functional simulator or the RTL core.

``"sim"`` (default) runs ``vta_ext.sim.functional``; ``"rtl"`` runs the whole core in RTL
(``vta_ext.rtl.core_cosim.run_core``: fetch, queues, tokens, DMA, datapath, in iverilog or
verilator) on the same DRAM image, so a board served with ``tvm-qnn serve --fpga CONFIG --rtl``
answers from the hardware description itself; ``"cosim"`` runs both on every layer, answers with the
simulator's output and keeps each layer's ``CoreReport`` (DRAM compared byte for byte, RTL cycles
against the timing model) for :func:`cosim_reports`, which co-simulates a whole network layer by
layer on its real activations. The choice is per process (a board's forked RPC sessions inherit
it); ``Segment.run`` asks :func:`run_layer`.
"""

from __future__ import annotations

from tvm_qnn.errors import HwConfigError

BACKENDS = ("sim", "rtl", "cosim")
_STATE = {"backend": "sim", "simulator": "iverilog", "reports": []}


def set_backend(name, simulator="iverilog"):
    """Select the executor of accelerator layers in this process (``"sim"``, ``"rtl"`` or ``"cosim"``); selecting
    one clears the co-simulation reports."""
    if name not in BACKENDS:
        raise HwConfigError(f"accelerator backend {name!r}; expected one of {list(BACKENDS)}")
    if simulator not in ("iverilog", "verilator"):
        raise HwConfigError(f"RTL simulator {simulator!r}; expected 'iverilog' or 'verilator'")
    if name != "sim":
        from vta_ext.rtl.tools import find_tool

        find_tool("iverilog" if simulator == "iverilog" else "verilator")  # ToolNotFoundError now, not mid-run
    _STATE.update(backend=name, simulator=simulator, reports=[])


def get_backend():
    return _STATE["backend"]


def run_layer(program, act_codes):
    """Output of a compiled layer (``LayerProgram``) on ``act_codes`` from the selected backend."""
    if _STATE["backend"] == "sim":
        from vta_ext.sim.functional import run_program

        return run_program(program, act_codes)
    if _STATE["backend"] == "cosim":
        from vta_ext.rtl.core_cosim import cosim_core_program

        report, sim_out, _ = cosim_core_program(program, act_codes, _STATE["simulator"])
        _STATE["reports"].append(report)
        return sim_out
    from vta_ext.rtl.core_cosim import run_core

    dram, _ = run_core(program.config, program.insns, program.load_input(act_codes), _STATE["simulator"])
    return program.read_output(dram)


def cosim_reports():
    """The ``CoreReport`` of every layer run under the ``"cosim"`` backend since it was selected, in order."""
    return list(_STATE["reports"])
