"""Accelerator benchmark: ResNet-18 (and AlexNet) layer cycles on the presets at w1a1 ... w8a8.

For every quantized layer (the first conv and the last dense stay fp32 on the CPU, as NICE)
the layer is compiled for the core and its instruction stream timed by ``vta_ext.sim.timing``.
Prints and writes (``results/fpga.json``, ``results/fpga_*.png``):

* per-layer cycles, utilisation and DRAM bytes, whole-network latency / fps / GOP/s per bits;
* cycles vs UNIQ BOPs over all (layer, bits) points with the least-squares line's R^2;
* each preset's utilisation of the part it names (``vta_ext.fit.utilisation``: measured whole-core
  synthesis where committed, else the resource model) next to published figures (the streaming
  multi-FPGA paper's ResNet-18 / AlexNet). Bit widths above a preset's maxima, or whose output
  vectors are not whole bytes on it, are skipped.
  No power column: the power coefficients are hand-set, with no vendor source.

Weights are random indices (cycles do not depend on values). Usage:
``python benchmarks/fpga.py [--bits 1 2 4 8] [--presets pynq_z1 ultrascale_plus] [--quick]``. The
``ice40_hx8k`` core is not a default: its 512-byte input buffer holds no ResNet-18 tile at 224x224
(the compiler refuses the layer, naming ``inp_buff_bytes``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tvm_qnn.layer import QnnLayer  # noqa: E402
from vta_ext.compiler import compile_layer  # noqa: E402
from vta_ext.config import HwConfig  # noqa: E402
from vta_ext.report import ModelReport  # noqa: E402
from vta_ext.fit import utilisation  # noqa: E402
from vta_ext.resources import PUBLISHED  # noqa: E402
from report import machine_info  # noqa: E402 - provenance (date, CPU model, load) in the JSON

RESULTS = REPO / "results"


def torch_alexnet():
    """torchvision's AlexNet layout (3x224x224), written out so that torchvision is not needed."""
    from torch import nn

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
                nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(nn.Linear(9216, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                                            nn.Linear(4096, 1000))

        def forward(self, x):
            import torch
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return AlexNet()


def layer_specs(model, input_shape):
    """``[(name, module, input shape)]`` of every Conv2d/Linear, from one forward pass."""
    import torch
    from torch import nn

    specs, hooks = [], []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, name=name: specs.append((name, m, tuple(args[0].shape)))))
    with torch.no_grad():
        model.eval()(torch.zeros((1,) + tuple(input_shape)))
    for h in hooks:
        h.remove()
    return specs


def quantized_layers(specs, w_bits, a_bits, seed=0):
    """QnnLayers with random weight indices for every spec but the first and the last (fp32)."""
    from torch import nn

    rng = np.random.default_rng(seed)
    layers = []
    for name, module, shape in specs[1:-1]:
        if isinstance(module, nn.Conv2d):
            idx = rng.integers(0, 1 << w_bits, tuple(module.weight.shape)).astype(np.uint8)
            layers.append(QnnLayer(f"{name}.weight", "conv2d", idx, rng.normal(size=(1, 1 << w_bits)).astype(np.float32),
                                   None, w_bits, "kquantile", a_bits, 1.0, shape, stride=module.stride,
                                   padding=module.padding, out_min=0.0))
        else:
            idx = rng.integers(0, 1 << w_bits, tuple(module.weight.shape)).astype(np.uint8)
            layers.append(QnnLayer(f"{name}.weight", "dense", idx, rng.normal(size=(1, 1 << w_bits)).astype(np.float32),
                                   None, w_bits, "kquantile", a_bits, 1.0, shape, out_min=0.0))
    return layers


def network_report(layers, config):
    """Compile each layer (codes out, as between accelerator layers) and time it."""
    programs = [compile_layer(layer, config, out_act=(layer.a_bits, 1.0)) for layer in layers]
    return ModelReport.from_programs(programs, config)


