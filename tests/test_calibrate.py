"""tvm_qnn.calibrate: LUTs from the reference quantizers, clamps from layer-input statistics."""

import numpy as np
import pytest
import torch

import tvm_qnn
from tvm_qnn import reference
from tvm_qnn.errors import RecipeError, ShapeError
from tvm_qnn.models import fmnist_resnet, tiny_cnn
from tvm_qnn.train.fold_bn import fold_batchnorm


@pytest.fixture(scope="module")
def imported():
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    mod, params = tvm_qnn.from_torch(model, torch.rand(4, 1, 28, 28))
    data = torch.rand(16, 1, 28, 28)
    return model, mod, params, data


def torch_layer_inputs(model, data, names):
    """Inputs of the named layers collected with forward pre-hooks on the folded model."""
    folded = fold_batchnorm(model)
    modules = dict(folded.named_modules())
    seen = {name: [] for name in names}
    hooks = [modules[name[: -len(".weight")]].register_forward_pre_hook(
        lambda module, args, name=name: seen[name].append(args[0].detach().numpy().reshape(-1))) for name in names]
    with torch.no_grad():
        folded(data)
    for hook in hooks:
        hook.remove()
    return {name: np.concatenate(values) for name, values in seen.items()}


def test_recipe_layers_luts_and_clamps(imported):
    model, mod, params, data = imported
    recipe = tvm_qnn.calibrate(mod, params, [data[:8], data[8:]], w_bits=2, a_bits=3, percentile=99.0, progress=False)
    assert recipe.fp32_layers == ("conv1.weight", "fc2.weight")
    assert sorted(recipe.layers) == ["conv2.weight", "fc1.weight"]
    inputs = torch_layer_inputs(model, data, list(recipe.layers))
    for name, layer in recipe.layers.items():
        assert (layer.w_bits, layer.a_bits, layer.w_scheme) == (2, 3, "kquantile")
        assert layer.a_clamp == pytest.approx(np.percentile(inputs[name], 99.0), rel=1e-5)
        lut, thresholds = reference.kquantile_params(params[name], 2)
        np.testing.assert_array_equal(layer.lut, lut)
        np.testing.assert_allclose(layer.thresholds, thresholds)


def test_uniform_per_channel_and_explicit_fp32_layers(imported):
    _, mod, params, data = imported
    loader = [(data[:8], torch.zeros(8)), (data[8:], torch.zeros(8))]  # (x, y) batches like a DataLoader
    recipe = tvm_qnn.calibrate(mod, params, loader, w_bits=3, a_bits=3, w_scheme="uniform", per_channel=True,
                               fp32_layers=["conv1.weight"], progress=False)
    assert sorted(recipe.layers) == ["conv2.weight", "fc1.weight", "fc2.weight"]
    conv2 = recipe["conv2.weight"]
    assert conv2.lut.shape == (8, 8) and conv2.w_scheme == "uniform"
    np.testing.assert_array_equal(conv2.lut, reference.uniform_params(params["conv2.weight"], 3, None, True)[0])


def test_batchnorm_graph_uses_the_folded_weight():
    torch.manual_seed(1)
    model = fmnist_resnet(widths=(4, 8, 8)).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
    mod, params = tvm_qnn.from_torch(model, torch.rand(2, 1, 28, 28), fold_bn=False)
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 28, 28), progress=False)
    folded = fold_batchnorm(model).state_dict()["layer1.0.conv1.weight"].numpy()
    lut, _ = reference.kquantile_params(folded, 2)
    np.testing.assert_allclose(recipe["layer1.0.conv1.weight"].lut, lut, rtol=1e-5, atol=1e-6)


def test_bad_calibration_arguments_are_named(imported):
    _, mod, params, data = imported
    with pytest.raises(RecipeError, match="percentile=0"):
        tvm_qnn.calibrate(mod, params, data, percentile=0, progress=False)
    with pytest.raises(RecipeError, match="fp32_layers names.*'fc7.weight'"):
        tvm_qnn.calibrate(mod, params, data, fp32_layers=["fc7.weight"], progress=False)
    with pytest.raises(ShapeError, match=r"sample shape \(1, 14, 14\)"):
        tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 14, 14), progress=False)


