"""Float-contract int8 kernels (codegen.vnni_int8, contract="float") against the bit-serial float kernels
(the same exact integer sums combined in float64 and rounded once) and tvm_qnn.reference.

Uniform-LUT layers only (the int8 core takes the weight indices; k-quantile LUTs stay on popcount).
Drawn: conv2d and dense, bits 1..8, groups, strides, asymmetric padding, channel counts not a
multiple of 4 or 16, activation zero points.
"""

import dataclasses

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from codegen.build import cpu_target, generic_x86_target
from codegen.plan import kernel_args, layer_workload
from codegen.vnni_int8 import Int8Kernel, float_int8_kernel_args, int16_sums_exact, with_avx2_sums, with_int16_sums
from codegen.vnni_schedule import scheduled_int8_primfunc, target_has_vnni, target_int8_instructions
from tvm_qnn.errors import QuantizationError, ShapeError

from codegen_kernel_cache import hand_kernel
from codegen_layers import random_input, random_layer

NATIVE = cpu_target()
needs_vnni = pytest.mark.skipif(not target_has_vnni(NATIVE), reason="this CPU has no AVX-512 VNNI")
needs_avx2 = pytest.mark.skipif(target_int8_instructions(NATIVE) == "plain", reason="this CPU has no AVX2")
HASWELL = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2})


def _build(kernel, target):
    func = scheduled_int8_primfunc(kernel).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


