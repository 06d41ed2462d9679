"""GEMM unit RTL (iverilog) against tvm_qnn.reference on random tiles, bits 1..8, all three weight storages."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_qnn import reference
from vta_ext.rtl.params import CoreParams
from vta_ext.rtl.tiles import run_gemm_tiles

pytestmark = pytest.mark.rtl


def _expected(params, act, idx, lut, init):
    """Per tile: level sums (onehot) or int32 accumulators, from the numpy reference."""
    out = []
    for t in range(act.shape[0]):
        if params.weight_mode == "onehot":
            sums = reference.qdense_sums(act[t], idx[t].astype(np.uint8), params.levels)  # (N, O, L)
            out.append(sums + init[t])
        else:
            acc = reference.qdense_int_acc(act[t].astype(np.uint8), idx[t].astype(np.uint8), lut[t],
                                           np.zeros(params.block_out, np.int32))
            out.append(acc.astype(np.int64) + init[t])
    return np.stack(out)


def _random_tiles(params, n_tiles, seed):
    rng = np.random.default_rng(seed)
    p = params
    act = rng.integers(0, 1 << p.a_bits, (n_tiles, p.batch, p.block_in))
    idx = rng.integers(0, p.levels, (n_tiles, p.block_out, p.block_in))
    if p.weight_mode == "bitplane":
        lut = np.broadcast_to(p.bitplane_lut(), (n_tiles, p.block_out, p.levels))
    else:
        lut = rng.integers(-127, 128, (n_tiles, p.block_out, p.levels))
    init_shape = (n_tiles, p.batch, p.block_out) + ((p.levels,) if p.weight_mode == "onehot" else ())
    init = rng.integers(-5000, 5000, init_shape) if p.weight_mode != "onehot" else rng.integers(0, 500, init_shape)
    return act, idx, lut, init


def _check(params, n_tiles=3, seed=0):
    act, idx, lut, init = _random_tiles(params, n_tiles, seed)
    acc, cycles = run_gemm_tiles(params, act, idx, lut, init, np.full(n_tiles, params.a_bits))
    expected = _expected(params, act, idx, lut, init)
    if not np.array_equal(acc, expected):
        where = tuple(int(v) for v in np.argwhere(acc != expected)[0])
        pytest.fail(f"{params}: first difference at (tile, batch, out[, level]) {where}: "
                    f"RTL {acc[where]} vs reference {expected[where]}")
    assert np.all(cycles == params.a_bits)  # bit-serial: one activation bit per clock


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("mode", ["bitplane", "decode"])
def test_tiles_bits_1_to_8(mode, bits):
    _check(CoreParams(batch=2, block_in=8, block_out=4, a_bits=bits, w_bits=bits, weight_mode=mode), seed=bits)


@pytest.mark.parametrize("bits", range(1, 6))
def test_onehot_tiles(bits):
    _check(CoreParams(batch=1, block_in=8, block_out=4, a_bits=9 - bits, w_bits=bits, weight_mode="onehot"), seed=bits)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [6, 7, 8])
def test_onehot_tiles_wide(bits):
    _check(CoreParams(batch=1, block_in=8, block_out=2, a_bits=bits, w_bits=bits, weight_mode="onehot"), n_tiles=2)


@settings(max_examples=8)
@given(mode=st.sampled_from(["bitplane", "onehot", "decode"]), a_bits=st.integers(1, 8), w_bits=st.integers(1, 4),
       batch=st.sampled_from([1, 2]), block_in=st.sampled_from([2, 4, 16]), block_out=st.sampled_from([2, 8]),
       seed=st.integers(0, 1000))
def test_tiles_hypothesis(mode, a_bits, w_bits, batch, block_in, block_out, seed):
    _check(CoreParams(batch=batch, block_in=block_in, block_out=block_out, a_bits=a_bits, w_bits=w_bits,
                      weight_mode=mode), n_tiles=2, seed=seed)


def test_fewer_activation_bits_than_the_core():
    """A layer with b_a below the core's maximum takes b_a clocks per tile and stays exact."""
    params = CoreParams(batch=1, block_in=8, block_out=4, a_bits=8, w_bits=2, weight_mode="decode")
    act, idx, lut, init = _random_tiles(params, 2, 7)
    act = act & 0b111
    acc, cycles = run_gemm_tiles(params, act, idx, lut, init, [3, 3])
    assert np.array_equal(acc, _expected(params, act, idx, lut, init)) and list(cycles) == [3, 3]


@pytest.mark.slow
def test_verilator_agrees_with_iverilog_on_wide_words():
    """Verilator (opt-in: 5.006 mis-simulated wide input words in a probe) on 512-bit LUT ports."""
    params = CoreParams(batch=2, block_in=8, block_out=4, a_bits=5, w_bits=4, weight_mode="decode")
    act, idx, lut, init = _random_tiles(params, 3, 11)
    bits = np.full(3, params.a_bits)
    acc_iv, _ = run_gemm_tiles(params, act, idx, lut, init, bits)
    acc_vl, cycles = run_gemm_tiles(params, act, idx, lut, init, bits, simulator="verilator")
    np.testing.assert_array_equal(acc_vl, acc_iv)
    np.testing.assert_array_equal(acc_vl, _expected(params, act, idx, lut, init))
