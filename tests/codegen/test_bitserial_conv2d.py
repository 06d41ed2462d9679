"""Bit-serial conv2d/dense kernels: exact integer sums and float outputs vs tvm_qnn.reference."""

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.plan import kernel_args, layer_workload
from tvm_qnn import reference
from tvm_qnn.errors import QnnError

from codegen_kernel_cache import hand_kernel, sums_kernel
from codegen_layers import random_input, random_layer


def _run(kernel, x, args, out_shape, dtype="float32"):
    out = tvm.runtime.empty(out_shape, dtype)
    kernel["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


def _sums(layer, x, wl):
    args = kernel_args(layer, wl)
    acc_shape = (wl.batch, wl.out_height, wl.out_width, wl.w_planes, wl.a_bits, wl.out_channels)
    acc = tvm.runtime.empty(acc_shape, "uint64")
    total = tvm.runtime.empty((wl.batch, wl.out_height, wl.out_width, wl.groups), "int64")
    sums_kernel(wl)["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(args.act_scale),
                            tvm.runtime.tensor(args.weight_planes), acc, total)
    weighted = (acc.numpy().astype(np.int64) << np.arange(wl.a_bits)[:, None]).sum(axis=4)  # (N, Ho, Wo, P, O)
    return np.moveaxis(weighted, 4, 1), np.moveaxis(total.numpy(), 3, 1)  # (N, O, Ho, Wo, P), (N, G, Ho, Wo)


conv_cases = st.fixed_dictionaries({
    "channels": st.integers(1, 80), "out_channels": st.sampled_from([1, 3, 8, 16]), "size": st.integers(3, 7),
    "kernel": st.sampled_from([1, 3]), "stride": st.sampled_from([1, 2]), "padding": st.sampled_from([0, 1, (1, 0, 2, 1)]),
    "groups": st.sampled_from([1, 1, 2]), "w_bits": st.integers(1, 8), "a_bits": st.integers(1, 8),
    "scheme": st.sampled_from(["kquantile", "uniform"]), "seed": st.integers(0, 2**16),
})


@settings(max_examples=8)
@given(case=conv_cases)
def test_integer_sums_bit_exact(case):
    case = dict(case)
    groups = case.pop("groups")
    rng = np.random.default_rng(case.pop("seed"))
    w_bits = case["w_bits"] if case["scheme"] == "uniform" else min(case["w_bits"], 4)  # one-hot planes: 2^b - 1
    layer = random_layer(rng, **{**case, "w_bits": w_bits, "channels": case["channels"] * groups,
                                 "out_channels": case["out_channels"] * groups, "groups": groups})
    x = random_input(rng, layer)
    codes = reference.act_codes(x, layer.a_clamp, layer.a_bits)
    expected = layer.reference_sums(codes)  # (N, O, L, Ho, Wo)
    wl = layer_workload(layer)
    planes, total = _sums(layer, x, wl)
    og = layer.out_channels // groups
    np.testing.assert_array_equal(np.repeat(total, og, axis=1), expected.sum(axis=2))
    if wl.scheme == "onehot":
        np.testing.assert_array_equal(np.moveaxis(planes, 4, 2), expected[:, :, :-1])
    else:  # sum_j 2^j P_j = sum_q q S[q]
        levels = np.arange(layer.n_levels)
        np.testing.assert_array_equal((planes << np.arange(wl.w_planes)).sum(axis=4),
                                      np.einsum("noqyx,q->noyx", expected, levels))


def _check_float(layer, rng, target_name="native"):
    wl = layer_workload(layer)
    x = random_input(rng, layer)
    out = _run(hand_kernel(wl, target_name), x, kernel_args(layer, wl).as_list(), wl.output_shape)
    expected = layer.reference(x)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * scale)


@settings(max_examples=8)
@given(case=conv_cases)
def test_float_output_hand_schedule(case):
    case = dict(case)
    groups = case.pop("groups")
    rng = np.random.default_rng(case.pop("seed"))
    case["w_bits"] = min(case["w_bits"], 4)
    layer = random_layer(rng, **{**case, "channels": case["channels"] * groups,
                                 "out_channels": case["out_channels"] * groups, "groups": groups,
                                 "epilogue": ["none", "relu", "relu6"][case["size"] % 3]})
    _check_float(layer, rng)


