"""Pretrained EfficientNet-Lite1 (ImageNet weights), w8a8 uniform per-channel PTQ, against fp32.

``tvm_qnn.conformance.run_lite1``: calibration on 8 crops of scikit-learn's sample photos with and
without bias correction, the torch fake-quant twin of both recipes and the bias-corrected recipe
compiled for ``cpu-reference``, ``cpu``, integer-only ``cpu`` and ``fpga``, compared with the fp32
torch model on 64 other crops (top-1 agreement, mean relative logit error, cpu = cpu-reference,
integer-only cpu = fpga bit for bit). Needs ``pip install '.[zoo]'``.

Writes results/pretrained.json (rendered into the README by ``benchmarks/report.py``).
Run: ``python benchmarks/pretrained.py [--crops 64]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import machine_info  # noqa: E402

from tvm_qnn.conformance import run_lite1  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "results" / "pretrained.json"))
    args = parser.parse_args(argv)
    result = run_lite1(n_crops=args.crops, progress=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine_info(), "efficientnet_lite1": result}, indent=1) + "\n")
    twin, compiled = result["twin"], result["compiled"]
    print(f"twin agreement {twin['plain']['agreement']:.3f} -> {twin['bias_correction']['agreement']:.3f} with bias "
          f"correction; compiled: " + ", ".join(f"{k} {v['agreement']:.3f}" for k, v in compiled.items())
          + f"; integer-only cpu = fpga: {result['integer_cpu_equals_fpga']} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
