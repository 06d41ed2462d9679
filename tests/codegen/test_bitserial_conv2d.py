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
    "zero_point": st.booleans(),
})


def _with_zero_point(case, rng):
    """``case`` with ``a_zero_point``: a random z in 1..2^b - 1 when the case asks for one."""
    case = dict(case)
    wants = case.pop("zero_point")
    case["a_zero_point"] = int(rng.integers(1, 1 << case["a_bits"])) if wants and case["a_bits"] > 1 else int(wants)
    return case


@settings(max_examples=8)
@given(case=conv_cases)
def test_integer_sums_bit_exact(case):
    case = dict(case)
    groups = case.pop("groups")
    rng = np.random.default_rng(case.pop("seed"))
    case = _with_zero_point(case, rng)
    w_bits = case["w_bits"] if case["scheme"] == "uniform" else min(case["w_bits"], 4)  # one-hot planes: 2^b - 1
    layer = random_layer(rng, **{**case, "w_bits": w_bits, "channels": case["channels"] * groups,
                                 "out_channels": case["out_channels"] * groups, "groups": groups})
    x = random_input(rng, layer)
    codes = layer.act_codes(x)
    expected = layer.reference_sums(codes)  # (N, O, L, Ho, Wo), over q - z
    # the kernel's raw sums are over the unsigned codes, the padding holding code z: S + z N[o, q]
    counts = (layer.weight_idx.reshape(layer.out_channels, -1)[..., None] == np.arange(layer.n_levels)).sum(axis=1)
    expected = expected + layer.a_zero_point * counts[None, :, :, None, None]
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
    case = _with_zero_point(case, rng)
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


@pytest.mark.parametrize("scheme", ["uniform", "kquantile"])
@pytest.mark.parametrize("padding", [1, (2, 0, 1, 2)])
def test_zero_point_with_padding(scheme, padding):
    """z != 0 and padding > 0: the border is x_hat = 0 (code z), not code 0 (x_hat = -z s_a)."""
    rng = np.random.default_rng(21)
    layer = random_layer(rng, channels=70, out_channels=16, size=5, w_bits=3, a_bits=4, scheme=scheme, padding=padding,
                         a_zero_point=9, epilogue="none")
    _check_float(layer, rng)
    # the check has teeth: code 0 at the border would move the border outputs
    codes = layer.act_codes(random_input(rng, layer))
    wrong = reference.qconv2d_sums(np.pad(codes, ((0, 0), (0, 0), (2, 2), (2, 2))), layer.weight_idx, layer.n_levels,
                                   layer.stride, 0, layer.groups, zero_point=9)
    assert not np.array_equal(wrong[..., :1, :], layer.reference_sums(np.pad(codes, ((0, 0), (0, 0), (2, 2), (2, 2)),
                                                                                constant_values=9))[..., :1, :])


def test_depthwise_runs_exactly():
    rng = np.random.default_rng(3)
    _check_float(random_layer(rng, channels=16, out_channels=16, groups=16, size=8, w_bits=2, a_bits=3), rng)


@pytest.mark.parametrize("a_bits", [1, 4, 8])
@pytest.mark.parametrize("zero_point", [0, 1])
def test_dense(a_bits, zero_point):
    rng = np.random.default_rng(a_bits)
    z = zero_point if a_bits == 1 else zero_point * (1 << (a_bits - 1))
    layer = random_layer(rng, kind="dense", batch=3, channels=200, out_channels=10, w_bits=2, a_bits=a_bits,
                         epilogue="none", a_zero_point=z)
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


@pytest.mark.parametrize("next_bits,next_padding,next_groups,zero_points", [
    (3, (1, 0, 2, 1), 1, (0, 0)), (1, 1, 2, (0, 0)), (3, (1, 0, 2, 1), 1, (5, 3)), (4, 1, 2, (0, 8))])
def test_packed_output_feeds_packed_input(next_bits, next_padding, next_groups, zero_points):
    from codegen.bitpack import pack_act_numpy

    rng = np.random.default_rng(next_bits)
    first = random_layer(rng, channels=20, out_channels=70, size=9,
                         w_bits=2, a_bits=3, a_zero_point=zero_points[0], epilogue="none")
    second = random_layer(rng, channels=first.out_channels, out_channels=8 * next_groups, size=9, w_bits=3,
                          a_bits=next_bits, stride=2, padding=next_padding, groups=next_groups,
                          a_zero_point=zero_points[1])
    wl_first = layer_workload(first, output="packed", next_a_bits=second.a_bits, next_padding=second.padding,
                              next_groups=second.groups, next_a_zero_point=second.a_zero_point)
    wl_second = layer_workload(second)
    x = random_input(rng, first)
    packed = tvm.runtime.empty(wl_first.output_shape, "uint64")
    args = kernel_args(first, wl_first).as_list() + [np.array([second.s_a], np.float32)]
    hand_kernel(wl_first)["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in args], packed)
    y_first = first.reference(x).astype(np.float32)
    codes = second.act_codes(y_first)
    np.testing.assert_array_equal(packed.numpy(), pack_act_numpy(codes, second.a_bits, second.groups, second.padding,
                                                                 pad_code=second.a_zero_point))
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
