"""An iCE40 bitstream of a configured core: yosys ``synth_ice40`` -> ``nextpnr-ice40`` -> ``icepack``.

``build_bitstream(cfg, out_dir)`` places and routes ``qnn_board`` (the whole ``qnn_core`` with its
DRAM ports on a shift chain and one observed pin, ``rtl/verilog/qnn_board.v``) for the config's
part, timing-driven at the config's ``clock_mhz``, and writes into ``out_dir``:

* ``core.bin``   the bitstream (``icepack``);
* ``core.asc``   nextpnr's text bitstream, ``core.json`` the synthesized netlist;
* ``report.json`` utilisation per resource (used / available, from nextpnr), the Fmax nextpnr
  achieved against the clock asked for, the tools' versions and each stage's wall time.

A stage that fails raises ``BitstreamError`` naming the stage (``synthesis``, ``placement``,
``timing``, ``packing``) and the numbers: cells needed against the device's, Fmax against the
clock. ``run_ice40_flow`` is the same flow for any top module (tests use the small GEMM harness);
``unpack_bitstream`` reads a ``core.bin`` back with ``icepack -u``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from tvm_qnn.errors import HwConfigError
from vta_ext.parts import get_part
from vta_ext.rtl.simulate import verilog_sources
from vta_ext.rtl.synth import TOPS, SynthesisError
from vta_ext.rtl.tools import find_tool, run_bounded, tool_version

# iCE40 part -> (nextpnr device flag, package of the board the part list names): the HX8K
# breakout board carries the CT256 package, iCEBreaker and UPduino the SG48
ICE40_DEVICES = {"ice40hx8k": ("hx8k", "ct256"), "ice40up5k": ("up5k", "sg48")}
BOARD_TOP = "qnn_board"
BOARD_MODULES = (BOARD_TOP, *TOPS["qnn_core"])


class BitstreamError(SynthesisError):
    """A stage of the bitstream flow failed; ``stage`` names it and the message carries the numbers."""

    def __init__(self, stage, message):
        super().__init__(f"bitstream {stage} failed: {message}")
        self.stage = stage


def _tail(text, lines=20):
    return "\n".join(text.strip().splitlines()[-lines:])


def _utilisation(report):
    """``{nextpnr cell type: {"used", "available"}}`` from nextpnr's ``--report`` JSON."""
    return {name: {"used": int(v["used"]), "available": int(v["available"])}
            for name, v in report.get("utilization", {}).items()}


def _overflow(log):
    """nextpnr's "N cells of type T but only M available" lines, as one sentence (or "")."""
    found = re.findall(r"(\d+)\s+cells of type '?(\w+)'?.*?only\s+(\d+)\s+available", log)
    return "; ".join(f"{kind}: {need} needed > {have} available" for need, kind, have in found)


def ice40_logic_cells(netlist, part_name, timeout_s=600.0, mem_mb=4096):
    """Logic cells ``nextpnr-ice40 --pack-only`` packs a synthesized ``netlist`` (yosys JSON) into on
    ``part_name``: one LUT4 and one flip-flop share a cell only where the LUT drives nothing but that
    flip-flop's D input, so a register loaded from another register, a buffer read or a shared net takes
    a cell of its own, and carry chains need legalising cells. This, not the LUT4 count, is what the
    part's 7,680 (HX8K) cells must hold; packing never fails for size, so it measures an oversized core."""
    if part_name not in ICE40_DEVICES:
        raise HwConfigError(f"part={part_name!r}: logic cells are counted for the iCE40 parts {sorted(ICE40_DEVICES)}")
    device, package = ICE40_DEVICES[part_name]
    netlist = Path(netlist)
    report_path = netlist.with_name(netlist.stem + "_pack.json")
    run = run_bounded([find_tool("nextpnr-ice40"), f"--{device}", "--package", package, "--json", str(netlist),
                       "--pack-only", "--report", str(report_path)], cwd=netlist.parent, timeout_s=timeout_s,
                      mem_mb=mem_mb)
    if run.timed_out or run.returncode != 0 or not report_path.is_file():
        raise BitstreamError("packing", f"nextpnr-ice40 --pack-only on {netlist.name} for {part_name}: "
                                        f"exit {run.returncode}\n{run.tail()}")
    return _utilisation(json.loads(report_path.read_text()))["ICESTORM_LC"]["used"]


