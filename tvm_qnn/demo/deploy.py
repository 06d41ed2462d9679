"""The demo's second half: the trained, quantized Fashion-MNIST net through TVM.

Steps appended to ``tvm_qnn.demo.STEPS`` (each reads what the training steps left in ``state``):

=============  ==========================================================================
step           does, and adds to ``state``
=============  ==========================================================================
import         ``from_torch`` + ``quantize`` with the QAT recipe -> ``qmod``, ``test_images/labels``
compile_cpu    compiled (bit-serial ``cpu``) vs torch fake-quant on the test set -> ``cpu_eval``
speed          batch-1 latency of the ``cpu`` build vs PyTorch fp32 -> ``speed``
fpga           ``fpga`` in the simulator vs ``cpu`` integer-only (identical) and float ``cpu``: accuracy,
               cycles, fps, the fit check on the preset's part -> ``fpga``
bitstream      the resource model's held-out error on synthesized whole cores -> ``core_fit``; the
               ``ice40_hx8k`` preset's core through yosys, nextpnr-ice40 and icepack, read back
               with ``icepack -u`` -> ``bitstream``
rtl_board      one image through a board running that core's RTL (``serve --rtl``, verilator) vs
               the simulator, bit for bit -> ``rtl_board``
export         ``cpu`` and ``fpga`` exports under ``<out>/export-*`` -> ``export_dirs``
rpc            tracker + cpu board + fpga board on 127.0.0.1, remote runs compared bit for bit -> ``rpc``
pretrained     EfficientNet-Lite1 (ImageNet) w8a8 PTQ on ``cpu`` vs fp32 (``tvm_qnn.demo.pretrained``)
summary        every figure of the story in one table (and ``<out>/summary.json``)
=============  ==========================================================================
"""

from __future__ import annotations

import json
import os

import numpy as np

BATCH = 100  # the compiled modules' static batch


def _test_set(options):
    from tvm_qnn import data

    limit = 1000 if options.fast else None
    images, labels = data.load_fashion_mnist(options.data_root, "test", limit)
    return np.asarray(images, np.float32), np.asarray(labels)


def step_import(state, options):
    from tvm_qnn.frontend import from_torch
    from tvm_qnn.quantize import quantize

    state["test_images"], state["test_labels"] = _test_set(options)
    mod, params = from_torch(state["float_model"], state["test_images"][:BATCH])
    state["qmod"] = quantize(mod, params, state["recipe"])
    print(f"imported and quantized with {len(state['recipe'].layers)} quantized layers "
          f"(fp32: {', '.join(state['recipe'].fp32_layers)})")


def step_compile_cpu(state, options):
    from tvm_qnn.demo.evaluate import compare_compiled_to_torch, format_comparison

    result = compare_compiled_to_torch(state["float_model"], state["recipe"], state["test_images"],
                                       state["test_labels"], target="cpu", batch_size=BATCH,
                                       progress=options.progress)
    state["cpu_eval"] = result
    print(format_comparison(result))


def step_speed(state, options):
    from tvm_qnn.demo.speed import format_latency, latency_vs_torch

    result = latency_vs_torch(state["float_model"], state["test_images"][:1], state["recipe"], target="cpu",
                              threads=options.threads or 2, repeat=5 if options.fast else 20)
    state["speed"] = result
    print(format_latency(result))


def step_fpga(state, options):
    from tvm_qnn.targets.fpga import fpga_demo

    count = 200 if options.fast else 1000  # the simulator runs ~10 images/s on 2 cores
    state["fpga"] = fpga_demo(state["qmod"], state["test_images"][:count], state["test_labels"][:count],
                              hw_config="pynq_z1", cpu_target="cpu", progress=True)


