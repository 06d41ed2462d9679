"""Per-layer kernel choice for integer-only layers (codegen.kernel_choice): the crossover, pins, depthwise."""

import numpy as np
import pytest

from codegen.kernel_choice import CROSSOVER_PLANE_PRODUCTS, choose_integer_kernel, plane_products
from tvm_qnn.errors import CompileError
from tvm_qnn.layer import QnnLayer


def _layer(w_bits, a_bits, groups=1, channels=16):
    idx = np.zeros((channels, channels // groups, 3, 3), np.uint8)
    lut = np.linspace(-1, 1, 1 << w_bits, dtype=np.float32)[None, :]
    return QnnLayer("layer1.conv", "conv2d", idx, lut, None, w_bits, "uniform", a_bits, 1.0, (1, channels, 8, 8),
                    padding=1, groups=groups)


def _lut_int(w_bits, affine):
    levels = np.arange(1 << w_bits) * 2 - ((1 << w_bits) - 1)
    return (levels if affine else levels ** 3 // max(1, ((1 << w_bits) - 1) ** 2))[None, :]


def test_crossover_follows_the_roofline_peaks():
    assert 3 < CROSSOVER_PLANE_PRODUCTS < 4  # (1160 * 0.60) / (4 * 59 * 0.78)
    assert plane_products(2, 2, "bitplane") == 4 and plane_products(3, 2, "onehot") == 9
    cases = [(1, 1, True, "popcount"), (1, 3, True, "popcount"), (2, 2, True, "vnni"), (2, 2, False, "vnni"),
             (2, 3, False, "vnni"), (3, 3, True, "vnni"), (4, 8, False, "vnni"), (4, 8, True, "vnni"),
             (1, 8, True, "vnni")]
    for w_bits, a_bits, affine, expected in cases:
        got = choose_integer_kernel(_layer(w_bits, a_bits), _lut_int(w_bits, affine))
        assert got == expected, (w_bits, a_bits, affine, got)


def test_without_vnni_the_plain_int8_kernel_needs_more_planes():
    assert choose_integer_kernel(_layer(3, 3), _lut_int(3, True), instructions="plain") == "popcount"  # 9 < 3.8 x 8
    assert choose_integer_kernel(_layer(4, 8), _lut_int(4, False), instructions="plain") == "vnni"  # 120 products


def test_depthwise_layers_get_the_depthwise_kernel_and_pins_win():
    assert choose_integer_kernel(_layer(4, 8, groups=16), _lut_int(4, False)) == "depthwise"
    assert choose_integer_kernel(_layer(4, 8), _lut_int(4, False), pin="popcount") == "popcount"
    assert choose_integer_kernel(_layer(1, 1), _lut_int(1, True), pin="vnni") == "vnni"
    with pytest.raises(CompileError, match="layer 'layer1.conv'.*'fp32' cannot run in integer-only mode"):
        choose_integer_kernel(_layer(2, 2), _lut_int(2, True), pin="fp32")


def test_zero_points_stay_on_the_popcount_kernel():
    """Only the popcount integer kernel pads with code z and adds z_next (the int8 / depthwise ones do not yet)."""
    import dataclasses

    signed = dataclasses.replace(_layer(4, 8), a_zero_point=128)
    assert choose_integer_kernel(_layer(4, 8), _lut_int(4, False)) == "vnni"
    assert choose_integer_kernel(signed, _lut_int(4, False)) == "popcount"
    assert choose_integer_kernel(_layer(4, 8), _lut_int(4, False), out_zero_point=3) == "popcount"
    assert choose_integer_kernel(_layer(4, 8, groups=16), _lut_int(4, False), out_zero_point=3) == "popcount"
    with pytest.raises(CompileError, match=r"layer 'layer1.conv': kernel 'vnni' does not take activation zero points"):
        choose_integer_kernel(signed, _lut_int(4, False), pin="vnni")
