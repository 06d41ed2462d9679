"""Depthwise and grouped convs on target ``cpu`` at any stride/padding/width, fused with the next layer's packing.

The hand schedule vectorizes the activation packing along image rows; a row width with no divisor
of at least 4 below the vector length (a prime such as 79) once left an extent-1 loop that
``vectorize`` refused (``ScheduleError: 'vectorize'``). These tests draw depthwise/grouped layers
whose result feeds a quantized 1x1 conv (so the first kernel emits packed codes) and compare the
lowered module with the stock build of the same composites and with ``tvm_qnn.reference``.
"""

import numpy as np
import pytest
import torch
import tvm
from codegen_composites import chain_module
from codegen_layers import random_input, random_layer
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from tvm import relax

import tvm_qnn
from codegen.build import cpu_target
from relay_passes.lower_bitserial import LowerQnnToBitserial
from tvm_qnn.layer import QnnLayer


def _run(mod, target, x):
    ex = tvm.compile(mod, target=target, relax_pipeline=relax.get_default_pipeline(target))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


depthwise_cases = st.fixed_dictionaries({
    "groups": st.sampled_from([4, 8, 24]), "per_group": st.sampled_from([1, 1, 2]),
    # widths without a divisor >= 4 below the vector length (67, 79, 97, 2 x 37) and ordinary ones
    "size": st.sampled_from([5, 7, 12, 15, 31, 67, 74, 79, 97]),
    "kernel": st.sampled_from([3, 5]), "stride": st.sampled_from([1, 2]),
    "padding": st.sampled_from([0, 1, 2, (0, 0, 1, 1), (1, 0, 2, 1)]),
    "bits": st.sampled_from([(8, 8), (4, 4), (2, 3)]), "seed": st.integers(0, 2**16),
})


@settings(max_examples=8)
@given(case=depthwise_cases)
def test_depthwise_then_pointwise_lowered_matches_stock_and_reference(case):
    rng = np.random.default_rng(case["seed"])
    w_bits, a_bits = case["bits"]
    channels = case["groups"] * case["per_group"]
    first = random_layer(rng, channels=channels, out_channels=channels, groups=case["groups"], size=case["size"],
                         kernel=case["kernel"], stride=case["stride"], padding=case["padding"], w_bits=w_bits,
                         a_bits=a_bits, scheme="uniform", epilogue="relu6", a_clamp=3.0)
    _, _, height, width = first.output_shape
    second = random_layer(rng, channels=channels, out_channels=16, size=height, kernel=1, padding=0, w_bits=w_bits,
                          a_bits=a_bits, scheme="uniform", epilogue="none", a_clamp=4.0)
    second = QnnLayer(**{**{f: getattr(second, f) for f in second.__dataclass_fields__},
                         "name": "test.second", "input_shape": (1, channels, height, width)})
    mod, read_layer = chain_module([first, second])
    target = cpu_target()
    # popcount kernels on both (the cost model would put the 1x1 at 4+ bits on the int8 kernel, which
    # reads float, and there would be no packed chain to check)
    lowered = LowerQnnToBitserial(target=target, read_layer=read_layer, auto_int8=False)(mod)
    assert 'dtype="uint64"' in lowered.script()  # the depthwise kernel emits the packed codes
    x = random_input(rng, first)
    out = _run(lowered, target, x)
    expected = second.reference(first.reference(x).astype(np.float32)) + 1.0
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(out, _run(mod, target, x), rtol=1e-4, atol=1e-4 * scale)


class _DepthwiseBlock(nn.Module):
    """MobileNet-style block: a stride-2 depthwise 3x3 (96 groups) + ReLU6 into a 1x1 projection."""

    def __init__(self, channels=96):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 1)
        self.dw = nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels)
        self.project = nn.Conv2d(channels, 16, 1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.head(torch.relu(self.project(nn.functional.relu6(self.dw(x)))))


@pytest.mark.parametrize("size", [79])
def test_stride2_depthwise_96_groups_compiles_for_cpu_and_equals_cpu_reference(size):
    torch.manual_seed(0)
    model = _DepthwiseBlock().eval()
    x = torch.rand(1, 3, size, size)
    mod, params = tvm_qnn.from_torch(model, x)
    data = np.random.default_rng(0).random((2, 3, size, size), dtype=np.float32)
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=8, a_bits=8, w_scheme="uniform", per_channel=True,
                               fp32_layers=["stem.weight"], progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    cpu = tvm_qnn.compile(qmod, target="cpu").run(data[:1])
    ref = tvm_qnn.compile(qmod, target="cpu-reference").run(data[:1])
    np.testing.assert_allclose(cpu, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max()))