def _run(executable, x, args, out_shape):
    out = tvm.runtime.empty(out_shape, "float32")
    executable["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in args], out)
    return out.numpy()


cases = st.fixed_dictionaries({
    "kind": st.sampled_from(["conv2d", "conv2d", "dense"]),
    "channels": st.integers(1, 40), "out_channels": st.sampled_from([1, 5, 16, 17, 33]), "size": st.integers(3, 7),
    "kernel": st.sampled_from([1, 3]), "stride": st.sampled_from([1, 2]), "padding": st.sampled_from([0, 1, (1, 0, 2, 1)]),
    "groups": st.sampled_from([1, 1, 2]), "w_bits": st.integers(1, 8), "a_bits": st.integers(1, 8),
    "zero_point": st.booleans(), "epilogue": st.sampled_from(["none", "relu", "relu6"]), "seed": st.integers(0, 2**16),
})


def _layer(case):
    case = dict(case)
    rng = np.random.default_rng(case.pop("seed"))
    groups = case.pop("groups") if case["kind"] == "conv2d" else 1
    wants_zero = case.pop("zero_point")
    zero = int(rng.integers(1, 1 << case["a_bits"])) if wants_zero and case["a_bits"] > 1 else 0
    if case["kind"] == "dense":
        for key in ("size", "kernel", "stride", "padding"):
            case.pop(key)
    layer = random_layer(rng, **{**case, "channels": case["channels"] * groups,
                                 "out_channels": case["out_channels"] * groups, "scheme": "uniform",
                                 "a_zero_point": zero, **({"groups": groups} if case["kind"] == "conv2d" else {})})
    return layer, rng


def _check(case, instructions, target, target_name, int16_sums=False, layout="NCHW"):
    """``int16_sums``: False (int32 sums), True (int16 over the whole reduction), "per_tap", or "unsplit"
    (8-bit codes fed whole to vpmaddubsw, int32 sums)."""
    layer, rng = _layer(case)
    wl = layer_workload(layer)
    kernel = Int8Kernel(wl, "float", "float", instructions, contract="float", layout=layout)
    x = random_input(rng, layer)
    args = float_int8_kernel_args(layer, kernel)
    if int16_sums == "unsplit":
        kernel = with_avx2_sums(kernel, args[1])
        assert kernel.unsplit_codes and not kernel.splits_codes
    elif int16_sums == "per_tap":
        assert int16_sums_exact(kernel, args[1], per_tap=True)
        kernel = dataclasses.replace(kernel, int16_sums=True, int16_per_tap=True)
    elif int16_sums:
        kernel = with_int16_sums(kernel, args[1])
        assert kernel.int16_sums
    if kernel.nhwc:  # the same layer on NHWC input and output
        got = _run(_build(kernel, target), np.ascontiguousarray(x.transpose(0, 2, 3, 1)), args, kernel.output_shape)
        got = got.transpose(0, 3, 1, 2)
    else:
        got = _run(_build(kernel, target), x, args, wl.output_shape)
    popcount = tvm.runtime.empty(wl.output_shape, "float32")
    hand_kernel(wl, target_name)["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in
                                                                   kernel_args(layer, wl).as_list()], popcount)
    # the same exact integers combined in float64 and rounded once: equal up to float64 rounding order
    np.testing.assert_array_equal(got, popcount.numpy())
    expected = layer.reference(x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


@needs_vnni
@settings(max_examples=10, deadline=None)
@given(cases)
def test_float_contract_vnni_kernel_equals_the_bitserial_kernel_and_the_reference(case):
    _check(case, "vnni", NATIVE, "native")


@needs_avx2
@settings(max_examples=10, deadline=None)
@given(cases)
def test_float_contract_avx2_kernel_equals_the_bitserial_kernel_and_the_reference(case):
    _check(case, "avx2", HASWELL, "native")


@needs_avx2
@settings(max_examples=10, deadline=None)
@given(cases.map(lambda case: {**case, "w_bits": min(case["w_bits"], 3), "a_bits": min(case["a_bits"], 4)}))
def test_float_contract_avx2_int16_sums_equal_the_bitserial_kernel_and_the_reference(case):
    """int16 pair accumulators (codegen.vnni_intrin): indices of at most 3 bits (<= 7) and codes of at
    most 4 (<= 15) over at most 180 products per pair lane (40 channels, 3x3) stay below 15 x 7 x 180 =
    18,900, so with_int16_sums takes them."""
    _check(case, "avx2", HASWELL, "native", int16_sums=True)


@needs_avx2
@settings(max_examples=8, deadline=None)
@given(cases.map(lambda case: {**case, "kind": "conv2d", "kernel": 3, "w_bits": min(case["w_bits"], 4),
                               "a_bits": min(case["a_bits"], 4)}))
def test_float_contract_avx2_int16_sums_per_tap_equal_the_bitserial_kernel_and_the_reference(case):
    """int16 pair sums per 3x3 tap: at most 40 channels, 15 x 15 x 20 = 4,500 per pair lane and tap."""
    _check(case, "avx2", HASWELL, "native", int16_sums="per_tap")


@needs_avx2
@settings(max_examples=10, deadline=None)
@given(cases.map(lambda case: {**case, "kind": "conv2d"}), st.sampled_from(["avx2", "avx2_int16", "plain"]))
def test_float_contract_nhwc_kernel_equals_the_bitserial_kernel_and_the_reference(case, build):
    """layout="NHWC": the same outputs, transposed, with int32 or int16 (where exact) accumulators."""
    if build == "avx2_int16":
        case = {**case, "w_bits": min(case["w_bits"], 3), "a_bits": min(case["a_bits"], 4)}
    target = generic_x86_target() if build == "plain" else HASWELL
    _check(case, "plain" if build == "plain" else "avx2", target, "native", int16_sums=build == "avx2_int16",
           layout="NHWC")


@needs_avx2
@settings(max_examples=8, deadline=None)
@given(cases.map(lambda case: {**case, "a_bits": 8, "w_bits": min(case["w_bits"], 6)}))
def test_float_contract_avx2_8_bit_codes_unsplit_equal_the_bitserial_kernel_and_the_reference(case):
    """UNIQ's w4a8 regime: weight indices of at most 6 bits (0..63) keep every vpmaddubsw pair sum of 8-bit
    codes within int16, so the codes are not split."""
    _check(case, "avx2", HASWELL, "native", int16_sums="unsplit")


def test_nhwc_layout_is_refused_where_it_does_not_apply():
    rng = np.random.default_rng(1)
    dense = layer_workload(random_layer(rng, kind="dense", channels=8, out_channels=4, scheme="uniform"))
    with pytest.raises(ShapeError, match="layout='NHWC' needs a conv2d"):
        Int8Kernel(dense, "float", "float", "avx2", contract="float", layout="NHWC")
    conv = layer_workload(random_layer(rng, kind="conv2d", channels=8, out_channels=4, size=4, scheme="uniform"))
    with pytest.raises(ShapeError, match="layout='NCWH'"):
        Int8Kernel(conv, "float", "float", "avx2", contract="float", layout="NCWH")


def test_cost_model_on_avx2_keeps_w1a2_on_popcount_and_sends_w2a2_to_int8():
    """Without VNNI (AVX2's vpmaddubsw kernel) the crossover is codegen.kernel_choice.AVX2_CROSSOVER_PLANE_PRODUCTS."""
    from codegen.kernel_choice import AVX2_CROSSOVER_PLANE_PRODUCTS, choose_float_kernel

    rng = np.random.default_rng(6)
    assert 2 < AVX2_CROSSOVER_PLANE_PRODUCTS < 4
    low = random_layer(rng, kind="conv2d", channels=8, out_channels=8, size=5, w_bits=1, a_bits=2, scheme="uniform")
    high = random_layer(rng, kind="conv2d", channels=8, out_channels=8, size=5, w_bits=2, a_bits=2, scheme="uniform")
    assert choose_float_kernel(low, instructions="avx2") == "popcount"
    assert choose_float_kernel(high, instructions="avx2") == "vnni"
    assert choose_float_kernel(high, instructions="plain") == "popcount"  # 4 < 3.8 x 8


@settings(max_examples=4, deadline=None)
@given(cases)
def test_float_contract_plain_fallback_on_generic_x86(case):
    _check(case, "plain", generic_x86_target(), "native")


@needs_vnni
@pytest.mark.parametrize("channels,out_channels,size", [(64, 16, 20), (256, 256, 3)])
def test_both_tile_loop_orders_are_exact(channels, out_channels, size):
    """Pixels outside the channel tiles (a wide image, few weights) and channel tiles outside the
    pixels (many weights, a small image: codegen.vnni_schedule.weights_outer) give the same sums."""
    from codegen.vnni_schedule import default_tile, weights_outer

    case = {"kind": "conv2d", "channels": channels, "out_channels": out_channels, "size": size, "kernel": 3,
            "stride": 1, "padding": 1, "groups": 1, "w_bits": 3, "a_bits": 2, "zero_point": True,
            "epilogue": "relu", "seed": 5}
    layer, _ = _layer(case)
    kernel = Int8Kernel(layer_workload(layer), "float", "float", "vnni", contract="float")
    assert weights_outer(kernel, *default_tile(kernel)) == (size == 3)
    _check(case, "vnni", NATIVE, "native")


def test_kquantile_lut_is_refused_naming_the_layer():
    rng = np.random.default_rng(0)
    layer = random_layer(rng, w_bits=3, scheme="kquantile")
    kernel = Int8Kernel(layer_workload(layer), "float", "float", contract="float")
    with pytest.raises(QuantizationError, match="test.layer"):
        float_int8_kernel_args(layer, kernel)


def _chain(rng, w_bits, a_bits, scheme="uniform"):
    from tvm_qnn.layer import QnnLayer

    first = random_layer(rng, channels=12, out_channels=20, size=7, w_bits=w_bits, a_bits=a_bits, scheme=scheme)
    second = random_layer(rng, channels=20, out_channels=8, size=7, w_bits=w_bits, a_bits=a_bits, scheme=scheme,
                          epilogue="none", a_clamp=3.0)
    second = QnnLayer(**{**{f: getattr(second, f) for f in second.__dataclass_fields__}, "name": "test.second"})
    return first, second


def _lower(layers, **options):
    from codegen_composites import chain_module

    from relay_passes.lower_bitserial import LowerQnnToBitserial

    mod, read_layer = chain_module(layers)
    lower = LowerQnnToBitserial(target=NATIVE, read_layer=read_layer, **options)
    return mod, lower(mod), lower.layer_kernels


def _run_module(mod, x):
    from tvm import relax

    ex = tvm.compile(mod, target=NATIVE, relax_pipeline=relax.get_default_pipeline(NATIVE))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


@needs_vnni
def test_cost_model_sends_many_plane_products_to_int8_and_keeps_1_bit_on_popcount():
    rng = np.random.default_rng(3)
    first, second = _chain(rng, 8, 8)
    _, lowered, kinds = _lower([first, second])
    assert kinds == {"test.layer": "vnni", "test.second": "vnni"}
    script = lowered.script()
    assert script.count("qnn_vnni_float_conv2d") >= 2 and "qnn_bitserial" not in script
    x = random_input(rng, first)
    expected = second.reference(first.reference(x).astype(np.float32)) + 1.0
    np.testing.assert_allclose(_run_module(lowered, x), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    _, _, kinds = _lower(list(_chain(rng, 1, 1)))
    assert set(kinds.values()) == {"popcount"}
    _, _, kinds = _lower(list(_chain(rng, 3, 3, scheme="kquantile")))  # a k-quantile LUT is not affine
    assert set(kinds.values()) == {"popcount"}


@needs_vnni
def test_pins_override_the_cost_model_and_mixed_chains_stay_exact():
    rng = np.random.default_rng(4)
    first, second = _chain(rng, 8, 8)
    mod, lowered, kinds = _lower([first, second], pins={"test.layer": "popcount"})
    assert kinds == {"test.layer": "popcount", "test.second": "vnni"}
    x = random_input(rng, first)
    bitserial_only = _run_module(_lower([first, second], auto_int8=False)[1], x)
    np.testing.assert_array_equal(_run_module(lowered, x), bitserial_only)
    _, _, kinds = _lower(list(_chain(rng, 1, 2)), pins={"test.second": "vnni"})
    assert kinds == {"test.layer": "popcount", "test.second": "vnni"}


@pytest.mark.parametrize("pin, match", [("vnni", "needs uniform weights"), ("fp32", "fp32_layers")])
def test_impossible_pins_are_compile_errors_naming_the_layer(pin, match):
    from tvm_qnn.errors import CompileError

    rng = np.random.default_rng(5)
    layers = list(_chain(rng, 3, 3, scheme="kquantile"))
    with pytest.raises(CompileError, match=f"test.second.*{match}"):
        _lower(layers, pins={"test.second": pin})


depthwise_cases = st.fixed_dictionaries({
    "channels": st.sampled_from([3, 16, 24, 33]), "size": st.sampled_from([5, 7, 12]),
    "kernel": st.sampled_from([3, 5]), "stride": st.sampled_from([1, 2]), "padding": st.sampled_from([0, 1, (1, 0, 2, 1)]),
    "w_bits": st.integers(1, 8), "a_bits": st.integers(1, 8), "scheme": st.sampled_from(["uniform", "kquantile"]),
    "zero_point": st.booleans(), "epilogue": st.sampled_from(["none", "relu6"]), "seed": st.integers(0, 2**16),
})


@settings(max_examples=6, deadline=None)
@given(depthwise_cases)
def test_float_contract_depthwise_kernel_matches_the_reference(case):
    from codegen.depthwise_int import DepthwiseKernel, float_depthwise_kernel_args, scheduled_depthwise_primfunc

    case = dict(case)
    rng = np.random.default_rng(case.pop("seed"))
    wants_zero = case.pop("zero_point")
    if case["scheme"] == "kquantile" and case["w_bits"] == 1:
        case["scheme"] = "uniform"  # a 1-bit LUT is affine whatever the scheme (random_layer checks)
    zero = int(rng.integers(1, 1 << case["a_bits"])) if wants_zero and case["a_bits"] > 1 else 0
    layer = random_layer(rng, **case, out_channels=case["channels"], groups=case["channels"], a_zero_point=zero)
    kernel = DepthwiseKernel(layer_workload(layer), "float", "float", contract="float")
    func = scheduled_depthwise_primfunc(kernel).with_attr("global_symbol", "main")
    executable = tvm.compile(tvm.IRModule({"main": func}), target=NATIVE)
    x = random_input(rng, layer)
    got = _run(executable, x, float_depthwise_kernel_args(layer, kernel), kernel.output_shape)
    expected = layer.reference(x)  # float64 sums of the contract, then float32 + bias
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * max(1.0, float(np.abs(expected).max())))
    popcount = tvm.runtime.empty(kernel.output_shape, "float32")
    hand_kernel(layer_workload(layer), "native")["main"](
        tvm.runtime.tensor(x), *[tvm.runtime.tensor(a) for a in kernel_args(layer, layer_workload(layer)).as_list()],
        popcount)
    np.testing.assert_array_equal(got, popcount.numpy())


def test_depthwise_layers_choose_the_depthwise_kernel_unless_pinned():
    from codegen.kernel_choice import choose_float_kernel

    rng = np.random.default_rng(7)
    for scheme in ("uniform", "kquantile"):
        layer = random_layer(rng, channels=8, out_channels=8, groups=8, w_bits=3, a_bits=3, scheme=scheme)
        assert choose_float_kernel(layer) == "depthwise"
        assert choose_float_kernel(layer, pin="popcount") == "popcount"
        assert choose_float_kernel(layer, auto=False) == "popcount"
