"""The streaming planner's layer block (mvau_stream.v) in iverilog against its numpy reference:
bit-exact output codes, back-pressure, and the initiation interval the streaming simulator derives."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tvm_qnn import reference
from vta_ext.rtl.mvau import acc_bits, cosim_mvau, mvau_ii, mvau_reference, thresholds_from_requant
from vta_ext.streaming.graph import StreamLayer
from vta_ext.streaming.sim import block_cycles

pytestmark = pytest.mark.rtl


def _random_layer(rng, pe, simd, nf, sf, w_bits, a_bits, o_bits, vectors):
    mh, mw = pe * nf, simd * sf
    weights = rng.integers(-(1 << (w_bits - 1)), 1 << (w_bits - 1), size=(mh, mw))
    acts = rng.integers(0, 1 << a_bits, size=(vectors, mw))
    bound = mw * (1 << (w_bits - 1)) * ((1 << a_bits) - 1)
    thresholds = np.sort(rng.integers(-bound, bound + 1, size=(mh, (1 << o_bits) - 1)), axis=1)
    return weights, thresholds, acts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pe=st.sampled_from([1, 2, 4]), simd=st.sampled_from([1, 2, 4, 8]), nf=st.integers(1, 3),
       sf=st.integers(1, 3), w_bits=st.integers(1, 8), a_bits=st.integers(1, 8), o_bits=st.integers(1, 4),
       stall=st.sampled_from([0, 40]), seed=st.integers(0, 2**16))
def test_mvau_rtl_is_bit_exact_with_reference(pe, simd, nf, sf, w_bits, a_bits, o_bits, stall, seed):
    rng = np.random.default_rng(seed)
    weights, thresholds, acts = _random_layer(rng, pe, simd, nf, sf, w_bits, a_bits, o_bits, vectors=4)
    codes, _ = cosim_mvau(weights, thresholds, acts, pe, simd, w_bits, a_bits, o_bits, stall_pct=stall, seed=seed + 1)
    np.testing.assert_array_equal(codes, mvau_reference(weights, thresholds, acts))


@pytest.mark.parametrize("pe, simd, nf, sf, w_bits, a_bits", [(2, 4, 2, 2, 2, 2), (4, 8, 1, 3, 1, 3), (1, 2, 3, 1, 4, 1)])
def test_mvau_rtl_ii_is_the_streaming_simulators(pe, simd, nf, sf, w_bits, a_bits):
    """Without back-pressure a vector leaves every NF*SF*b_a clocks: the II block_cycles derives
    for a dense layer of that shape and folding (the planner's II, checked equal by the sim)."""
    rng = np.random.default_rng(7)
    weights, thresholds, acts = _random_layer(rng, pe, simd, nf, sf, w_bits, a_bits, 2, vectors=6)
    codes, cycles = cosim_mvau(weights, thresholds, acts, pe, simd, w_bits, a_bits, 2)
    np.testing.assert_array_equal(codes, mvau_reference(weights, thresholds, acts))
    per_vector = np.diff(cycles[nf - 1::nf])
    mh, mw = weights.shape
    layer = StreamLayer("fc", "dense", ("x",), out_channels=mh)
    derived = block_cycles(layer, (mw, 1, 1), (mh, 1, 1), a_bits, 2, (pe, simd, 1), [(simd * a_bits, a_bits)], pe * 2)
    assert set(per_vector[1:].tolist()) == {mvau_ii(pe, simd, mw, mh, a_bits)} == {derived["ii"]}


def test_thresholds_reproduce_integer_requant():
    """Thresholds from (M, shift, z) give DESIGN's requant codes for every accumulator in range."""
    rng = np.random.default_rng(3)
    mh, w_bits, a_bits, out_bits, mw = 5, 3, 2, 3, 12
    width = acc_bits(mw, w_bits, a_bits)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    multiplier = rng.integers(1, 1 << 12, size=mh)
    shift = rng.integers(8, 14, size=mh)
    thr = thresholds_from_requant(multiplier, shift, out_bits, lo, hi, zero_point=2)
    acc = np.arange(lo, hi + 1)
    expected = reference.requantize(np.broadcast_to(acc[:, None], (acc.size, mh)), multiplier, shift, out_bits,
                                    zero_point=2)
    got = (acc[:, None, None] >= thr[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(got, expected)
