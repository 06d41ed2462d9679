"""Integer-only kernels (codegen.bitserial_int) against tvm_qnn.reference's integer-only oracle, bit for bit."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.bitserial_int import (IntegerKernel, integer_kernel_args, integer_scheme, make_integer_primfunc,
                                   scheduled_integer_primfunc)
from codegen.build import cpu_target
from codegen.plan import layer_workload
from tvm_qnn import reference
from tvm_qnn.errors import QuantizationError
from tvm_qnn.layer import QnnLayer

TARGET = cpu_target()


def _params(layer, next_act=None, out_min=None):
    """What the accelerator compiler hands the kernel (vta_ext.compiler.integer_params), from the reference:
    ``bias_acc`` is the bias over the unsigned codes, ``bias_int - z sum lut_int[o, idx]``."""
    s_next = None if next_act is None else reference.act_scale(next_act[1], next_act[0])
    p = dict(reference.integer_requant_params(layer.lut, layer.s_a, layer.bias, s_next, layer.out_channels),
             s_a=float(layer.s_a), out_min=layer.out_min, out_max=layer.out_max)
    p["bias_acc"] = p["bias_int"] - layer.a_zero_point * reference.zero_point_weight_sums(
        layer.weight_idx, p["lut_int"].astype(np.int64))
    if next_act is not None:
        z_next = next_act[2] if len(next_act) > 2 else 0
        lo = 0 if out_min is None else int(reference.act_codes(np.float32(out_min), next_act[1], next_act[0], z_next))
        p.update(lo=lo, hi=(1 << next_act[0]) - 1, out_zero_point=z_next)
    return p


def _run(kernel, scheduled, x, args, out_shape):
    func = scheduled_integer_primfunc(kernel) if scheduled else make_integer_primfunc(kernel)
    executable = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=TARGET)
    out = tvm.runtime.empty(out_shape, kernel.output_dtype)
    executable["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in [*x, *args]], out)
    return out.numpy()


@st.composite
def integer_layers(draw):
    kind = draw(st.sampled_from(["conv2d", "dense"]))
    w_bits, a_bits = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c, o, n = draw(st.integers(1, 70)), draw(st.sampled_from([1, 3, 8, 16])), draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**16))
    lut_kind = draw(st.sampled_from(["random", "uniform", "integer_affine"]))
    rng = np.random.default_rng(seed)
    levels = 1 << w_bits
    if lut_kind == "random":  # k-quantile-like: rounds to a non-affine lut_int
        lut = np.sort(rng.normal(size=(o, levels)), axis=1)
    elif lut_kind == "uniform":  # uniform in float; int8 rounding may or may not keep it affine
        lut = rng.uniform(0.01, 0.3) * (np.arange(levels) - (levels - 1) / 2)[None, :]
    else:  # exactly affine in integers after scaling by max/127: the bit-plane scheme
        lut = (np.arange(levels) * (254 // max(levels - 1, 1)) - 127)[None, :] * 0.01
    bias = rng.normal(size=o) if draw(st.booleans()) else None
    clamp = float(rng.uniform(0.5, 3.0))
    z = int(rng.integers(0, 1 << a_bits)) if draw(st.booleans()) else 0
    if kind == "conv2d":
        k = draw(st.integers(1, 3))
        h, w = draw(st.integers(k, 7)), draw(st.integers(k, 7))
        stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
        idx = rng.integers(0, levels, (o, c, k, k)).astype(np.uint8)
        layer = QnnLayer("drawn", "conv2d", idx, lut.astype(np.float32), bias, w_bits, "kquantile", a_bits, clamp,
                         (n, c, h, w), stride=(stride, stride), padding=pad, out_min=0.0, a_zero_point=z)
    else:
        idx = rng.integers(0, levels, (o, c)).astype(np.uint8)
        layer = QnnLayer("drawn", "dense", idx, lut.astype(np.float32), bias, w_bits, "kquantile", a_bits, clamp,
                         (n, c), out_min=draw(st.sampled_from([None, 0.0])), a_zero_point=z)
    x = rng.uniform(-0.5 - z * float(layer.s_a), clamp * 1.2, layer.input_shape).astype(np.float32)
    next_bits = draw(st.integers(1, 4))
    next_act = (next_bits, float(rng.uniform(0.5, 3.0)), int(rng.integers(0, 1 << next_bits)) if z else 0)
    return layer, x, next_act, draw(st.sampled_from(["float", "codes"])), draw(st.sampled_from(["float", "codes"]))


def _accumulator(layer, codes, p):
    if layer.kind == "conv2d":
        return reference.qconv2d_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], layer.stride,
                                         layer.padding, layer.groups, layer.dilation, layer.a_zero_point)
    return reference.qdense_int_acc(codes, layer.weight_idx, p["lut_int"], p["bias_int"], layer.a_zero_point)


@settings(max_examples=14)
@given(integer_layers())
def test_integer_kernel_matches_the_integer_only_reference(case):
    layer, x, next_act, input_kind, output_kind = case
    p = _params(layer, next_act if output_kind == "codes" else None)
    scheme = integer_scheme(p["lut_int"], layer.w_bits)
    kernel = IntegerKernel(layer_workload(layer, scheme=scheme), input_kind, output_kind)
    codes = layer.act_codes(x)
    inputs = [x, np.array([layer.s_a], np.float32)] if input_kind == "float" else [codes]
    got = _run(kernel, True, inputs, integer_kernel_args(layer.name, kernel, layer.weight_idx, p), layer.output_shape)
    z, z_next = layer.a_zero_point, next_act[2]
    if output_kind == "codes":
        if layer.kind == "conv2d":
            want = reference.qconv2d_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"],
                                         p["shift"], next_act[0], layer.stride, layer.padding, zero_point=z,
                                         out_zero_point=z_next)
        else:
            want = reference.qdense_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"],
                                        p["shift"], next_act[0], zero_point=z, out_zero_point=z_next)
    else:
        acc = _accumulator(layer, codes, p)
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        want = np.clip(acc * (float(layer.s_a) * p["s_w"]).reshape(shape), layer.out_min,
                       layer.out_max).astype(np.float32)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_bitplane_only_for_integer_affine_luts_and_both_schemes_agree():
    rng = np.random.default_rng(3)
    assert integer_scheme(np.array([[-127, -42, 43, 127]]), 2) == "onehot"  # steps 85, 85, 84
    assert integer_scheme(np.array([[-120, -40, 40, 120]]), 2) == "bitplane"
    assert integer_scheme(np.array([[-127, 127]]), 1) == "bitplane"  # two levels are always affine
    lut = np.array([[-1.2, -0.4, 0.4, 1.2]], np.float32)  # -> lut_int -127, -42, 42, 127: not affine
    assert integer_scheme(reference.integer_requant_params(lut, 0.1)["lut_int"], 2) == "onehot"
    layer = QnnLayer("l", "conv2d", rng.integers(0, 4, (8, 5, 3, 3)).astype(np.uint8),
                     np.array([[-1.25, -0.41, 0.43, 1.27]], np.float32), None, 2, "uniform", 3, 2.0,
                     (1, 5, 6, 6), padding=1)  # lut_int -125, -41, 43, 127: affine in integers
    p = _params(layer, (3, 1.0))
    assert integer_scheme(p["lut_int"], 2) == "bitplane"
    x = rng.uniform(0, 2, layer.input_shape).astype(np.float32)
    outputs = []
    for scheme in ("bitplane", "onehot"):
        kernel = IntegerKernel(layer_workload(layer, scheme=scheme), "float", "codes")
        args = integer_kernel_args(layer.name, kernel, layer.weight_idx, p)
        outputs.append(_run(kernel, False, [x, np.array([layer.s_a], np.float32)], args, layer.output_shape))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_layers_the_integer_mode_cannot_express_are_named():
    idx = np.zeros((1, 70000), np.uint8)
    layer = QnnLayer("huge.fan_in", "dense", idx, np.array([[-1.0, 1.0]], np.float32), None, 1, "uniform", 8, 1.0,
                     (1, 70000))
    kernel = IntegerKernel(layer_workload(layer, scheme="bitplane"))
    with pytest.raises(QuantizationError, match="layer 'huge.fan_in'.*beyond int32"):
        integer_kernel_args(layer.name, kernel, idx, _params(layer))
    small = QnnLayer("l", "dense", np.zeros((2, 4), np.uint8), np.array([[-1.2, -0.4, 0.4, 1.2]], np.float32),
                     None, 2, "kquantile", 2, 1.0, (1, 4))
    kernel = IntegerKernel(layer_workload(small, scheme="bitplane"))
    with pytest.raises(QuantizationError, match="layer 'l'.*integer-affine"):
        integer_kernel_args(small.name, kernel, small.weight_idx, _params(small))


@pytest.mark.parametrize("input_kind", ["float", "codes"])
def test_zero_point_with_padding_matches_the_reference(input_kind):
    """z != 0 with padding > 0: the kernel pads with code z (x_hat = 0) and its bias carries -z sum lut_int."""
    rng = np.random.default_rng(8)
    lut = np.sort(rng.normal(size=(8, 8)), axis=1).astype(np.float32)
    layer = QnnLayer("zp", "conv2d", rng.integers(0, 8, (8, 20, 3, 3)).astype(np.uint8), lut,
                     rng.normal(size=8).astype(np.float32), 3, "kquantile", 4, 2.0, (1, 20, 5, 6),
                     padding=(2, 1, 1, 2), stride=(2, 1), a_zero_point=6)
    p = _params(layer, (4, 1.5, 3))
    kernel = IntegerKernel(layer_workload(layer, scheme=integer_scheme(p["lut_int"], 3)), input_kind, "codes")
    x = rng.uniform(-1.5, 1.5, layer.input_shape).astype(np.float32)
    codes = layer.act_codes(x)
    inputs = [x, np.array([layer.s_a], np.float32)] if input_kind == "float" else [codes]
    got = _run(kernel, True, inputs, integer_kernel_args(layer.name, kernel, layer.weight_idx, p), layer.output_shape)
    want = reference.qconv2d_int(codes, layer.weight_idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], 4,
                                 layer.stride, layer.padding, zero_point=6, out_zero_point=3)
    np.testing.assert_array_equal(got, want)
