"""Integer-only kernels on ResNet-18 3x3 shapes: VNNI int8 vs popcount bit-serial vs fp32, batch 1.

Columns (all measured in this run, same thread counts):
  vnni      -- ``codegen.vnni_int8`` (``dot_16x4`` tensorized), uint8 codes NCHW in -> next layer's
               codes out (relayout to NHWC, int8 conv, bias, fixed-point requant); on a CPU without
               AVX-512 VNNI the same kernel as the target builds it (``vpmaddubsw`` on AVX2, 8-bit
               codes in two halves, else plain int32), named per row in ``vnni.instructions``;
  popcount  -- ``codegen.bitserial_int`` with the same ends (packing, popcount conv, requant); not
               timed where its one-hot planes make it hopeless (``a_bits * w_planes > 256``);
  torch     -- PyTorch fp32 ``conv2d``; ort-int8 -- onnxruntime int8 ``QLinearConv`` (per-channel).

Each config's weights are k-quantile (``lut_int`` is not integer-affine, so popcount uses
``2^w_bits - 1`` one-hot planes) or uniform (bit planes when ``lut_int`` stays integer-affine).
Timing as ``benchmarks/kernels.py``: thread CPU time at 1 thread (ratios use it) and the wall-clock
minimum at 2 threads. ``% of VNNI peak``: MACs/s over 4x the fp32 FMA peak that
``benchmarks/roofline.py`` measures in the same run (vpdpbusd does 4 MACs per 32-bit lane).

Writes results/<name>.json (default kernels_vnni). Run: ``python benchmarks/kernels_vnni.py [--quick]
[--configs w1a1,w2a2] [--name N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kernels import RESNET18_3X3, THREADS, bench_ort, bench_torch, geomean  # noqa: E402
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON
from roofline import RESULTS, measure, measure_peaks, set_tvm_threads  # noqa: E402

# name -> (w_bits, a_bits, weight scheme)
CONFIGS = {"w2a2-lut": (2, 2, "kquantile"), "w4a8-lut": (4, 8, "kquantile"), "w4a8": (4, 8, "uniform"),
           "w8a8": (8, 8, "uniform")}
# uniform low-bit configs (not run by default): where popcount and int8 cross on CPUs without VNNI
EXTRA_CONFIGS = {"w1a1": (1, 1, "uniform"), "w1a2": (1, 2, "uniform"), "w2a2": (2, 2, "uniform")}
MAX_POPCOUNT_PRODUCTS = 256  # bit-MACs per MAC beyond which the popcount kernel is not timed


def _layer_params(c, o, size, stride, w_bits, a_bits, scheme, seed=0):
    """A ResNet-18-like layer: weight indices and the integer-only params the accelerator compiler makes."""
    from tvm_qnn import reference

    rng = np.random.default_rng(seed)
    make = reference.kquantile_lut if scheme == "kquantile" else reference.uniform_lut
    idx, lut = make(rng.normal(size=(o, c, 3, 3)), w_bits, per_channel=True)
    s_a = reference.act_scale(2.0, a_bits)
    params = dict(reference.integer_requant_params(lut, s_a, rng.normal(size=o), reference.act_scale(2.0, a_bits), o),
                  s_a=float(s_a), out_min=0.0, out_max=None, lo=0, hi=(1 << a_bits) - 1)
    codes = rng.integers(0, 1 << a_bits, size=(1, c, size, size)).astype(np.uint8)
    return idx.astype(np.uint8), params, codes


def _time_kernel(func, args, out_shape, out_dtype, target):
    import tvm

    executable = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    tensors = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]
    out = tvm.runtime.empty(out_shape, out_dtype)
    fn = executable["main"]
    timing = measure(lambda: fn(*tensors, out), set_tvm_threads, THREADS)
    return timing, out.numpy()


def bench_layer(c, o, size, stride, w_bits, a_bits, scheme, target):
    from codegen.bitserial_int import IntegerKernel, integer_kernel_args, integer_scheme, scheduled_integer_primfunc
    from codegen.kernel_choice import plane_products
    from codegen.vnni_int8 import Int8Kernel, int8_kernel_args
    from codegen.vnni_schedule import scheduled_int8_primfunc, target_int8_instructions
    from codegen.workload import ConvWorkload
    from tvm_qnn import reference

    idx, params, codes = _layer_params(c, o, size, stride, w_bits, a_bits, scheme)
    scheme_int = integer_scheme(params["lut_int"], w_bits)
    wl = ConvWorkload("conv2d", 1, c, size, size, o, (3, 3), (stride, stride), (1, 1, 1, 1), a_bits=a_bits,
                      w_bits=w_bits, scheme=scheme_int)
    want = reference.qconv2d_int(codes, idx, params["lut_int"], params["bias_int"], params["multiplier"],
                                 params["shift"], a_bits, stride, 1)
    row = {"macs": wl.macs, "popcount_scheme": scheme_int, "plane_products": plane_products(a_bits, w_bits, scheme_int)}
    kernel = Int8Kernel(wl, "codes", "codes", target_int8_instructions(target))
    timing, got = _time_kernel(scheduled_int8_primfunc(kernel), [codes, *int8_kernel_args("l", kernel, idx, params)],
                               kernel.output_shape, "uint8", target)
    row["vnni"] = dict(timing, exact=bool(np.array_equal(got, want)), tensorized=kernel.vnni,
                       instructions=kernel.instructions)
    if row["plane_products"] <= MAX_POPCOUNT_PRODUCTS:
        kernel = IntegerKernel(wl, "codes", "codes")
        timing, got = _time_kernel(scheduled_integer_primfunc(kernel),
                                   [codes, *integer_kernel_args("l", kernel, idx, params)], wl.output_shape, "uint8",
                                   target)
        row["popcount"] = dict(timing, exact=bool(np.array_equal(got, want)))
    return row


def run(args):
    import tvm
    from tqdm import tqdm

    from codegen.build import cpu_target

    target = cpu_target(THREADS)
    peaks = measure_peaks(target, THREADS)
    vnni_peak = 4 * peaks["fp32_flops_per_s"]["per_core"] / 2  # MAC/s: 4 products per FMA lane-op
    shapes = [s for s in RESNET18_3X3 if s[3] == 1]  # the stride-1 convs
    shapes = shapes[:2] if args.quick else shapes
    known = {**CONFIGS, **EXTRA_CONFIGS}
    names = args.configs.split(",") if args.configs else (["w2a2-lut", "w4a8-lut"] if args.quick else list(CONFIGS))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"kernels_vnni.py: unknown config(s) {unknown}; known: {sorted(known)}")
    configs = {k: known[k] for k in names}
    workdir = tempfile.mkdtemp(prefix="qnn_kernels_vnni_")
    rows = []
    with tqdm(total=len(shapes) * (len(configs) + 1), desc="kernels_vnni") as bar:
        for c, o, size, stride in shapes:
            shape = {"in_channels": c, "out_channels": o, "size": size, "stride": stride}
            base = {"torch": bench_torch(c, o, size, stride)}
            base["ort_int8"] = bench_ort(c, o, size, stride, workdir)["ort_int8"]
            bar.update(1)
            for name, (w_bits, a_bits, scheme) in configs.items():
                row = {"shape": shape, "config": name, "w_bits": w_bits, "a_bits": a_bits, "scheme": scheme,
                       "baselines": base, **bench_layer(c, o, size, stride, w_bits, a_bits, scheme, target)}
                row["vnni"]["pct_of_vnni_peak"] = 100 * row["macs"] / row["vnni"]["cpu_1t_s"] / vnni_peak
                rows.append(row)
                bar.update(1)
    set_tvm_threads(THREADS)
    return {"peaks": peaks, "vnni_peak_macs_per_core": vnni_peak, "rows": rows, "target": str(target),
            "load_average": os.getloadavg(), "tvm": tvm.__version__, "machine": machine_info()}


def summarize(result):
    """Per-config geometric means of the ratios (baseline time / VNNI time, 1-thread CPU time)."""
    lines = ["| config | int8 kernel | int8 ms (1t / 2t wall) | x popcount | x torch fp32 | x ort int8 | % VNNI peak "
             "| exact |", "|---|---|---|---|---|---|---|---|"]
    summary = {}
    for name in dict.fromkeys(r["config"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["config"] == name]
        vnni = [r["vnni"]["cpu_1t_s"] for r in rows]
        ratio = {
            "popcount": geomean([r["popcount"]["cpu_1t_s"] / v for r, v in zip(rows, vnni) if "popcount" in r]),
            "torch_fp32": geomean([r["baselines"]["torch"]["cpu_1t_s"] / v for r, v in zip(rows, vnni)]),
            "ort_int8": geomean([r["baselines"]["ort_int8"]["cpu_1t_s"] / v for r, v in zip(rows, vnni)]),
        }
        exact = all(r["vnni"]["exact"] and r.get("popcount", {"exact": True})["exact"] for r in rows)
        pct = geomean([r["vnni"]["pct_of_vnni_peak"] for r in rows])
        summary[name] = dict(ratio, pct_of_vnni_peak=pct, exact=exact)
        ms = ", ".join(f"{r['vnni']['cpu_1t_s'] * 1e3:.2f}/{r['vnni']['wall_s'] * 1e3:.2f}" for r in rows)
        fmt = lambda v: "–" if v is None else f"{v:.2f}x"  # noqa: E731
        kinds = "/".join(sorted({r["vnni"].get("instructions", "vnni") for r in rows}))
        summary[name]["instructions"] = kinds
        lines.append(f"| {name} | {kinds} | {ms} | {fmt(ratio['popcount'])} | {fmt(ratio['torch_fp32'])} | "
                     f"{fmt(ratio['ort_int8'])} | {pct:.0f}% | {exact} |")
    return "\n".join(lines), summary


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two shapes, w2a2-lut and w4a8-lut only")
    parser.add_argument("--name", default="kernels_vnni", help="results/<name>.json")
    parser.add_argument("--configs", default=None, help=f"comma-separated, of {', '.join({**CONFIGS, **EXTRA_CONFIGS})}")
    args = parser.parse_args()
    result = run(args)
    table, summary = summarize(result)
    result["summary"] = summary
    print(table)
    print(f"VNNI peak {result['vnni_peak_macs_per_core'] / 1e9:.0f} G MAC/s/core (4x the measured fp32 FMA rate); "
          f"load average {result['load_average']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