def step_bitstream(state, options):
    """The ice40_hx8k preset's whole core: fit check, then yosys -> nextpnr-ice40 -> icepack (a few minutes)."""
    from vta_ext.config import HwConfig
    from vta_ext.fit import utilisation
    from vta_ext.rtl import core_fit
    from vta_ext.rtl.bitstream import build_bitstream, unpack_bitstream

    from tvm_qnn.targets.fpga import format_fit

    cfg = HwConfig.preset("ice40_hx8k")
    print(f"fit check {cfg.name}: {format_fit(utilisation(cfg))}")
    state["core_fit"] = core_fit.committed()  # the model the fit check uses for cores never synthesized
    print(f"resource model vs yosys: {state['core_fit']}")
    directory = os.path.join(options.out_dir, "bitstream-ice40_hx8k")
    print(f"synthesis, place and route at {cfg.clock_mhz:g} MHz into {directory} ...", flush=True)
    report = build_bitstream(cfg, directory)
    cells = report["utilisation"]["ICESTORM_LC"]
    back = unpack_bitstream(os.path.join(directory, "core.bin"))  # BitstreamError if icepack -u cannot
    state["bitstream"] = dict(config=cfg.name, part=cfg.part, fmax_mhz=report["fmax_mhz"], clock_mhz=cfg.clock_mhz,
                              logic_cells=cells["used"], cells_available=cells["available"],
                              bitstream_bytes=report["bitstream_bytes"],
                              read_back=f"{back['device']} device, {back['logic_tiles']:,} logic tiles")
    print(f"{directory}/core.bin: Fmax {report['fmax_mhz']:.2f} MHz (clock {cfg.clock_mhz:g} MHz), "
          f"{cells['used']:,} / {cells['available']:,} logic cells")


def step_rtl_board(state, options):
    """One test image through an RPC board that runs the ice40_hx8k preset's whole core in RTL
    (``serve --fpga ice40_hx8k --rtl``, verilator): the remote output equals the simulator's bit for bit."""
    from tvm_qnn.compiler import compile as compile_model
    from tvm_qnn.errors import HwConfigError
    from tvm_qnn.frontend import from_torch
    from tvm_qnn.quantize import quantize
    from tvm_qnn.rpc import demo_remote_run
    from vta_ext.config import HwConfig

    x = state["test_images"][:1]
    mod, params = from_torch(state["float_model"], x)  # batch 1: every image costs RTL clocks
    try:
        model = compile_model(quantize(mod, params, state["recipe"]), target=HwConfig.preset("ice40_hx8k"))
    except HwConfigError as err:  # a recipe wider than the core's 2 bits
        print(f"skipped: {err}")
        return
    directory = os.path.join(options.out_dir, "export-fpga-ice40_hx8k")
    model.export(directory)
    print("board: serve --fpga ice40_hx8k --rtl --rtl-simulator verilator (compiles the core once) ...", flush=True)
    result = demo_remote_run(directory, inputs=x, timeout_s=1800, rtl_simulator="verilator",
                             log_dir=os.path.join(options.out_dir, "rpc-logs", "rtl"), progress=False)
    state["rtl_board"] = {"identical": result["identical"], "seconds": result["mean_ms"] / 1e3}
    print(f"one image on the ice40_hx8k RTL core behind RPC: {result['mean_ms'] / 1e3:.1f} s, output bit-identical "
          f"to the simulator: {result['identical']}")


def step_export(state, options):
    from tvm_qnn.compiler import compile as compile_model

    dirs = {}
    for target in ("cpu", "fpga"):
        directory = os.path.join(options.out_dir, f"export-{target}")
        compile_model(state["qmod"], target=target).export(directory)
        dirs[target] = directory
        print(f"{target} export written to {directory}")
    state["export_dirs"] = dirs


def step_rpc(state, options):
    from tvm_qnn.rpc import demo_remote_run

    x = state["test_images"][:BATCH]
    results = demo_remote_run([state["export_dirs"]["cpu"], state["export_dirs"]["fpga"]], inputs=x,
                              log_dir=os.path.join(options.out_dir, "rpc-logs"), progress=True)
    state["rpc"] = results


