"""The RTL as a board: accelerator segments executed by the whole core's RTL (vta_ext.backend "rtl"),
locally and behind ``tvm-qnn serve --fpga CONFIG --rtl``, bit-identical to the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_qnn.errors import HwConfigError, RemoteError

pytestmark = pytest.mark.rtl


def _tiny_w2a2(target):
    """A PTQ w2a2 tiny CNN compiled for ``target``, and one input."""
    import torch

    import tvm_qnn
    from tvm_qnn import models
    from tvm_qnn.train import ptq

    torch.manual_seed(0)
    model = models.tiny_cnn().eval()
    x = models.example_input("tiny_cnn", batch=1)
    batches = [(models.example_input("tiny_cnn", batch=8, seed=s), torch.zeros(8, dtype=torch.long)) for s in range(2)]
    recipe = ptq(model, batches, w_bits=2, a_bits=2, batches=2, model_name="tiny_cnn")
    mod, params = tvm_qnn.from_torch(model, x)
    return tvm_qnn.compile(tvm_qnn.quantize(mod, params, recipe), target=target), x.numpy()


@pytest.fixture(scope="module")
def fpga_model():
    """The tiny CNN for the default fpga preset."""
    return _tiny_w2a2("fpga")


def test_backend_names_are_checked():
    from vta_ext.backend import get_backend, set_backend

    with pytest.raises(HwConfigError, match=r"backend 'fpga'.*\['sim', 'rtl', 'cosim'\]"):
        set_backend("fpga")
    with pytest.raises(HwConfigError, match="RTL simulator 'xsim'"):
        set_backend("rtl", simulator="xsim")
    assert get_backend() == "sim"


def test_serve_rtl_needs_an_accelerator_config():
    from tvm_qnn.rpc.board import serve

    with pytest.raises(RemoteError, match="--rtl.*needs --fpga"):
        serve("127.0.0.1", 1, rtl=True)


def _assert_rtl_run_equals_the_simulator(cm, x, simulator):
    from vta_ext.backend import set_backend

    expected = cm.run(x)
    set_backend("rtl", simulator=simulator)
    try:
        got = cm.run(x)
    finally:
        set_backend("sim")
    assert np.array_equal(got, expected)


@pytest.mark.slow
def test_model_on_the_rtl_core_equals_the_simulator(fpga_model):
    _assert_rtl_run_equals_the_simulator(*fpga_model, "iverilog")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_model_on_the_ice40_rtl_core_equals_the_simulator():
    """The tiny CNN compiled for the ice40_hx8k preset: its lane-serial core (one GEMM column, one ALU lane, one-byte
    DMA) runs every accelerator layer in RTL (verilator) bit-identical to the simulator."""
    from vta_ext.config import HwConfig

    from tvm_qnn.targets.fpga import model_report

    cm, x = _tiny_w2a2(HwConfig.preset("ice40_hx8k"))
    assert len(model_report(cm).layers) >= 2  # accelerator layers, not all on the host
    _assert_rtl_run_equals_the_simulator(cm, x, "verilator")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # every layer of every run goes through iverilog on the board: ~15-30 min under load
def test_remote_run_on_an_rtl_board_equals_the_simulator(fpga_model, tmp_path):
    from tvm_qnn import rpc

    cm, x = fpga_model
    export = cm.export(tmp_path / "fpga")
    tracker = rpc.start_tracker(log_path=tmp_path / "tracker.log")
    board = None
    try:
        board = rpc.start_board(tracker.address, "fpga-rtl", fpga_config="pynq_z1", rtl=True,
                                log_path=tmp_path / "board.log")
        result = rpc.remote(export, tracker.address, "fpga-rtl", inputs=x, timeout_s=1800, number=1, repeat=1)
    finally:
        if board is not None:
            board.stop()
        tracker.stop()
    assert "(RTL core, iverilog)" in (tmp_path / "board.log").read_text()
    assert np.array_equal(result.output, cm.run(x))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("preset", ["ice40_hx8k", "pynq_z1"])
def test_fashion_mnist_network_cosimulates_layer_by_layer(preset):
    """The Fashion-MNIST ResNet (w2a2, calibrated on Fashion-MNIST training images) on a test image, every
    accelerator layer co-simulated on its real activations (backend "cosim", verilator): each layer's DRAM
    equals the simulator's byte for byte and its RTL cycles are within 5 % of the timing model."""
    import tvm_qnn
    from tvm_qnn import data, models
    from tvm_qnn.targets.fpga import model_report
    from vta_ext.backend import cosim_reports, set_backend
    from vta_ext.config import HwConfig

    train, _ = data.load_fashion_mnist(split="train", limit=64)
    test, _ = data.load_fashion_mnist(split="test", limit=1)
    _assert_cosimulates_layer_by_layer(models.fmnist_resnet().eval(), np.asarray(train), np.asarray(test), preset)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_torchvision_resnet18_cosimulates_layer_by_layer_on_the_ice40_core():
    """torchvision's ResNet-18 (seeded random weights, 32x32 input, w2a2) on ice40_hx8k: its 19 accelerator layers,
    the downsample ones mostly instruction fetch through one-entry queues, each byte-equal to the simulator and
    within 5 % of the timing model (the model once left a stalled word's successor 2 clocks early: layer4's
    downsample ran 5.4 % over)."""
    import torch

    from tvm_qnn.conformance import torchvision_model

    model = torchvision_model("resnet18", num_classes=10, resolution=32)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(9, 3, 32, 32, generator=generator).numpy()
    _assert_cosimulates_layer_by_layer(model, images[:8], images[8:], "ice40_hx8k")


def _assert_cosimulates_layer_by_layer(model, calibration, x, preset):
    """``model`` calibrated at w2a2 and compiled for ``preset``, run on ``x`` with every accelerator layer
    co-simulated (backend "cosim", verilator): each layer's DRAM equals the simulator's and its cycles are within
    5 % of the timing model."""
    import tvm_qnn
    from tvm_qnn.targets.fpga import model_report
    from vta_ext.backend import cosim_reports, set_backend
    from vta_ext.config import HwConfig

    mod, params = tvm_qnn.from_torch(model, x)
    recipe = tvm_qnn.calibrate(mod, params, calibration, w_bits=2, a_bits=2, progress=False)
    cm = tvm_qnn.compile(tvm_qnn.quantize(mod, params, recipe), target=HwConfig.preset(preset))
    layers = model_report(cm).layers
    expected = cm.run(x)
    set_backend("cosim", simulator="verilator")
    try:
        got = cm.run(x)
        reports = cosim_reports()
    finally:
        set_backend("sim")
    assert np.array_equal(got, expected)
    assert len(reports) == len(layers) >= 6, (len(reports), len(layers))
    for row, report in zip(layers, reports):
        assert report.dram_equal, (row.name, report.first_difference)
        assert abs(report.cycle_ratio - 1) <= 0.05, (row.name, report.rtl_cycles, report.model_cycles)
