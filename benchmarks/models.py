"""End-to-end latency at batch 1: ResNet-18 (224) and the Fashion-MNIST net, quantized on target ``cpu``.

For each model: PyTorch fp32, onnxruntime fp32 and int8 (static QOperator quantization),
TVM fp32 (the float module compiled for target ``cpu``: Relax's default pipeline plus the
default float schedules ``codegen.float_schedules``; untuned -- MetaSchedule-tuning a whole
ResNet-18 does not fit this benchmark's budget), and ours at w1a1 / w2a2 / w3a3
(k-quantile LUT weights by default, ``--scheme uniform`` for NICE uniform ones; first conv and
last dense fp32 as NICE, recipe from
``tvm_qnn.calibrate``). Weights are random (latency does not depend on them); timing as in
``benchmarks/roofline.py``: thread CPU time at 1 thread (primary) and wall-clock at 2 threads.

Writes results/models.json. Run: ``python benchmarks/models.py [--quick] [--skip-resnet18]``.
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
BITS = (1, 2, 3)


def _calibration_data(name, shape, count=8):
    if name == "fmnist_resnet":
        from tvm_qnn import data

        images, _ = data.load_fashion_mnist(split="train", limit=count)
        return np.asarray(images, dtype=np.float32)
    return np.random.default_rng(0).uniform(0, 1, size=(count,) + tuple(shape[1:])).astype(np.float32)


def bench_torch(model, x):
    import torch

    xt = torch.from_numpy(x)

    def call():
        with torch.inference_mode():
            model(xt)

    return measure(call, torch.set_num_threads, THREADS, repeat=5)


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

        out[key] = measure(lambda current=current: current["s"].run(None, {"x": x}), threads_fn, THREADS, repeat=5)
    return out


def _bench_compiled(compiled, x):
    import tvm

    inputs = [tvm.runtime.tensor(x)]
    fn = compiled.vm["main"]
    return measure(lambda: fn(*inputs), set_tvm_threads, THREADS, repeat=5)


def bench_kernels_alone(qmod):
    """Sum over the model's quantized layers of the bit-serial kernel's 1-thread CPU time (the share
    of the end-to-end time spent in our kernels; the rest is the fp32 layers and glue ops)."""
    import tvm

    from codegen.build import build_kernel, cpu_target
    from codegen.plan import kernel_args, layer_workload
    from relay_passes.composite import read_qnn_layers

    total = 0.0
    target = cpu_target(THREADS)
    for layer in read_qnn_layers(qmod).values():
        wl = layer_workload(layer)
        kernel = build_kernel(wl, target)
        x = np.random.default_rng(0).uniform(0, 1, size=layer.input_shape).astype(np.float32)
        args = [tvm.runtime.tensor(x)] + [tvm.runtime.tensor(a) for a in kernel_args(layer, wl).as_list()]
        args.append(tvm.runtime.empty(wl.output_shape, "float32"))
        fn = kernel["main"]
        total += measure(lambda fn=fn, args=args: fn(*args), set_tvm_threads, THREADS, repeat=3)["cpu_1t_s"]
    return total


def bench_model(name, bits_list, workdir, bar, scheme="kquantile"):
    import torch

    import tvm_qnn
    from tvm_qnn import models

    torch.manual_seed(0)
    model = models.get_model(name).eval()
    x = np.asarray(models.example_input(name, batch=1), dtype=np.float32)
    calib = _calibration_data(name, x.shape)
    result = {"torch": bench_torch(model, x)}
    result.update(bench_ort(model, x, calib, workdir, name))
    bar.update(1)
    mod, params = tvm_qnn.from_torch(model, x)
    # the float module through target "cpu" = Relax default pipeline + our default float schedules
    # (FloatCpuSchedule); the stock pipeline alone leaves convs single-threaded scalar (~35x slower)
    result["tvm_fp32"] = _bench_compiled(tvm_qnn.compile(mod, target="cpu", params=params), x)
    bar.update(1)
    for bits in bits_list:
        recipe = tvm_qnn.calibrate(mod, params, calib, w_bits=bits, a_bits=bits, w_scheme=scheme, progress=False)
        qmod = tvm_qnn.quantize(mod, params, recipe)
        compiled = tvm_qnn.compile(qmod, target="cpu")
        timing = _bench_compiled(compiled, x)
        timing["bitserial_kernels"] = len(compiled.artifact.info.get("bitserial_kernels", []))
        timing["kernels_alone_cpu_1t_s"] = bench_kernels_alone(qmod)
        result[f"ours_w{bits}a{bits}"] = timing
        bar.update(1)
    return result


def summarize(results):
    lines = [f"{'model':>14} {'variant':>12} {'cpu 1t ms':>10} {'wall 2t ms':>11} {'x torch':>8} {'x ort-int8':>10}"]
    for name, result in results.items():
        torch_t, int8_t = result["torch"]["cpu_1t_s"], result["ort_int8"]["cpu_1t_s"]
        for variant, timing in result.items():
            t = timing["cpu_1t_s"]
            timing["vs_torch"] = torch_t / t
            timing["vs_ort_int8"] = int8_t / t
            share = (f"  (bit-serial kernels {timing['kernels_alone_cpu_1t_s'] * 1e3:.3f} ms = "
                     f"{100 * timing['kernels_alone_cpu_1t_s'] / t:.0f}%)") if "kernels_alone_cpu_1t_s" in timing else ""
            lines.append(f"{name:>14} {variant:>12} {t * 1e3:10.3f} {timing['wall_s'] * 1e3:11.3f}"
                         f" {torch_t / t:8.2f} {int8_t / t:10.2f}{share}")
    return "\n".join(lines)


def main():
    from tqdm import tqdm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="w2a2 only")
    parser.add_argument("--skip-resnet18", action="store_true")
    parser.add_argument("--skip-fmnist", action="store_true")
    parser.add_argument("--scheme", default="kquantile", choices=["kquantile", "uniform"],
                        help="weight scheme of the quantized variants (uniform LUTs use bit planes)")
    parser.add_argument("--bits", default="1,2,3", help="comma-separated bit widths (w = a)")
    parser.add_argument("--name", default="models", help="results/<name>.json")
    args = parser.parse_args()
    bits_list = (2,) if args.quick else tuple(int(b) for b in args.bits.split(","))
    names = ([] if args.skip_fmnist else ["fmnist_resnet"]) + ([] if args.skip_resnet18 else ["resnet18"])
    workdir = tempfile.mkdtemp(prefix="qnn_models_")
    results = {}
    with tqdm(total=len(names) * (2 + len(bits_list)), desc="models") as bar:
        for name in names:
            results[name] = bench_model(name, bits_list, workdir, bar, args.scheme)
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
