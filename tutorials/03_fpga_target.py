"""Tutorial 3: the ``fpga`` target — accelerator layers on a VTA-style core (simulated), a resource
estimate for the core, and a streaming plan that spreads a network over several FPGAs.

    python tutorials/03_fpga_target.py          # fmnist_resnet, 256 test images, ResNet-18 plan
    python tutorials/03_fpga_target.py --fast   # tiny CNN, 16 images (CI)

``tvm_qnn.compile(qmod, target=HwConfig)`` partitions the quantized layers (BYOC style) into
instruction streams for the core; fp32 first/last layers run on the host CPU. The runtime is a
packed function that executes the stream in the functional simulator (bit-exact with the
integer-only reference), while the timing simulator counts cycles.
"""

import argparse

import numpy as np
import torch

import tvm_qnn
from tvm_qnn import data, models
from tvm_qnn.targets.fpga import fpga_demo
from vta_ext import HwConfig
from vta_ext.resources import estimate
from vta_ext.streaming.sim import simulate
from vta_ext.streaming import plan


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny model, 16 images (CI)")
    parser.add_argument("--config", default="pynq_z1", help="core preset or JSON path")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    name = "tiny_cnn" if args.fast else "fmnist_resnet"
    n_images = 16 if args.fast else 256
    try:
        images, labels = data.load_fashion_mnist(split="test", limit=n_images)
    except tvm_qnn.errors.DatasetError as err:
        print(f"(Fashion-MNIST not found: {err}; using the digits stand-in)")
        images, labels = data.load_digits28(split="test", limit=n_images)

    # 1. a quantized model (untrained weights are fine for the hardware numbers; tutorial 2
    #    trains, `make demo` uses the trained one) with 2-bit weights and 3-bit activations
    model = models.get_model(name).eval()
    mod, params = tvm_qnn.from_torch(model, images[:1])
    recipe = tvm_qnn.calibrate(mod, params, images.numpy(), w_bits=2, a_bits=3, max_batches=8)
    qmod = tvm_qnn.quantize(mod, params, recipe)

    # 2. the core: one frozen config read from JSON (derived sizes are properties)
    config = HwConfig.preset(args.config) if not args.config.endswith(".json") \
        else HwConfig.from_json(args.config)
    print(f"core {config.name}: {config.batch}x{config.block_in}x{config.block_out} lanes at "
          f"{config.clock_mhz:g} MHz, peak {config.peak_gops(3):.1f} GOP/s at 3-bit activations")

    # 3. compile for the core, run in the simulator next to the CPU path: accuracy, cycles,
    #    fps (fpga_demo prints the per-layer table)
    result = fpga_demo(qmod, images.numpy(), labels.numpy(), hw_config=config)
    assert result["agreement"] == 1.0, "the simulated core disagrees with the CPU path"

    # 4. the core on its part: fpga_demo printed the fit check (HwConfig refused the config already
    #    if it did not fit); here how the resource model's cost moves with the weight bits (no power:
    #    its coefficients are hand-set)
    for w_bits in range(1, config.max_w_bits + 1):
        r = estimate(config, w_bits=w_bits).as_dict()
        print(f"  w{w_bits}: {r['luts']:>9,.0f} LUT {r['ffs']:>9,.0f} FF {r['bram36']:>4} BRAM36 {r['dsps']:>4} DSP")

    # 5. streaming across FPGAs (one dedicated block per layer, pipeline cut over devices,
    #    skip connections buffered by FIFOs), checked by a discrete-event simulation
    network = "small_resnet" if args.fast else "resnet18"
    for devices in (1, 2):
        streaming = plan(network, devices=devices, a_bits=2, w_bits=2)
        replay = simulate(streaming, images=3)
        period = replay.done_cycles[-1] - replay.done_cycles[-2]
        print(f"{network} on {devices} device(s): {streaming.fps:,.0f} fps planned, latency "
              f"{streaming.latency_ms:.3f} ms; simulated period {period:.0f} cycles (planned "
              f"{replay.predicted_period_cycles:.0f}), deadlock: {replay.deadlocked}")
        assert not replay.deadlocked
    print(streaming.to_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
