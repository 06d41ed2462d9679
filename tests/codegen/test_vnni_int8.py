"""int8 VNNI kernels (codegen.vnni_int8) against tvm_qnn.reference's integer-only oracle, bit for bit.

The VNNI build runs only where the CPU has AVX-512 VNNI and the AVX2 (vpmaddubsw) build only where
it has AVX2 (running them elsewhere would be an illegal instruction); their assembly is checked
on any machine, and the plain fallback runs everywhere.
"""

import dataclasses
import re

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from int_kernel_cases import expected_output, random_case, random_inputs, run_kernel

from codegen.build import cpu_target, generic_x86_target, kernel_asm
from codegen.vnni_int8 import Int8Kernel, int16_sums_exact, int8_kernel_args, with_avx2_sums, with_int16_sums
from codegen.vnni_schedule import scheduled_int8_primfunc, target_has_vnni, target_int8_instructions
from codegen.workload import ConvWorkload
from tvm_qnn.errors import QuantizationError, ShapeError

NATIVE = cpu_target()
ZNVER4 = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4", "num-cores": 2})
ZNVER4_NO_VNNI = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4",
                                    "mattr": ["-avx512vnni"], "num-cores": 2})
HASWELL = tvm.target.Target({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell", "num-cores": 2})
needs_vnni = pytest.mark.skipif(not target_has_vnni(NATIVE), reason="this CPU has no AVX-512 VNNI")
needs_avx2 = pytest.mark.skipif(target_int8_instructions(NATIVE) == "plain", reason="this CPU has no AVX2")


def _build(kernel, target):
    func = scheduled_int8_primfunc(kernel).with_attr("global_symbol", "main")
    return tvm.compile(tvm.IRModule({"main": func}), target=target)


@st.composite
def int8_cases(draw):
    kind = draw(st.sampled_from(["conv2d", "conv2d", "dense"]))
    w_bits, a_bits = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    groups = draw(st.sampled_from([1, 1, 2, 3])) if kind == "conv2d" else 1
    cg = draw(st.integers(1, 21))  # channels per group: often not a multiple of 4 or 16
    og = draw(st.sampled_from([1, 5, 16, 17, 33]))
    common = dict(batch=draw(st.integers(1, 2)), in_channels=cg * groups, out_channels=og * groups,
                  a_bits=a_bits, w_bits=w_bits, groups=groups)
    if kind == "conv2d":
        k = draw(st.integers(1, 3))
        pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
        h, w = draw(st.integers(k, 9)), draw(st.integers(k, 9))
        stride = draw(st.integers(1, 2))
        wl = ConvWorkload("conv2d", height=h, width=w, kernel=(k, k), stride=(stride, stride), padding=pad, **common)
    else:
        wl = ConvWorkload("dense", height=1, width=1, **common)
    ends = (draw(st.sampled_from(["float", "codes"])), draw(st.sampled_from(["float", "codes"])))
    return wl, ends, draw(st.integers(1, 8)), draw(st.integers(0, 2**16))


def _check(case, instructions, target):
    wl, (input_kind, output_kind), next_bits, seed = case
    rng = np.random.default_rng(seed)
    kernel = Int8Kernel(wl, input_kind, output_kind, instructions)
    idx, p = random_case(rng, wl, next_bits, out_min=rng.choice([None, 0.0]), out_max=rng.choice([None, 1.5]))
    inputs, codes = random_inputs(rng, kernel, p)
    got = run_kernel(kernel, _build(kernel, target), inputs, int8_kernel_args("drawn", kernel, idx, p))
    want = expected_output(kernel, codes, idx, p, next_bits)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@needs_vnni
@settings(max_examples=12, deadline=None)
@given(int8_cases())
def test_vnni_kernel_matches_the_integer_only_reference(case):
    _check(case, "vnni", NATIVE)


@settings(max_examples=4, deadline=None)
@given(int8_cases())
def test_plain_fallback_matches_the_integer_only_reference_on_generic_x86(case):
    _check(case, "plain", generic_x86_target())


@needs_avx2
@settings(max_examples=12, deadline=None)
@given(int8_cases())
def test_avx2_kernel_matches_the_integer_only_reference(case):
    _check(case, "avx2", HASWELL)


@needs_avx2
@pytest.mark.parametrize("a_bits", [7, 8])
def test_avx2_pair_sums_at_the_extremes_do_not_saturate(a_bits):
    """The largest codes against weights of +-127: a 7-bit pair sum is +-32258, within vpmaddubsw's
    int16; an 8-bit one (+-64770) would saturate, so 8-bit codes are split (codegen.vnni_intrin)."""
    wl = ConvWorkload("conv2d", 1, 20, 5, 5, 33, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=a_bits, w_bits=1)
    kernel = Int8Kernel(wl, "codes", "float", "avx2")
    assert kernel.splits_codes == (a_bits == 8)
    rng = np.random.default_rng(3)
    idx, p = random_case(rng, wl)
    p["lut_int"] = np.tile(np.array([[-127, 127]], np.int32), (wl.out_channels, 1))
    idx[: wl.out_channels // 2] = 1  # half the outputs all +127, half all -127
    idx[wl.out_channels // 2:] = 0
    codes = np.full(wl.input_shape, (1 << a_bits) - 1, np.uint8)
    got = run_kernel(kernel, _build(kernel, HASWELL), [codes], int8_kernel_args("extreme", kernel, idx, p))
    np.testing.assert_array_equal(got, expected_output(kernel, codes, idx, p, 4))


@needs_avx2
@pytest.mark.parametrize("weight,unsplit", [(64, True), (65, False)])
def test_8_bit_codes_run_unsplit_against_weights_of_at_most_64(weight, unsplit):
    """Codes of 255 against weights of +-64: a vpmaddubsw pair sum reaches +-32640, within int16, so
    with_avx2_sums feeds the 8-bit codes whole (one vpmaddubsw per 32 products); +-65 (+-33150) keeps
    them split. Both exact."""
    wl = ConvWorkload("conv2d", 1, 20, 5, 5, 33, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=8, w_bits=1)
    kernel = Int8Kernel(wl, "codes", "float", "avx2")
    rng = np.random.default_rng(4)
    idx, p = random_case(rng, wl)
    p["lut_int"] = np.tile(np.array([[-weight, weight]], np.int32), (wl.out_channels, 1))
    idx[: wl.out_channels // 2] = 1
    idx[wl.out_channels // 2:] = 0
    args = int8_kernel_args("extreme", kernel, idx, p)
    chosen = with_avx2_sums(kernel, args[0])
    assert chosen.unsplit_codes == unsplit and chosen.splits_codes != unsplit
    codes = np.full(wl.input_shape, 255, np.uint8)
    got = run_kernel(chosen, _build(chosen, HASWELL), [codes], args)
    np.testing.assert_array_equal(got, expected_output(chosen, codes, idx, p, 4))


def test_unsplit_codes_are_refused_without_avx2():
    wl = ConvWorkload("conv2d", 1, 8, 4, 4, 16, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=8, w_bits=2)
    with pytest.raises(ShapeError, match="unsplit_codes needs instructions='avx2'"):
        Int8Kernel(wl, "codes", "codes", "vnni", unsplit_codes=True)


def test_int8_instructions_per_target():
    assert target_int8_instructions(HASWELL) == "avx2"
    assert target_int8_instructions(ZNVER4) == "vnni"
    assert target_int8_instructions(ZNVER4_NO_VNNI) == "avx2"
    assert target_int8_instructions(generic_x86_target()) == "plain"


def test_avx2_kernel_emits_vpmaddubsw_on_ymm():
    kernel = Int8Kernel(ConvWorkload("conv2d", 1, 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=4, w_bits=4),
                        "codes", "codes", "avx2")
    asm = kernel_asm(_build(kernel, HASWELL))
    assert "vpmaddubsw" in asm and "vpmaddwd" in asm and "ymm" in asm and "zmm" not in asm
    split = Int8Kernel(dataclasses.replace(kernel.wl, a_bits=8), "codes", "codes", "avx2")
    assert kernel_asm(_build(split, HASWELL)).count("vpmaddubsw") > asm.count("vpmaddubsw")


def _resnet_like():
    return Int8Kernel(ConvWorkload("conv2d", 1, 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=8, w_bits=4),
                      "codes", "codes", "vnni")


def test_vnni_kernel_emits_vpdpbusd_on_zmm():
    asm = kernel_asm(_build(_resnet_like(), ZNVER4))
    assert "vpdpbusd" in asm and "zmm" in asm
    # the register tile keeps the accumulators in registers: no vpdpbusd reads its accumulator from memory
    lines = [line for line in asm.splitlines() if "vpdpbusd" in line]
    assert lines and not any("(%" in line.split(",")[-1] for line in lines), lines[:4]


def test_targets_without_vnni_get_the_plain_kernel():
    assert target_has_vnni(ZNVER4)
    assert not target_has_vnni(ZNVER4_NO_VNNI) and not target_has_vnni(generic_x86_target())
    plain = Int8Kernel(_resnet_like().wl, "codes", "codes", "plain")
    for target in (ZNVER4_NO_VNNI, generic_x86_target()):
        assert "vpdpbusd" not in kernel_asm(_build(plain, target))


def test_accumulators_beyond_int32_are_named():
    wl = ConvWorkload("dense", 1, 70000, 1, 1, 2, a_bits=8, w_bits=1)
    kernel = Int8Kernel(wl, "codes", "codes")
    idx, p = random_case(np.random.default_rng(0), wl)
    with pytest.raises(QuantizationError, match="layer 'huge'.*beyond int32"):
        int8_kernel_args("huge", kernel, idx, p)


def _small_lut_case(case, rng):
    """``case``'s layer with an integer LUT of levels in -3..3, so that its int16 pair sums fit."""
    wl, (input_kind, output_kind), next_bits, _ = case
    wl = dataclasses.replace(wl, a_bits=min(wl.a_bits, 4), w_bits=min(wl.w_bits, 3))
    idx, p = random_case(rng, wl, next_bits, out_min=rng.choice([None, 0.0]), out_max=rng.choice([None, 1.5]))
    p["lut_int"] = rng.integers(-3, 4, size=(wl.out_channels, 1 << wl.w_bits)).astype(np.int32)
    return wl, input_kind, output_kind, next_bits, idx, p


@needs_avx2
@settings(max_examples=10, deadline=None)
@given(int8_cases())
def test_avx2_int16_sums_match_the_integer_only_reference(case):
    """int16 pair accumulators (vpmaddubsw + vpaddw, widened once per output), chosen by
    with_int16_sums where every pair lane's worst sum fits int16."""
    rng = np.random.default_rng(case[-1])
    wl, input_kind, output_kind, next_bits, idx, p = _small_lut_case(case, rng)
    kernel = Int8Kernel(wl, input_kind, output_kind, "avx2")
    args = int8_kernel_args("drawn", kernel, idx, p)
    kernel = with_int16_sums(kernel, args[0])
    assert kernel.int16_sums  # at most 4-bit codes x |3| over at most 21 x 9 products per lane: < 32767
    inputs, codes = random_inputs(rng, kernel, p)
    got = run_kernel(kernel, _build(kernel, HASWELL), inputs, args)
    np.testing.assert_array_equal(got, expected_output(kernel, codes, idx, p, next_bits))


@pytest.mark.parametrize("channels,exact", [(516, True), (520, False)])
def test_int16_sums_only_where_no_pair_lane_can_leave_int16(channels, exact):
    """1-bit codes against weights of +-127: a pair lane sums channels / 2 products, 258 x 127 = 32766
    fits int16 and 260 x 127 does not (that kernel keeps int32 accumulators)."""
    wl, idx, p = _limit_case(channels, kind="dense")
    kernel = Int8Kernel(wl, "codes", "codes", "avx2")
    weight = int8_kernel_args("edge", kernel, idx, p)[0]
    assert int16_sums_exact(kernel, weight) == exact
    assert with_int16_sums(kernel, weight).int16_sums == exact
    assert not with_int16_sums(dataclasses.replace(kernel, instructions="vnni"), weight).int16_sums


def _basic_blocks(asm):
    """The assembly split at its labels and after its jumps: one string per basic block (a loop body
    apart from the code it falls through to)."""
    return re.split(r"\n[.\w]+:|\n\s+j[a-z]+\s[^\n]*", asm)


def test_avx2_int16_sums_kernel_widens_once_per_output():
    """The hot loop is vpmaddubsw + vpaddw; vpmaddwd (the widening of a channel's two pair lanes into int32)
    stands only outside it, once per output after the reduction."""
    wl = ConvWorkload("conv2d", 1, 64, 8, 8, 64, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=2, w_bits=2)
    asm = kernel_asm(_build(Int8Kernel(wl, "codes", "codes", "avx2", int16_sums=True), HASWELL))
    hot = [block for block in _basic_blocks(asm) if "vpmaddubsw" in block]
    assert hot and all("vpaddw" in block and "vpmaddwd" not in block for block in hot)
    assert "vpmaddwd" in asm and "zmm" not in asm


def test_int16_sums_are_refused_where_the_instructions_cannot_keep_them():
    wl = ConvWorkload("conv2d", 1, 8, 4, 4, 16, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=8, w_bits=2)
    with pytest.raises(ShapeError, match="int16_sums.*a_bits=8"):
        Int8Kernel(wl, "codes", "codes", "avx2", int16_sums=True)
    with pytest.raises(ShapeError, match="int16_sums.*'vnni'"):
        Int8Kernel(dataclasses.replace(wl, a_bits=2), "codes", "codes", "vnni", int16_sums=True)


@pytest.mark.parametrize("channels,size,tile", [(64, 56, (8, 2)), (128, 28, (7, 2)), (256, 14, (7, 2)),
                                                (512, 7, (7, 2)), (256, 3, (3, 8))])
def test_vnni_tile_takes_the_most_pixels_per_weight_load(channels, size, tile):
    """With VNNI a channel tile's weights over the whole reduction pass L1 from 64 channels on: the tile
    with the most pixels (up to 8, dividing the row) wins, then the most products per load within the
    24 accumulators (codegen.vnni_schedule.default_tile)."""
    from codegen.vnni_schedule import MAX_ACCUMULATORS, default_tile

    wl = ConvWorkload("conv2d", 1, channels, size, size, channels, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=2, w_bits=2)
    x_tile, vectors = default_tile(Int8Kernel(wl, "codes", "codes", "vnni"))
    assert (x_tile, vectors) == tile and x_tile * vectors <= MAX_ACCUMULATORS
    dense = ConvWorkload("dense", 1, channels, 1, 1, channels, a_bits=2, w_bits=2)
    assert default_tile(Int8Kernel(dense, "codes", "codes", "vnni")) == (1, min(8, channels // 16))


@needs_avx2
def test_int16_sums_tile_streamed_weights_over_more_pixels_and_stay_exact():
    """512 -> 512 3x3 at 7x7 (2.4 MB of int8 weights): the int16-sum tile takes 7 pixels x 16 channels
    (codegen.vnni_schedule.STREAMED_WEIGHT_BYTES), as do int32 sums and split 8-bit codes (exact too);
    64 -> 64 at 8x8 keeps the widest-product tile."""
    from codegen.vnni_schedule import default_tile

    wl = ConvWorkload("conv2d", 1, 512, 7, 7, 512, (3, 3), (1, 1), (1, 1, 1, 1), a_bits=2, w_bits=2)
    rng = np.random.default_rng(8)
    idx, p = random_case(rng, wl)
    p["lut_int"] = rng.integers(-1, 2, size=(wl.out_channels, 4)).astype(np.int32)
    kernel = Int8Kernel(wl, "codes", "codes", "avx2")
    args = int8_kernel_args("deep", kernel, idx, p)
    kernel = with_int16_sums(kernel, args[0])
    assert kernel.int16_sums and default_tile(kernel) == (7, 1)
    small = Int8Kernel(dataclasses.replace(wl, in_channels=64, out_channels=64, height=8, width=8), "codes", "codes",
                       "avx2", int16_sums=True)
    assert default_tile(small) == (2, 2)
    inputs, codes = random_inputs(rng, kernel, p)
    got = run_kernel(kernel, _build(kernel, HASWELL), inputs, args)
    np.testing.assert_array_equal(got, expected_output(kernel, codes, idx, p, 4))
    split = Int8Kernel(dataclasses.replace(wl, a_bits=8), "codes", "codes", "avx2")
    assert split.splits_codes and default_tile(split) == (7, 1)
    assert default_tile(Int8Kernel(dataclasses.replace(wl, a_bits=4), "codes", "codes", "avx2")) == (7, 1)
    idx, p = random_case(rng, split.wl)
    inputs, codes = random_inputs(rng, split, p)
    got = run_kernel(split, _build(split, HASWELL), inputs, int8_kernel_args("deep", split, idx, p))
    np.testing.assert_array_equal(got, expected_output(split, codes, idx, p, 4))


@needs_avx2
@settings(max_examples=8, deadline=None)
@given(int8_cases().filter(lambda case: case[0].kind == "conv2d" and case[0].kernel != (1, 1)))
def test_avx2_int16_sums_per_tap_match_the_integer_only_reference(case):
    """int16 pair sums per kernel tap, widened into int32 after each tap (Int8Kernel.int16_per_tap)."""
    rng = np.random.default_rng(case[-1])
    wl, input_kind, output_kind, next_bits, idx, p = _small_lut_case(case, rng)
    kernel = Int8Kernel(wl, input_kind, output_kind, "avx2", int16_sums=True, int16_per_tap=True)
    args = int8_kernel_args("drawn", kernel, idx, p)
    assert int16_sums_exact(kernel, args[0], per_tap=True)
    inputs, codes = random_inputs(rng, kernel, p)
    got = run_kernel(kernel, _build(kernel, HASWELL), inputs, args)
    np.testing.assert_array_equal(got, expected_output(kernel, codes, idx, p, next_bits))


def _limit_case(channels, sign=1, kind="conv2d"):
    """1-bit codes, weights of +-127 (all of one sign: +1 or -1); a pair lane sums channels / 2
    products per tap: a 3x3 conv on a 5x5 image (nine taps) or a dense layer (one)."""
    if kind == "dense":
        wl = ConvWorkload("dense", 1, channels, 1, 1, 17, a_bits=1, w_bits=1)
    else:
        wl = ConvWorkload("conv2d", 1, channels, 5, 5, 17, (3, 3), (1, 1), (0, 0, 0, 0), a_bits=1, w_bits=1)
    idx, p = random_case(np.random.default_rng(6), wl)
    p["lut_int"] = np.tile(np.array([[-127, 127]], np.int32), (wl.out_channels, 1))
    p["bias_int"] = np.zeros(wl.out_channels, np.int32)
    idx[:] = 1 if sign > 0 else 0
    return wl, idx, p


@pytest.mark.parametrize("channels,chosen", [(516, "per_tap"), (520, "none")])
def test_int16_sums_per_tap_where_only_a_tap_fits(channels, chosen):
    """258 x 127 = 32766 per tap fits int16, nine taps do not: per-tap sums; 260 per tap: int32."""
    wl, idx, p = _limit_case(channels)
    kernel = Int8Kernel(wl, "codes", "float", "avx2")
    weight = int8_kernel_args("taps", kernel, idx, p)[0]
    assert not int16_sums_exact(kernel, weight)
    picked = with_int16_sums(kernel, weight)
    assert (picked.int16_sums, picked.int16_per_tap) == ((True, True) if chosen == "per_tap" else (False, False))


@needs_avx2
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("kind", ["dense", "conv2d"])
def test_avx2_int16_sums_at_the_limit_are_exact(kind, sign):
    """Every code 1 and every weight +-127 over 516 channels: each int16 pair lane ends at +-32766 (the
    largest sum the check admits), over the whole reduction (dense) or per tap (3x3, int16_per_tap);
    a wrapped or saturated lane would change the output."""
    wl, idx, p = _limit_case(516, sign, kind)
    kernel = Int8Kernel(wl, "codes", "float", "avx2")
    args = int8_kernel_args("limit", kernel, idx, p)
    kernel = with_int16_sums(kernel, args[0])
    assert kernel.int16_sums and kernel.int16_per_tap == (kind == "conv2d")
    codes = np.ones(wl.input_shape, np.uint8)
    got = run_kernel(kernel, _build(kernel, HASWELL), [codes], args)
    np.testing.assert_array_equal(got, expected_output(kernel, codes, idx, p, 4))


def test_int16_sums_per_tap_are_refused_without_taps():
    wl = ConvWorkload("dense", 1, 8, 1, 1, 16, a_bits=2, w_bits=2)
    with pytest.raises(ShapeError, match="int16_per_tap needs int16_sums and a conv2d"):
        Int8Kernel(wl, "codes", "codes", "avx2", int16_sums=True, int16_per_tap=True)
