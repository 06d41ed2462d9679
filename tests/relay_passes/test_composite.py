"""read_qnn_layer + the composites' numerics: each compiled composite equals the reference layer."""

import numpy as np
import pytest
import tvm
from qnn_pass_helpers import FloatNet, build_and_run, float_params, layer, recipe

from relay_passes.composite import is_qnn_composite, qnn_composites, read_qnn_layer, read_qnn_layers
from tvm_qnn import reference
from tvm_qnn.errors import QnnError
from tvm_qnn.quantize import quantize


def quantized(per_channel=False):
    params = float_params(3)
    layers = []
    for name, (w_bits, a_bits, clamp) in {"w1": (3, 4, 2.0), "w2": (2, 2, 1.3), "w3": (1, 3, 0.9)}.items():
        lut, thresholds = reference.kquantile_params(params[name], w_bits, per_channel)
        layers.append(layer(name, w_bits=w_bits, a_bits=a_bits, a_clamp=clamp, lut=lut, scheme="kquantile",
                            thresholds=thresholds))
    return quantize(FloatNet, params, recipe(layers, ["w4"])), params


@pytest.mark.parametrize("per_channel", [False, True])
def test_read_qnn_layer_recovers_the_recipe(per_channel):
    qmod, params = quantized(per_channel)
    layers = read_qnn_layers(qmod)
    assert sorted(layers) == ["w1", "w2", "w3"]
    w2 = layers["w2"]
    assert (w2.kind, w2.groups, w2.padding, w2.stride, w2.out_min, w2.out_max) == ("conv2d", 4, (1, 1, 1, 1), (1, 1), 0.0, 6.0)
    assert w2.bias is None and w2.input_shape == (1, 4, 8, 8)
    w1 = layers["w1"]
    np.testing.assert_array_equal(w1.bias, params["b1"])
    assert (w1.out_min, w1.out_max, w1.a_bits, w1.w_bits) == (0.0, None, 4, 3)
    lut, thresholds = reference.kquantile_params(params["w1"], 3, per_channel)
    np.testing.assert_array_equal(w1.weight_idx, reference.assign_indices(params["w1"], thresholds))
    np.testing.assert_array_equal(w1.lut, lut)
    w3 = layers["w3"]
    assert w3.kind == "dense" and w3.input_shape == (1, 64) and w3.out_min == 0.0
    np.testing.assert_array_equal(w3.bias, params["b3"])


@pytest.mark.parametrize("per_channel", [False, True])
def test_each_compiled_composite_matches_reference_qconv2d(per_channel):
    qmod, _ = quantized(per_channel)
    rng = np.random.default_rng(5)
    for gvar, func in qnn_composites(qmod).items():
        layer_data = read_qnn_layer(func)
        x = rng.uniform(-0.5, 3.0, layer_data.input_shape).astype(np.float32)
        single = tvm.IRModule({"main": func.without_attr("Composite").without_attr("Primitive")
                               .with_attr("global_symbol", "main")})
        got = build_and_run(single, x)
        codes = reference.act_codes(x, layer_data.a_clamp, layer_data.a_bits)
        if layer_data.kind == "conv2d":
            ref = reference.qconv2d(codes, layer_data.s_a, layer_data.weight_idx, layer_data.lut, layer_data.bias,
                                    layer_data.stride, layer_data.padding, layer_data.groups)
        else:
            ref = reference.qdense(codes, layer_data.s_a, layer_data.weight_idx, layer_data.lut, layer_data.bias)
        ref = np.clip(ref, layer_data.out_min, layer_data.out_max)
        assert np.abs(got - ref).max() <= 1e-5 * max(np.abs(ref).max(), 1e-12), gvar.name_hint
        np.testing.assert_allclose(got, layer_data.reference(x), rtol=0, atol=1e-5 * np.abs(ref).max())


def test_non_composites_are_refused():
    assert not is_qnn_composite(FloatNet["main"])
    with pytest.raises(QnnError, match="not a qnn"):
        read_qnn_layer(FloatNet["main"])
