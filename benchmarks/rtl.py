"""RTL calibration sweep: yosys resources of the generated core vs lanes, b_a, b_w and weight storage.

    .venv/bin/python benchmarks/rtl.py            # sweep (bounded, ~25 min on 2 shared cores), fit, plots
    .venv/bin/python benchmarks/rtl.py --quick    # a few configurations (smoke run)
    .venv/bin/python benchmarks/rtl.py --refit    # fit + plots from results/rtl_sweep.json only

Sweeps the GEMM unit (bit-plane / one-hot level sums / per-lane decode) through
``synth_xilinx -flatten -noiopad -nodsp`` (LUT-only counts) and a subset through ``synth_ice40``,
the ALU and LUT-apply lanes through ``synth_xilinx`` (DSPs allowed), fits the resource model
(``vta_ext/rtl/resource_fit.py``), writes ``vta_ext/rtl_fit/resources_fit.json`` (what
``vta_ext/resources.py`` loads), places and routes one small iCE40 configuration with nextpnr
for Fmax, and plots LUTs vs BOPs and LUT x cycles vs BOPs with R^2 (``results/rtl_*.png``).

Bounds: every yosys run has a time limit and ``ulimit -v``; per-lane decode / one-hot
configurations with lanes x 2^b_w above ``--max-lane-levels`` are skipped (a probe took 600 s
and 6 GB at 64 lanes, b_w = 8) and listed as skipped in the output.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stats import r2_linear  # noqa: E402
from tvm_qnn import reference  # noqa: E402
from vta_ext.rtl import resource_fit as calibration  # noqa: E402
from vta_ext.rtl.synth import SynthesisError, SynthesisLimitError, ice40_fmax, synthesize  # noqa: E402
from vta_ext.rtl.tools import tool_version  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODES = {0: "bitplane", 1: "onehot", 2: "decode"}
FIT_ARRAYS = [(1, 8, 8), (1, 16, 16), (1, 32, 32)]  # 64, 256, 1024 lanes
HELDOUT_ARRAYS = [(1, 16, 8), (1, 32, 16)]  # 128, 512 lanes: interpolation, never fitted
FMAX_CONFIG = dict(BATCH=1, BLOCK_IN=8, BLOCK_OUT=8, A_BITS=4, W_BITS=2, WEIGHT_MODE=0)


def _gemm(array, a_bits, w_bits, mode):
    b, bi, bo = array
    return dict(BATCH=b, BLOCK_IN=bi, BLOCK_OUT=bo, A_BITS=a_bits, W_BITS=w_bits, WEIGHT_MODE=mode)


def sweep_points(quick=False, max_lane_levels=8192):
    """``[(top, flow, params, role)]`` of the sweep, and the skipped ``[(params, reason)]``."""
    points, skipped = [], []

    def add(top, flow, params, role):
        lanes = params.get("BATCH", 1) * params.get("BLOCK_IN", 1) * params.get("BLOCK_OUT", 1)
        if top == "gemm_unit" and params["WEIGHT_MODE"] != 0 and lanes * (1 << params["W_BITS"]) > max_lane_levels:
            skipped.append((top, flow, params, f"lanes x 2^b_w = {lanes << params['W_BITS']} > {max_lane_levels}"))
            return
        points.append((top, flow, params, role))

    if quick:
        for mode in (0, 1, 2):
            for w in (1, 2):
                add("gemm_unit", "xilinx-nodsp", _gemm((1, 8, 8), 4, w, mode), "fit")
                add("gemm_unit", "xilinx-nodsp", _gemm((1, 16, 16), 4, w, mode), "fit")
            add("gemm_unit", "xilinx-nodsp", _gemm((1, 16, 8), 4, 2, mode), "heldout")
        add("alu_lanes", "xilinx", dict(BATCH=1, BLOCK_OUT=4), "fit")
        add("lut_apply", "xilinx", dict(BATCH=1, BLOCK_OUT=4), "fit")
        return points, skipped
    for array in FIT_ARRAYS:
        for w in (1, 2, 4, 8):
            add("gemm_unit", "xilinx-nodsp", _gemm(array, 8, w, 0), "fit")
        for mode in (1, 2):
            for w in (1, 2, 3, 4):
                add("gemm_unit", "xilinx-nodsp", _gemm(array, 8, w, mode), "fit")
    for array in HELDOUT_ARRAYS:
        for mode in (0, 1, 2):
            for w in (2, 3) if mode else (2, 4):
                add("gemm_unit", "xilinx-nodsp", _gemm(array, 8, w, mode), "heldout")
    for a in (1, 2, 4):  # b_a only widens the running sums: area ~ flat in b_a
        add("gemm_unit", "xilinx-nodsp", _gemm((1, 16, 16), a, 2, 0), "bits")
    for w in (5, 6):  # per-lane decode growth beyond the fit, small array only
        add("gemm_unit", "xilinx-nodsp", _gemm((1, 8, 8), 8, w, 2), "growth")
    add("gemm_unit", "xilinx-nodsp", _gemm((1, 8, 8), 8, 5, 1), "growth")
    for mode in (0, 1, 2):
        for w in (1, 2, 4):
            add("gemm_unit", "ice40", _gemm((1, 8, 8), 8, w, mode), "ice40")
    # ALU lanes are independent copies: one size gives the per-output cost
    add("alu_lanes", "xilinx", dict(BATCH=1, BLOCK_OUT=4), "fit")
    add("lut_apply", "xilinx", dict(BATCH=1, BLOCK_OUT=4), "fit")
    return points, skipped


def run_sweep(points, workers, timeout_s, mem_mb, out_path):
    rows = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(synthesize, top, params, flow, timeout_s, mem_mb): (top, flow, params, role)
                   for top, flow, params, role in points}
        for future in tqdm(as_completed(futures), total=len(futures), desc="yosys"):
            top, flow, params, role = futures[future]
            try:
                row = dict(future.result().as_dict(), role=role)
            except SynthesisLimitError as err:
                row = {"top": top, "flow": flow, "params": params, "role": role, "skipped": str(err).splitlines()[0]}
            except SynthesisError as err:
                row = {"top": top, "flow": flow, "params": params, "role": role, "error": str(err)[-2000:]}
            rows.append(row)
            out_path.write_text(json.dumps(rows, indent=1))  # partial results survive an interrupted sweep
    return rows


def tile_bops(p):
    """BOPs of one GEMM tile: ``BATCH`` positions of a 1x1 layer with ``BLOCK_IN`` inputs, ``BLOCK_OUT`` outputs."""
    return reference.layer_bops(p["BLOCK_IN"], p["BLOCK_OUT"], 1, p.get("BATCH", 1), p["A_BITS"], p["W_BITS"])


def bops_analysis(rows):
    """R^2 of LUTs vs BOPs and LUT x cycles vs BOPs per weight storage (xilinx-nodsp GEMM unit)."""
    out = {}
    for mode, name in MODES.items():
        sel = [r for r in rows if r["top"] == "gemm_unit" and r["flow"] == "xilinx-nodsp" and "luts" in r
               and r["params"]["WEIGHT_MODE"] == mode]
        if len(sel) < 3:
            continue
        bops = [tile_bops(r["params"]) for r in sel]
        luts = [r["luts"] for r in sel]
        lut_cycles = [r["luts"] * r["params"]["A_BITS"] for r in sel]  # a tile takes b_a cycles
        out[name] = {"n": len(sel), "r2_luts_vs_bops": round(r2_linear(bops, luts)[0], 4),
                     "r2_lut_cycles_vs_bops": round(r2_linear(bops, lut_cycles)[0], 4),
                     "points": [(b, l, lc) for b, l, lc in zip(bops, luts, lut_cycles)]}
    return out


def plot(analysis, path_prefix):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, label, ylabel in (("luts", "LUTs vs BOPs", "LUTs (synth_xilinx -nodsp)"),
                               ("lut_cycles", "LUT x cycles vs BOPs", "LUTs x cycles per tile")):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for name, a in analysis.items():
            pts = np.asarray(a["points"], float)
            y = pts[:, 1] if key == "luts" else pts[:, 2]
            r2 = a["r2_luts_vs_bops"] if key == "luts" else a["r2_lut_cycles_vs_bops"]
            ax.scatter(pts[:, 0], y, label=f"{name} (R²={r2:.3f})", s=18)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("BOPs per GEMM tile (UNIQ)"), ax.set_ylabel(ylabel), ax.set_title(label)
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{path_prefix}_{key}_vs_bops.png", dpi=120)
        plt.close(fig)


def table(rows):
    lines = [f"{'mode':<9}{'flow':<13}{'lanes':>6}{'b_a':>4}{'b_w':>4}{'LUT':>9}{'FF':>7}{'carry':>7}{'BRAM':>5}"
             f"{'DSP':>5}{'s':>7}  role"]
    key = lambda r: (r["top"], r["flow"], r["params"].get("WEIGHT_MODE", -1), r["params"].get("BLOCK_IN", 0)
                     * r["params"].get("BLOCK_OUT", 0), r["params"].get("W_BITS", 0), r["params"].get("A_BITS", 0))
    for r in sorted(rows, key=key):
        p = r["params"]
        mode = MODES.get(p.get("WEIGHT_MODE"), r["top"]) if r["top"] == "gemm_unit" else r["top"]
        lanes = p.get("BATCH", 1) * p.get("BLOCK_IN", 1) * p.get("BLOCK_OUT", 1) if r["top"] == "gemm_unit" \
            else p.get("BATCH", 1) * p.get("BLOCK_OUT", 1)
        if "luts" not in r:
            lines.append(f"{mode:<9}{r['flow']:<13}{lanes:>6}{p.get('A_BITS', '-'):>4}{p.get('W_BITS', '-'):>4}  "
                         f"{'skipped: ' + r.get('skipped', '') if 'skipped' in r else 'error'}")
            continue
        lines.append(f"{mode:<9}{r['flow']:<13}{lanes:>6}{p.get('A_BITS', '-'):>4}{p.get('W_BITS', '-'):>4}"
                     f"{r['luts']:>9}{r['ffs']:>7}{r['carry']:>7}{r['bram']:>5}{r['dsp']:>5}{r['wall_s']:>7.1f}  "
                     f"{r['role']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few configurations only")
    parser.add_argument("--refit", action="store_true", help="fit and plot from results/rtl_sweep.json")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per yosys run")
    parser.add_argument("--mem-mb", type=int, default=3072, help="address-space limit per yosys run")
    parser.add_argument("--max-lane-levels", type=int, default=8192)
    parser.add_argument("--no-fmax", action="store_true")
    parser.add_argument("--fit-out", default=str(calibration.FIT_PATH))
    args = parser.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    sweep_path = RESULTS / "rtl_sweep.json"
    start = time.monotonic()
    points, skipped = sweep_points(args.quick, args.max_lane_levels)
    if args.refit:
        rows = json.loads(sweep_path.read_text())
    else:
        rows = run_sweep(points, args.workers, args.timeout, args.mem_mb, sweep_path)
    rows += [{"top": t, "flow": f, "params": p, "role": "bound", "skipped": why} for t, f, p, why in skipped]
    print(table(rows))
    fmax = None
    if not args.no_fmax:
        try:
            fmax = ice40_fmax("pnr_harness", FMAX_CONFIG)
            print(f"\nFmax (nextpnr-ice40 hx8k, GEMM unit 1x8x8 bit-plane, b_a=4, b_w=2): {fmax['fmax_mhz']:.1f} MHz "
                  f"({fmax['logic_cells']} logic cells)")
        except SynthesisError as err:
            print(f"\nFmax: place and route failed: {err}")
    coefficients, details = calibration.fit_coefficients(rows)
    heldout = calibration.heldout_errors(rows, coefficients, details)
    analysis = bops_analysis(rows)
    versions = {t: tool_version(t) for t in ("yosys", "iverilog", "verilator", "nextpnr-ice40")}
    extra = {"fmax": dict(fmax, config=FMAX_CONFIG) if fmax else None,
             "bops_r2": {k: {kk: v[kk] for kk in ("n", "r2_luts_vs_bops", "r2_lut_cycles_vs_bops")}
                         for k, v in analysis.items()},
             "skipped": [{"params": p, "reason": why} for _, _, p, why in skipped]
             + [{"params": r["params"], "reason": r["skipped"]} for r in rows if "skipped" in r and r["role"] != "bound"],
             "synthesis_wall_s_total": round(sum(r.get("wall_s", 0) for r in rows), 1),
             "workers": args.workers}
    path = calibration.write_fit(coefficients, details, heldout, versions, path=args.fit_out, extra=extra)
    plot(analysis, str(RESULTS / "rtl"))
    print("\ncoefficients:", json.dumps(coefficients, indent=1))
    print("fit details:", json.dumps({k: v for k, v in details.items() if k != "per_output"}, indent=1))
    for h in heldout:
        print(f"held-out {h['mode']:<7} {h['params']['BLOCK_IN']}x{h['params']['BLOCK_OUT']} w{h['params']['W_BITS']}: "
              f"measured {h['measured_luts']:.0f} predicted {h['predicted_luts']:.0f} error {100 * h['rel_error']:.1f}%")
    for name, a in analysis.items():
        print(f"BOPs relation, {name}: R² LUTs vs BOPs {a['r2_luts_vs_bops']:.3f}, "
              f"LUT x cycles vs BOPs {a['r2_lut_cycles_vs_bops']:.3f} (n={a['n']})")
    print(f"\nwrote {path}, {sweep_path}, {RESULTS}/rtl_*_vs_bops.png; wall {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
