"""QnnLayer: the graph/backend hand-off validates its data and states the float contract."""

import numpy as np
import pytest

from tvm_qnn import reference as R
from tvm_qnn.errors import QnnError, QuantizationError, ShapeError
from tvm_qnn.layer import QnnLayer


def _conv(**changes):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 2, 3, 3))
    idx, lut = R.kquantile_lut(w, 2, per_channel=True)
    args = dict(name="l.weight", kind="conv2d", weight_idx=idx, lut=lut, bias=rng.normal(size=8), w_bits=2,
                w_scheme="kquantile", a_bits=3, a_clamp=2.0, input_shape=(1, 4, 9, 9), stride=(2, 2),
                padding=1, groups=2, out_min=0.0, out_max=6.0)
    args.update(changes)
    return QnnLayer(**args)


def test_reference_is_codes_sums_lut_bias_epilogue():
    layer = _conv()
    assert layer.output_shape == (1, 8, 5, 5) and layer.padding == (1, 1, 1, 1)
    x = np.random.default_rng(1).uniform(-1, 3, size=layer.input_shape).astype(np.float32)
    codes = R.act_codes(x, 2.0, 3)
    expected = np.clip(R.qconv2d(codes, layer.s_a, layer.weight_idx, layer.lut, layer.bias, 2, 1, 2), 0, 6)
    np.testing.assert_array_equal(layer.reference(x), expected)
    assert layer.bops() == pytest.approx(R.layer_bops(2, 8, 3, 25, 3, 2))


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (dict(w_bits=3), QuantizationError, "lut has shape"),
        (dict(a_bits=9), QuantizationError, "a_bits"),
        (dict(bias=np.zeros(3)), ShapeError, "bias"),
        (dict(groups=1), ShapeError, "groups=1"),
        (dict(weight_idx=np.zeros((8, 2, 3, 3), np.int32)), ShapeError, "uint8"),
        (dict(weight_idx=np.full((8, 2, 3, 3), 7, np.uint8)), QuantizationError, "index 7"),
        (dict(kind="pool"), ShapeError, "kind"),
    ],
)
def test_bad_layers_name_the_fault(changes, error, message):
    with pytest.raises(error, match=message) as info:
        _conv(**changes)
    assert isinstance(info.value, QnnError) and "l.weight" in str(info.value)