def step_summary(state, options):
    from tvm_qnn.targets.fpga import format_fit

    rows = [("fp32 accuracy (torch)", f"{100 * state['fp32_acc']:.2f}%")]
    rows.append((f"{options.tag} accuracy (torch fake-quant)", f"{100 * state['quant_acc']:.2f}%"))
    rows.append(("BOPs per image", f"{state['bops_fp32'].total / 1e9:.3f} G fp32 -> "
                 f"{state['bops_quant'].total / 1e9:.3f} G {options.tag}"))
    if "cpu_eval" in state:
        ev = state["cpu_eval"]
        rows.append(("compiled cpu accuracy", f"{100 * ev['compiled_top1']:.2f}% ({ev['n']} images; top-1 agreement "
                     f"with torch {100 * ev['agreement']:.2f}%)"))
    if "speed" in state:
        sp = state["speed"]
        rows.append(("cpu latency, batch 1, 1 thread", f"{sp['ours_ms_1t']:.3f} ms vs PyTorch fp32 "
                     f"{sp['torch_ms_1t']:.3f} ms ({sp['speedup_1t']:.2f}x)"))
    if "fpga" in state:
        fp = state["fpga"]
        rows.append(("fpga accuracy (simulated, integer-only)", f"{100 * fp['fpga_top1']:.2f}% on {fp['images']} "
                     f"images; cpu integer-only {100 * fp['cpu_integer_top1']:.2f}% (top-1 agreement "
                     f"{100 * fp['agreement']:.2f}%, outputs bit-identical: {fp['outputs_identical']})"))
        rows.append(("fpga vs cpu float contract", f"cpu {100 * fp['cpu_top1']:.2f}%; top-1 agreement with fpga "
                     f"{100 * fp['float_agreement']:.2f}% (int8 LUT + fixed-point requant move some codes)"))
        rows.append((f"fpga {fp['config']}", f"{fp['latency_ms']:.3f} ms per batch of {fp['batch']}, "
                     f"{fp['fps']:.0f} fps (accelerator layers)"))
        if fp.get("fit"):
            rows.append(("fpga fit check", format_fit(fp["fit"])))
    if "core_fit" in state:
        rows.append(("fpga resource model", state["core_fit"]))
    if "bitstream" in state:
        bs = state["bitstream"]
        rows.append((f"bitstream {bs['config']}", f"{bs['part']}: Fmax {bs['fmax_mhz']:.2f} MHz at a {bs['clock_mhz']:g} "
                     f"MHz clock, {bs['logic_cells']:,} / {bs['cells_available']:,} logic cells, "
                     f"{bs['bitstream_bytes']:,}-byte core.bin, read back by icepack -u as {bs['read_back']}"))
    if "pretrained" in state:
        pt = state["pretrained"]
        rows.append(("EfficientNet-Lite1 w8a8 PTQ (cpu)", f"top-1 agreement with fp32 "
                     f"{100 * pt['compiled']['cpu']['agreement']:.1f}% on {pt['crops']} photo crops (bias correction; "
                     f"without: {100 * pt['twin']['plain']['agreement']:.1f}% in torch); {pt['cpu_ms']:.1f} ms per crop"))
    if "rtl_board" in state:
        rb = state["rtl_board"]
        rows.append(("rpc fpga-rtl board (ice40_hx8k RTL)", f"one image in {rb['seconds']:.1f} s; output bit-identical "
                     f"to the simulator: {rb['identical']}"))
    for item in state.get("rpc", []):
        rows.append((f"rpc {item['key']} board", f"{item['mean_ms']:.3f} ms ± {item['std_ms']:.3f}; output "
                     f"bit-identical to local: {item['identical']}"))
    rows.append(("plot", state.get("plot_path", "-")))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in rows))
    summary = {name: value for name, value in rows}
    path = os.path.join(options.out_dir, "summary.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    print(f"summary written to {path}")


STEPS = [("import", step_import), ("compile_cpu", step_compile_cpu), ("speed", step_speed), ("fpga", step_fpga),
         ("bitstream", step_bitstream), ("rtl_board", step_rtl_board), ("export", step_export), ("rpc", step_rpc), ("summary", step_summary)]
