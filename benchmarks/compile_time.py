"""Import + quantize + compile time of ResNet-18 (1x3x224x224, random init, BN in eval), untuned.

Prints the phases in seconds and writes results/compile_time.json. Target: the three phases
together under 60 s on 2 cores for the stock (``cpu-reference``) lowering. The float compile of
the same module is measured in the same run as the baseline, so the ratio shows what the
quantization passes and the quantized graph add. ``--target`` times another registered target.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON


def timed(label, fn, timings):
    start = time.perf_counter()
    value = fn()
    timings[label] = time.perf_counter() - start
    print(f"{label:>22s}: {timings[label]:7.2f} s", flush=True)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="cpu-reference")
    parser.add_argument("--w-bits", type=int, default=2)
    parser.add_argument("--a-bits", type=int, default=2)
    parser.add_argument("--out", default=os.path.join("results", "compile_time.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    import numpy as np
    import torch

    import tvm_qnn
    from tvm_qnn.models import resnet18
    from tvm_qnn.recipe import LayerQuant, Recipe

    torch.manual_seed(0)
    model = resnet18().eval()
    x = torch.rand(1, 3, 224, 224)
    timings = {}
    mod, params = timed("import (torch.export)", lambda: tvm_qnn.from_torch(model, x), timings)
    # a recipe straight from the weights (calibration is a separate, data-dependent step)
    from relay_passes.patterns import quantizable_layers

    names = list(quantizable_layers(mod["main"]))
    fp32 = [names[0], names[-1]]
    recipe = Recipe({n: LayerQuant.from_weight(n, params[n], args.w_bits, args.a_bits, 2.0)
                     for n in names if n not in fp32}, tuple(fp32), "resnet18")
    qmod = timed("quantize (passes)", lambda: tvm_qnn.quantize(mod, params, recipe), timings)
    compiled = timed(f"compile ({args.target})", lambda: tvm_qnn.compile(qmod, target=args.target), timings)
    timed("compile float baseline", lambda: tvm_qnn.compile(mod, target="cpu-reference", params=params), timings)
    total = timings["import (torch.export)"] + timings["quantize (passes)"] + timings[f"compile ({args.target})"]
    ratio = timings[f"compile ({args.target})"] / timings["compile float baseline"]
    print(f"{'import+quantize+compile':>22s}: {total:7.2f} s (target < 60 s: {'met' if total < 60 else 'MISSED'}); "
          f"quantized/float compile time {ratio:.2f}x")
    out = compiled.run(x.numpy())
    result = {"model": "resnet18", "input": [1, 3, 224, 224], "target": args.target, "w_bits": args.w_bits,
              "a_bits": args.a_bits, "seconds": timings, "total_s": total, "quantized_over_float_compile": ratio,
              "cores": len(os.sched_getaffinity(0)), "output_finite": bool(np.isfinite(out).all()),
              "target_met": total < 60, "machine": machine_info()}
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
