"""Speed of target ``cpu`` in integer-only mode against the float ``cpu`` path (and the simulated fpga).

The Fashion-MNIST net (``fmnist_resnet``, random weights: latency does not depend on them) at
w1a1 / w2a2 / w4a4 k-quantile (first conv and last dense fp32), recipe from ``tvm_qnn.calibrate``
on test images. For each: ``compile(qmod, "cpu")`` (bit-serial kernels, float contract) and
``compile(qmod, "cpu", integer_only=True)`` (bit-serial kernels with the integer epilogue; the
fpga target's partitioning and host build), timed as in ``benchmarks/roofline.py`` (thread CPU
time at 1 thread and wall-clock at 2 threads) at batch 1 and batch 100; the fpga target (the
functional simulator, Python) is timed once per batch-100 call for scale.

Writes results/cpu_integer_only.json. Run: ``python benchmarks/cpu_integer_only.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from roofline import RESULTS, measure, set_tvm_threads  # noqa: E402
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON

THREADS = 2


def _timed(compiled, x):
    import tvm

    inputs = [tvm.runtime.tensor(x)]
    fn = compiled.vm["main"]
    return measure(lambda: fn(*inputs), set_tvm_threads, THREADS, repeat=5)


def bench_bits(model, images, bits, batches):
    import torch

    import tvm_qnn

    result = {}
    for batch in batches:
        x = images[:batch]
        mod, params = tvm_qnn.from_torch(model, torch.from_numpy(x))
        recipe = tvm_qnn.calibrate(mod, params, images[:256], w_bits=bits, a_bits=bits, progress=False)
        qmod = tvm_qnn.quantize(mod, params, recipe)
        float_cpu = tvm_qnn.compile(qmod, target="cpu")
        integer_cpu = tvm_qnn.compile(qmod, target="cpu", integer_only=True)
        row = {"cpu_float": _timed(float_cpu, x), "cpu_integer_only": _timed(integer_cpu, x)}
        row["integer_over_float_1t"] = row["cpu_integer_only"]["cpu_1t_s"] / row["cpu_float"]["cpu_1t_s"]
        row["integer_over_float_wall"] = row["cpu_integer_only"]["wall_s"] / row["cpu_float"]["wall_s"]
        if batch > 1:
            fpga = tvm_qnn.compile(qmod, target="fpga")
            fpga.run(x)
            start = time.perf_counter()
            out = fpga.run(x)
            row["fpga_simulator_wall_s"] = time.perf_counter() - start
            row["identical_to_fpga"] = bool(np.array_equal(out, integer_cpu.run(x)))
        result[f"batch{batch}"] = row
    return result


def summarize(results):
    lines = [f"{'bits':>6} {'batch':>6} {'float 1t ms':>12} {'int 1t ms':>10} {'int/float':>10} "
             f"{'float 2t ms':>12} {'int 2t ms':>10} {'int/float':>10} {'fpga sim s':>11}"]
    for bits, per_batch in results.items():
        for batch, row in per_batch.items():
            f, i = row["cpu_float"], row["cpu_integer_only"]
            sim = row.get("fpga_simulator_wall_s")
            lines.append(f"{bits:>6} {batch[5:]:>6} {f['cpu_1t_s'] * 1e3:12.3f} {i['cpu_1t_s'] * 1e3:10.3f} "
                         f"{row['integer_over_float_1t']:10.2f} {f['wall_s'] * 1e3:12.3f} {i['wall_s'] * 1e3:10.3f} "
                         f"{row['integer_over_float_wall']:10.2f} {'' if sim is None else f'{sim:11.2f}'}")
    return "\n".join(lines)


def main():
    import torch
    from tqdm import tqdm

    from tvm_qnn import data, models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="w2a2 only")
    args = parser.parse_args()
    bits_list = (2,) if args.quick else (1, 2, 4)
    images, _ = data.load_fashion_mnist(split="test", limit=256)
    images = np.asarray(images, np.float32)
    torch.manual_seed(0)
    model = models.fmnist_resnet().eval()
    results = {}
    for bits in tqdm(bits_list, desc="cpu integer-only vs float"):
        results[f"w{bits}a{bits}"] = bench_bits(model, images, bits, (1, 100))
    print(summarize(results))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "cpu_integer_only.json"
    path.write_text(json.dumps({"machine": machine_info(), "threads": THREADS, "results": results}, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
