"""End-to-end latency at batch 1: ResNet-18 (224), MobileNetV2 (224) and the Fashion-MNIST net on target ``cpu``.

For each model: PyTorch fp32, PyTorch int8 (``torch.ao`` FX post-training quantization, x86
backend, default per-channel qconfig), onnxruntime fp32 and int8 (static QOperator quantization,
per-channel), TVM fp32 (the float module compiled for target ``cpu``: Relax's default pipeline
plus the default float schedules ``codegen.float_schedules``; untuned), and ours at the variants
``w<b>a<b>`` (first conv and last dense fp32, as NICE) or ``w<b>a<b>+f8`` (first conv quantized at
8 bits, ``calibrate(first_layer_bits=8)``), recipe from ``tvm_qnn.calibrate`` with ``--scheme``
weights (uniform by default: the int8 kernels take uniform LUTs; ``codegen.kernel_choice`` picks
popcount or int8 VNNI per layer). Weights are random (latency does not depend on them; MobileNetV2
is torchvision's architecture). Timing: ``tvm_qnn.demo.speed.measure`` -- thread CPU time and wall
time at 1 thread, wall time at 2 threads (best of 5, then the best of ``--rounds`` rounds over all
rows, 10 by default). For ours, ``cm.profile`` at 1 thread splits the time by kernel kind:
``kernel_share`` is the quantized kernels' share, the rest is fp32 layers,
pooling, adds and runtime.

Writes results/models.json. Run: ``python benchmarks/models.py [--quick] [--models resnet18,...]
[--variants w1a1,w2a2+f8] [--scheme uniform|kquantile]``.
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

from roofline import RESULTS, measure, set_tvm_threads  # noqa: E402
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON

THREADS = 2
MODELS = ("fmnist_resnet", "resnet18", "mobilenet_v2")
VARIANTS = {  # the rows: popcount at 1-2 bits, int8 VNNI from w2a2 on, an 8-bit first conv
    "fmnist_resnet": ("w1a1", "w2a2", "w3a3"),
    "resnet18": ("w1a1", "w1a1+f8", "w2a2", "w2a2+f8", "w4a4+f8", "w4a8+f8"),
    "mobilenet_v2": ("w8a8+f8", "w4a4+f8"),
}
QUICK = {"fmnist_resnet": ("w2a2",), "resnet18": ("w2a2",), "mobilenet_v2": ("w8a8+f8",)}


# (timing dict, call, threads_fn) of every row measured so far: later rounds time them again
_TIMED = []
TIMES = ("cpu_1t_s", "wall_1t_s", "wall_s")


def timed(call, threads_fn):
    """``measure`` (best of 5) of one row, kept for the later rounds (:func:`more_rounds`)."""
    timing = measure(call, threads_fn, THREADS, repeat=5)
    _TIMED.append((timing, call, threads_fn))
    return timing


def more_rounds(rounds):
    """Times every row again ``rounds - 1`` times, all rows in turn per round, and keeps each time's
    minimum: a period of load from elsewhere on a shared machine then spoils some rounds of a row, not
    its result (one round of 5 runs lasts a fraction of a second; on the 2-vCPU VM a kernel's time
    rose by 40 % for stretches of up to ~20 s, so the rounds are spread over about a minute)."""
    for _ in range(rounds - 1):
        for timing, call, threads_fn in _TIMED:
            again = measure(call, threads_fn, THREADS, repeat=5, number=timing["number"])
            for key in TIMES:
                timing[key] = min(timing[key], again[key])
    for timing, _, _ in _TIMED:
        timing["rounds"] = rounds


def _calibration_data(name, shape, count=8):
    if name == "fmnist_resnet":
        from tvm_qnn import data

        images, _ = data.load_fashion_mnist(split="train", limit=count)
        return np.asarray(images, dtype=np.float32)
    # normalised images: signed, so the first layer's input has a zero point when it is quantized
    return np.random.default_rng(0).standard_normal(size=(count,) + tuple(shape[1:])).astype(np.float32)


def parse_variant(variant):
    """``"w4a8+f8"`` -> ``(4, 8, 8)``; ``"w2a2"`` -> ``(2, 2, None)`` (first conv fp32)."""
    import re

    match = re.fullmatch(r"w([1-8])a([1-8])(\+f([1-8]))?", variant)
    if match is None:
        raise SystemExit(f"models.py: variant {variant!r}; expected w<bits>a<bits> or w<bits>a<bits>+f<bits>")
    return int(match.group(1)), int(match.group(2)), int(match.group(4)) if match.group(4) else None


def load_model(name):
    import torch

    from tvm_qnn import models

    torch.manual_seed(0)
    if name == "mobilenet_v2":
        from tvm_qnn.conformance import import_torchvision

        return import_torchvision().models.mobilenet_v2().eval(), (1, 3, 224, 224)
    return models.get_model(name).eval(), (1,) + tuple(models.example_input(name, batch=1).shape[1:])


def bench_torch_int8(model, x, calib):
    """PyTorch's own x86 int8: FX post-training static quantization (fbgemm/x86 kernels)."""
    import copy

    import torch
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (torch.from_numpy(x),))
    with torch.inference_mode():
        for sample in calib:
            prepared(torch.from_numpy(np.ascontiguousarray(sample[None])))
    return bench_torch(convert_fx(prepared), x)