def test_signed_layer_input_gets_a_zero_point(imported):
    """No silent clip to 0: a quantized layer whose calibrated input has negatives gets z > 0."""
    model, mod, params, _ = imported
    data = torch.randn(16, 1, 28, 28)  # normalised images: conv1's input is signed
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=4, a_bits=8, fp32_layers=None, progress=False)
    inputs = torch_layer_inputs(model, data, list(recipe.layers))
    conv1 = recipe["conv1.weight"]
    lo, hi = np.percentile(inputs["conv1.weight"], [0.01, 99.99])
    assert conv1.a_zero_point > 0 and conv1.a_clamp == pytest.approx(hi - lo, rel=1e-5)
    assert conv1.a_zero_point == int(np.round(-lo / conv1.s_a))
    # the representable range covers the calibrated one (within half a step)
    assert -conv1.a_zero_point * conv1.s_a <= lo + conv1.s_a / 2
    assert (255 - conv1.a_zero_point) * conv1.s_a >= hi - conv1.s_a / 2
    # codes keep the negative half: x_hat of a negative input is negative
    x = inputs["conv1.weight"][:1000]
    x_hat = reference.dequant_act(reference.act_codes(x, conv1.a_clamp, 8, conv1.a_zero_point), conv1.a_clamp, 8,
                                  conv1.a_zero_point)
    inside = (x > lo) & (x < hi)
    assert np.abs(x_hat - x)[inside].max() <= conv1.s_a / 2 * 1.001
    # layers after a ReLU stay unsigned
    for name in ("conv2.weight", "fc1.weight"):
        assert inputs[name].min() >= 0 and recipe[name].a_zero_point == 0
    # symmetric on request, and the unsigned clip only when asked for
    symmetric = tvm_qnn.calibrate(mod, params, data, w_bits=4, a_bits=8, fp32_layers=None, progress=False,
                                  zero_point="symmetric")
    magnitude = max(-lo, hi)
    assert symmetric["conv1.weight"].a_zero_point == 128
    assert symmetric["conv1.weight"].s_a == pytest.approx(magnitude / 127, rel=1e-5)
    unsigned = tvm_qnn.calibrate(mod, params, data, w_bits=4, a_bits=8, fp32_layers=None, progress=False,
                                 signed=False)
    assert unsigned["conv1.weight"].a_zero_point == 0
    assert unsigned["conv1.weight"].a_clamp == pytest.approx(hi, rel=1e-5)


def test_activation_range_rules():
    from tvm_qnn.calibrate import activation_range

    rng = np.random.default_rng(0)
    relu = np.maximum(rng.normal(size=10_000), 0)
    assert activation_range(relu, 4, 100.0) == (pytest.approx(relu.max()), 0)
    signed = rng.normal(size=10_000)
    clamp, z = activation_range(signed, 4, 100.0)
    assert clamp == pytest.approx(signed.max() - signed.min()) and z == int(np.round(-signed.min() / (clamp / 15)))
    # negatives only in the dropped tail are kept (never a silent clip to 0)
    tail = np.concatenate([np.abs(rng.normal(size=100_000)), [-0.5]])
    clamp, z = activation_range(tail, 8, 99.0)
    assert z > 0 and clamp > 0.5
    # symmetric needs two bits; a signed request on unsigned data gives z = 0 (asymmetric)
    with pytest.raises(RecipeError, match="a_bits >= 2"):
        activation_range(signed, 1, 99.0, zero_point="symmetric")
    assert activation_range(relu, 4, 100.0, signed=True)[1] == 0
    with pytest.raises(RecipeError, match="zero_point='mid'"):
        activation_range(signed, 4, 99.0, zero_point="mid")


