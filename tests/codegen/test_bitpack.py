"""Activation packing (TE kernel) and weight packing (numpy) against reference.pack_bits."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import te

from codegen.bitpack import act_code_thresholds, act_codes_compute, pack_act_numpy, pack_compute, pack_weight_planes
from codegen.build import generic_x86_target
from tvm_qnn import reference


def _pack_kernel(shape, bits, groups, padding, word):
    n, c, h, w = shape
    x = te.placeholder(shape, "float32", name="x")
    scale = te.placeholder((1,), "float32", name="act_scale")
    codes = act_codes_compute(lambda b, y, xx, ch: x[b, ch, y, xx], (n, h, w, c), scale, bits)
    packed = pack_compute(codes, bits, groups, padding, word)
    return tvm.compile(tvm.IRModule({"main": te.create_prim_func([x, scale, packed])}), target=generic_x86_target()), packed


@settings(max_examples=12)
@given(channels=st.integers(1, 140), bits=st.integers(1, 8), word=st.sampled_from(["uint64", "uint32", "uint8"]),
       pad=st.integers(0, 2), groups=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_activation_packing_matches_reference(channels, bits, word, pad, groups, seed):
    channels *= groups
    rng = np.random.default_rng(seed)
    shape = (1, channels, 3, 4)
    x = rng.uniform(-0.5, 2.5, size=shape).astype(np.float32)
    x.flat[0] = np.nan  # NaN gives code 0, like the reference
    kernel, packed = _pack_kernel(shape, bits, groups, pad, word)
    out = tvm.runtime.empty(tuple(int(d) for d in packed.shape), word)
    kernel["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(np.array([reference.act_scale(2.0, bits)], np.float32)), out)
    codes = reference.act_codes(x, 2.0, bits)
    expected = pack_act_numpy(codes, bits, groups, pad, word)
    np.testing.assert_array_equal(out.numpy(), expected)
    if groups == 1:  # same layout as pack_bits over NHWC channels, plus the spatial padding
        direct = reference.pack_bits(np.transpose(np.pad(codes, ((0, 0), (0, 0), (pad, pad), (pad, pad))), (0, 2, 3, 1)),
                                     bits, axis=3, word=word)
        np.testing.assert_array_equal(out.numpy()[:, :, :, 0], direct)


@pytest.mark.parametrize("scheme", ["bitplane", "onehot"])
@pytest.mark.parametrize("word", ["uint64", "uint32", "uint8"])
def test_weight_planes_unpack_to_indices(scheme, word):
    rng = np.random.default_rng(1)
    w_bits = 3
    idx = rng.integers(0, 1 << w_bits, size=(5, 70, 3, 2)).astype(np.uint8)
    planes = pack_weight_planes(idx, scheme, w_bits, word=word)  # (kh, kw, P, words, O)
    n_planes = w_bits if scheme == "bitplane" else (1 << w_bits) - 1
    assert planes.shape[:3] == (3, 2, n_planes) and planes.shape[4] == 5
    bits = reference.unpack_bits(np.transpose(planes, (4, 2, 3, 0, 1)), n_planes, axis=1, channels=70)  # (O, C, kh, kw)
    if scheme == "bitplane":
        np.testing.assert_array_equal(bits, idx)
    else:  # plane q is bit q of the packed "code": the one-hot index, the last level is all zeros
        expected = np.where(idx < n_planes, (1 << idx.astype(np.int64)), 0)
        np.testing.assert_array_equal(bits.astype(np.int64), expected)


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 4), clamp=st.floats(2.0 ** -20, 1e4, allow_nan=False, width=32), zero=st.integers(0, 15),
       seed=st.integers(0, 2**16))
def test_code_thresholds_give_the_reference_codes_for_every_float(bits, clamp, zero, seed):
    """Counting the thresholds x reaches equals reference.act_codes, at each threshold, at the floats on
    either side of it, on random values and at NaN, infinities and signed zeros."""
    zero = zero % (1 << bits)
    s_a = reference.act_scale(clamp, bits)
    thresholds = act_code_thresholds(s_a, bits, zero)
    rng = np.random.default_rng(seed)
    inf = np.float32(np.inf)
    x = np.concatenate([thresholds, np.nextafter(thresholds, -inf), np.nextafter(thresholds, inf),
                        rng.normal(0.0, clamp * 2, 500), [np.nan, inf, -inf, 0.0, -0.0]]).astype(np.float32)
    counted = (x[:, None] >= thresholds[None, :]).sum(axis=1)
    np.testing.assert_array_equal(counted, reference.act_codes(x, clamp, bits, zero_point=zero))


def test_code_thresholds_count_in_the_kernel_as_reference_codes():
    """act_codes_compute with thresholds (no division) against reference.act_codes, on a TVM build."""
    bits, zero, clamp = 3, 2, np.float32(1.7)
    s_a = reference.act_scale(clamp, bits)
    x = te.placeholder((4, 64), "float32", name="x")
    thresholds = te.placeholder(((1 << bits) - 1,), "float32", name="act_thresholds")
    codes = act_codes_compute(lambda n, h, w, c: x[h, c], (1, 4, 1, 64), thresholds, bits, zero_point=zero,
                              counted=True)
    mod = tvm.compile(tvm.IRModule({"main": te.create_prim_func([x, thresholds, codes])}), target=generic_x86_target())
    values = np.random.default_rng(3).normal(0.0, 1.5, (4, 64)).astype(np.float32)
    values[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    out = tvm.runtime.empty((1, 4, 1, 64), "uint8")
    mod["main"](tvm.runtime.tensor(values), tvm.runtime.tensor(act_code_thresholds(s_a, bits, zero)), out)
    np.testing.assert_array_equal(out.numpy()[0, :, 0], reference.act_codes(values, clamp, bits, zero_point=zero))


def test_code_thresholds_need_a_positive_finite_scale():
    assert act_code_thresholds(np.float32(0.0), 2) is None
    assert act_code_thresholds(np.float32(np.nan), 2) is None
    assert act_code_thresholds(np.float32(-1.0), 2) is None
