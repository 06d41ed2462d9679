"""The torch integer-only arithmetic equals reference.qconv2d_int / qdense_int bit for bit; the QAT
integer simulation computes the deployed accumulator."""

import numpy as np
import pytest
import torch

from tvm_qnn import models, reference
from tvm_qnn.errors import QuantizationError
from tvm_qnn.train import QuantConfig, calibrate_clamps, prepare_qat, quant_layers, set_integer_sim
from tvm_qnn.train import intsim


def _layer(rng, a_bits, w_bits, out_ch, in_ch, k, per_channel, groups=1):
    weight = rng.normal(0, 0.2, (out_ch, in_ch // groups, k, k))
    idx, lut = reference.kquantile_lut(weight, w_bits, per_channel)
    clamp = float(rng.uniform(0.5, 4))
    s_a = reference.act_scale(clamp, a_bits)
    s_next = reference.act_scale(float(rng.uniform(0.5, 4)), 4)
    params = reference.integer_requant_params(lut, s_a, rng.normal(0, 0.3, out_ch), s_next, out_ch)
    return idx, params


@pytest.mark.parametrize("seed", range(6))
def test_torch_qconv2d_int_equals_reference_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    a_bits, w_bits = int(rng.integers(1, 9)), int(rng.integers(1, 5))
    groups = [1, 1, 2][seed % 3]
    in_ch, out_ch = 4, 6
    k = [1, 3][seed % 2]
    stride, padding, dilation = int(rng.integers(1, 3)), [0, 1, (1, 0, 2, 1)][seed % 3], 1 + seed % 2
    idx, p = _layer(rng, a_bits, w_bits, out_ch, in_ch, k, per_channel=seed % 2 == 0, groups=groups)
    codes = rng.integers(0, 1 << a_bits, (2, in_ch, 9, 8)).astype(np.uint8)
    out_bits = int(rng.integers(1, 9))
    args = (codes, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], out_bits, stride, padding, groups,
            dilation)
    expected = reference.qconv2d_int(*args)
    got = intsim.qconv2d_int(*args).numpy()
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    acc = reference.qconv2d_int_acc(codes, idx, p["lut_int"], p["bias_int"], stride, padding, groups, dilation)
    np.testing.assert_array_equal(intsim.qconv2d_int_acc(codes, idx, p["lut_int"], p["bias_int"], stride, padding,
                                                         groups, dilation).numpy(), acc)
    assert len(np.unique(got)) > 1  # not a degenerate all-clipped output


@pytest.mark.parametrize("seed", range(3))
def test_torch_qdense_int_equals_reference_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    weight = rng.normal(0, 0.1, (7, 40))
    idx, lut = reference.kquantile_lut(weight, 3, per_channel=True)
    p = reference.integer_requant_params(lut, reference.act_scale(2.0, 8), rng.normal(0, 0.5, 7),
                                         reference.act_scale(3.0, 2 + seed), 7)
    codes = rng.integers(0, 256, (5, 40)).astype(np.uint8)
    args = (codes, idx, p["lut_int"], p["bias_int"], p["multiplier"], p["shift"], 2 + seed)
    np.testing.assert_array_equal(intsim.qdense_int(*args).numpy(), reference.qdense_int(*args))


def test_torch_int_acc_refuses_int32_overflow():
    idx = np.ones((1, 1, 1, 1), np.uint8)
    with pytest.raises(QuantizationError, match="overflows int32"):
        intsim.qconv2d_int_acc(np.full((1, 1, 2, 2), 255, np.uint8), idx, [[0, 127]], [2**31 - 100])


def test_qat_integer_sim_computes_the_deployed_accumulator():
    torch.manual_seed(0)
    qat = prepare_qat(models.fmnist_resnet(), QuantConfig(2, 3, "kquantile", per_channel=True))
    calibrate_clamps(qat, [torch.randn(4, 1, 28, 28)])
    layer = qat.layer2[0].conv1
    with torch.no_grad():
        layer.bias = torch.nn.Parameter(torch.randn(layer.out_channels) * 0.2)
    layer.eval()
    x = torch.rand(2, layer.in_channels, 9, 9) * 1.5
    clamp, bits = layer.act_quant.clamp_value(), layer.act_quant.bits
    codes = reference.act_codes(x.numpy(), clamp, bits)
    p = intsim.integer_params_of(layer)
    acc = reference.qconv2d_int_acc(codes, p["idx"], p["lut_int"], p["bias_int"], layer.stride, layer.padding)
    expected = acc * (float(reference.act_scale(clamp, bits)) * p["s_w"])[None, :, None, None]
    float_out = layer(x).detach().numpy()
    set_integer_sim(qat, True)
    with torch.no_grad():
        got = layer(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert not np.allclose(got, float_out, rtol=1e-6, atol=0)  # int8 LUT / bias rounding did change it
    # straight-through: the float weight and bias still get gradients
    layer.train()
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None


def _assert_contract_layer_equals_simulation(name, layer, module):
    """The float-contract ``module`` equals the integer-simulated QAT ``layer`` on random inputs, up to
    the simulation's int32 bias rounding (<= s_a s_w / 2 per output channel)."""
    shape = (8, layer.in_channels, 14, 14) if isinstance(layer, torch.nn.Conv2d) else (8, layer.in_features)
    x = torch.rand(shape) * 2
    with torch.no_grad():
        simulated = layer.eval()(x).numpy()
        got = module(x).numpy()
    params = intsim.integer_params_of(layer)
    unit = float(reference.act_scale(layer.act_quant.clamp_value(), layer.act_quant.bits)) * params["s_w"]
    axis = (1, -1) + (1,) * (simulated.ndim - 2)
    bound = (0.5 * unit).reshape(axis) + 1e-5 * np.abs(simulated).max()
    assert np.all(np.abs(got - simulated) <= bound), (name, float(np.abs(got - simulated).max()))


def test_int8_lut_export_makes_float_contract_equal_the_integer_simulation():
    from tvm_qnn.train import apply_recipe, export_float_model, export_recipe
    from tvm_qnn.train.export import int8_exact_lut

    torch.manual_seed(0)
    qat = prepare_qat(models.tiny_cnn(width=8), QuantConfig(2, 3, "kquantile", per_channel=True))
    calibrate_clamps(qat, [torch.rand(8, 1, 28, 28)])
    recipe = export_recipe(qat, "tiny_cnn", int8_lut=True)
    for name, layer in recipe.layers.items():
        params = reference.integer_requant_params(layer.lut, 1.0)
        np.testing.assert_array_equal(int8_exact_lut(layer.lut), layer.lut)  # a fixed point: on the int8 grid
        np.testing.assert_allclose(params["lut_int"] * params["s_w"][:, None], layer.lut, rtol=1e-6)
    plain = export_recipe(qat, "tiny_cnn")
    assert any(not np.array_equal(plain[n].lut, recipe[n].lut) for n in recipe.layers)
    # layer by layer (a whole network would amplify code ties): the contract layer with the int8 LUT
    # equals the simulated layer up to the simulation's int32 bias rounding (<= s_a s_w / 2)
    contract = dict(apply_recipe(export_float_model(qat), recipe).named_modules())
    set_integer_sim(qat, True)
    for name, layer in quant_layers(qat).items():
        _assert_contract_layer_equals_simulation(name, layer, contract[name[: -len(".weight")]])


@pytest.mark.parametrize("w_bits", [2, 3])
def test_uniform_int8_grid_makes_float_contract_equal_the_integer_simulation(w_bits):
    # Uniform (NICE) LUTs stay affine at export, so int8_lut=True cannot move them onto the int8 grid:
    # without int8_grid the integer-only mode rounds every 3-bit level (18.14 -> 18 ...) and computes
    # other weights than the float contract (on the 30-epoch fmnist baseline, PTQ w3a3 uniform: float
    # contract 73.50 % vs integer-only 83.62 %). With QuantConfig(int8_grid=True) they are the same.
    from tvm_qnn.train import apply_recipe, export_float_model, export_recipe

    torch.manual_seed(0)
    for int8_grid in (False, True):
        qat = prepare_qat(models.tiny_cnn(width=8), QuantConfig(w_bits, 3, "uniform", per_channel=True,
                                                               int8_grid=int8_grid))
        calibrate_clamps(qat, [torch.rand(8, 1, 28, 28)])
        recipe = export_recipe(qat, "tiny_cnn", int8_lut=True)
        contract = dict(apply_recipe(export_float_model(qat), recipe).named_modules())
        set_integer_sim(qat, True)
        exact = []
        for name, layer in quant_layers(qat).items():
            params = intsim.integer_params_of(layer)
            lut = recipe.layers[name].lut.astype(np.float64)
            exact.append(np.array_equal(params["lut_int"] * params["s_w"][:, None], lut))
            if not int8_grid:
                continue
            assert reference.lut_is_affine(params["lut_int"].astype(np.float64), rtol=0)  # bit-plane kernels apply
            _assert_contract_layer_equals_simulation(name, layer, contract[name[: -len(".weight")]])
        assert all(exact) if int8_grid else not any(exact)
        # the NICE noise stage trains on the same grid (clipped to its ends, noise of one step)
        layer = next(iter(quant_layers(qat).values())).train()
        layer.weight_quant.set_mode("noise")
        noisy = layer.weight_quant(layer.weight).detach()
        lut = torch.from_numpy(layer.weight_quant.params(layer.weight.detach().numpy())[0])
        step = (lut[:, 1] - lut[:, 0]).reshape(-1, 1, 1, 1)
        assert torch.all(noisy >= lut[:, :1].reshape(-1, 1, 1, 1) - step / 2 - 1e-6)
        assert torch.all(noisy <= lut[:, -1:].reshape(-1, 1, 1, 1) + step / 2 + 1e-6)
