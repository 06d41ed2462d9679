"""Integer-only depthwise kernel (codegen.depthwise_int) against reference.qconv2d_int, bit for bit."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from int_kernel_cases import expected_output, random_case, random_inputs, run_kernel

from codegen.build import cpu_target
from codegen.depthwise_int import DepthwiseKernel, depthwise_kernel_args, scheduled_depthwise_primfunc
from codegen.workload import ConvWorkload
from tvm_qnn.errors import ShapeError


def _build(kernel):
    func = scheduled_depthwise_primfunc(kernel).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=cpu_target())


@st.composite
def depthwise_cases(draw):
    c = draw(st.integers(2, 40))  # channels: often not a multiple of 16
    k = draw(st.integers(1, 5))
    dilation = draw(st.integers(1, 2))
    span = dilation * (k - 1) + 1
    pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h, w = draw(st.integers(max(1, span - pad[0] - pad[2]), 12)), draw(st.integers(max(1, span - pad[1] - pad[3]), 12))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    wl = ConvWorkload("conv2d", draw(st.integers(1, 2)), c, h, w, c, (k, k), stride, pad, (dilation, dilation),
                      groups=c, a_bits=draw(st.integers(1, 8)), w_bits=draw(st.integers(1, 8)))
    ends = (draw(st.sampled_from(["float", "codes"])), draw(st.sampled_from(["float", "codes"])))
    return wl, ends, draw(st.integers(1, 8)), draw(st.integers(0, 2**16))


@settings(max_examples=12, deadline=None)
@given(depthwise_cases())
def test_depthwise_kernel_matches_the_integer_only_reference(case):
    wl, (input_kind, output_kind), next_bits, seed = case
    rng = np.random.default_rng(seed)
    kernel = DepthwiseKernel(wl, input_kind, output_kind)
    idx, p = random_case(rng, wl, next_bits, out_min=rng.choice([None, 0.0]), out_max=rng.choice([None, 1.5]))
    inputs, codes = random_inputs(rng, kernel, p)
    got = run_kernel(kernel, _build(kernel), inputs, depthwise_kernel_args("dw", kernel, idx, p))
    want = expected_output(kernel, codes, idx, p, next_bits)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_only_depthwise_workloads():
    grouped = ConvWorkload("conv2d", 1, 8, 6, 6, 8, (3, 3), groups=4)
    with pytest.raises(ShapeError, match="not depthwise"):
        DepthwiseKernel(grouped)