def r_squared(x, y):
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    return 1.0 - residual.var() / y.var(), slope, intercept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--presets", nargs="+", default=["pynq_z1", "ultrascale_plus"])
    parser.add_argument("--quick", action="store_true", help="ResNet-18 at 64x64 (CI smoke run)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from tvm_qnn.models import resnet18

    hw = 64 if args.quick else 224
    nets = {"resnet18": layer_specs(resnet18(), (3, hw, hw)), "alexnet": layer_specs(torch_alexnet(), (3, 224, 224))}
    if args.quick:
        nets.pop("alexnet")
    results = {"image_hw": hw, "presets": {}, "published": PUBLISHED, "fit": {}}
    points = []  # (preset, net, bits, layer, bops, cycles)
    configs = {p: HwConfig.preset(p) for p in args.presets}
    for preset, config in configs.items():
        fit = utilisation(config)
        results["fit"][preset] = dict(fit, array=f"{config.batch}x{config.block_in}x{config.block_out}",
                                      bits=f"a{config.max_a_bits}/w{config.max_w_bits}", lut_mode=config.lut_mode)
    # bits above a preset's maxima, or whose output vectors are not whole bytes on it (1-bit codes of the
    # 4-output ice40_hx8k core: HwConfig.check_layer_bits), are skipped
    jobs = [(p, n, b) for p in args.presets for n in nets for b in args.bits
            if b <= min(configs[p].max_a_bits, configs[p].max_w_bits)
            and configs[p].batch * configs[p].block_out * b % 8 == 0]
    for preset, net, bits in tqdm(jobs, desc="compile + time layers"):
        config = configs[preset]
        layers = quantized_layers(nets[net], bits, bits)
        start = time.perf_counter()
        report = network_report(layers, config)
        entry = report.as_dict()
        entry["compile_s"] = time.perf_counter() - start
        entry["bops"] = [layer.bops() for layer in layers]
        results["presets"].setdefault(preset, {}).setdefault(net, {})[f"w{bits}a{bits}"] = entry
        points += [(preset, net, bits, row.name, bops, row.cycles) for row, bops in zip(report.layers, entry["bops"])]

    print(f"\nResNet-18 at {hw}x{hw}, accelerator layers only (conv1 and fc stay fp32 on the CPU)")
    print(f"{'preset':<16} {'bits':>5} {'cycles':>12} {'latency ms':>11} {'fps':>8} {'GOP/s':>8} {'util':>6} "
          f"{'DRAM MB':>8}")
    for preset in args.presets:
        for bits, e in results["presets"][preset]["resnet18"].items():
            util = np.average([r["utilisation"] for r in e["layers"]], weights=[r["macs"] for r in e["layers"]])
            print(f"{preset:<16} {bits:<8} {e['cycles']:12d} {e['latency_ms']:11.3f} {e['fps']:8.1f} "
                  f"{e['gops']:8.2f} {util:6.1%} {e['dram_bytes'] / 2**20:8.2f}")

    mid = 2 if 2 in args.bits else min(args.bits)
    for preset in args.presets:
        print(f"\nper-layer cycles, ResNet-18 w{mid}a{mid} on {preset}")
        e = results["presets"][preset]["resnet18"][f"w{mid}a{mid}"]
        print(ModelReport(preset, e["clock_mhz"], 1, [_row(r) for r in e["layers"]]).table())

    results["bops_fit"] = {}
    print("\ncycles vs BOPs (least squares over every layer and bit width)")
    for preset in args.presets:
        for net in nets:
            sel = [(b, c) for p, n, _, _, b, c in points if p == preset and n == net]
            x, y = np.array([s[0] for s in sel], float), np.array([s[1] for s in sel], float)
            r2, slope, intercept = r_squared(x, y)
            results["bops_fit"][f"{preset}/{net}"] = {"r2": r2, "cycles_per_gbop": slope * 1e9, "intercept": intercept}
            print(f"  {preset:<16} {net:<9} R^2 = {r2:.4f}  ({slope * 1e9:,.0f} cycles per GBOP)")

    print("\neach preset on its part (one time-multiplexed core)")
    for preset, fit in results["fit"].items():
        print(f"  {preset:<16} {fit['part']:<10} " + "  ".join(
            f"{r.upper()} {fit[r]['need']:,}/{fit[r]['capacity']:,}" for r in ("lut", "ff", "bram", "dsp"))
              + f"  [{fit['source']}]")

    RESULTS.mkdir(exist_ok=True)
    results["machine"] = machine_info()
    (RESULTS / "fpga.json").write_text(json.dumps(results, indent=1, default=float))
    if not args.no_plots:
        plot(results, points, args, nets)
    print(f"\nwrote {RESULTS / 'fpga.json'}")


def _row(d):
    from vta_ext.report import LayerRow

    return LayerRow(**d)


def plot(results, points, args, nets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for preset in args.presets:
        for net in nets:
            sel = [(b, c) for p, n, _, _, b, c in points if p == preset and n == net]
            fit = results["bops_fit"][f"{preset}/{net}"]
            ax.scatter([s[0] for s in sel], [s[1] for s in sel], s=8, label=f"{preset} {net} (R²={fit['r2']:.3f})")
    ax.set_xscale("log"), ax.set_yscale("log")
    ax.set_xlabel("layer BOPs (UNIQ)"), ax.set_ylabel("layer cycles"), ax.legend(fontsize=7)
    ax.set_title("accelerator cycles vs BOPs")
    fig.tight_layout(), fig.savefig(RESULTS / "fpga_cycles_vs_bops.png", dpi=120)

    fig, ax = plt.subplots(figsize=(6, 4))
    for preset in args.presets:
        runs = results["presets"][preset]["resnet18"]
        done = [b for b in args.bits if f"w{b}a{b}" in runs]  # a preset's bits stop at its maxima
        ax.plot(done, [runs[f"w{b}a{b}"]["latency_ms"] for b in done], marker="o", label=preset)
    ax.set_yscale("log"), ax.set_xlabel("bits (w = a)"), ax.set_ylabel("ResNet-18 latency, ms"), ax.legend()
    fig.tight_layout(), fig.savefig(RESULTS / "fpga_latency_vs_bits.png", dpi=120)

    fig, ax = plt.subplots(figsize=(9, 4))
    preset = args.presets[0]
    bits = [b for b in (1, 2, 4, 8) if f"w{b}a{b}" in results["presets"][preset]["resnet18"]]
    names = [r["name"].replace(".weight", "") for r in results["presets"][preset]["resnet18"][f"w{bits[0]}a{bits[0]}"]["layers"]]
    width = 0.8 / len(bits)
    for i, b in enumerate(bits):
        cycles = [r["cycles"] for r in results["presets"][preset]["resnet18"][f"w{b}a{b}"]["layers"]]
        ax.bar(np.arange(len(names)) + i * width, cycles, width, label=f"w{b}a{b}")
    ax.set_xticks(np.arange(len(names)) + 0.4, names, rotation=70, fontsize=7)
    ax.set_ylabel("cycles"), ax.set_title(f"ResNet-18 per-layer cycles on {preset}"), ax.legend()
    fig.tight_layout(), fig.savefig(RESULTS / "fpga_resnet18_layers.png", dpi=120)
    plt.close("all")


if __name__ == "__main__":
    main()
