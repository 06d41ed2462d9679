"""Residual add (+ ReLU) fused into the float epilogue of the popcount and int8 conv kernels: the output
equals the unfused kernel's output plus the residual in float32 (then ReLU), element for element."""

import dataclasses

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.build import build_kernel, cpu_target
from codegen.plan import kernel_args, layer_workload
from codegen.vnni_int8 import Int8Kernel, float_int8_kernel_args
from codegen.vnni_schedule import scheduled_int8_primfunc, target_int8_instructions
from codegen.workload import ConvWorkload
from tvm_qnn.errors import ShapeError

from codegen_layers import random_input, random_layer

NATIVE = cpu_target()

cases = st.fixed_dictionaries({
    "channels": st.integers(1, 40), "out_channels": st.sampled_from([5, 16, 17, 32]), "size": st.integers(3, 9),
    "kernel": st.sampled_from([1, 3]), "stride": st.sampled_from([1, 2]), "padding": st.sampled_from([0, 1]),
    "w_bits": st.integers(1, 4), "a_bits": st.integers(1, 4), "zero_point": st.booleans(),
    "epilogue": st.sampled_from(["none", "relu"]), "residual": st.sampled_from(["add", "add_relu"]),
    "seed": st.integers(0, 2**16),
})


def _layer(case):
    case = dict(case)
    rng = np.random.default_rng(case.pop("seed"))
    residual = case.pop("residual")
    zero = int(rng.integers(1, 1 << case["a_bits"])) if case.pop("zero_point") and case["a_bits"] > 1 else 0
    layer = random_layer(rng, **case, scheme="uniform", a_zero_point=zero)
    return layer, rng, residual


def _expected(plain, residual, kind):
    total = plain + residual  # float32 + float32, as the separate Relax add
    return np.maximum(total, np.float32(0)) if kind == "add_relu" else total


def _call(func_or_exec, inputs, out_shape):
    out = tvm.runtime.empty(out_shape, "float32")
    func_or_exec["main"](*[tvm.runtime.tensor(a) for a in inputs], out)
    return out.numpy()


@settings(max_examples=8, deadline=None)
@given(cases)
def test_popcount_kernel_residual_equals_separate_add(case):
    layer, rng, kind = _layer(case)
    wl = layer_workload(layer)
    fused = dataclasses.replace(wl, residual=kind)
    x = random_input(rng, layer)
    residual = rng.normal(size=wl.output_shape).astype(np.float32)
    args = [x] + kernel_args(layer, wl).as_list()
    plain = _call(build_kernel(wl, NATIVE), args, wl.output_shape)
    got = _call(build_kernel(fused, NATIVE), args + [residual], wl.output_shape)
    np.testing.assert_array_equal(got, _expected(plain, residual, kind))


@settings(max_examples=8, deadline=None)
@given(cases)
def test_int8_kernel_residual_equals_separate_add(case):
    layer, rng, kind = _layer(case)
    wl = layer_workload(layer, scheme="onehot")
    x = random_input(rng, layer)
    residual = rng.normal(size=wl.output_shape).astype(np.float32)
    outs = []
    for workload in (wl, dataclasses.replace(wl, residual=kind)):
        kernel = Int8Kernel(workload, "float", "float", target_int8_instructions(NATIVE), contract="float")
        func = scheduled_int8_primfunc(kernel).with_attr("global_symbol", "main")
        executable = tvm.compile(tvm.IRModule({"main": func}), target=NATIVE)
        extra = [residual] if workload.residual else []
        outs.append(_call(executable, [x] + float_int8_kernel_args(layer, kernel) + extra, wl.output_shape))
    np.testing.assert_array_equal(outs[1], _expected(outs[0], residual, kind))


def test_residual_needs_a_conv_with_float_output():
    with pytest.raises(ShapeError, match="residual"):
        ConvWorkload("dense", 1, 8, 1, 1, 4, residual="add")
    with pytest.raises(ShapeError, match="residual"):
        ConvWorkload("conv2d", 1, 8, 4, 4, 4, output="packed", residual="add")
    with pytest.raises(ShapeError, match="residual='mul'"):
        ConvWorkload("conv2d", 1, 8, 4, 4, 4, residual="mul")
