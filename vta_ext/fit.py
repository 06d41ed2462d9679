"""Does a configured core fit the part it names? (``HwConfig.part``, ``vta_ext/parts.py``)

``utilisation(cfg)`` gives, per resource (LUT, FF, block RAM, DSP), what the core needs, the
part's capacity and where the figure comes from:

* **measured**: the whole core synthesized by yosys for this exact hardware (same array, bits,
  LUT mode and buffers), from the committed ``vta_ext/rtl_fit/whole_core.json``
  (``vta_ext.rtl.core_synth`` writes it);
* **model**: otherwise ``vta_ext.resources.estimate`` (coefficients fitted on whole cores
  synthesized by yosys, ``vta_ext.rtl.core_fit``), with block RAM counted from the RTL's memories
  on the part's own block shapes (``resources.block_rams``: RAMB36/RAMB18 on Xilinx, 4 Kb EBR on
  iCE40). The coefficients were fitted on ``synth_xilinx`` cells (LUT6); on an iCE40 (LUT4) the
  LUT figure is a lower bound.

``check_fit(cfg)`` raises ``HwConfigError`` naming the first resource over capacity and both
numbers; ``HwConfig`` calls it when it names a part, so an over-sized core is refused before
anything is compiled or run.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from tvm_qnn.errors import HwConfigError

from .parts import RESOURCES, get_part

MEASURED_PATH = Path(__file__).resolve().parent / "rtl_fit" / "whole_core.json"

# the HwConfig fields the synthesized hardware depends on (clock and DMA timing do not change the netlist)
HARDWARE_FIELDS = ("batch", "block_in", "block_out", "max_a_bits", "max_w_bits", "lut_entries", "lut_mode",
                   "inp_buff_bytes", "wgt_buff_bytes", "acc_buff_bytes", "uop_buff_bytes", "prm_buff_bytes",
                   "dma_bytes_per_cycle", "alu_lanes", "alu_mul_cycles", "gemm_out_lanes", "prm_row_beats", "part")
# fields added after cores were recorded: a record without one was synthesized with its default
HARDWARE_DEFAULTS = {"alu_mul_cycles": 1, "gemm_out_lanes": None, "prm_row_beats": False}
NAMES = {"lut": "LUT", "ff": "FF", "bram": "block RAM", "dsp": "DSP"}


def hardware_key(cfg):
    """The fields that determine the synthesized netlist, as a dict (JSON-comparable)."""
    return {f: getattr(cfg, f) for f in HARDWARE_FIELDS}


def same_hardware(recorded, cfg):
    """Whether a record's ``hardware`` dict (perhaps written before a field existed) is ``cfg``'s netlist."""
    return {**HARDWARE_DEFAULTS, **recorded} == hardware_key(cfg)


@lru_cache(maxsize=4)
def _measured_table(path, mtime):
    del mtime  # part of the cache key only: a rewritten file is read again
    data = json.loads(Path(path).read_text())
    return [(entry["hardware"], entry["measured"]) for entry in data.get("cores", {}).values()]


def measured(cfg, path=MEASURED_PATH):
    """``{resource: count}`` of the synthesized whole core with ``cfg``'s hardware, or None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        table = _measured_table(str(path), path.stat().st_mtime)
    except (json.JSONDecodeError, KeyError) as err:
        raise HwConfigError(f"{path}: measured whole-core utilisation is not readable: {err}") from None
    for hardware, counts in table:
        if same_hardware(hardware, cfg):
            return {r: int(counts[r]) for r in RESOURCES}
    return None


def modelled(cfg, part=None):
    """``{resource: count}`` from the resource model, block RAM in the block size of ``part`` (default
    ``cfg.part``)."""
    from .resources import block_rams, estimate

    part = get_part(part or cfg.part)
    e = estimate(cfg)
    bram = block_rams(cfg, part.family)
    return {"lut": int(math.ceil(e.luts)), "ff": int(math.ceil(e.ffs)), "bram": bram, "dsp": int(math.ceil(e.dsps))}


def utilisation(cfg):
    """``{resource: {"need", "capacity", "fraction"}, "source": "measured"|"model", "part": name}``."""
    part = get_part(cfg.part)
    need, source = measured(cfg), "measured (yosys, whole core)"
    if need is None:
        need, source = modelled(cfg), "model (vta_ext.resources.estimate)"
    cap = part.capacity()
    out = {r: {"need": need[r], "capacity": cap[r],
               "fraction": (need[r] / cap[r]) if cap[r] else (0.0 if need[r] == 0 else math.inf)} for r in RESOURCES}
    out.update(source=source, part=part.name)
    return out


def check_fit(cfg):
    """Raise ``HwConfigError`` unless every resource of ``cfg``'s core is within its part's capacity."""
    report = utilisation(cfg)
    for r in RESOURCES:
        need, cap = report[r]["need"], report[r]["capacity"]
        if need > cap:
            raise HwConfigError(
                f"config {cfg.name!r} does not fit its part {cfg.part}: {NAMES[r]} {need:,} needed > {cap:,} "
                f"available ({report['source']}; array {cfg.batch}x{cfg.block_in}x{cfg.block_out}, "
                f"a{cfg.max_a_bits}/w{cfg.max_w_bits}, lut_mode={cfg.lut_mode!r}): use fewer lanes, fewer "
                f"weight bits or the other lut_mode")
    return report
