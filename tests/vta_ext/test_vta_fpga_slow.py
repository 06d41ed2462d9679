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


@pytest.mark.timeout(3600)  # 10k images through the functional simulator: ~15 min on a loaded 2-core machine
def test_trained_fmnist_top1_fpga_vs_cpu_on_the_test_set():
    """Briefly trained float net + PTQ recipe (w4a4): the integer-only fpga path against the cpu path."""
    from tvm_qnn.data import fashion_mnist_loader, load_fashion_mnist
    from tvm_qnn.lower_fpga import fpga_demo
    from tvm_qnn.train import ptq

    torch.manual_seed(0)
    model = fmnist_resnet()
    loader = fashion_mnist_loader(split="train", batch_size=128, shuffle=True, limit=20000)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for images, labels in loader:  # one pass over 20k images
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    recipe = ptq(model, loader, w_bits=4, a_bits=4, fp32_layers=["conv1.weight", "fc.weight"])
    test_images, test_labels = load_fashion_mnist(split="test")
    test_images = np.asarray(test_images, np.float32)
    mod, params = tvm_qnn.from_torch(model, torch.from_numpy(test_images[:100]))
    qmod = tvm_qnn.quantize(mod, params, recipe)
    result = fpga_demo(qmod, test_images, np.asarray(test_labels), cpu_target="cpu")
    with torch.no_grad():
        float_top1 = float((model(torch.from_numpy(test_images)).argmax(1).numpy() == np.asarray(test_labels)).mean())
    print(result, f"float model top-1 {float_top1:.4f}")
    # measured 2026-11-26: cpu 0.2953, fpga 0.2891, agreement 0.9565 (the PTQ'd net was poor; see the report)
    assert result["cpu_top1"] > 0.7, f"the quantized net itself is poor (float model {float_top1:.3f})"
    assert result["agreement"] >= 0.99  # integer-only rounding flips at most 1% of the top-1 decisions
    assert abs(result["fpga_top1"] - result["cpu_top1"]) <= 0.005