def run_ice40_flow(top, modules, params, part_name, clock_mhz, out_dir, headers=None, seed=1, timeout_s=3600.0,
                   mem_mb=4096):
    """Synthesize ``top`` (from ``modules``) with ``params``, place and route it on ``part_name`` at
    ``clock_mhz`` and pack ``out_dir/core.bin``; returns the report dict (also ``out_dir/report.json``)."""
    if part_name not in ICE40_DEVICES:
        raise HwConfigError(f"part={part_name!r}: bitstreams are built for the iCE40 parts {sorted(ICE40_DEVICES)} "
                            f"(open-source place and route); Xilinx parts need Vivado")
    part = get_part(part_name)
    device, package = ICE40_DEVICES[part_name]
    yosys, nextpnr, icepack = find_tool("yosys"), find_tool("nextpnr-ice40"), find_tool("icepack")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (headers or {}).items():
        (out / name).write_text(text)
    sources = " ".join(str(p) for p in verilog_sources(*modules))
    chparam = " ".join(f"-set {k} {int(v)}" for k, v in params.items())
    script = [f"read_verilog -sv -I{out} {sources}"]
    if chparam:
        script.append(f"chparam {chparam} {top}")
    # synth.FLOWS' iCE40 flow stops before autoname (memory); the netlist is written explicitly
    script += [f"synth_ice40 {'-dsp ' if part.dsp else ''}-top {top} -run :check", "write_json core.json",
               "tee -q -o synth_stat.json stat -json"]
    (out / "core.ys").write_text("\n".join(script) + "\n")
    stages = {}

    run = run_bounded([yosys, "-q", "-l", "yosys.log", "core.ys"], cwd=out, timeout_s=timeout_s, mem_mb=mem_mb)
    stages["synthesis_s"] = round(run.wall_s, 1)
    if run.timed_out or run.returncode != 0:
        log = (out / "yosys.log").read_text(errors="replace") if (out / "yosys.log").is_file() else run.tail()
        why = f"exceeded {timeout_s:.0f} s" if run.timed_out else f"yosys exit {run.returncode}"
        raise BitstreamError("synthesis", f"{top} {params}: {why}\n{_tail(log)}")

    pnr = run_bounded([nextpnr, f"--{device}", "--package", package, "--json", "core.json", "--asc", "core.asc",
                       "--freq", f"{clock_mhz:g}", "--seed", str(seed), "--report", "pnr_report.json",
                       "--timing-allow-fail"], cwd=out, timeout_s=timeout_s, mem_mb=mem_mb)
    stages["place_route_s"] = round(pnr.wall_s, 1)
    log = pnr.stderr + pnr.stdout
    (out / "nextpnr.log").write_text(log)
    if pnr.timed_out or pnr.returncode != 0 or not (out / "core.asc").is_file():
        over = _overflow(log)
        why = over or (f"exceeded {timeout_s:.0f} s" if pnr.timed_out else f"nextpnr-ice40 exit {pnr.returncode}")
        raise BitstreamError("placement", f"{top} on {part_name} ({device}, {package}): {why}\n{_tail(log)}")
    pnr_report = json.loads((out / "pnr_report.json").read_text())
    fmax = {clock: float(v["achieved"]) for clock, v in pnr_report.get("fmax", {}).items()}
    if not fmax:
        raise BitstreamError("timing", f"nextpnr-ice40 reported no clock for {top}:\n{_tail(log)}")
    achieved = min(fmax.values())
    report = {
        "format": "tvm-qnn-bitstream/1", "top": top, "part": part_name, "device": device, "package": package,
        "parameters": {k: int(v) for k, v in params.items()}, "clock_mhz": float(clock_mhz),
        "fmax_mhz": round(achieved, 2), "fmax_by_clock_mhz": {k: round(v, 2) for k, v in fmax.items()},
        "timing_met": achieved >= clock_mhz, "utilisation": _utilisation(pnr_report),
        "tools": {"yosys": tool_version("yosys"), "nextpnr-ice40": tool_version("nextpnr-ice40")},
        "seed": seed, "stages": stages,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    if not report["timing_met"]:
        raise BitstreamError("timing", f"{top} on {part_name}: Fmax {achieved:.2f} MHz < clock {clock_mhz:g} MHz "
                                       f"(set clock_mhz to at most {math.floor(achieved)} or shorten the path); "
                                       f"report in {out / 'report.json'}")

    pack = run_bounded([icepack, "core.asc", "core.bin"], cwd=out, timeout_s=600, mem_mb=mem_mb)
    stages["packing_s"] = round(pack.wall_s, 1)
    if pack.returncode != 0 or not (out / "core.bin").is_file():
        raise BitstreamError("packing", f"icepack exit {pack.returncode}:\n{pack.tail()}")
    report["bitstream_bytes"] = (out / "core.bin").stat().st_size
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def build_bitstream(cfg, out_dir, seed=1, timeout_s=3600.0, mem_mb=4096):
    """The bitstream of ``cfg``'s whole core (``qnn_board``) for its iCE40 part at its ``clock_mhz``."""
    from vta_ext.rtl.core_synth import synthesis_parameters
    from vta_ext.rtl.cosim import isa_header

    if cfg.part is None:
        raise HwConfigError(f"config {cfg.name!r} names no part: a bitstream needs part= (one of "
                            f"{sorted(ICE40_DEVICES)})")
    report = run_ice40_flow(BOARD_TOP, BOARD_MODULES, synthesis_parameters(cfg), cfg.part, cfg.clock_mhz, out_dir,
                            headers={"isa_fields.vh": isa_header()}, seed=seed, timeout_s=timeout_s, mem_mb=mem_mb)
    report["config"] = cfg.name
    (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def unpack_bitstream(bin_path, timeout_s=120.0):
    """Read ``core.bin`` back with ``icepack -u`` (into ``<name>.unpacked.asc`` beside it): ``{"device",
    "logic_tiles"}`` of the unpacked text bitstream; ``BitstreamError`` (stage ``read-back``) if icepack cannot."""
    path = Path(bin_path)
    back = path.with_suffix(".unpacked.asc")
    run = run_bounded([find_tool("icepack"), "-u", path.name, back.name], cwd=path.parent, timeout_s=timeout_s)
    if run.returncode != 0 or not back.is_file():
        raise BitstreamError("read-back", f"icepack -u {path} exit {run.returncode}:\n{run.tail()}")
    text = back.read_text()
    device = re.search(r"^\.device (\S+)", text, re.M)
    return {"device": device.group(1) if device else None, "logic_tiles": text.count(".logic_tile")}
