"""Whole-core synthesis of the presets and the iCE40 bitstream: what the accelerator needs on its part.

For each preset (or the ones named): yosys synthesizes the whole core (``vta_ext.rtl.core_synth``)
with its part's flow, the measured LUT / FF / block RAM / DSP are recorded in
``vta_ext/rtl_fit/whole_core.json`` (what ``vta_ext.fit`` checks) and, for an iCE40 preset, the
bitstream is built (``vta_ext.rtl.bitstream``: nextpnr at the preset's clock, icepack). A preset
whose synthesis exceeds the time/memory bound is recorded as such. Everything goes into
``results/fpga_build.json``, which ``benchmarks/report.py`` renders into the README.

    python benchmarks/fpga_build.py                     # every preset
    python benchmarks/fpga_build.py ice40_hx8k          # one preset
    python benchmarks/fpga_build.py --bitstream-only    # iCE40 presets: the bitstream only

A preset is synthesized from its JSON fields for the part it names before ``HwConfig`` checks the
fit (which reads this record: the resource model alone refuses the iCE40 core, whose measured
figures fit); the bitstream is built from the checked preset.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_info  # noqa: E402

from tvm_qnn.errors import HwConfigError  # noqa: E402
from vta_ext.config import CONFIG_DIR, HwConfig, preset_names  # noqa: E402
from vta_ext.fit import modelled  # noqa: E402
from vta_ext.parts import get_part  # noqa: E402
from vta_ext.rtl.bitstream import ICE40_DEVICES, BitstreamError, build_bitstream  # noqa: E402
from vta_ext.rtl.core_synth import MAX_LANE_LEVELS, flow_of, record, synthesize_core  # noqa: E402
from vta_ext.rtl.synth import SynthesisLimitError  # noqa: E402
from vta_ext.rtl.tools import tool_version  # noqa: E402

OUT = REPO / "results" / "fpga_build.json"


def unchecked_preset(name):
    """``(HwConfig, Part)`` of a preset, the config built without its part (so without the fit check)."""
    fields = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    part = get_part(fields.pop("part"))
    return HwConfig(**fields), part


def synthesize_entry(name, cfg, part, args):
    """Synthesize ``cfg``'s core for ``part``, record it, and return its results entry."""
    entry = {"part": part.name, "flow": flow_of(part), "capacity": part.capacity(),
             "model": modelled(cfg.replace(part=None), part.name),
             "array": f"{cfg.batch}x{cfg.block_in}x{cfg.block_out}", "bits": [cfg.max_a_bits, cfg.max_w_bits],
             "lut_mode": cfg.lut_mode, "alu_lanes": cfg.alu_lane_count, "preset": name in preset_names()}
    try:
        entry["flow"] = flow_of(part, cfg, args.max_lane_levels)
        result, measured = synthesize_core(cfg, part=part.name, timeout_s=args.timeout_s, mem_mb=args.mem_mb,
                                           max_lane_levels=args.max_lane_levels)
    except SynthesisLimitError as err:
        entry.update(measured=None, skipped=str(err).splitlines()[0])
        print(name, "skipped:", entry["skipped"], flush=True)
        return entry
    record(cfg, result, measured, part=part.name)
    entry.update(measured=measured, wall_s=round(result.wall_s, 1),
                 fits=all(measured[r] <= part.capacity()[r] for r in measured))
    print(name, json.dumps(measured), "fits" if entry["fits"] else "DOES NOT FIT", flush=True)
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="presets (default: all)")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="yosys wall-time bound per core")
    parser.add_argument("--mem-mb", type=int, default=8192, help="yosys address-space bound per core")
    parser.add_argument("--bitstream-only", action="store_true", help="skip synthesis; build iCE40 bitstreams")
    parser.add_argument("--max-lane-levels", type=int, default=MAX_LANE_LEVELS,
                        help="skip cores with more lanes x 2^b_w (default %(default)s)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"cores": {}, "bitstreams": {}}
    data.update(machine=machine_info(), tools={t: tool_version(t) for t in ("yosys", "nextpnr-ice40")})
    mine = {"cores": set(), "bitstreams": set()}
    for name in args.presets or preset_names():
        cfg, part = unchecked_preset(name)
        if not args.bitstream_only:
            data["cores"][name] = synthesize_entry(name, cfg, part, args)
            mine["cores"].add(name)
        if part.name in ICE40_DEVICES:
            with tempfile.TemporaryDirectory(prefix="qnn_bitstream_") as tmp:
                try:
                    report = build_bitstream(HwConfig.preset(name), tmp)
                except HwConfigError as err:  # the measured core does not fit its part
                    data["bitstreams"][name] = {"error": str(err).splitlines()[0], "stage": "fit"}
                except BitstreamError as err:
                    data["bitstreams"][name] = {"error": str(err).splitlines()[0], "stage": err.stage}
                else:
                    data["bitstreams"][name] = {k: report[k] for k in (
                        "part", "device", "package", "clock_mhz", "fmax_mhz", "timing_met", "utilisation",
                        "bitstream_bytes", "stages", "seed")}
            mine["bitstreams"].add(name)
            print(name, "bitstream:", json.dumps(data["bitstreams"][name]), flush=True)
    # another run may have written other presets meanwhile (yosys runs take up to hours): keep them
    latest = json.loads(out.read_text()) if out.is_file() else {}
    for key in ("cores", "bitstreams"):
        data[key] = {**latest.get(key, {}), **{k: v for k, v in data[key].items() if k in mine[key]}}
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
