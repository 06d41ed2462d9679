"""Model-zoo conformance run: torchvision architectures through both importers at w8a8 / w4a4.

For every (architecture, bits, importer) case ``tvm_qnn.conformance.run_case`` imports the
random-weight model, calibrates (uniform, per channel), quantizes, compiles for
``cpu-reference`` and ``cpu`` and measures cpu-vs-reference error, top-1 agreement with the
torch fake-quant twin on 64 random images and the ``cpu`` latency at batch 1. ``--fpga`` also
tries ``compile(target="fpga")`` and records whether it builds. One case runs at a time; the JSON
is rewritten after each case, so an interrupted run keeps what it measured. A case that fails
records its error (type and first line) instead of numbers.

Writes results/conformance.json (rendered into the README by ``benchmarks/report.py``).
Run: ``nice python benchmarks/conformance.py [--models a,b] [--bits 8,4] [--importers torch,onnx] [--fpga]``.
Two cores: run ``--importers torch --out A`` and ``--importers onnx --out B`` side by side, then
``--combine A B [C]`` writes their union to ``--out`` (each part's machine record kept in
``meta.parts``; a case in several runs comes from the last, listed in ``meta.replaced``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from report import machine_info  # noqa: E402

from tvm_qnn.conformance import ARCHITECTURES, BITS, IMPORTERS, run_case  # noqa: E402


def _fpga_builds(name, bits, importer):
    """``"ok"`` or the error's first line: compile(target="fpga") of the same case's quantized module."""
    import numpy as np
    import torch

    import tvm_qnn
    from tvm_qnn.conformance import ARCHITECTURES as RES, import_model, torchvision_model

    model = torchvision_model(name)
    shape = (1, 3, RES[name], RES[name])
    data = np.random.default_rng(0).standard_normal((4,) + shape[1:]).astype(np.float32)
    mod, params = import_model(model, torch.from_numpy(data[:1]), importer)
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=bits, a_bits=bits, w_scheme="uniform", per_channel=True,
                               progress=False)
    try:
        tvm_qnn.compile(tvm_qnn.quantize(mod, params, recipe), target="fpga")
        return "ok"
    except Exception as err:  # noqa: BLE001 - recorded, not raised
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ARCHITECTURES))
    parser.add_argument("--bits", default=",".join(str(b) for b in BITS))
    parser.add_argument("--importers", default=",".join(IMPORTERS))
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--fpga", action="store_true", help="also try compile(target='fpga')")
    parser.add_argument("--out", default=str(ROOT / "results" / "conformance.json"))
    parser.add_argument("--merge", action="store_true", help="keep the cases of an existing JSON not re-run")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="write the union of the cases of these runs' JSONs to --out, later runs replacing "
                             "earlier ones' cases (runs nothing)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.combine:
        return _combine([Path(p) for p in args.combine], out)
    cases = {}
    if args.merge and out.is_file():
        cases = {(c["model"], c["bits"], c["importer"]): c for c in json.loads(out.read_text()).get("cases", [])}
    for name in args.models.split(","):
        for bits in (int(b) for b in args.bits.split(",")):
            for importer in args.importers.split(","):
                start = time.perf_counter()
                try:
                    case = run_case(name, bits, importer, n_inputs=args.inputs, benchmark=True).to_json()
                    case["status"] = "ok"
                except Exception as err:  # noqa: BLE001 - one failing case must not stop the run
                    traceback.print_exc()
                    case = {"model": name, "bits": bits, "importer": importer, "status": "error",
                            "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"}
                if args.fpga:
                    case["fpga"] = _fpga_builds(name, bits, importer)
                case["wall_s"] = round(time.perf_counter() - start, 1)
                cases[(name, bits, importer)] = case
                print(json.dumps({k: case.get(k) for k in ("model", "bits", "importer", "status", "cpu_vs_reference",
                                                           "agreement", "ms", "wall_s", "error")}), flush=True)
                data = {"meta": machine_info(), "inputs": args.inputs,
                        "cases": [cases[key] for key in sorted(cases, key=lambda k: (k[0], -k[1], k[2]))]}
                out.write_text(json.dumps(data, indent=1) + "\n")
    return 0


def _combine(paths, out):
    """The union of the cases of several runs; a case in several runs is taken from the last of them
    (a re-run of some cases after a change), and ``meta.replaced`` lists it."""
    parts = [json.loads(p.read_text()) for p in paths]
    if len({part["inputs"] for part in parts}) != 1:
        raise SystemExit(f"--combine: the runs used different --inputs: {[part['inputs'] for part in parts]}")
    cases, replaced = {}, []
    for path, part in zip(paths, parts):
        for case in part["cases"]:
            key = (case["model"], case["bits"], case["importer"])
            if key in cases:
                replaced.append({"case": list(key), "by": path.name})
            cases[key] = case
    metas = [part["meta"] for part in parts]
    # the measurement's own record: the last part's date and CPU, the highest load any part saw
    meta = {**metas[-1], "date": max(m["date"] for m in metas),
            "load_average": [max(m["load_average"][i] for m in metas) for i in range(3)],
            "combined": machine_info()["date"], "parts": metas, "replaced": replaced}
    data = {"meta": meta,
            "inputs": parts[0]["inputs"],
            "cases": [cases[key] for key in sorted(cases, key=lambda k: (k[0], -k[1], k[2]))]}
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(cases)} cases from {len(paths)} runs ({len(replaced)} replaced by a later run) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
