"""Whole models compiled for target ``cpu`` (bit-serial lowering) agree with ``cpu-reference``."""

import dataclasses
import functools

import numpy as np
import pytest
import torch

import tvm_qnn

from tvm_qnn import data, models

BATCH = 64


@functools.lru_cache(maxsize=None)
def _compiled(w_bits, a_bits, scheme, alternate_pins=False):
    torch.manual_seed(0)
    model = models.fmnist_resnet().eval()
    images, _ = data.load_fashion_mnist(split="train", limit=256)
    mod, params = tvm_qnn.from_torch(model, images[:BATCH])
    recipe = tvm_qnn.calibrate(mod, params, np.asarray(images), w_bits=w_bits, a_bits=a_bits, w_scheme=scheme,
                               progress=False)
    if alternate_pins:  # every other layer pinned to the int8 kernel, the rest to popcount
        for i, name in enumerate(sorted(recipe.layers)):
            recipe.layers[name] = dataclasses.replace(recipe.layers[name], kernel="vnni" if i % 2 else "popcount")
    qmod = tvm_qnn.quantize(mod, params, recipe)
    return tvm_qnn.compile(qmod, target="cpu"), tvm_qnn.compile(qmod, target="cpu-reference")


def _agreement(w_bits, a_bits, scheme, limit, alternate_pins=False):
    ours, ref = _compiled(w_bits, a_bits, scheme, alternate_pins)
    assert ours.artifact.info.get("layer_kernels"), "target cpu did not lower the quantized layers to kernels"
    images, _ = data.load_fashion_mnist(split="test", limit=limit)
    images = np.asarray(images, dtype=np.float32)
    worst, same = 0.0, 0
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        count = len(batch)
        if count < BATCH:  # the module's batch is static: zero-pad the last chunk, compare only the real images
            batch = np.concatenate([batch, np.zeros((BATCH - count,) + batch.shape[1:], np.float32)])
        y_ours, y_ref = ours.run(batch)[:count], ref.run(batch)[:count]
        worst = max(worst, float(np.max(np.abs(y_ours - y_ref)) / max(1.0, np.abs(y_ref).max())))
        same += int(np.sum(y_ours.argmax(1) == y_ref.argmax(1)))
    return worst, same / len(images)


def test_fmnist_net_cpu_matches_cpu_reference():
    worst, top1 = _agreement(2, 2, "kquantile", limit=256)
    assert top1 == 1.0
    assert worst <= 1e-4


def test_fmnist_net_with_int8_and_popcount_layers_mixed_matches_cpu_reference():
    worst, top1 = _agreement(4, 4, "uniform", limit=256, alternate_pins=True)
    kinds = set(_compiled(4, 4, "uniform", True)[0].artifact.info["layer_kernels"].values())
    assert "popcount" in kinds and kinds & {"vnni", "int8-avx2", "int8-plain"}, kinds
    assert top1 == 1.0
    assert worst <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("bits,scheme", [((1, 1), "uniform"), ((3, 3), "uniform"), ((4, 4), "kquantile")])
def test_fmnist_net_other_bits(bits, scheme):
    worst, top1 = _agreement(*bits, scheme, limit=256)
    assert top1 == 1.0
    assert worst <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("bits,scheme", [((2, 2), "kquantile"), ((3, 3), "uniform")])
def test_fmnist_net_full_test_set(bits, scheme):
    worst, top1 = _agreement(*bits, scheme, limit=10000)
    assert top1 == 1.0
    assert worst <= 1e-4


class LinearBottleneckNet(torch.nn.Module):
    """Linear bottleneck (no ReLU before the next conv), depthwise conv and a residual add: the
    inputs of ``expand`` and ``head`` are signed; ``head`` is a padded stride-2 conv."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.project = nn.Conv2d(16, 8, 1)
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1), nn.ReLU())
        self.depthwise = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU())
        self.project2 = nn.Conv2d(24, 8, 1)
        self.head = nn.Sequential(nn.Conv2d(8, 32, 3, padding=1, stride=2), nn.ReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.project(self.stem(x))
        x = x + self.project2(self.depthwise(self.expand(x)))
        return self.fc(self.head(x).mean(dim=(2, 3)))


@functools.lru_cache(maxsize=None)
def _bottleneck(signed):
    torch.manual_seed(0)
    model = LinearBottleneckNet().eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(BATCH, 3, 16, 16)
    mod, params = tvm_qnn.from_torch(model, x)
    calibration = [torch.randn(BATCH, 3, 16, 16).numpy() for _ in range(2)]
    options = {} if signed is None else {"signed": signed}
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=8, a_bits=8, w_scheme="uniform", per_channel=True,
                               progress=False, **options)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    with torch.no_grad():
        fp32 = model(x).numpy()
    outputs = {target: tvm_qnn.compile(qmod, target=target).run(x.numpy()) for target in ("cpu-reference", "cpu")}
    return recipe, fp32, outputs


def test_linear_bottleneck_residual_net_w8a8_agrees_with_fp32():
    """Signed layer inputs get zero points: top-1 agreement with fp32 torch >= 0.95 on 64 random
    inputs for cpu-reference and cpu (measured 1.0 both; the unsigned recipe below gets 0.0)."""
    recipe, fp32, outputs = _bottleneck(None)
    assert recipe["expand.0.weight"].a_zero_point > 0 and recipe["head.0.weight"].a_zero_point > 0
    assert recipe["depthwise.0.weight"].a_zero_point == 0  # after a ReLU
    for target, y in outputs.items():
        assert np.mean(y.argmax(1) == fp32.argmax(1)) >= 0.95, target
        np.testing.assert_allclose(y, fp32, rtol=0, atol=0.05 * np.abs(fp32).max())
    np.testing.assert_array_equal(outputs["cpu"], outputs["cpu-reference"])


@pytest.mark.slow
def test_linear_bottleneck_net_unsigned_on_request_clips_negatives():
    """``signed=False`` is the old unsigned code: the same network falls far from fp32 (why zero points)."""
    recipe, fp32, outputs = _bottleneck(False)
    assert all(layer.a_zero_point == 0 for layer in recipe.layers.values())
    assert np.mean(outputs["cpu"].argmax(1) == fp32.argmax(1)) < 0.5
    np.testing.assert_array_equal(outputs["cpu"], outputs["cpu-reference"])
