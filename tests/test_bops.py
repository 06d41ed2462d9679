"""BOPs table: hand-computed values for a ResNet-18 3x3 layer and a dense layer."""

import math

import numpy as np
import pytest

import tvm_qnn
from tvm_qnn import models
from tvm_qnn.bops import bops
from tvm_qnn.errors import RecipeError, ShapeError, UnsupportedOpError
from tvm_qnn.recipe import LayerQuant, Recipe


def _w2a2_recipe(model, layer_names, model_name=""):
    state = model.state_dict()
    layers = {name: LayerQuant.from_weight(name, state[name].numpy(), 2, 2, 1.0) for name in layer_names}
    fp32 = [n for n in models.quantizable_layers(model) if n not in layers]
    return Recipe(layers, tuple(fp32), model_name)


def test_resnet18_hand_computed_layers():
    model = models.resnet18()
    recipe = _w2a2_recipe(model, ["layer1.0.conv1.weight"], "resnet18")
    table = bops(model, (3, 224, 224), recipe=recipe)
    conv = table["layer1.0.conv1.weight"]
    # 56x56 output positions, 64 -> 64 channels, 3x3 kernel: 3136 * 64 * 64 * 9 MACs
    assert conv.macs == 56 * 56 * 64 * 64 * 9 == 115_605_504
    assert (conv.b_w, conv.b_a, conv.out_positions, conv.shape) == (2, 2, 3136, (64, 64, 3, 3))
    # per MAC: 2*2 + 2 + 2 + log2(64*9) = 8 + 9.169925...
    assert conv.bops == pytest.approx(115_605_504 * (8 + math.log2(576)), rel=1e-12)
    # the dense layer fc (512 -> 1000) is fp32: 512000 MACs * (32*32 + 64 + log2(512) = 1097)
    fc = table["fc.weight"]
    assert (fc.kind, fc.macs, fc.b_w, fc.b_a) == ("dense", 512_000, 32, 32)
    assert fc.bops == 561_664_000
    # the 1x1 stride-2 downsample of layer2: 28x28 positions, 64 -> 128, fp32
    down = table["layer2.0.downsample.0.weight"]
    assert down.macs == 28 * 28 * 128 * 64 and down.bops == pytest.approx(down.macs * (1024 + 64 + 6))
    assert len(table) == 21
    assert table.total_macs == pytest.approx(1.814e9, rel=2e-3)  # ResNet-18's well-known 1.8 GMACs
    assert table.total == pytest.approx(sum(r.bops for r in table))
    text = table.to_markdown()
    assert "layer1.0.conv1.weight" in text and "**total**" in text


def test_recipe_alone_uses_the_zoo_model_and_public_api():
    model = models.fmnist_resnet()
    names = [n for n in models.quantizable_layers(model) if n not in models.default_fp32_layers(model)]
    recipe = _w2a2_recipe(model, names, "fmnist_resnet")
    from_recipe = tvm_qnn.bops(recipe)
    from_model = bops(model, (1, 1, 28, 28), recipe)
    assert [r.bops for r in from_recipe] == [r.bops for r in from_model]
    fp32 = bops(model, (1, 28, 28))
    assert fp32.total > 10 * from_recipe.total  # quantizing the body shrinks BOPs by >10x
    assert fp32.total_macs == from_recipe.total_macs


def test_dense_and_grouped_shapes_from_dicts():
    shapes = [
        {"name": "dw.weight", "kind": "conv2d", "in_channels": 32, "out_channels": 32, "kernel": (3, 3),
         "groups": 32, "out_positions": 100, "b_w": 4, "b_a": 3},
        {"name": "fc.weight", "kind": "dense", "in_channels": 256, "out_channels": 10},
    ]
    table = bops(shapes)
    dw, fc = table.rows
    assert dw.macs == 100 * 32 * 1 * 9 and dw.bops == pytest.approx(dw.macs * (12 + 7 + math.log2(9)))
    assert fc.macs == 2560 and fc.bops == 2560 * (1024 + 64 + 8)


def test_errors():
    model = models.tiny_cnn()
    with pytest.raises(ShapeError, match="input_shape"):
        bops(model)
    with pytest.raises(UnsupportedOpError, match="torch"):
        bops(np.zeros(3))
    with pytest.raises(RecipeError, match="conv2.weight"):
        bops(model, (1, 28, 28), recipe=Recipe({}, ("conv1.weight", "fc1.weight", "fc2.weight")))
    with pytest.raises(ShapeError, match="zoo"):
        bops(Recipe({}, (), "my_own_model"))
