"""Conformance: torchvision architectures (random weights) imported, quantized and compiled.

Each case (``tvm_qnn.conformance.run_case``): import via ``from_torch`` or ONNX, uniform
per-channel PTQ at w8a8 / w4a4, compile for ``cpu-reference`` and ``cpu``; ``cpu`` equals
``cpu-reference`` to 1e-5 of the output range, and the compiled model's top-1 agrees with the
torch fake-quant twin of the recipe on >= 99 % of 64 random images (or every miss a
rounding-boundary input), which fall into at least 3 top-1 classes (the classifier is centred, see
``tvm_qnn.conformance``). The fast subset (default
suite) runs small cases; the full matrix is ``-m slow``.
"""

import pytest

from tvm_qnn.conformance import ARCHITECTURES, BITS, IMPORTERS, run_case


def _check(result):
    assert result.quantized_layers > 0
    assert result.cpu_vs_reference <= 1e-5, result
    # the twin sums every layer as the compiled model does (exact fp32 layers included), so even a
    # rounding-boundary input must agree
    assert result.agreement >= 0.99, result
    assert result.agreement_reference >= 0.99 or result.agreement_reference == result.agreement, result
    assert result.classes >= 3, result  # the centred random head: top-1 depends on the input


def test_fast_subset_resnet18_w8a8_from_torch(torchvision):
    # 16x16 input and 16 images keep this case in the default suite's budget
    _check(run_case("resnet18", 8, "torch", n_inputs=16, n_calibration=4, resolution=16))


@pytest.mark.slow
@pytest.mark.timeout(3600)  # densenet121 / resnet50 compile for minutes on a loaded machine
@pytest.mark.parametrize("importer", IMPORTERS)
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_architecture(torchvision, name, bits, importer):
    _check(run_case(name, bits, importer))
