"""Multi-FPGA streaming planner (the third seed paper's architecture): one dedicated hardware
block per layer, blocks joined by row streams through FIFOs, cut across several devices.

Modules, in the order a plan is made:
``graph`` (the layer DAG) <- ``netdefs`` (networks from shapes) / ``from_relax`` (a quantized
Relax module); ``blocks`` (per-layer rows, windows, foldings); ``cost`` (devices, block cycles and
resources); ``planner`` (balance, cut, FIFO depths -> ``plan``); ``plan`` (the result and its
JSON/Markdown views); ``sim`` (row-level discrete-event simulation of a plan).
"""

from vta_ext.streaming.planner import DeviceCountError, plan, plan_cli
from vta_ext.streaming.sim import StreamDeadlockError, simulate

__all__ = ["DeviceCountError", "StreamDeadlockError", "plan", "plan_cli", "simulate"]