def bench_torch(model, x):
    import torch

    xt = torch.from_numpy(x)

    def call():
        with torch.inference_mode():
            model(xt)

    return timed(call, torch.set_num_threads)


def bench_ort(model, x, calib, workdir, name):
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = Path(workdir) / f"{name}.onnx"
    int8 = Path(workdir) / f"{name}.int8.onnx"
    torch.onnx.export(model, torch.from_numpy(x), fp32, input_names=["x"], output_names=["y"], opset_version=17,
                      dynamo=False)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    prepared = Path(workdir) / f"{name}.prep.onnx"  # folds the exporter's Constant nodes into initializers
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    out = {}
    for key, path in (("ort_fp32", fp32), ("ort_int8", int8)):
        sessions = {}
        for n in (1, THREADS):
            options = ort.SessionOptions()
            options.intra_op_num_threads = n
            options.inter_op_num_threads = 1
            sessions[n] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        current = {"s": sessions[1]}

        def threads_fn(n, sessions=sessions, current=current):
            current["s"] = sessions[n]

        out[key] = timed(lambda current=current: current["s"].run(None, {"x": x}), threads_fn)
    return out


def _bench_compiled(compiled, x):
    import tvm

    inputs = [tvm.runtime.tensor(x)]
    fn = compiled.vm["main"]
    return timed(lambda: fn(*inputs), set_tvm_threads)


def profile_kinds(compiled, x):
    """``({kind: ms}, quantized kernels' share)`` from ``cm.profile`` at 1 thread."""
    set_tvm_threads(1)
    profile = compiled.profile(x, repeat=5, show=False)
    kinds = profile.by_kind()
    total = sum(kinds.values())
    quantized = sum(ms for kind, ms in kinds.items() if kind not in ("float", "runtime"))
    return {k: round(v, 4) for k, v in kinds.items()}, (quantized / total if total else None)