def _depthwise_net():
    """Conv (BN) -> depthwise stride-2 conv with TF-style asymmetric padding -> bias-less 1x1 conv -> linear."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU6(),
        torch.nn.ZeroPad2d((0, 1, 0, 1)), torch.nn.Conv2d(8, 8, 3, stride=2, groups=8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 1, bias=False), torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10)).eval()


def test_bias_correction_cancels_the_mean_output_shift_of_weight_rounding():
    """calibrate(bias_correction=True): each layer's correction is minus the mean shift that rounding its
    weights causes on the calibration data, measured here with torch (layer input of the float model,
    output with quantized minus float weight); a layer without a bias gets none; quantize applies it."""
    from tvm_qnn.train.fakequant import apply_recipe, layer_modules, lut_weight

    model = _depthwise_net()
    data = np.random.default_rng(0).standard_normal((12, 3, 16, 16)).astype(np.float32)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(data[:1]))
    plain = tvm_qnn.calibrate(mod, params, data, w_bits=3, a_bits=8, w_scheme="uniform", per_channel=True,
                              fp32_layers=None, progress=False)
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=3, a_bits=8, w_scheme="uniform", per_channel=True,
                               fp32_layers=None, progress=False, bias_correction=True)
    assert all(layer.bias_correction is None for layer in plain.layers.values())
    assert recipe["6.weight"].bias_correction is None  # no bias to put it in
    inputs = {}
    folded = fold_batchnorm(model)
    modules = layer_modules(folded)
    hooks = [modules[name].register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0]))
             for name in recipe.layers]
    with torch.no_grad():
        folded(torch.from_numpy(data))
    for hook in hooks:
        hook.remove()
    for name in ("0.weight", "4.weight", "8.weight"):
        module = modules[name]
        float_weight = module.weight.detach().clone()
        with torch.no_grad():
            y_float = module(inputs[name])
            module.weight.copy_(torch.from_numpy(lut_weight(recipe[name], float_weight.numpy())))
            shift = (module(inputs[name]) - y_float).double()
            module.weight.copy_(float_weight)
        shift = shift.mean(dim=(0, 2, 3) if shift.ndim == 4 else (0,)).numpy()
        assert np.abs(shift).max() > 1e-4  # 3-bit weights do shift the mean: the check can fail
        np.testing.assert_allclose(recipe[name].bias_correction, -shift, rtol=1e-4, atol=1e-6)
    # quantize puts it into the bias: cpu-reference equals the torch twin, which adds it to the bias
    qmod = tvm_qnn.quantize(mod, params, recipe)
    compiled = tvm_qnn.compile(qmod, target="cpu-reference")
    out = np.concatenate([compiled.run(x[None]) for x in data[:4]])
    with torch.no_grad():
        twin = apply_recipe(model, recipe)(torch.from_numpy(data[:4])).numpy()
        twin_plain = apply_recipe(model, plain)(torch.from_numpy(data[:4])).numpy()
    np.testing.assert_allclose(out, twin, rtol=1e-4, atol=1e-4 * np.abs(twin).max())
    assert np.abs(twin - twin_plain).max() > 1e-3 * np.abs(twin).max()


def test_bias_correction_on_a_layer_without_bias_is_refused():
    model = _depthwise_net()
    data = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(data[:1]))
    recipe = tvm_qnn.calibrate(mod, params, data, w_bits=4, a_bits=8, fp32_layers=None, progress=False)
    layer = recipe["6.weight"]
    import dataclasses
    bad = recipe.replace(layers={**recipe.layers, "6.weight": dataclasses.replace(layer, bias_correction=[0.1] * 16)})
    with pytest.raises(RecipeError, match="6.weight.*bias_correction.*no bias"):
        tvm_qnn.quantize(mod, params, bad)


def test_first_layer_bits_quantizes_the_first_conv_uniform_per_channel(imported):
    model, mod, params, data = imported
    signed = data - 0.5  # a normalised image: the first conv's input is signed
    recipe = tvm_qnn.calibrate(mod, params, signed, w_bits=2, a_bits=2, first_layer_bits=8, percentile=99.0,
                               progress=False)
    assert recipe.fp32_layers == ("fc2.weight",)
    first = recipe["conv1.weight"]
    assert (first.w_bits, first.a_bits, first.w_scheme) == (8, 8, "uniform")
    np.testing.assert_array_equal(first.lut, reference.uniform_params(params["conv1.weight"], 8, None, True)[0])
    assert first.a_zero_point > 0  # its negative half is coded, not clipped
    assert (recipe["conv2.weight"].w_bits, recipe["conv2.weight"].w_scheme) == (2, "kquantile")
    # the compiled first layer equals the reference on every output (the int8 kernel where the CPU has VNNI)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    ours, ref = tvm_qnn.compile(qmod, target="cpu"), tvm_qnn.compile(qmod, target="cpu-reference")
    assert ours.artifact.info["layer_kernels"]["conv1.weight"] in ("vnni", "int8-avx2", "int8-plain")
    x = signed[:4].numpy()
    np.testing.assert_array_equal(ours.run(x), ref.run(x))


@pytest.mark.parametrize("bits, match", [(9, "first_layer_bits=9"), (True, "first_layer_bits=True")])
def test_bad_first_layer_bits_are_named(imported, bits, match):
    _, mod, params, data = imported
    with pytest.raises(RecipeError, match=match):
        tvm_qnn.calibrate(mod, params, data, first_layer_bits=bits, progress=False)
    with pytest.raises(RecipeError, match="'conv1.weight' float and first_layer_bits=8"):
        tvm_qnn.calibrate(mod, params, data, first_layer_bits=8, fp32_layers=["conv1.weight"], progress=False)
