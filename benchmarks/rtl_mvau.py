"""Synthesis sweep of the streaming layer block (``vta_ext/rtl/verilog/mvau_stream.v``) and the
block resource fit the streaming planner uses.

    .venv/bin/python benchmarks/rtl_mvau.py            # sweep (~5 min on one core), fit, write JSON
    .venv/bin/python benchmarks/rtl_mvau.py --refit    # fit again from the JSON's rows

Every point is one yosys run (``synth_xilinx -flatten -noiopad -nodsp``: LUT-only logic; the
weight, threshold and input memories map to LUTRAM cells, counted apart from the logic LUTs,
because the planner charges memories by geometry) at a small depth (NF = SF = 2), since depth
changes memory, not logic. Points marked ``heldout`` are never fitted: they are larger than the
fit points in PE, SIMD or bits, so their error is an extrapolation error. Writes
``vta_ext/rtl_fit/mvau_fit.json`` (read by ``vta_ext.streaming.cost.block_resources``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vta_ext.rtl import mvau  # noqa: E402
from vta_ext.rtl.synth import SynthesisError, synthesize  # noqa: E402
from vta_ext.rtl.tools import tool_version  # noqa: E402

FLOW = "xilinx-nodsp"
# (PE, SIMD, W_BITS, A_BITS, O_BITS)
FIT_POINTS = [
    (1, 8, 2, 2, 2), (2, 8, 2, 2, 2), (4, 8, 2, 2, 2), (8, 8, 2, 2, 2), (2, 16, 2, 2, 2), (2, 32, 2, 2, 2),
    (4, 16, 1, 1, 1), (4, 16, 2, 2, 2), (4, 16, 4, 4, 4), (2, 8, 4, 4, 4), (8, 16, 1, 1, 1), (1, 32, 4, 4, 4),
    (4, 4, 3, 3, 3), (8, 4, 2, 2, 2), (2, 4, 1, 2, 2), (4, 8, 2, 4, 2), (4, 8, 2, 2, 4), (2, 16, 3, 1, 3),
]
HELDOUT_POINTS = [(8, 32, 2, 2, 2), (4, 32, 4, 4, 4), (16, 8, 2, 2, 2), (8, 8, 3, 3, 3), (16, 16, 1, 1, 1),
                  (16, 64, 2, 2, 2), (32, 32, 1, 2, 2)]  # the last two: 1024 lanes, 8x the largest fitted (128)


def params_of(point):
    pe, simd, w_bits, a_bits, o_bits = point
    return {"PE": pe, "SIMD": simd, "MW": 2 * simd, "MH": 2 * pe, "W_BITS": w_bits, "A_BITS": a_bits,
            "O_BITS": o_bits}


def sweep(timeout_s=180.0):
    rows = []
    for role, points in (("fit", FIT_POINTS), ("heldout", HELDOUT_POINTS)):
        for point in points:
            params = params_of(point)
            try:
                result = synthesize("mvau_stream", params, flow=FLOW, timeout_s=timeout_s, mem_mb=3072)
            except SynthesisError as err:
                print(f"skipped {params}: {str(err).splitlines()[0]}")
                continue
            row = {**result.as_dict(), "role": role}
            rows.append(row)
            print(f"{role:7s} PE={point[0]:2d} SIMD={point[1]:2d} w{point[2]}a{point[3]}o{point[4]}: "
                  f"{result.luts:6,} LUT {result.ffs:5,} FF {result.lutram:4} LUTRAM  ({result.wall_s:.1f} s)")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refit", action="store_true", help="fit from the committed JSON's rows only")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.refit:
        old = json.loads(mvau.FIT_PATH.read_text())
        rows, tools, sweep_s = old["rows"], old["tools"], old["sweep_seconds"]
    else:
        rows = sweep()
        tools = {"yosys": tool_version("yosys")}
        sweep_s = round(time.perf_counter() - started, 1)
    fit = mvau.fit_block(rows)
    data = {
        "format": mvau.FIT_FORMAT,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": f"benchmarks/rtl_mvau.py: yosys synth_xilinx -flatten -noiopad -nodsp of "
                  f"vta_ext/rtl/verilog/mvau_stream.v ({len(rows)} configurations)",
        "tools": tools, "flow": FLOW, "sweep_seconds": sweep_s,
        "terms": {"lut": list(mvau.LUT_TERMS), "ff": list(mvau.FF_TERMS)},
        "not_from_rtl": ["memories (weights, thresholds, line buffers, FIFOs: BRAM36/LUTRAM by geometry)",
                         "DSP (the block has no multiplier)", "pool/add blocks"],
        "fit": fit, "rows": rows,
    }
    mvau.FIT_PATH.parent.mkdir(parents=True, exist_ok=True)
    mvau.FIT_PATH.write_text(json.dumps(data, indent=1) + "\n")
    print(f"LUT terms {fit['lut']}\nFF terms {fit['ff']}")
    print(f"fit max rel error: LUT {fit['lut_fit_max_rel_error']:.1%}, FF {fit['ff_fit_max_rel_error']:.1%}; "
          f"held-out max: LUT {fit['heldout_max_lut_rel_error']:.1%}, FF {fit['heldout_max_ff_rel_error']:.1%}")
    print(f"wrote {mvau.FIT_PATH} ({sweep_s} s of synthesis)")


if __name__ == "__main__":
    main()