@pytest.mark.parametrize("bits", [(1, 1), (2, 2), (3, 3)])
@pytest.mark.parametrize("scheme", ["uniform", "kquantile"])
def test_resnet_like_layer(bits, scheme):
    rng = np.random.default_rng(7)
    layer = random_layer(rng, channels=64, out_channels=64, size=14, w_bits=bits[0], a_bits=bits[1], scheme=scheme,
                         stride=2 if bits[0] == 2 else 1)
    _check_float(layer, rng)


def test_depthwise_runs_exactly():
    rng = np.random.default_rng(3)
    _check_float(random_layer(rng, channels=16, out_channels=16, groups=16, size=8, w_bits=2, a_bits=3), rng)


@pytest.mark.parametrize("a_bits", [1, 4, 8])
def test_dense(a_bits):
    rng = np.random.default_rng(a_bits)
    layer = random_layer(rng, kind="dense", batch=3, channels=200, out_channels=10, w_bits=2, a_bits=a_bits,
                         epilogue="none")
    _check_float(layer, rng)


def test_uniform_lut_picks_bit_planes_and_kquantile_one_hot():
    rng = np.random.default_rng(0)
    assert layer_workload(random_layer(rng, w_bits=3, scheme="uniform")).scheme == "bitplane"
    assert layer_workload(random_layer(rng, w_bits=3, scheme="kquantile")).scheme == "onehot"


class _BadLayer:
    """Duck-typed layer that bypasses QnnLayer's own checks (the kernels must check again)."""

    def __init__(self, layer, **changes):
        self.__dict__.update({k: getattr(layer, k) for k in
                              ("name", "kind", "weight_idx", "lut", "bias", "w_bits", "a_bits", "a_clamp",
                               "input_shape", "stride", "padding", "dilation", "groups", "out_min", "out_max",
                               "kernel", "out_channels", "lut_is_uniform", "s_a")})
        self.__dict__.update(changes)


@pytest.mark.parametrize("changes", [{"w_bits": 9}, {"a_bits": 0}, {"lut": np.zeros((1, 3), np.float32)}])
def test_bad_bits_or_lut_raise_qnn_error_naming_layer(changes):
    layer = _BadLayer(random_layer(np.random.default_rng(0)), **changes)
    with pytest.raises(QnnError, match="test.layer"):
        layer_workload(layer)


@pytest.mark.parametrize("next_bits,next_padding,next_groups", [(3, (1, 0, 2, 1), 1), (1, 1, 2)])
def test_packed_output_feeds_packed_input(next_bits, next_padding, next_groups):
    from codegen.bitpack import pack_act_numpy

    rng = np.random.default_rng(next_bits)
    first = random_layer(rng, channels=20, out_channels=70, size=9,
                         w_bits=2, a_bits=3)
    second = random_layer(rng, channels=first.out_channels, out_channels=8 * next_groups, size=9, w_bits=3,
                          a_bits=next_bits, stride=2, padding=next_padding, groups=next_groups)
    wl_first = layer_workload(first, output="packed", next_a_bits=second.a_bits, next_padding=second.padding,
                              next_groups=second.groups)
    wl_second = layer_workload(second)
    x = random_input(rng, first)
    packed = tvm.runtime.empty(wl_first.output_shape, "uint64")
    args = kernel_args(first, wl_first).as_list() + [np.array([second.s_a], np.float32)]
    hand_kernel(wl_first)["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in args], packed)
    y_first = first.reference(x).astype(np.float32)
    codes = reference.act_codes(y_first, second.a_clamp, second.a_bits)
    np.testing.assert_array_equal(packed.numpy(), pack_act_numpy(codes, second.a_bits, second.groups, second.padding))
    out = tvm.runtime.empty(wl_second.output_shape, "float32")
    from codegen.build import build_kernel, cpu_target

    build_kernel(wl_second, cpu_target(), packed_input=True)["main"](
        packed, *[tvm.runtime.tensor(a) for a in kernel_args(second, wl_second).as_list()], out)
    expected = second.reference(y_first)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("word", ["uint32", "uint8"])
def test_narrow_words(word):
    from codegen.build import build_kernel, cpu_target

    rng = np.random.default_rng(9)
    layer = random_layer(rng, channels=40, out_channels=16, size=6, w_bits=2, a_bits=3, scheme="uniform")
    wl = layer_workload(layer, word=word)
    x = random_input(rng, layer)
    out = _run(build_kernel(wl, cpu_target()), x, kernel_args(layer, wl).as_list(), wl.output_shape)
    expected = layer.reference(x)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(expected).max()))
