"""Bounded yosys synthesis of the generated RTL and nextpnr place-and-route for Fmax.

``synthesize`` runs one configuration of one top module through ``synth_ice40`` or
``synth_xilinx -flatten -noiopad [-nodsp]`` and reads ``stat -json`` into a ``SynthResult``
(LUT / FF / carry / BRAM / DSP counts and wall time). Every run has a wall-time limit and an
address-space limit (``ulimit -v``): per-lane LUT decode grows as lanes x 2^b_w and took 600 s
and 6 GB at 64 lanes, b_w = 8 in a probe. A failing run raises ``SynthesisError`` with the
tool's last lines and the configuration; a run that hits a limit raises ``SynthesisLimitError``
so a sweep can record it as skipped.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tvm_qnn.errors import QnnError
from vta_ext.rtl.simulate import GEMM_MODULES, verilog_sources
from vta_ext.rtl.tools import find_tool, run_bounded

# top module -> the Verilog modules it needs
TOPS = {
    "gemm_unit": GEMM_MODULES,
    "alu_lanes": ("alu_lanes", "soft_mul32", "serial_mul32"),
    "lut_apply": ("lut_apply",),
    "mvau_stream": ("mvau_stream",),
    "pnr_harness": ("pnr_harness", *GEMM_MODULES),
    # the whole core (vta_ext/rtl/core_synth.py): needs the generated isa_fields.vh on the include path
    "qnn_core": ("qnn_core", "dma_read", "dma_write", "dma_byte_read", "dma_byte_write", "insn_queue", "qnn_compute",
                 *GEMM_MODULES, "lut_apply", "alu_lanes", "soft_mul32", "serial_mul32"),
}


class SynthesisError(QnnError):
    """yosys or nextpnr failed; the message carries the configuration and the tool's last lines."""


class SynthesisLimitError(SynthesisError):
    """A run exceeded its time or memory limit (recorded as skipped by the sweep)."""


def _count(cells, *patterns):
    return sum(n for name, n in cells.items() if any(re.fullmatch(p, name) for p in patterns))


# cell families per flow: what counts as a LUT, FF, carry, BRAM, DSP
_FAMILIES = {
    "xilinx": {"luts": (r"LUT[1-6]",), "ffs": (r"FD[A-Z]*",), "carry": (r"CARRY[48]",),
               "bram": (r"RAMB\d+E\d",), "dsp": (r"DSP48E\d",), "lutram": (r"RAM\d+[XM].*",)},
    "ice40": {"luts": (r"SB_LUT4",), "ffs": (r"SB_DFF\w*",), "carry": (r"SB_CARRY",),
              "bram": (r"SB_RAM40_4K\w*",), "dsp": (r"SB_MAC16",), "lutram": ()},
}


@dataclass(frozen=True)
class SynthResult:
    """Cell counts of one synthesized configuration."""

    top: str
    flow: str  # "xilinx", "xilinx-nodsp" or "ice40"
    params: dict
    luts: int
    ffs: int
    carry: int
    bram: int
    dsp: int
    lutram: int
    wall_s: float
    cells: dict = field(default_factory=dict)

    def as_dict(self):
        return {"top": self.top, "flow": self.flow, "params": self.params, "luts": self.luts, "ffs": self.ffs,
                "carry": self.carry, "bram": self.bram, "dsp": self.dsp, "lutram": self.lutram,
                "wall_s": round(self.wall_s, 2)}


FLOWS = {
    "xilinx": "synth_xilinx -flatten -noiopad -top {top}",
    "xilinx-nodsp": "synth_xilinx -flatten -noiopad -nodsp -top {top}",
    # as "xilinx", but every GEMM column (gemm_decode_column) stays a module of its own: it is mapped
    # once however many outputs instantiate it, then the netlist is flattened for the counts. For the
    # cores whose per-lane decode is past one flat run's time and memory (lanes x 2^b_w > 8,192).
    # Nothing is shared across columns, so it counts more: 27,131 LUT against the flat run's 25,805
    # (+5.1%; FF, BRAM, DSP equal) on benchmarks/fpga_core_fit.py's 1x8x8 a4/w2 core
    "xilinx-columns": ("hierarchy -top {top}\nsetattr -mod -set keep_hierarchy 1 *gemm_decode_column\n"
                       "synth_xilinx -flatten -noiopad -top {top}\nsetattr -mod -unset keep_hierarchy *\nflatten"),
    # up to (not including) the "check" label: its autoname pass took the most memory of the whole
    # run on the whole core (over 4 GB for a 32-lane core) and renames wires only
    "ice40": "synth_ice40 -top {top} -run :check",
    "ice40-dsp": "synth_ice40 -dsp -top {top} -run :check",
}


