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
    python benchmarks/fpga_build.py --candidates        # also the candidate cores below (not presets)

A candidate is a core synthesized for a part it does not name (the resource model refuses it
there): its measured figures are recorded too, so ``HwConfig(part=...)`` with that hardware is
refused with measured numbers, and the README says why there is no preset for the part.
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

from vta_ext.config import HwConfig, preset_names  # noqa: E402
from vta_ext.fit import modelled  # noqa: E402
from vta_ext.parts import get_part  # noqa: E402
from vta_ext.rtl.bitstream import ICE40_DEVICES, BitstreamError, build_bitstream  # noqa: E402
from vta_ext.rtl.core_synth import flow_of, record, synthesize_core  # noqa: E402
from vta_ext.rtl.synth import SynthesisLimitError  # noqa: E402
from vta_ext.rtl.tools import tool_version  # noqa: E402

OUT = REPO / "results" / "fpga_build.json"
# the smallest core that runs 2-bit layers on an iCE40 HX8K: 1x8x4 lanes (4 outputs: 2-bit output
# vectors are whole bytes) folded to one output column per clock (gemm_out_lanes=1: a GEMM step
# passes over the 4 outputs), a2/w2 LUT weights, one ALU lane (no DSP on the part) whose multiplier
# is serial (8 clocks per multiply: ~430 LUT4 instead of soft_mul32's ~1.7k), 1-byte DMA beats,
# buffers of a few EBRs each
CANDIDATES = {
    "ice40_hx8k_smallest": (dict(batch=1, block_in=8, block_out=4, max_a_bits=2, max_w_bits=2, lut_entries=4,
                                 lut_mode="decode", inp_buff_bytes=512, wgt_buff_bytes=1024, acc_buff_bytes=2048,
                                 uop_buff_bytes=2048, prm_buff_bytes=64, dma_bytes_per_cycle=1,
                                 dma_latency_cycles=16, gemm_pipeline_cycles=2, alu_pipeline_cycles=2,
                                 alu_lanes=1, alu_mul_cycles=8, gemm_out_lanes=1), "ice40hx8k"),
}


# lanes x 2^b_w above which a LUT-weight GEMM is not attempted (benchmarks/rtl.py's sweep bound: its
# per-lane decode / one-hot logic took 600 s and 6 GB in yosys at 64 lanes x 256 levels)
MAX_LANE_LEVELS = 8192


def synthesize_entry(name, cfg, part, args):
    """Synthesize ``cfg``'s core for ``part``, record it, and return its results entry."""
    entry = {"part": part.name, "flow": flow_of(part), "capacity": part.capacity(),
             "model": modelled(cfg.replace(part=None), part.name),
             "array": f"{cfg.batch}x{cfg.block_in}x{cfg.block_out}", "bits": [cfg.max_a_bits, cfg.max_w_bits],
             "lut_mode": cfg.lut_mode, "alu_lanes": cfg.alu_lane_count, "preset": name in preset_names()}
    lane_levels = cfg.lanes << cfg.max_w_bits
    if lane_levels > args.max_lane_levels:
        entry.update(measured=None, skipped=f"not attempted: lanes x 2^b_w = {lane_levels:,} > "
                                            f"{args.max_lane_levels:,} (the RTL sweep's yosys bound)")
        print(name, entry["skipped"], flush=True)
        return entry
    try:
        result, measured = synthesize_core(cfg, part=part.name, timeout_s=args.timeout_s, mem_mb=args.mem_mb)
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
    parser.add_argument("--candidates", action="store_true", help="also synthesize the CANDIDATES cores")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {"cores": {}, "bitstreams": {}}
    data.update(machine=machine_info(), tools={t: tool_version(t) for t in ("yosys", "nextpnr-ice40")})
    if args.candidates:
        for name, (fields, part_name) in CANDIDATES.items():
            data["cores"][name] = synthesize_entry(name, HwConfig(name=name, **fields), get_part(part_name), args)
    for name in args.presets or ([] if args.candidates else preset_names()):
        cfg = HwConfig.preset(name)
        part = get_part(cfg.part)
        if not args.bitstream_only:
            data["cores"][name] = synthesize_entry(name, cfg, part, args)
        if cfg.part in ICE40_DEVICES:
            with tempfile.TemporaryDirectory(prefix="qnn_bitstream_") as tmp:
                try:
                    report = build_bitstream(cfg, tmp)
                except BitstreamError as err:
                    data["bitstreams"][name] = {"error": str(err).splitlines()[0], "stage": err.stage}
                else:
                    data["bitstreams"][name] = {k: report[k] for k in (
                        "part", "device", "package", "clock_mhz", "fmax_mhz", "timing_met", "utilisation",
                        "bitstream_bytes", "stages", "seed")}
            print(name, "bitstream:", json.dumps(data["bitstreams"][name]), flush=True)
    out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
