"""Per-layer benchmark: every ResNet-18 3x3 conv shape at batch 1, bit-serial vs fp32/int8 baselines.

Columns (all measured in this run, same thread counts):
  ours      -- codegen bit-serial kernel, hand schedule, float NCHW in -> float NCHW out
               (activation quantization + packing + popcount conv + LUT/bias/ReLU epilogue);
  tuned     -- the same kernel with a MetaSchedule record from codegen.tuning (``--tune-trials``);
  upstream  -- TVM's ``topi.nn.bitserial_conv2d_nhwc`` compute (uint64 words, uint8 NHWC codes in,
               its own activation packing included, weights pre-packed) under the same hand
               schedule strategy as ours (register tile of pixels x 8-lane output channels);
  torch     -- PyTorch fp32 ``conv2d``; ort-fp32 / ort-int8 -- onnxruntime fp32 and int8
               (static QOperator quantization, ``QLinearConv``); tvm-fp32 -- TVM conv2d tuned by
               MetaSchedule (``--fp32-trials``, short).

Timing (shared machine): each function is timed as thread CPU time at 1 thread (primary:
unaffected by other processes' load) and as wall-clock minimum at 2 threads (secondary, noisy
when the machine is busy). Ratios use the 1-thread CPU times. % of roofline: bit-MACs per second
over the popcount peak measured by ``benchmarks/roofline.py`` in the same run.

Writes results/kernels.json and results/kernels_speedup.png.
Run: ``python benchmarks/kernels.py [--quick] [--skip-tuned] [--skip-tvm-fp32]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON
from roofline import RESULTS, measure, measure_peaks, set_tvm_threads  # noqa: E402
from stats import geomean  # noqa: E402

# (in_channels, out_channels, input size, stride): the distinct 3x3 convs of ResNet-18 at 224
RESNET18_3X3 = [(64, 64, 56, 1), (64, 128, 56, 2), (128, 128, 28, 1), (128, 256, 28, 2),
                (256, 256, 14, 1), (256, 512, 14, 2), (512, 512, 7, 1)]
# name -> (w_bits, a_bits, weight scheme)
CONFIGS = {"w1a1": (1, 1, "uniform"), "w2a2": (2, 2, "uniform"), "w3a3": (3, 3, "uniform"),
           "w4a4": (4, 4, "uniform"), "w2a2-lut": (2, 2, "kquantile"), "w3a3-lut": (3, 3, "kquantile")}
THREADS = 2


def _layer(c, o, size, stride, w_bits, a_bits, scheme, seed=0):
    from tvm_qnn import reference
    from tvm_qnn.layer import QnnLayer

    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(o, c, 3, 3))
    make = reference.kquantile_lut if scheme == "kquantile" else reference.uniform_lut
    idx, lut = make(weight, w_bits, per_channel=True)
    return QnnLayer(name=f"conv{c}x{o}s{stride}", kind="conv2d", weight_idx=idx, lut=lut,
                    bias=rng.normal(size=o).astype(np.float32), w_bits=w_bits, w_scheme=scheme, a_bits=a_bits,
                    a_clamp=2.0, input_shape=(1, c, size, size), stride=(stride, stride), padding=(1, 1, 1, 1),
                    out_min=0.0)


def _tvm_call(executable, args):
    fn = executable["main"]
    return lambda: fn(*args)


def bench_ours(layer, target, database=None):
    import tvm

    from codegen.build import build_kernel
    from codegen.plan import kernel_args, layer_workload

    wl = layer_workload(layer)
    kernel = build_kernel(wl, target, database)
    x = np.random.default_rng(1).uniform(-0.5, 2.5, size=layer.input_shape).astype(np.float32)
    args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(a) for a in kernel_args(layer, wl).as_list()]
    out = tvm.runtime.empty(wl.output_shape, "float32")
    call = _tvm_call(kernel, args + [out])
    call()
    expected = layer.reference(x)
    error = float(np.max(np.abs(out.numpy() - expected)) / max(1.0, np.abs(expected).max()))
    timing = measure(call, set_tvm_threads, THREADS)
    timing.update(bit_macs=wl.bit_macs, max_rel_error=error, scheme=wl.scheme)
    return timing


def _upstream_schedule(sch, o_tile=16, x_tile=2, lanes=8):
    """Our hand-schedule strategy applied to topi's compute: pixels x 8-lane channel register tile."""
    conv = sch.get_sblock("Conv2dOutput")
    for name in ("PaddedInput",):
        try:
            block = sch.get_sblock(name)
        except Exception:  # noqa: BLE001
            continue
        n, y, *_ = sch.get_loops(block)
        sch.parallel(sch.fuse(n, y))
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        name = sch.get(block).name_hint
        if name.startswith("QuantizeInput"):
            n, y, *_ = sch.get_loops(block)
            sch.parallel(sch.fuse(n, y))
    n, y, x, f, rc, ry, rx, b2, b1 = sch.get_loops(conv)
    local = sch.cache_write(conv, 0, "local")
    xo, xi = sch.split(x, [None, x_tile])
    fo, fv, fl = sch.split(f, [None, o_tile // lanes, lanes])
    sch.reorder(n, y, xo, fo, ry, rx, rc, b2, b1, xi, fv, fl)
    sch.parallel(sch.fuse(n, y))
    sch.unroll(b2)
    sch.unroll(b1)
    sch.unroll(xi)
    sch.unroll(fv)
    sch.vectorize(fl)
    sch.reverse_compute_at(local, fo)
    sch.vectorize(sch.get_loops(local)[-1])
    sch.decompose_reduction(conv, ry)


def bench_upstream(c, o, size, stride, bits, target):
    """topi.nn.bitserial_conv2d_nhwc with pre-packed weights (its buggy prepacked path is avoided by
    feeding the packed weight tensor in place of its weight-packing stage)."""
    import tvm
    from tvm import te
    from tvm.topi.nn import bitserial_conv2d as upstream

    from tvm_qnn import reference

    data = te.placeholder((1, size, size, c), "uint8", name="data")
    kernel = te.placeholder((3, 3, c, o), "uint8", name="kernel")
    real_bitpack = upstream.bitpack
    packed_kernel = te.placeholder((3, 3, c // 64, o, bits), "uint64", name="kernel_packed")

    def bitpack(tensor, *args, **kwargs):  # weights are packed once at compile time, like ours
        return packed_kernel if tensor is kernel else real_bitpack(tensor, *args, **kwargs)

    upstream.bitpack = bitpack
    try:
        out = upstream.bitserial_conv2d_nhwc(data, kernel, stride, 1, bits, bits, "uint64", "int32", unipolar=False)
    finally:
        upstream.bitpack = real_bitpack
    func = te.create_prim_func([data, packed_kernel, out])
    sch = tvm.s_tir.Schedule(func)
    _upstream_schedule(sch)
    executable = tvm.compile(sch.mod, target=target)
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 1 << bits, size=(1, size, size, c), dtype=np.uint8)
    w_codes = rng.integers(0, 1 << bits, size=(3, 3, c, o), dtype=np.uint8)
    w_packed = np.transpose(reference.pack_bits(w_codes, bits, axis=2, word="uint64"), (0, 1, 3, 4, 2)).copy()
    ho = (size + 2 - 3) // stride + 1
    result = tvm.runtime.empty((1, ho, ho, o), "int32")
    args = [tvm.runtime.tensor(codes), tvm.runtime.tensor(w_packed), result]
    call = _tvm_call(executable, args)
    call()
    expected = np.einsum("nchwij,ijco->nhwo", _windows_nhwc(codes, stride), w_codes.astype(np.int64))
    exact = bool(np.array_equal(result.numpy(), expected))
    timing = measure(call, set_tvm_threads, THREADS)
    timing["exact"] = exact
    return timing


def _windows_nhwc(codes, stride):
    from tvm_qnn import reference

    nchw = np.transpose(codes, (0, 3, 1, 2)).astype(np.int64)
    return np.moveaxis(reference._windows(nchw, (3, 3), stride, 1, 1), (2, 3), (4, 5))  # (N, C, Ho, Wo, kh, kw)


def bench_torch(c, o, size, stride):
    import torch

    conv = torch.nn.Conv2d(c, o, 3, stride, 1).eval()
    x = torch.randn(1, c, size, size)

    def call():
        with torch.inference_mode():
            conv(x)

    timing = measure(call, torch.set_num_threads, THREADS)
    timing["flops"] = 2 * o * c * 9 * ((size + 2 - 3) // stride + 1) ** 2
    return timing


def _onnx_conv(c, o, size, stride, path):
    import torch

    conv = torch.nn.Conv2d(c, o, 3, stride, 1).eval()
    torch.onnx.export(conv, torch.randn(1, c, size, size), path, input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)


def _ort_session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def bench_ort(c, o, size, stride, workdir):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    fp32 = Path(workdir) / f"conv_{c}_{o}_{size}_{stride}.onnx"
    int8 = fp32.with_suffix(".int8.onnx")
    _onnx_conv(c, o, size, stride, fp32)
    rng = np.random.default_rng(3)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": rng.uniform(0, 2, size=(1, c, size, size)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    x = rng.uniform(0, 2, size=(1, c, size, size)).astype(np.float32)
    out = {}
    for name, path in (("ort_fp32", fp32), ("ort_int8", int8)):
        sessions = {n: _ort_session(path, n) for n in (1, THREADS)}
        current = {"session": sessions[1]}

        def threads_fn(n, sessions=sessions, current=current):
            current["session"] = sessions[n]

        def call(current=current):
            current["session"].run(None, {"x": x})

        out[name] = measure(call, threads_fn, THREADS)
    out["ort_int8"]["has_qlinearconv"] = "QLinearConv" in int8.read_bytes().decode("latin-1")
    return out


def bench_tvm_fp32(c, o, size, stride, target, trials, workdir):
    import tvm
    from tvm import te, topi
    from tvm.s_tir import meta_schedule as ms

    x = te.placeholder((1, c, size, size), "float32", name="x")
    w = te.placeholder((o, c, 3, 3), "float32", name="w")
    y = topi.nn.conv2d_nchw(x, w, stride, 1, 1)
    mod = tvm.IRModule({"main": te.create_prim_func([x, w, y])})
    work_dir = os.path.join(workdir, f"fp32_{c}_{o}_{size}_{stride}")
    # a short tune: small evolutionary population (the default 2048-candidate search alone takes minutes)
    strategy = ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=2)
    database = ms.tune_tir(mod, target, work_dir, max_trials_global=trials, num_trials_per_iter=min(trials, 16),
                           strategy=strategy)
    sch = ms.tir_integration.compile_tir(database, mod, target)
    executable = tvm.compile(sch.mod if sch is not None else mod, target=target)
    rng = np.random.default_rng(4)
    ho = (size + 2 - 3) // stride + 1
    args = [tvm.runtime.tensor(rng.normal(size=(1, c, size, size)).astype(np.float32)),
            tvm.runtime.tensor(rng.normal(size=(o, c, 3, 3)).astype(np.float32)),
            tvm.runtime.empty((1, o, ho, ho), "float32")]
    return measure(_tvm_call(executable, args), set_tvm_threads, THREADS)


_COST_MODEL = {}


def shared_cost_model(target):
    """One ``bops-xgb`` model for the whole run, as ``tvm_qnn.tune`` keeps one per work dir: records
    of one layer / bit width inform the next tune (that is what the BOPs-aware features are for)."""
    if "bops-xgb" not in _COST_MODEL:
        from codegen.tuning.cost_model import make_cost_model
        from codegen.tuning.features import measure_peaks

        _COST_MODEL["bops-xgb"] = make_cost_model("bops-xgb", measure_peaks(target))
    return _COST_MODEL["bops-xgb"]


def tuned_database(layer, target, trials, workdir):
    """Tune our kernel with codegen.tuning; returns the database of verified records."""
    from codegen.plan import layer_workload
    from codegen.tuning.database import open_database
    from codegen.tuning.tuner import tune_workload

    wl = layer_workload(layer)
    work_dir = os.path.join(workdir, "tune_" + wl.key())
    tune_workload(wl, target, trials, shared_cost_model(target), work_dir)
    return open_database(work_dir)


def inner_loop_stats(asm):
    """Instructions of the hot loop (the loop with the highest ``vpopcntq`` density, at least 4 of
    them: the kh/kw/word reduction) and instructions per bit-MAC.

    A loop is a label ``.LBB*`` up to the backward jump to it; on Zen 4 every vector instruction of
    that loop is one macro-op (512-bit ones issue as 2x256 internally, which the measured
    roofline includes). Returns ``{"instructions", "vpopcntq", "loads", "uops_per_bitmac"}``.
    """
    lines = [line.strip() for line in asm.splitlines()]
    best = None
    for start, line in enumerate(lines):
        if not (line.startswith(".LBB") and line.endswith(":")):
            continue
        label = line[:-1]
        for end in range(start + 1, min(len(lines), start + 2000)):
            if lines[end].startswith("j") and lines[end].split()[-1] == label:
                body = [b for b in lines[start + 1:end + 1] if b and not b.startswith((".", "#"))]
                pop = sum(1 for b in body if b.startswith("vpopcntq"))
                if pop >= 4 and (best is None or pop / len(body) > best["vpopcntq"] / best["instructions"]):
                    lanes = 8 if any("zmm" in b for b in body if b.startswith("vpopcntq")) else 4
                    best = {"instructions": len(body), "vpopcntq": pop,
                            "loads": sum(1 for b in body if "(" in b and not b.startswith(("lea", "vmovdqu64\t%", "mov"))),
                            "uops_per_bitmac": len(body) / (pop * lanes * 64)}
                break
    return best


def asm_report(target):
    """Inner-loop statistics of our hand-scheduled kernel for each config on one mid-size shape."""
    from codegen.build import build_kernel, kernel_asm
    from codegen.plan import layer_workload

    report = {}
    for name, (w_bits, a_bits, scheme) in CONFIGS.items():
        layer = _layer(128, 128, 28, 1, w_bits, a_bits, scheme)
        stats = inner_loop_stats(kernel_asm(build_kernel(layer_workload(layer), target)))
        report[name] = stats
        print(f"  {name:>9}: hot loop {stats['instructions']} instructions, {stats['vpopcntq']} vpopcntq "
              f"-> {stats['uops_per_bitmac'] * 1000:.2f} instructions per 1000 bit-MACs "
              f"(ideal AND+POPCNT+ADD: {3000 / 512:.2f})")
    return report


def run(args):
    import tvm
    from tqdm import tqdm

    from codegen.build import cpu_target

    target = cpu_target(THREADS)
    peaks = measure_peaks(target, THREADS)
    popcount_peak = peaks["popcount_bitmacs_per_s"]["per_core"]
    fp32_peak = peaks["fp32_flops_per_s"]["per_core"]
    shapes = RESNET18_3X3[:2] if args.quick else RESNET18_3X3
    shapes = shapes[:args.shapes] if args.shapes else shapes
    configs = {k: CONFIGS[k] for k in (["w1a1", "w2a2"] if args.quick else CONFIGS)}
    rows = []
    workdir = tempfile.mkdtemp(prefix="qnn_kernels_")
    total = len(shapes) * (len(configs) + 2)
    with tqdm(total=total, desc="kernels") as bar:
        for c, o, size, stride in shapes:
            shape = {"in_channels": c, "out_channels": o, "size": size, "stride": stride}
            base = {"torch": bench_torch(c, o, size, stride)}
            base.update(bench_ort(c, o, size, stride, workdir))
            if not args.skip_tvm_fp32:
                try:
                    base["tvm_fp32"] = bench_tvm_fp32(c, o, size, stride, target, args.fp32_trials, workdir)
                except Exception as err:  # noqa: BLE001
                    base["tvm_fp32_error"] = f"{type(err).__name__}: {err}"[:300]
            bar.update(2)
            for name, (w_bits, a_bits, scheme) in configs.items():
                layer = _layer(c, o, size, stride, w_bits, a_bits, scheme)
                row = {"shape": shape, "config": name, "w_bits": w_bits, "a_bits": a_bits, "scheme": scheme,
                       "baselines": base, "ours": bench_ours(layer, target)}
                if scheme == "uniform":
                    row["upstream"] = bench_upstream(c, o, size, stride, w_bits, target)
                if not args.skip_tuned:
                    try:
                        database = tuned_database(layer, target, args.tune_trials, workdir)
                        if database is not None:
                            row["tuned"] = bench_ours(layer, target, database)
                    except Exception as err:  # noqa: BLE001 - a failed tune must not lose the other columns
                        row["tuned_error"] = f"{type(err).__name__}: {err}"[:300]
                rows.append(row)
                bar.update(1)
    set_tvm_threads(THREADS)
    return {"peaks": peaks, "rows": rows, "load_average": os.getloadavg(), "machine": machine_info(),
            "target": str(target),
            "popcount_peak_per_core": popcount_peak, "fp32_peak_per_core": fp32_peak, "tvm": tvm.__version__}


def summarize(result):
    """Ratio table (1-thread CPU time) and geometric means per config."""
    peak = result["popcount_peak_per_core"]
    lines, summary = [], {}
    header = (f"{'shape':>18} {'cfg':>9} {'ours us':>8} {'%roof':>6} {'x torch':>8} {'x ort8':>7} {'x ortf':>7}"
              f" {'x tvmf':>7} {'x upstr':>8} {'x tuned':>8} {'wall2t us':>9}")
    lines.append(header)
    for row in result["rows"]:
        s = row["shape"]
        ours = row["ours"]["cpu_1t_s"]
        b = row["baselines"]
        ratio = lambda other: (other / ours) if other else None  # noqa: E731
        row["ratios"] = {
            "vs_torch": ratio(b["torch"]["cpu_1t_s"]), "vs_ort_int8": ratio(b["ort_int8"]["cpu_1t_s"]),
            "vs_ort_fp32": ratio(b["ort_fp32"]["cpu_1t_s"]),
            "vs_tvm_fp32": ratio(b["tvm_fp32"]["cpu_1t_s"]) if "tvm_fp32" in b else None,
            "vs_upstream": ratio(row["upstream"]["cpu_1t_s"]) if "upstream" in row else None,
            "tuned_vs_hand": (ours / row["tuned"]["cpu_1t_s"]) if "tuned" in row else None,
            "roofline_fraction": row["ours"]["bit_macs"] / ours / peak,
        }
        r = row["ratios"]
        fmt = lambda v, spec: format(v, spec) if v is not None else "-"  # noqa: E731
        lines.append(f"{s['in_channels']:>4}->{s['out_channels']:<4}{s['size']:>3}/s{s['stride']} {row['config']:>9}"
                     f" {ours * 1e6:8.1f} {100 * r['roofline_fraction']:5.1f}% {fmt(r['vs_torch'], '8.2f')}"
                     f" {fmt(r['vs_ort_int8'], '7.2f')} {fmt(r['vs_ort_fp32'], '7.2f')} {fmt(r['vs_tvm_fp32'], '7.2f')}"
                     f" {fmt(r['vs_upstream'], '8.2f')} {fmt(r['tuned_vs_hand'], '8.2f')}"
                     f" {row['ours']['wall_s'] * 1e6:9.1f}")
    configs = sorted({row["config"] for row in result["rows"]}, key=list(CONFIGS).index)
    lines.append("")
    lines.append("geometric means over the ResNet-18 3x3 shapes (1-thread CPU time):")
    for name in configs:
        rows = [row for row in result["rows"] if row["config"] == name]
        summary[name] = {key: geomean([row["ratios"][key] for row in rows]) for key in rows[0]["ratios"]}
        summary[name]["wall_2t_vs_torch"] = geomean([row["baselines"]["torch"]["wall_s"] / row["ours"]["wall_s"] for row in rows])
        m = summary[name]
        fmt = lambda v: f"{v:.2f}" if v is not None else "-"  # noqa: E731
        lines.append(f"  {name:>9}: x torch {fmt(m['vs_torch'])}, x ort-int8 {fmt(m['vs_ort_int8'])}, "
                     f"x ort-fp32 {fmt(m['vs_ort_fp32'])}, x tvm-fp32 {fmt(m['vs_tvm_fp32'])}, "
                     f"x upstream {fmt(m['vs_upstream'])}, roofline {100 * m['roofline_fraction']:.1f}%, "
                     f"tuned/hand {fmt(m['tuned_vs_hand'])}, wall 2 threads x torch {fmt(m['wall_2t_vs_torch'])}")
    for lut, uni in (("w2a2-lut", "w2a2"), ("w3a3-lut", "w3a3")):
        if lut in summary and uni in summary:
            slowdown = summary[uni]["vs_torch"] / summary[lut]["vs_torch"]
            summary[lut]["lut_slowdown_vs_uniform"] = slowdown
            lines.append(f"  {lut} is {slowdown:.2f}x slower than {uni}")
    torch_roof = geomean([row["baselines"]["torch"]["flops"] / row["baselines"]["torch"]["cpu_1t_s"]
                          / result["fp32_peak_per_core"] for row in result["rows"]])
    lines.append(f"  PyTorch fp32 reaches {100 * torch_roof:.1f}% of the measured fp32 peak")
    summary["torch_fp32_roofline_fraction"] = torch_roof
    return "\n".join(lines), summary


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("vs_torch", "vs PyTorch fp32"), ("vs_ort_int8", "vs onnxruntime int8"),
                       ("vs_upstream", "vs TVM upstream bitserial")):
        bits = [b for b in (1, 2, 3, 4) if f"w{b}a{b}" in summary and summary[f"w{b}a{b}"].get(key)]
        ax.plot(bits, [summary[f"w{b}a{b}"][key] for b in bits], marker="o", label=label + " (uniform)")
    lut_bits = [b for b in (2, 3) if f"w{b}a{b}-lut" in summary]
    ax.plot(lut_bits, [summary[f"w{b}a{b}-lut"]["vs_torch"] for b in lut_bits], marker="s", linestyle="--",
            label="LUT (k-quantile) vs PyTorch fp32")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("bits (w = a)")
    ax.set_ylabel("speedup (geomean, ResNet-18 3x3 layers)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="two shapes, w1a1/w2a2 only")
    parser.add_argument("--skip-tuned", action="store_true", help="skip our MetaSchedule-tuned kernels")
    parser.add_argument("--skip-tvm-fp32", action="store_true", help="skip the MetaSchedule-tuned TVM fp32 baseline")
    parser.add_argument("--asm-only", action="store_true", help="only the inner-loop instruction counts")
    parser.add_argument("--shapes", type=int, default=0, help="only the first N shapes (0: all)")
    parser.add_argument("--name", default="kernels", help="results/<name>.json and results/<name>_speedup.png")
    parser.add_argument("--tune-trials", type=int, default=16)
    parser.add_argument("--fp32-trials", type=int, default=16)
    args = parser.parse_args()
    if args.asm_only:
        from codegen.build import cpu_target

        print("hot loop of the hand-scheduled kernel, 128->128 28x28:")
        report = asm_report(cpu_target(THREADS))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "kernels_asm.json").write_text(json.dumps(report, indent=2))
        return
    result = run(args)
    table, summary = summarize(result)
    result["summary"] = summary
    print(table)
    print(f"peaks: popcount {result['popcount_peak_per_core'] / 1e9:.0f} Gbit-MAC/s/core, "
          f"fp32 {result['fp32_peak_per_core'] / 1e9:.0f} GFLOP/s/core; load average {result['load_average']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    plot(summary, RESULTS / f"{args.name}_speedup.png")


if __name__ == "__main__":
    main()
