"""Slow acceptance checks of the fpga target: ResNet-18 at 224x224, a trained net on the full test set."""

import numpy as np
import pytest
import torch

import tvm_qnn
from relay_passes.composite import read_qnn_layers
from test_vta_fpga_target import expected_segment_outputs, recorded_segments  # noqa: F401  (fixture)
from tvm_qnn.models import fmnist_resnet, resnet18

pytestmark = pytest.mark.slow


def test_resnet18_accelerator_layers_bit_exact(recorded_segments):  # noqa: F811
    from qnn_models import quantized

    torch.manual_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 224, 224)).astype(np.float32)
    qmod, _ = quantized(resnet18(), x, w_bits=2, a_bits=2)
    cm = tvm_qnn.compile(qmod, target="fpga")
    cm.run(x)
    layers = read_qnn_layers(qmod)
    assert {n.program.name for s, _, _ in recorded_segments for n in s.nodes} == set(layers)
    for segment, inputs, outputs in recorded_segments:
        for got, want in zip(outputs, expected_segment_outputs(segment, layers, inputs)):
            np.testing.assert_array_equal(got, want)


def short_trained_fmnist_resnet(images, labels, epochs=2, batch=100):
    """Self-contained short training (no checkpoints): Adam with a one-cycle schedule, ``epochs``
    shuffled passes over ``images`` (a few minutes for 2 x 10k on a loaded 2-core machine)."""
    torch.manual_seed(0)
    model = fmnist_resnet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    steps = epochs * (len(images) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images) - batch + 1, batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(images[idx]), labels[idx]).backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@pytest.mark.timeout(3600)  # training + 10k images through the functional simulator: ~5 min on a loaded 2-core machine
def test_trained_fmnist_top1_fpga_vs_cpu_on_the_test_set():
    """Short-trained float net + graph-level PTQ recipe (w4a4, ``tvm_qnn.calibrate``; first conv and
    last dense fp32): the integer-only fpga path against the cpu path on the 10k test images."""
    from tvm_qnn.data import load_fashion_mnist
    from tvm_qnn.targets.fpga import fpga_demo

    train_x, train_y = load_fashion_mnist(split="train", limit=10000)
    model = short_trained_fmnist_resnet(train_x, train_y)
    test_x, test_y = load_fashion_mnist(split="test")
    with torch.no_grad():
        float_top1 = float((model(test_x).argmax(1) == test_y).float().mean())
    mod, params = tvm_qnn.from_torch(model, test_x[:100])
    recipe = tvm_qnn.calibrate(mod, params, train_x[:500], w_bits=4, a_bits=4, progress=False)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    result = fpga_demo(qmod, np.asarray(test_x, np.float32), np.asarray(test_y), cpu_target="cpu")
    print({k: result[k] for k in ("cpu_top1", "cpu_integer_top1", "fpga_top1", "agreement", "float_agreement")},
          f"float model top-1 {float_top1:.4f}")
    assert result["images"] == 10000
    # fpga against cpu in DESIGN's integer-only mode (compile(..., "cpu", integer_only=True)): identical
    assert result["outputs_identical"] and result["agreement"] == 1.0
    assert result["fpga_top1"] == result["cpu_integer_top1"]
    # against the float cpu path, measured 2026-11-26 (loaded 2-core machine): float 0.8181, cpu 0.7843,
    # fpga 0.7826, agreement 0.9725 -- the integer-only arithmetic (int8 LUT, fixed-point requant between
    # accelerator layers) moves a code across a boundary on some images and flips ~3% of the top-1
    # decisions of this w4a4 net (in both directions: the accuracies differ by 0.2 points)
    assert float_top1 > 0.78, "the short training itself failed"
    assert result["cpu_top1"] > 0.7, f"the w4a4 PTQ net is poor (float model {float_top1:.3f})"
    assert result["float_agreement"] >= 0.96
    assert abs(result["fpga_top1"] - result["cpu_top1"]) <= 0.01