def bench_model(name, variants, workdir, bar, scheme="uniform"):
    import tvm_qnn

    model, shape = load_model(name)
    samples = _calibration_data(name, shape, count=9)
    calib, x = samples[:8], samples[8:]
    result = {"torch": bench_torch(model, x), "torch_int8": bench_torch_int8(model, x, calib)}
    result.update(bench_ort(model, x, calib, workdir, name))
    bar.update(1)
    mod, params = tvm_qnn.from_torch(model, x)
    # the float module through target "cpu" = Relax default pipeline + our default float schedules
    # (FloatCpuSchedule); the stock pipeline alone leaves convs single-threaded scalar (~35x slower)
    result["tvm_fp32"] = _bench_compiled(tvm_qnn.compile(mod, target="cpu", params=params), x)
    bar.update(1)
    for variant in variants:
        w_bits, a_bits, first = parse_variant(variant)
        recipe = tvm_qnn.calibrate(mod, params, calib, w_bits=w_bits, a_bits=a_bits, w_scheme=scheme,
                                   per_channel=True, first_layer_bits=first, progress=False)
        compiled = tvm_qnn.compile(tvm_qnn.quantize(mod, params, recipe), target="cpu")
        timing = _bench_compiled(compiled, x)
        kernels = {}
        for kind in compiled.artifact.info.get("layer_kernels", {}).values():
            kernels[kind] = kernels.get(kind, 0) + 1
        timing["layer_kernels"] = kernels
        timing["profile_ms_1t"], timing["kernel_share"] = profile_kinds(compiled, x)
        result[f"ours_{variant}"] = timing
        bar.update(1)
    return result


def summarize(results):
    """Adds the ratios to every row (1 thread: CPU time; 2 threads: wall) and returns a text table."""
    lines = [f"{'model':>14} {'variant':>16} {'cpu 1t ms':>10} {'wall 2t ms':>11} {'2t/1t':>6} {'x torch':>8}"
             f" {'x ort-int8 1t':>13} {'x ort-int8 2t':>13} {'x torch-int8 2t':>15} {'kernels':>8}"]
    for name, result in results.items():
        base = {key: result[key] for key in ("torch", "ort_int8", "torch_int8")}
        for variant, timing in result.items():
            t, wall = timing["cpu_1t_s"], timing["wall_s"]
            timing["vs_torch"] = base["torch"]["cpu_1t_s"] / t
            timing["vs_ort_int8"] = base["ort_int8"]["cpu_1t_s"] / t
            timing["vs_ort_int8_2t"] = base["ort_int8"]["wall_s"] / wall
            timing["vs_torch_int8_2t"] = base["torch_int8"]["wall_s"] / wall
            timing["two_over_one_thread"] = wall / timing["wall_1t_s"]
            share = timing.get("kernel_share")
            lines.append(f"{name:>14} {variant:>16} {t * 1e3:10.3f} {wall * 1e3:11.3f} {timing['two_over_one_thread']:6.2f}"
                         f" {timing['vs_torch']:8.2f} {timing['vs_ort_int8']:13.2f} {timing['vs_ort_int8_2t']:13.2f}"
                         f" {timing['vs_torch_int8_2t']:15.2f} {'' if share is None else f'{100 * share:.0f}%':>8}")
    return "\n".join(lines)


def main():
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one variant per model")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--scheme", default="uniform", choices=["kquantile", "uniform"],
                        help="weight scheme of the quantized variants (the int8 kernels take uniform LUTs)")
    parser.add_argument("--variants", default=None, help="comma-separated variants for every model (w2a2, w4a8+f8)")
    parser.add_argument("--name", default="models", help="results/<name>.json")
    parser.add_argument("--rounds", type=int, default=10, help="rounds over all rows; each time is its best round")
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"models.py: unknown models {unknown}; known: {list(MODELS)}")
    table = QUICK if args.quick else VARIANTS
    variants = {n: tuple(args.variants.split(",")) if args.variants else table[n] for n in names}
    for chosen in variants.values():
        for variant in chosen:
            parse_variant(variant)
    workdir = tempfile.mkdtemp(prefix="qnn_models_")
    results = {}
    with tqdm(total=sum(2 + len(v) for v in variants.values()), desc="models") as bar:
        for name in names:
            results[name] = bench_model(name, variants[name], workdir, bar, args.scheme)
    more_rounds(max(1, args.rounds))
    set_tvm_threads(THREADS)
    table = summarize(results)
    print(table)
    print(f"load average {os.getloadavg()}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"results": results, "scheme": args.scheme,
                                                           "load_average": os.getloadavg(),
                                                           "machine": machine_info()}, indent=2))


if __name__ == "__main__":
    main()
