"""apply_recipe (torch fake-quant) against the numpy reference, and BN folding."""

import numpy as np
import pytest
import torch
from torch import nn

from tvm_qnn import models, reference
from tvm_qnn.errors import QuantizationError, RecipeError
from tvm_qnn.recipe import LayerQuant, Recipe
from tvm_qnn.train import act_fake_quant, apply_recipe, fold_batchnorm


def _randomize_bn(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(shape, generator=generator) - 0.5)
    return model.eval()


def _rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("name", ["fmnist_resnet", "dw_separable_net", "resnet18"])
def test_fold_batchnorm_preserves_outputs(name):
    torch.manual_seed(0)
    model = _randomize_bn(models.get_model(name))
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), "input model must not change"
    x = models.example_input(name, batch=2)
    with torch.no_grad():
        expected, got = model(x).numpy(), folded(x).numpy()
    assert _rel(got, expected) < 1e-5
    # the folded weights are a pure function of the model: folding twice gives the same bits
    again = fold_batchnorm(model)
    for (k, a), (_, b) in zip(folded.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


class _SamePaddingConv(nn.Conv2d):
    """A Conv2d subclass padding in its own forward, as efficientnet's Conv2dStaticSamePadding does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))

    def forward(self, x):
        return nn.functional.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, 0, 1, self.groups)


def test_fold_batchnorm_folds_into_conv2d_subclasses():
    torch.manual_seed(0)
    model = _randomize_bn(nn.Sequential(_SamePaddingConv(3, 8, 3, stride=2, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                                        _SamePaddingConv(8, 8, 3, groups=8, bias=False), nn.BatchNorm2d(8)))
    folded = fold_batchnorm(model)
    assert [type(m) for m in folded] == [_SamePaddingConv, nn.Identity, nn.ReLU6, _SamePaddingConv, nn.Identity]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected, got = model(x).numpy(), folded(x).numpy()
    assert _rel(got, expected) < 1e-5


def test_act_fake_quant_equals_reference_codes():
    x = np.random.default_rng(0).normal(0.5, 1.5, size=(4, 3, 9, 9)).astype(np.float32)
    for bits, clamp in [(1, 0.7), (2, 1.3), (3, 2.9), (8, 5.0)]:
        got = act_fake_quant(torch.from_numpy(x), clamp, bits).numpy()
        expected = reference.dequant_act(reference.act_codes(x, clamp, bits), clamp, bits)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("bits,clamp,zero_point", [(2, 1.3, 1), (4, 2.9, 8), (8, 5.0, 128), (8, 5.0, 37), (8, 5.0, 255)])
def test_act_fake_quant_with_zero_point_equals_reference(bits, clamp, zero_point):
    x = np.random.default_rng(bits).normal(0.0, 2.0, size=(4, 3, 9, 9)).astype(np.float32)
    x[0, 0, 0, :2] = np.nan, -np.inf
    got = act_fake_quant(torch.from_numpy(x), clamp, bits, zero_point).numpy()
    expected = reference.dequant_act(reference.act_codes(x, clamp, bits, zero_point), clamp, bits, zero_point)
    np.testing.assert_array_equal(got, expected)
    assert (got < 0).any()  # the negative half survives


@pytest.mark.parametrize("scheme,w_bits,a_bits,per_channel,groups", [
    ("kquantile", 2, 2, False, 1), ("uniform", 3, 3, True, 1), ("kquantile", 1, 2, False, 2),
    ("uniform", 4, 4, False, 6), ("kquantile", 8, 8, True, 1),
])
def test_fake_quant_conv_equals_reference(scheme, w_bits, a_bits, per_channel, groups):
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 12, 3, stride=2, padding=1, groups=groups)
    model = nn.Sequential(conv)
    layer = LayerQuant.from_weight("0.weight", conv.weight.detach().numpy(), w_bits, a_bits, 1.7, scheme, per_channel)
    quantized = apply_recipe(model, Recipe({"0.weight": layer}))
    x = torch.rand(2, 6, 11, 11) * 2.2
    with torch.no_grad():
        got = quantized(x).numpy()
    codes = reference.act_codes(x.numpy(), 1.7, a_bits)
    idx = layer.indices(conv.weight.detach().numpy())
    expected = reference.qconv2d(codes, layer.s_a, idx, layer.lut, conv.bias.detach().numpy(), 2, 1, groups)
    assert _rel(got, expected) < 1e-5


@pytest.mark.parametrize("make_layer", [
    lambda: nn.Conv2d(64, 16, 3, padding=1), lambda: nn.Conv2d(64, 64, 3, stride=2, padding=1, groups=64),
    lambda: nn.Linear(300, 10)])
def test_exact_twin_is_the_float_contract_rounded_once(make_layer):
    """apply_recipe(exact=True): a quantized layer outputs float32(exact sums) + float32 bias, the
    compiled layers' arithmetic; the float32 twin's own summation order is further from it."""
    torch.manual_seed(3)
    layer_module = make_layer()
    weight = layer_module.weight.detach().numpy()
    layer = LayerQuant.from_weight("0.weight", weight, 4, 8, 2.5, "uniform", True, a_zero_point=100)
    recipe = Recipe({"0.weight": layer})
    x = torch.randn((4, 64, 9, 9) if weight.ndim == 4 else (4, 300))
    with torch.no_grad():
        exact = apply_recipe(nn.Sequential(layer_module), recipe, exact=True)(x).numpy()
        plain = apply_recipe(nn.Sequential(layer_module), recipe)(x).numpy()
    codes = reference.act_codes(x.numpy(), 2.5, 8, 100)
    idx, bias = layer.indices(weight), layer_module.bias.detach().numpy()
    if weight.ndim == 4:
        conv = layer_module
        sums = reference.qconv2d(codes, layer.s_a, idx, layer.lut, None, conv.stride[0], conv.padding[0],
                                 conv.groups, zero_point=100)
        expected = sums.astype(np.float32) + bias.astype(np.float32)[None, :, None, None]
    else:
        sums = reference.qdense(codes, layer.s_a, idx, layer.lut, None, zero_point=100)
        expected = sums.astype(np.float32) + bias.astype(np.float32)
    assert exact.dtype == np.float32
    # equal but where the float64 sum itself sits within 1e-16 of a float32 rounding boundary
    assert np.mean(exact != expected) < 1e-3
    np.testing.assert_allclose(exact, expected, rtol=2 ** -22, atol=0)
    assert np.abs(exact - expected).max() < np.abs(plain - expected).max()


def test_fake_quant_dense_equals_reference():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(40, 7))
    weight = model[0].weight.detach().numpy()
    layer = LayerQuant.from_weight("0.weight", weight, 2, 3, 0.9, "kquantile")
    quantized = apply_recipe(model, Recipe({"0.weight": layer}))
    x = torch.rand(5, 40)
    with torch.no_grad():
        got = quantized(x).numpy()
    expected = reference.qdense(reference.act_codes(x.numpy(), 0.9, 3), layer.s_a, layer.indices(weight),
                                layer.lut, model[0].bias.detach().numpy())
    assert _rel(got, expected) < 1e-5


def test_apply_recipe_checks_coverage_and_nan():
    model = models.tiny_cnn()
    weight = model.conv2.weight.detach().numpy()
    layer = LayerQuant.from_weight("conv2.weight", weight, 2, 2, 1.0)
    with pytest.raises(RecipeError, match="fc1.weight"):
        apply_recipe(model, Recipe({"conv2.weight": layer}, ("conv1.weight", "fc2.weight")))
    with pytest.raises(RecipeError, match="absent"):
        apply_recipe(model, Recipe({"conv2.weight": layer, "nope.weight": LayerQuant.from_weight(
            "nope.weight", weight, 2, 2, 1.0)}, ("conv1.weight", "fc1.weight", "fc2.weight")))
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantizationError, match="conv2.weight"):
        apply_recipe(model, Recipe({"conv2.weight": layer}, ("conv1.weight", "fc1.weight", "fc2.weight")))


class _StemNet(nn.Module):
    """fp32 7x7 stem (fan-in 147) -> two quantized 3x3 convs -> fp32 linear head, as NICE keeps it
    (flattened, not pooled: a float mean sums in its own order too, which is not what is checked)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 7, stride=2, padding=3)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.head = nn.Linear(16 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(torch.relu(self.stem(x))))
        return self.head(torch.relu(self.conv2(x)).flatten(1))