def yosys_script(top, params, flow, json_out=None, stat_out="stat.json", include_dir=None):
    """The yosys script of one run (read, set parameters, synthesize, ``stat -json``)."""
    if top not in TOPS:
        raise SynthesisError(f"unknown top {top!r}; known: {sorted(TOPS)}")
    if flow not in FLOWS:
        raise SynthesisError(f"unknown flow {flow!r}; known: {sorted(FLOWS)}")
    sources = " ".join(str(p) for p in verilog_sources(*TOPS[top]))
    chparam = " ".join(f"-set {k} {int(v)}" for k, v in params.items())
    include = f"-I{include_dir} " if include_dir else ""
    lines = [f"read_verilog -sv {include}{sources}"]
    if chparam:
        lines.append(f"chparam {chparam} {top}")
    lines += [FLOWS[flow].format(top=top), f"tee -q -o {stat_out} stat -json"]
    if json_out:
        lines.append(f"write_json {json_out}")
    return "\n".join(lines) + "\n"


def synthesize(top, params, flow="xilinx-nodsp", timeout_s=180.0, mem_mb=3072, json_out=None,
               headers=None) -> SynthResult:
    """Synthesize ``top`` with Verilog ``params`` through ``flow``; bounded in time and memory.
    ``headers`` (``{file name: text}``) are written next to the script and put on the include path."""
    yosys = find_tool("yosys")
    where = f"{top} {flow} {params}"
    with tempfile.TemporaryDirectory(prefix="qnn_synth_") as tmp:
        work = Path(tmp)
        for name, text in (headers or {}).items():
            (work / name).write_text(text)
        (work / "run.ys").write_text(yosys_script(top, params, flow, json_out, include_dir=work if headers else None))
        run = run_bounded([yosys, "-q", "-l", "yosys.log", "run.ys"], cwd=work, timeout_s=timeout_s, mem_mb=mem_mb)
        log_tail = run.tail()
        if (work / "yosys.log").is_file():
            log_tail = "\n".join((work / "yosys.log").read_text(errors="replace").splitlines()[-25:])
        if run.timed_out:
            raise SynthesisLimitError(f"yosys exceeded {timeout_s:.0f} s on {where}")
        if run.returncode != 0:
            if "out of memory" in log_tail.lower() or "bad_alloc" in log_tail or run.returncode in (-6, -9, 134, 137):
                raise SynthesisLimitError(f"yosys exceeded {mem_mb} MB on {where}:\n{log_tail}")
            raise SynthesisError(f"yosys failed (exit {run.returncode}) on {where}:\n{log_tail}")
        try:
            stat = json.loads((work / "stat.json").read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise SynthesisError(f"yosys wrote no readable stat -json for {where} ({err}):\n{log_tail}") from None
    cells = stat["design"]["num_cells_by_type"]
    family = _FAMILIES["ice40" if flow.startswith("ice40") else "xilinx"]
    counts = {key: _count(cells, *patterns) for key, patterns in family.items()}
    return SynthResult(top=top, flow=flow, params=dict(params), wall_s=run.wall_s, cells=dict(cells), **counts)


def ice40_fmax(top, params, device="hx8k", package="ct256", timeout_s=600.0, mem_mb=4096) -> dict:
    """Place and route ``top`` on an iCE40 with nextpnr; returns ``{"fmax_mhz", "luts", ...}``.

    The design's ports are left unconstrained (nextpnr places IOs itself); the figure is the
    max frequency nextpnr's timing analysis reports for the clock ``clk``.
    """
    yosys, nextpnr = find_tool("yosys"), find_tool("nextpnr-ice40")
    where = f"{top} ice40-{device} {params}"
    with tempfile.TemporaryDirectory(prefix="qnn_pnr_") as tmp:
        work = Path(tmp)
        script = yosys_script(top, params, "ice40", json_out="design.json")
        (work / "run.ys").write_text(script)
        run = run_bounded([yosys, "-q", "run.ys"], cwd=work, timeout_s=timeout_s, mem_mb=mem_mb)
        if run.returncode != 0 or run.timed_out:
            raise SynthesisError(f"yosys failed on {where}:\n{run.tail()}")
        pnr = run_bounded([nextpnr, f"--{device}", "--package", package, "--json", "design.json",
                           "--freq", "12", "--seed", "1", "--timing-allow-fail"],
                          cwd=work, timeout_s=timeout_s, mem_mb=mem_mb)
        if pnr.returncode != 0 or pnr.timed_out:
            raise SynthesisError(f"nextpnr-ice40 failed on {where}:\n{pnr.tail()}")
    text = pnr.stderr + pnr.stdout
    found = re.findall(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+)\s+MHz", text)
    if not found:
        raise SynthesisError(f"nextpnr-ice40 reported no Fmax for {where}:\n{pnr.tail()}")
    util = dict(re.findall(r"(ICESTORM_LC|ICESTORM_RAM|SB_IO|ICESTORM_DSP):\s+(\d+)/", text))
    return {"fmax_mhz": float(found[-1][1]), "clock": found[-1][0], "device": device, "package": package,
            "logic_cells": int(util.get("ICESTORM_LC", 0)), "io": int(util.get("SB_IO", 0)),
            "wall_s": round(pnr.wall_s + run.wall_s, 1)}
