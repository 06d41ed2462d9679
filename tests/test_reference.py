"""The numpy oracle against independent computations (scipy, direct int64 loops, torch-free)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from tvm_qnn import reference as R
from tvm_qnn.errors import QnnError, QuantizationError, ShapeError


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_kquantile_bins_hold_equal_mass(bits):
    w = np.random.default_rng(bits).normal(0.3, 2.0, size=400_000)
    idx, lut = R.kquantile_lut(w, bits)
    share = np.bincount(idx, minlength=1 << bits) / w.size
    np.testing.assert_allclose(share, 1.0 / (1 << bits), rtol=0.01 if bits < 8 else 0.15)


def test_kquantile_levels_are_gaussian_quantile_midpoints():
    w = np.random.default_rng(0).normal(-0.1, 0.5, size=(8, 4, 3, 3))
    idx, lut = R.kquantile_lut(w, 3, per_channel=True)
    assert lut.shape == (8, 8) and idx.dtype == np.uint8 and idx.shape == w.shape
    for o in range(8):
        mu, sigma = w[o].mean(), w[o].std()
        expected = mu + sigma * norm.ppf((np.arange(8) + 0.5) / 8)
        np.testing.assert_allclose(lut[o], expected, rtol=1e-6, atol=1e-7)
        # DESIGN's formula: idx = min(floor(2^b * Phi((w - mu) / sigma)), 2^b - 1)
        direct = np.minimum(np.floor(8 * norm.cdf((w[o] - mu) / sigma)), 7)
        assert np.array_equal(idx[o], direct.astype(np.uint8))


def test_uniform_default_clip_is_nice_up_to_4_bits_then_the_row_max():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 50))
    w[1, 7] = 12.0  # an outlier weight, as BN folding gives pretrained depthwise rows
    for bits in (2, 4):
        lut, _ = R.uniform_params(w, bits, None, per_channel=True)
        clips = np.array([R.nice_clip(r) for r in w])
        np.testing.assert_allclose(lut[:, -1], clips, rtol=1e-4)
    for bits in (5, 8):
        idx, lut = R.uniform_lut(w, bits, per_channel=True)
        np.testing.assert_allclose(lut[:, -1], np.abs(w).max(axis=1), rtol=1e-4)
        step = (lut[:, 1] - lut[:, 0]).astype(np.float64)
        err = np.abs(R.dequant_weight(idx, lut) - w).max(axis=1)
        assert np.all(err <= step / 2 * (1 + 1e-3)), (err, step)  # nothing is clipped, the outlier included


def test_uniform_lut_symmetric_with_nice_clip():
    w = np.random.default_rng(1).normal(0.05, 1.0, size=10_000)
    idx, lut = R.uniform_lut(w, 2)
    clip = abs(w.mean() + 3.45 * w.std())
    np.testing.assert_allclose(lut[0], [-clip, -clip / 3, clip / 3, clip], rtol=2e-5)  # step: 16 significant bits
    steps = np.diff(lut[0].astype(np.float64))
    assert np.all(steps == steps[0]) and R.lut_is_affine(lut)  # exactly affine in float32
    # each weight maps to its nearest level
    nearest = np.abs(w[:, None] - lut[0][None, :].astype(np.float64)).argmin(axis=1)
    assert np.array_equal(idx, nearest.astype(np.uint8))
    _, binary = R.uniform_lut(w, 1, clip=0.7)
    np.testing.assert_allclose(binary[0], [-0.7, 0.7], rtol=2e-5)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("mean", [0.02, -0.02])
def test_uniform_int8_grid_is_exact_in_the_integer_only_mode(bits, mean):
    # The integer-only mode rounds lut / s_w (s_w = max|lut| / 127) to int8: a symmetric uniform LUT
    # comes back changed (3 bits: levels *127/7 = 18.14, 54.43, 90.71 -> 18, 54, 91, not affine) and the
    # float contract and the integer-only mode compute different weights. On the int8 grid they agree.
    w = np.random.default_rng(bits).normal(mean, 0.1, (5, 4, 3, 3))
    sym, _ = R.uniform_params(w, bits, None, per_channel=True)
    rounded = R.integer_requant_params(sym, 1.0)
    if bits not in (1, 7):  # 127 / (2^b - 1) is an integer only at 1 and 7 bits
        assert not np.array_equal(rounded["lut_int"] * rounded["s_w"][:, None], sym.astype(np.float64))
    lut, thresholds = R.uniform_params(w, bits, None, per_channel=True, int8_grid=True)
    p = R.integer_requant_params(lut, 1.0)
    np.testing.assert_array_equal(p["lut_int"] * p["s_w"][:, None], lut.astype(np.float64))  # exact
    assert R.lut_is_affine(lut) and R.lut_is_affine(p["lut_int"].astype(np.float64), rtol=0)
    step = 254 // ((1 << bits) - 1)
    assert np.all(np.diff(p["lut_int"].astype(int), axis=1) == step)
    clips = np.array([R.default_uniform_clip(r, bits) for r in w.reshape(5, -1)])
    full = np.abs(lut).max(axis=1)  # one end is the clip (to 16 significant bits), on the side of the mean
    np.testing.assert_allclose(full, clips, rtol=2**-15)
    up = w.reshape(5, -1).mean(axis=1) >= 0
    np.testing.assert_array_equal(np.where(up, lut[:, -1], -lut[:, 0]), full)
    np.testing.assert_allclose(thresholds, (lut[:, 1:].astype(np.float64) + lut[:, :-1]) / 2)
    idx = R.assign_indices(w, thresholds)  # nearest level
    nearest = np.abs(w.reshape(5, -1, 1) - lut[:, None, :]).argmin(axis=2).reshape(w.shape)
    np.testing.assert_array_equal(idx, nearest)


def test_uniform_int8_grid_refuses_8_bits():
    with pytest.raises(QuantizationError, match="int8 grid"):
        R.uniform_params(np.ones((2, 3)), 8, None, True, int8_grid=True)


def test_act_codes_formula_and_range():
    x = np.array([-1.0, 0.0, 0.49, 0.5, 1.0, 2.9, 3.0, 99.0, np.nan], dtype=np.float32)
    codes = R.act_codes(x, clamp=3.0, bits=2)  # s_a = 1
    assert codes.dtype == np.uint8
    assert codes.tolist() == [0, 0, 0, 1, 1, 3, 3, 3, 0]


def test_act_codes_with_zero_point():
    x = np.array([-3.0, -2.6, -2.4, -0.5, 0.0, 0.49, 1.0, 2.0, 99.0, -99.0], dtype=np.float32)
    codes = R.act_codes(x, clamp=7.0, bits=3, zero_point=4)  # s_a = 1: codes -4..3 around z = 4
    assert codes.tolist() == [1, 1, 2, 4, 4, 4, 5, 6, 7, 0]
    values = R.dequant_act(codes, 7.0, 3, zero_point=4)
    assert values.tolist() == [-3.0, -3.0, -2.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, -4.0]
    # z = 0 is the unsigned code of before
    assert np.array_equal(R.act_codes(x, 7.0, 3, 0), R.act_codes(x, 7.0, 3))


@pytest.mark.parametrize("z", [-1, 8, 2.0, "1", True, None])
def test_bad_zero_point_rejected(z):
    with pytest.raises(QuantizationError, match="a_zero_point"):
        R.act_codes(np.ones(3), 1.0, 3, z)


@given(bits=st.integers(1, 8), channels=st.integers(1, 200), word=st.sampled_from(["uint8", "uint32", "uint64"]),
       axis=st.integers(0, 2), seed=st.integers(0, 2**16))
def test_pack_unpack_round_trip(bits, channels, word, axis, seed):
    shape = [3, 2, 2]
    shape[axis] = channels
    codes = np.random.default_rng(seed).integers(0, 1 << bits, size=shape).astype(np.uint8)
    planes = R.pack_bits(codes, bits, axis, word)
    width = np.dtype(word).itemsize * 8
    assert planes.shape[axis:axis + 2] == (bits, -(-channels // width)) and planes.dtype == np.dtype(word)
    assert np.array_equal(R.unpack_bits(planes, bits, axis, channels), codes)


def test_pack_bits_documented_layout():
    codes = np.zeros((1, 70), dtype=np.uint8)
    codes[0, 0] = 0b01  # plane 0, word 0, bit 0
    codes[0, 65] = 0b10  # plane 1, word 1, bit 1
    planes = R.pack_bits(codes, 2, axis=1)
    assert planes.shape == (1, 2, 2)
    assert planes[0, 0].tolist() == [1, 0] and planes[0, 1].tolist() == [0, 2]


def _direct_sums(act, idx, levels, stride, pad, groups):
    """Plain loops in int64: the most literal reading of S[o, q]."""
    n, c, h, w = act.shape
    o, cg, kh, kw = idx.shape
    padded = np.pad(act.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, levels, ho, wo), dtype=np.int64)
    og = o // groups
    for oc in range(o):
        g = oc // og
        for y in range(ho):
            for x in range(wo):
                window = padded[:, g * cg:(g + 1) * cg, y * stride:y * stride + kh, x * stride:x * stride + kw]
                for q in range(levels):
                    out[:, oc, q, y, x] = (window * (idx[oc] == q)).sum(axis=(1, 2, 3))
    return out


@given(
    a_bits=st.integers(1, 8), w_bits=st.integers(1, 8), groups=st.sampled_from([1, 2, 3]),
    cg=st.integers(1, 70), og=st.integers(1, 3), k=st.sampled_from([1, 3]), stride=st.integers(1, 2),
    pad=st.integers(0, 1), hw=st.integers(3, 6), seed=st.integers(0, 2**16),
)
def test_bitserial_sums_equal_qconv2d_sums(a_bits, w_bits, groups, cg, og, k, stride, pad, hw, seed):
    rng = np.random.default_rng(seed)
    c, o = cg * groups, og * groups
    act = rng.integers(0, 1 << a_bits, size=(1, c, hw, hw)).astype(np.uint8)
    idx = rng.integers(0, 1 << w_bits, size=(o, cg, k, k)).astype(np.uint8)
    z = int(rng.integers(0, 1 << a_bits))
    for zero_point in (0, z):
        expected = R.qconv2d_sums(act, idx, 1 << w_bits, stride, pad, groups, zero_point=zero_point)
        got = R.bitserial_sums(act, a_bits, idx, w_bits, stride, pad, groups, zero_point=zero_point)
        assert np.array_equal(got, expected)


@given(a_bits=st.integers(1, 8), groups=st.sampled_from([1, 2]), stride=st.integers(1, 2), pad=st.integers(0, 2),
       seed=st.integers(0, 2**16))
def test_zero_point_sums_match_direct_loops_on_centred_codes(a_bits, groups, stride, pad, seed):
    """S over (q - z) with padded positions adding 0 (x_hat = 0), checked by direct int64 loops."""
    rng = np.random.default_rng(seed)
    act = rng.integers(0, 1 << a_bits, size=(2, 2 * groups, 5, 4)).astype(np.uint8)
    idx = rng.integers(0, 4, size=(2 * groups, 2, 3, 3)).astype(np.uint8)
    z = int(rng.integers(1, 1 << a_bits)) if a_bits > 1 else 1
    centred = act.astype(np.int64) - z
    got = R.qconv2d_sums(act, idx, 4, stride, pad, groups, zero_point=z)
    assert np.array_equal(got, _direct_sums(centred, idx, 4, stride, pad, groups))
    # the unsigned-planes identity the kernels use: sum w (q - z) = sum w q (padding = code z) - z sum w
    filled = np.pad(act.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=z)
    raw = _direct_sums(filled, idx, 4, stride, 0, groups)
    counts = (idx.reshape(idx.shape[0], -1)[..., None] == np.arange(4)).sum(axis=1)
    assert np.array_equal(got, raw - z * counts[None, :, :, None, None])


def test_zero_point_float_output_equals_float_conv_of_dequantized_input():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1, 4, 5, 5)).astype(np.float32)
    w = rng.normal(size=(3, 4, 3, 3))
    idx, lut = R.kquantile_lut(w, 3, per_channel=True)
    clamp, bits, z = 6.0, 4, 7
    codes = R.act_codes(x, clamp, bits, z)
    s_a = R.act_scale(clamp, bits)
    y = R.qconv2d(codes, s_a, idx, lut, None, padding=1, zero_point=z)
    xq = (codes.astype(np.float64) - z) * float(s_a)
    np.testing.assert_allclose(R.dequant_act(codes, clamp, bits, z), xq, rtol=1e-7)
    assert xq.min() < 0  # signed input is kept signed
    padded = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))  # x_hat = 0 at the border
    wq = R.dequant_weight(idx, lut).astype(np.float64)
    conv = np.zeros_like(y)
    for yy in range(5):
        for xx in range(5):
            conv[0, :, yy, xx] = np.einsum("cij,ocij->o", padded[0, :, yy:yy + 3, xx:xx + 3], wq)
    np.testing.assert_allclose(y, conv, rtol=1e-9, atol=1e-12)
    # dense too
    dense_codes = codes.reshape(1, -1)
    wd = rng.normal(size=(5, dense_codes.shape[1]))
    didx, dlut = R.uniform_lut(wd, 4, per_channel=True)
    yd = R.qdense(dense_codes, s_a, didx, dlut, None, zero_point=z)
    expected = xq.reshape(1, -1) @ R.dequant_weight(didx, dlut).astype(np.float64).T
    np.testing.assert_allclose(yd, expected, rtol=1e-9)


def test_qconv2d_sums_match_direct_loops():
    rng = np.random.default_rng(3)
    act = rng.integers(0, 8, size=(2, 6, 5, 5)).astype(np.uint8)
    idx = rng.integers(0, 4, size=(4, 3, 3, 3)).astype(np.uint8)
    got = R.qconv2d_sums(act, idx, 4, stride=2, padding=1, groups=2)
    assert np.array_equal(got, _direct_sums(act, idx, 4, 2, 1, 2))


def test_qconv2d_float_equals_dequantized_float64_conv():
    rng = np.random.default_rng(4)
    act = rng.integers(0, 4, size=(1, 5, 6, 6)).astype(np.uint8)
    w = rng.normal(size=(3, 5, 3, 3))
    idx, lut = R.kquantile_lut(w, 2, per_channel=True)
    bias = rng.normal(size=3)
    y = R.qconv2d(act, 0.25, idx, lut, bias, stride=1, padding=1)
    wq = R.dequant_weight(idx, lut).astype(np.float64)
    sums = _direct_sums(act, idx, 4, 1, 1, 1)
    direct = 0.25 * np.einsum("noqyx,oq->noyx", sums, lut.astype(np.float64)) + bias[None, :, None, None]
    np.testing.assert_allclose(y, direct, rtol=1e-12)
    # and the same as a float conv of dequantized tensors
    xq = act.astype(np.float64) * 0.25
    padded = np.pad(xq, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.zeros_like(y)
    for yy in range(6):
        for xx in range(6):
            conv[0, :, yy, xx] = np.einsum("cij,ocij->o", padded[0, :, yy:yy + 3, xx:xx + 3], wq)
    np.testing.assert_allclose(y, conv + bias[None, :, None, None], rtol=1e-9)


def test_qdense_matches_matmul():
    rng = np.random.default_rng(5)
    act = rng.integers(0, 16, size=(3, 40)).astype(np.uint8)
    w = rng.normal(size=(7, 40))
    idx, lut = R.uniform_lut(w, 3, per_channel=True)
    y = R.qdense(act, 0.1, idx, lut, np.arange(7.0))
    expected = (act * 0.1) @ R.dequant_weight(idx, lut).astype(np.float64).T + np.arange(7.0)
    np.testing.assert_allclose(y, expected, rtol=1e-9)


@given(bits_next=st.integers(1, 8), w_bits=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_integer_mode_matches_direct_int64(bits_next, w_bits, seed):
    rng = np.random.default_rng(seed)
    act = rng.integers(0, 8, size=(1, 9, 5, 5)).astype(np.uint8)
    w = rng.normal(size=(6, 9, 3, 3)) * 0.2
    idx, lut = R.kquantile_lut(w, w_bits, per_channel=True)
    bias = rng.normal(size=6) * 0.3
    p = R.integer_requant_params(lut, 0.2, bias, s_next=rng.uniform(0.01, 0.5))
    assert p["lut_int"].dtype == np.int8 and p["multiplier"].dtype == np.int32
    codes = R.qconv2d_int(act, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], bits_next, padding=1)
    # direct int64: dequantize lut_int per weight, multiply-accumulate, fixed-point requant
    wint = np.take_along_axis(p["lut_int"].astype(np.int64), idx.reshape(6, -1).astype(np.int64), 1).reshape(idx.shape)
    padded = np.pad(act.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = np.zeros((1, 6, 5, 5), dtype=np.int64)
    for y in range(5):
        for x in range(5):
            acc[0, :, y, x] = np.einsum("cij,ocij->o", padded[0, :, y:y + 3, x:x + 3], wint)
    acc += p["bias_int"].astype(np.int64)[None, :, None, None]
    m = p["multiplier"].astype(np.int64)[None, :, None, None]
    sh = p["shift"].astype(np.int64)[None, :, None, None]
    expected = np.clip((acc * m + (np.int64(1) << (sh - 1))) >> sh, 0, (1 << bits_next) - 1)
    assert np.array_equal(codes, expected.astype(np.uint8))


@given(bits_next=st.integers(2, 8), w_bits=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_integer_mode_with_zero_points_matches_direct_int64(bits_next, w_bits, seed):
    rng = np.random.default_rng(seed)
    a_bits = 4
    z = int(rng.integers(0, 16))
    z_next = int(rng.integers(0, 1 << bits_next))
    act = rng.integers(0, 16, size=(1, 9, 5, 5)).astype(np.uint8)
    w = rng.normal(size=(6, 9, 3, 3)) * 0.2
    idx, lut = R.kquantile_lut(w, w_bits, per_channel=True)
    p = R.integer_requant_params(lut, 0.2, rng.normal(size=6) * 0.3, s_next=rng.uniform(0.01, 0.5))
    codes = R.qconv2d_int(act, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], bits_next, padding=1,
                          zero_point=z, out_zero_point=z_next)
    wint = np.take_along_axis(p["lut_int"].astype(np.int64), idx.reshape(6, -1).astype(np.int64), 1).reshape(idx.shape)
    padded = np.pad(act.astype(np.int64) - z, ((0, 0), (0, 0), (1, 1), (1, 1)))  # padding: q - z = 0
    acc = np.zeros((1, 6, 5, 5), dtype=np.int64)
    for y in range(5):
        for x in range(5):
            acc[0, :, y, x] = np.einsum("cij,ocij->o", padded[0, :, y:y + 3, x:x + 3], wint)
    acc += p["bias_int"].astype(np.int64)[None, :, None, None]
    m = p["multiplier"].astype(np.int64)[None, :, None, None]
    sh = p["shift"].astype(np.int64)[None, :, None, None]
    expected = np.clip(((acc * m + (np.int64(1) << (sh - 1))) >> sh) + z_next, 0, (1 << bits_next) - 1)
    assert np.array_equal(codes, expected.astype(np.uint8))
    # the unsigned form folded into the bias gives the same accumulator
    folded = p["bias_int"].astype(np.int64) - z * R.zero_point_weight_sums(idx, p["lut_int"].astype(np.int64))
    filled = np.pad(act, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=z)
    raw = R.qconv2d_int_acc(filled, idx, p["lut_int"], folded)
    assert np.array_equal(raw, acc)


def test_integer_requant_approximates_float_path():
    rng = np.random.default_rng(6)
    act = rng.integers(0, 4, size=(1, 32, 6, 6)).astype(np.uint8)
    w = rng.normal(size=(16, 32, 3, 3)) * 0.1
    idx, lut = R.kquantile_lut(w, 2, per_channel=True)
    s_next = 0.05
    p = R.integer_requant_params(lut, 0.3, None, s_next=s_next)
    codes = R.qconv2d_int(act, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], 4, padding=1)
    y = R.qconv2d(act, 0.3, idx, p["lut_int"] * p["s_w"][:, None], None, padding=1)
    float_codes = R.act_codes(y, s_next * 15, 4)
    assert np.abs(codes.astype(int) - float_codes.astype(int)).max() <= 1
    assert np.mean(codes == float_codes) > 0.99


def test_integer_mode_dead_channel_keeps_its_bias():
    """A channel with ~1e-8 weights and a bias of ~1 (dead channels of pretrained nets) needs a bias
    beyond int32 at its weights' scale: its weight scale is coarsened instead, the other channels keep
    theirs, and the integer layer still follows the float one (the dead channel is its bias)."""
    rng = np.random.default_rng(7)
    act = rng.integers(0, 256, size=(1, 8, 5, 5)).astype(np.uint8)
    w = rng.normal(size=(4, 8, 3, 3)) * 0.1
    w[2] *= 1e-7
    bias = np.array([0.1, -0.2, 1.5, 0.05])
    lut, thresholds = R.uniform_params(w, 8, per_channel=True)
    idx = R.assign_indices(w, thresholds)
    s_a, s_next = 6.0 / 255, 0.02
    p = R.integer_requant_params(lut, s_a, bias, s_next=s_next)
    plain = R.integer_requant_params(lut, s_a, None)
    assert np.abs(bias[2] / (s_a * plain["s_w"][2])) >= 2**31  # the bias would not fit at the weights' scale
    np.testing.assert_array_equal(p["s_w"][[0, 1, 3]], plain["s_w"][[0, 1, 3]])
    assert np.abs(p["bias_int"].astype(np.int64)).max() <= 2**30
    codes = R.qconv2d_int(act, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], 8, padding=1)
    y = R.qconv2d(act, s_a, idx, lut, bias, padding=1)
    float_codes = R.act_codes(y, s_next * 255, 8)
    assert np.abs(codes.astype(int) - float_codes.astype(int)).max() <= 1
    np.testing.assert_array_equal(codes[:, 2], float_codes[:, 2])  # the dead channel: its bias, 75


def test_layer_bops_hand_values():
    # ResNet-18 layer1.0.conv1: 56x56 outputs, 64 -> 64, 3x3, w2a2
    expected = 56 * 56 * 64 * 64 * 9 * (2 * 2 + 2 + 2 + np.log2(64 * 9))
    assert R.layer_bops(64, 64, 3, 56 * 56, 2, 2) == pytest.approx(expected)
    assert R.layer_bops(64, 64, 3, 56 * 56, 2, 2) == pytest.approx(115_605_504 * (8 + np.log2(576)))
    # dense 512 -> 1000 in fp32: 512000 * (1024 + 64 + 9)
    assert R.layer_bops(512, 1000, 1, 1, 32, 32) == pytest.approx(512_000 * (1024 + 64 + 9))


@pytest.mark.parametrize("bits", [0, 9, -1, 2.5, True])
def test_bad_bits_rejected(bits):
    with pytest.raises(QuantizationError, match="w_bits"):
        R.kquantile_lut(np.ones(4), bits)
    with pytest.raises(QuantizationError, match="a_bits"):
        R.act_codes(np.ones(4), 1.0, bits)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_rejected(bad):
    w = np.ones((2, 3))
    w[1, 2] = bad
    with pytest.raises(QuantizationError, match="NaN/inf"):
        R.kquantile_lut(w, 2)
    with pytest.raises(QuantizationError, match="NaN/inf"):
        R.uniform_lut(w, 2)


@pytest.mark.parametrize("clamp", [0.0, -1.0, np.nan, np.inf])
def test_bad_clamp_rejected(clamp):
    with pytest.raises(QuantizationError, match="a_clamp"):
        R.act_codes(np.ones(3), clamp, 2)


def test_shape_errors_are_qnn_errors():
    with pytest.raises(ShapeError, match="groups=2"):
        R.qconv2d_sums(np.zeros((1, 3, 4, 4), np.uint8), np.zeros((2, 3, 1, 1), np.uint8), 2, groups=2)
    with pytest.raises(QnnError):
        R.qdense_sums(np.zeros((1, 3), np.uint8), np.zeros((2, 4), np.uint8), 2)
    with pytest.raises(QuantizationError, match="does not fit a_bits"):
        R.bitserial_sums(np.full((1, 1, 2, 2), 4, np.uint8), 2, np.zeros((1, 1, 1, 1), np.uint8), 1)