def test_exact_float_layers_make_every_target_equal_the_exact_twin():
    # the fp32 stem sums 147 products; in float32 TVM and torch round some outputs differently and an
    # 8-bit code of conv1 moves (the precondition below measures it); with the fp32 layers summed in
    # float64 on both sides, cpu and cpu-reference equal the twin on every element
    import tvm_qnn

    torch.manual_seed(0)
    model = _StemNet().eval()
    images = torch.randn(12, 1, 3, 32, 32)
    mod, params = tvm_qnn.from_torch(model, images[0])
    recipe = tvm_qnn.calibrate(mod, params, [x.numpy() for x in images[:4]], w_bits=8, a_bits=8,
                               w_scheme="uniform", progress=False)
    assert set(recipe.fp32_layers) == {"stem.weight", "head.weight"}
    twin = apply_recipe(model, recipe, exact=True)
    with torch.no_grad():
        expected = [twin(x).numpy() for x in images]
    default = tvm_qnn.compile(tvm_qnn.quantize(mod, params, recipe), target="cpu-reference")
    assert any((default.run(x.numpy()) != e).any() for x, e in zip(images, expected))
    exact = tvm_qnn.quantize(mod, params, recipe, exact_float_layers=True)
    for target in ("cpu-reference", "cpu"):
        compiled = tvm_qnn.compile(exact, target=target)
        for x, e in zip(images, expected):
            np.testing.assert_array_equal(compiled.run(x.numpy()), e, err_msg=target)
