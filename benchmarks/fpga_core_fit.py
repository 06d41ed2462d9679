"""Whole-core resource fit: yosys on a set of whole cores, the resource model refitted on them.

    .venv/bin/python benchmarks/fpga_core_fit.py --jobs 2   # synthesize the missing cores, fit, write
    .venv/bin/python benchmarks/fpga_core_fit.py --refit    # fit from results/fpga_core_fit.json only
    .venv/bin/python benchmarks/fpga_core_fit.py --only NAME --out other.json   # some cores elsewhere,
    .venv/bin/python benchmarks/fpga_core_fit.py --merge other.json --refit     # then fit with them too

Every core below is a whole ``qnn_core`` (fetch, queues, DMA, buffers, GEMM, ALU) synthesized by
``vta_ext.rtl.core_synth`` for the Zynq-7020 (``synth_xilinx``, DSPs allowed). The arrays, bits,
LUT modes, ALU lanes, folding and buffers differ; ``role`` "fit" cores fit the coefficients,
"heldout" cores are only predicted. The Xilinx presets measured by ``benchmarks/fpga_build.py``
(``vta_ext/rtl_fit/whole_core.json``) are held out too. ``vta_ext.rtl.core_fit`` does the fit and
writes ``vta_ext/rtl_fit/core_fit.json``, whose coefficients ``vta_ext.resources`` loads over the
GEMM-unit sweep's. Results (every core, the fit and the held-out errors) go to
``results/fpga_core_fit.json`` (measured vs model plotted in ``results/fpga_core_fit.png``); cores
already there with the same hardware are not synthesized again.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from report import machine_info  # noqa: E402

from vta_ext.config import HwConfig  # noqa: E402
from vta_ext.fit import MEASURED_PATH, hardware_key, same_hardware  # noqa: E402
from vta_ext.rtl import core_fit  # noqa: E402
from vta_ext.rtl.core_synth import synthesize_core  # noqa: E402
from vta_ext.rtl.synth import SynthesisError  # noqa: E402
from vta_ext.rtl.tools import tool_version  # noqa: E402

OUT = REPO / "results" / "fpga_core_fit.json"
PLOT = REPO / "results" / "fpga_core_fit.png"
PART = "xc7z020"
SMALL = dict(inp_buff_bytes=4096, wgt_buff_bytes=16384, acc_buff_bytes=8192, uop_buff_bytes=8192, prm_buff_bytes=4096)
LARGE = dict(inp_buff_bytes=16384, wgt_buff_bytes=65536, acc_buff_bytes=32768, uop_buff_bytes=16384,
             prm_buff_bytes=8192)

# one-hot cores keep their level-sum accumulators in flip-flops (a level group is read per clock), so
# their accumulator buffers are kept small: 8 KB is 65,536 flip-flops read a level group per clock
# (a 1x8x8 w3 core with 8 KB was still mapping memories after 9 minutes of yosys)
ONEHOT = dict(SMALL, acc_buff_bytes=1024)
ONEHOT_2K = dict(SMALL, acc_buff_bytes=2048)
# wider DMA beats (default 8 bytes): the element assembly grows with element bytes x beat bytes
BEAT32, BEAT16 = dict(SMALL, dma_bytes_per_cycle=32), dict(LARGE, dma_bytes_per_cycle=16)

# (name, batch, block_in, block_out, a_bits, w_bits, lut_mode, alu_lanes, gemm_out_lanes, memory, role);
# memory: buffer bytes (and DMA beat bytes where not the default)
CORES = [
    ("d1x8x8-a4w2", 1, 8, 8, 4, 2, "decode", 8, None, SMALL, "fit"),
    ("d1x16x8-a8w4", 1, 16, 8, 8, 4, "decode", 4, None, LARGE, "fit"),
    ("d1x8x16-a4w4", 1, 8, 16, 4, 4, "decode", 16, None, SMALL, "fit"),
    ("d1x32x8-a2w1", 1, 32, 8, 2, 1, "decode", 2, None, SMALL, "fit"),
    ("d2x16x4-a4w3", 2, 16, 4, 4, 3, "decode", 4, None, LARGE, "fit"),
    ("d1x8x4-a8w6", 1, 8, 4, 8, 6, "decode", 4, None, SMALL, "fit"),
    ("d1x32x4-a4w4-f1", 1, 32, 4, 4, 4, "decode", 1, 1, SMALL, "fit"),
    ("d1x16x16-a8w4-f4", 1, 16, 16, 8, 4, "decode", 4, 4, LARGE, "fit"),
    ("d1x16x16-a1w1", 1, 16, 16, 1, 1, "decode", 16, None, SMALL, "fit"),
    ("d1x16x32-a4w2", 1, 16, 32, 4, 2, "decode", 8, None, LARGE, "fit"),
    ("o1x8x8-a8w3", 1, 8, 8, 8, 3, "onehot", 8, None, ONEHOT, "fit"),
    ("o1x16x16-a2w2", 1, 16, 16, 2, 2, "onehot", 4, None, ONEHOT_2K, "fit"),
    ("d1x8x16-a4w4-b32", 1, 8, 16, 4, 4, "decode", 16, None, BEAT32, "fit"),
    ("d1x16x16-a4w3", 1, 16, 16, 4, 3, "decode", 16, None, SMALL, "heldout"),
    ("d1x32x8-a8w4", 1, 32, 8, 8, 4, "decode", 8, None, LARGE, "heldout"),
    ("d2x8x8-a4w4", 2, 8, 8, 4, 4, "decode", 4, None, SMALL, "heldout"),
    ("d1x64x8-a2w2-f2", 1, 64, 8, 2, 2, "decode", 2, 2, SMALL, "heldout"),
    ("d1x16x16-a8w4-b16", 1, 16, 16, 8, 4, "decode", 8, None, BEAT16, "heldout"),
]


def core_config(name, batch, block_in, block_out, a_bits, w_bits, mode, alu_lanes, gemm_out_lanes, buffers):
    return HwConfig(name=name, batch=batch, block_in=block_in, block_out=block_out, max_a_bits=a_bits,
                    max_w_bits=w_bits, lut_entries=1 << w_bits, lut_mode=mode, alu_lanes=alu_lanes,
                    gemm_out_lanes=gemm_out_lanes, **buffers)


def preset_rows():
    """The Xilinx presets measured by ``benchmarks/fpga_build.py``, as held-out rows."""
    if not MEASURED_PATH.is_file():
        return []
    rows = []
    for name, entry in json.loads(MEASURED_PATH.read_text())["cores"].items():
        if not entry["flow"].startswith("xilinx"):
            continue  # iCE40 cells are LUT4 + flip-flop pairs, not the LUT6 the model counts
        hardware = {k: v for k, v in entry["hardware"].items() if k != "part"}
        rows.append({"name": f"preset {name}", "role": "heldout", "hardware": hardware, "flow": entry["flow"],
                     "measured": entry["measured"]})
    return rows


def synthesize_missing(data, timeout_s, mem_mb, jobs=1, out=OUT, only=None):
    done = {row["name"]: row for row in data.get("cores", []) if "measured" in row}
    todo = []
    for name, *fields, role in CORES:
        if only and name not in only:
            continue
        cfg = core_config(name, *fields)
        row = done.get(name)
        if row is None or not same_hardware(row["hardware"], cfg):
            todo.append((cfg, role))
    rows = [row for row in data.get("cores", []) if row["name"] in {c[0] for c in CORES}]
    # each run is one yosys process: ``jobs`` of them at once (threads only wait on them)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = {pool.submit(synthesize_core, cfg, part=PART, timeout_s=timeout_s, mem_mb=mem_mb): (cfg, role)
                for cfg, role in todo}
        for run in tqdm(as_completed(runs), total=len(runs), desc="whole cores", unit="core"):
            cfg, role = runs[run]
            try:
                result, measured = run.result()
            except SynthesisError as err:
                tqdm.write(f"{cfg.name}: {str(err).splitlines()[0]}")
                continue
            rows = [r for r in rows if r["name"] != cfg.name]
            rows.append({"name": cfg.name, "role": role, "hardware": hardware_key(cfg), "flow": result.flow,
                         "measured": measured, "wall_s": round(result.wall_s, 1), "cells": result.cells})
            tqdm.write(f"{cfg.name}: {json.dumps(measured)} in {result.wall_s:.0f} s")
            data["cores"] = rows
            out.write_text(json.dumps(data, indent=1) + "\n")  # a long run keeps what it measured
    return rows


def plot(fit, path):
    """Measured vs predicted per resource, fit and held-out cores marked apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for ax, resource in zip(axes, ("lut", "ff", "dsp", "bram")):
        for role, marker in (("fit", "o"), ("heldout", "^")):
            rows = [t for t in fit["rows"] if t["role"] == role]
            ax.scatter([t["measured"][resource] for t in rows], [t["predicted"][resource] for t in rows],
                       marker=marker, label=role)
        top = max(max(t["measured"][resource], t["predicted"][resource]) for t in fit["rows"]) * 1.05
        ax.plot([0, top], [0, top], "k:", lw=1)
        worst = fit["heldout_max_rel_error"][resource]
        ax.set(title=f"{resource.upper()} (held-out max {worst:.1%})", xlabel="measured (yosys)", ylabel="model")
        ax.legend()
    fig.tight_layout(), fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refit", action="store_true", help="fit from the recorded cores only")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--mem-mb", type=int, default=8192)
    parser.add_argument("--jobs", type=int, default=1, help="yosys runs at once (each may take --mem-mb)")
    parser.add_argument("--only", nargs="+", help="synthesize only these cores into --out, without fitting")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--merge", nargs="+", type=Path, default=[],
                        help="results files of other runs (--only, another machine) whose cores this one lacks")
    args = parser.parse_args(argv)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.update(machine=machine_info(), tools={"yosys": tool_version("yosys")}, part=PART)
    for path in args.merge:
        have = {row["name"] for row in data.get("cores", [])}
        data.setdefault("cores", []).extend(r for r in json.loads(path.read_text())["cores"] if r["name"] not in have)
    if not args.refit:
        data["cores"] = synthesize_missing(data, args.timeout_s, args.mem_mb, args.jobs, args.out, args.only)
    if args.only:
        args.out.write_text(json.dumps(data, indent=1) + "\n")
        print("wrote", args.out)
        return
    rows = data["cores"] + preset_rows()
    fit = core_fit.fit(rows)
    data["fit"] = fit
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    core_fit.write(fit, tools=data["tools"])
    plot(fit, PLOT)
    print(core_fit.summary(fit))
    print("wrote", args.out, core_fit.FIT_PATH, "and", PLOT)


if __name__ == "__main__":
    main()
