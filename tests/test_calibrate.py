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
