"""Model-side ``tvm-qnn`` subcommands: train, calibrate, compile, tune, bench, plan, demo.

A MODEL argument is one of: a zoo name (``tiny_cnn``, ``fmnist_resnet``... random weights), a
``.pt`` file written by ``tvm-qnn train`` (``{"format": "tvm-qnn-model/1", "model_name",
"input_shape", "module"}``), or an ``.onnx`` file.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from tvm_qnn.cli.commands import (Command, bits, check_target, existing_file, load_recipe_file,
                                  non_negative_int, positive_float, positive_int, register)
from tvm_qnn.errors import QnnError

MODEL_FORMAT = "tvm-qnn-model/1"
DATASETS = ("fashion-mnist", "digits")


# --------------------------------------------------------------------------- model files
def save_model_file(module, model_name: str, input_shape, path: Path) -> Path:
    from tvm_qnn.train.trainer import save_atomic

    save_atomic({"format": MODEL_FORMAT, "model_name": model_name,
                 "input_shape": list(input_shape), "module": module}, str(path))
    return Path(path)


def load_torch_model(spec: str, batch: int = 1):
    """``(torch module, example input, model name)`` from a zoo name or a ``.pt`` file."""
    import torch

    from tvm_qnn import models

    if spec in models.MODELS:
        return models.get_model(spec).eval(), models.example_input(spec, batch=batch), spec
    path = existing_file(spec, "model")
    try:
        state = torch.load(path, weights_only=False)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors from torch
        raise QnnError(f"model {spec!r} is not a file written by `tvm-qnn train`: {err}") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise QnnError(f"model {spec!r}: expected a {MODEL_FORMAT} file (from `tvm-qnn train`)")
    shape = (batch, *state["input_shape"][1:])
    return state["module"].eval(), torch.rand(shape, generator=torch.Generator().manual_seed(0)), \
        state["model_name"]


def import_model(spec: str, batch: int = 1):
    """``(Relax module, params, example input as numpy, model name)`` of a MODEL argument."""
    import tvm_qnn

    if str(spec).endswith(".onnx"):
        import numpy as np

        path = existing_file(spec, "model")
        imported = tvm_qnn.from_onnx(str(path))
        if len(imported) == 3:  # a QDQ/QONNX model carries its own recipe; the CLI takes float models
            raise QnnError(f"model {spec!r} is a quantized ONNX model ({mod_format(imported[0])}); compile it with "
                           "the Python API: mod, params, recipe = tvm_qnn.from_onnx(path)")
        mod, params = imported
        shape = [int(d) for d in mod["main"].params[0].ty.shape]
        return mod, params, np.random.default_rng(0).random(shape).astype("float32"), path.stem
    module, example, name = load_torch_model(spec, batch)
    mod, params = tvm_qnn.from_torch(module, example)
    return mod, params, example.numpy(), name


def mod_format(mod):
    return str(mod.attrs["tvm_qnn.import_format"]) if mod.attrs is not None and "tvm_qnn.import_format" in mod.attrs \
        else "float"


def load_data(name: str, split: str, limit: int | None, batch_size: int = 128):
    from tvm_qnn import data

    if name == "fashion-mnist":
        return data.fashion_mnist_loader(split=split, batch_size=batch_size, limit=limit)
    if name == "digits":
        images, labels = data.load_digits28(split=split, limit=limit)
        return data.make_loader(images, labels, batch_size, shuffle=split == "train")
    raise QnnError(f"unknown data set {name!r}; known: {list(DATASETS)}")


def _model_args(parser, help_text="zoo name, .pt from `tvm-qnn train`, or .onnx"):
    parser.add_argument("model", help=help_text)


def _bits_args(parser):
    parser.add_argument("--w-bits", type=bits, default=2, help="weight bits (1..8)")
    parser.add_argument("--a-bits", type=bits, default=2, help="activation bits (1..8)")
    parser.add_argument("--scheme", default="kquantile", choices=("kquantile", "uniform"),
                        help="weight levels: k-quantile (UNIQ) or uniform (NICE)")


# --------------------------------------------------------------------------- train
def _train_arguments(parser):
    parser.add_argument("--model", default="tiny_cnn", help="zoo model name")
    parser.add_argument("--data", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--limit", type=positive_int, default=None, help="use only the first N images")
    _bits_args(parser)
    parser.add_argument("--fp32-epochs", type=non_negative_int, default=1, help="float pre-training epochs")
    parser.add_argument("--epochs", type=non_negative_int, default=1, help="quantization-aware epochs")
    parser.add_argument("--lr", type=positive_float, default=0.05)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--out", required=True, help="directory for model.pt and recipe.json")


def _train(args):
    from tvm_qnn import bops, models
    from tvm_qnn import recipe as recipe_module
    from tvm_qnn.train import (QuantConfig, TrainConfig, Trainer, calibrate_clamps, evaluate,
                               export_float_model, export_recipe, prepare_qat)

    start = time.perf_counter()
    model = models.get_model(args.model)
    train = load_data(args.data, "train", args.limit, args.batch_size)
    test = load_data(args.data, "test", args.limit, args.batch_size)
    progress = not args.quiet
    if args.fp32_epochs:
        Trainer(model, train, test, TrainConfig(epochs=args.fp32_epochs, lr=args.lr),
                progress=progress, desc="fp32").fit()
    fp32_acc = evaluate(model, test)
    qat = prepare_qat(model, QuantConfig(args.w_bits, args.a_bits, args.scheme))
    calibrate_clamps(qat, itertools.islice(iter(train), 4))
    if args.epochs:
        Trainer(qat, train, test, TrainConfig(epochs=args.epochs, lr=args.lr / 5),
                progress=progress, desc="qat").fit()
    qat_acc = evaluate(qat, test)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = export_recipe(qat, args.model)
    float_model = export_float_model(qat)
    input_shape = (1, *models.INPUT_SHAPES[args.model])
    save_model_file(float_model, args.model, input_shape, out / "model.pt")
    recipe_module.save(recipe, out / "recipe.json")
    table = bops(float_model, input_shape, recipe)
    return {"model": str(out / "model.pt"), "recipe": str(out / "recipe.json"),
            "fp32_accuracy": fp32_acc, "quantized_accuracy": qat_acc, "gbops": table.total / 1e9,
            "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------- calibrate
def _calibrate_arguments(parser):
    _model_args(parser)
    parser.add_argument("--data", default="fashion-mnist", choices=DATASETS)
    parser.add_argument("--batches", type=positive_int, default=4, help="calibration batches")
    _bits_args(parser)
    parser.add_argument("--per-channel", action="store_true", help="one LUT per output channel")
    parser.add_argument("--zero-point", default="asymmetric", choices=("asymmetric", "symmetric"),
                        help="zero point of a layer input with negative values")
    parser.add_argument("--unsigned", action="store_true",
                        help="clip negative layer inputs to 0 (no zero points) instead")
    parser.add_argument("--out", required=True, help="recipe JSON to write")


def _calibrate(args):
    import tvm_qnn
    from tvm_qnn import recipe as recipe_module

    mod, params, _, name = import_model(args.model)
    loader = load_data(args.data, "train", args.batches * 128, batch_size=128)
    recipe = tvm_qnn.calibrate(mod, params, loader, w_bits=args.w_bits, a_bits=args.a_bits,
                               w_scheme=args.scheme, per_channel=args.per_channel,
                               max_batches=args.batches, model_name=name, progress=not args.quiet,
                               signed=False if args.unsigned else None, zero_point=args.zero_point)
    recipe_module.save(recipe, args.out)
    return {"recipe": args.out, "quantized_layers": len(recipe.layers),
            "fp32_layers": list(recipe.fp32_layers),
            "zero_point_layers": sorted(n for n, layer in recipe.layers.items() if layer.a_zero_point)}


# --------------------------------------------------------------------------- compile
def _compile_arguments(parser):
    _model_args(parser)
    parser.add_argument("--recipe", default=None, help="recipe JSON (omit for a float build)")
    parser.add_argument("--target", default="cpu", help="cpu, cpu-reference or fpga")
    parser.add_argument("--hw-config", default=None,
                        help="fpga: preset name (pynq_z1, ultrascale_plus) or JSON path")
    parser.add_argument("--tuning", default=None, help="tuning work dir from `tvm-qnn tune`")
    parser.add_argument("--integer-only", action="store_true",
                        help="cpu: the accelerator's integer-only arithmetic (outputs identical to --target fpga; "
                             "--hw-config then names the core to partition for)")
    parser.add_argument("--out", required=True,
                        help="export directory to write: a new or empty directory, or an earlier export with --force "
                             "(a directory holding anything else is refused)")
    parser.add_argument("--force", action="store_true", help="replace an earlier export at --out")


def _compile(args):
    import tvm_qnn

    from tvm_qnn import export_paths
    from tvm_qnn.compiler import EXPORT_FORMAT, MANIFEST

    target = check_target(args.target)
    export_paths.prepare(args.out, args.force, MANIFEST, EXPORT_FORMAT)  # refuse before the slow build
    recipe = load_recipe_file(args.recipe) if args.recipe else None
    integer_only = bool(args.integer_only)
    if args.integer_only and target != "cpu":
        raise QnnError(f"--integer-only needs --target cpu (got {target!r}; fpga is always integer-only)")
    if args.hw_config is not None:
        from tvm_qnn.rpc.board import load_hw_config

        if target != "fpga" and not args.integer_only:
            raise QnnError(f"--hw-config needs --target fpga or --integer-only (got {target!r})")
        config = load_hw_config(args.hw_config)
        target, integer_only = (target, config) if args.integer_only else (config, False)
    mod, params, example, _ = import_model(args.model)
    start = time.perf_counter()
    model = tvm_qnn.compile(mod, target=target, recipe=recipe, params=params,
                            tuning=args.tuning, integer_only=integer_only)
    compile_s = time.perf_counter() - start
    out = model.export(args.out, overwrite=args.force)
    return {"export": str(out), "target": model.target, "compile_s": compile_s,
            "inputs": model.inputs, "outputs": model.outputs}


# --------------------------------------------------------------------------- tune
def _tune_arguments(parser):
    _model_args(parser)
    parser.add_argument("--recipe", required=True, help="recipe JSON")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--trials", type=positive_int, default=16, help="measured candidates in total")
    parser.add_argument("--cost-model", default="bops-xgb", choices=("bops-xgb", "xgb", "random"))
    parser.add_argument("--work-dir", required=True, help="tuning database directory")
    parser.add_argument("--rpc", default=None, metavar="HOST:PORT", help="tracker of the boards")
    parser.add_argument("--key", default=None, help="board key at the tracker")


def _tune(args):
    import tvm_qnn
    from tvm_qnn.rpc import check_reachable, parse_address

    check_target(args.target)
    if Path(args.work_dir).exists() and not Path(args.work_dir).is_dir():
        from tvm_qnn.errors import TuningError

        raise TuningError(f"--work-dir {args.work_dir!r} is a file; name a directory for the tuning database")
    recipe = load_recipe_file(args.recipe)
    rpc = None
    if args.rpc:
        if not args.key:
            raise QnnError("--rpc needs --key (the boards' key at the tracker)")
        host, port = parse_address(args.rpc, "tracker")
        check_reachable(host, port, "tracker")
        rpc = (f"{host}:{port}", args.key)
    mod, params, _, _ = import_model(args.model)
    qmod = tvm_qnn.quantize(mod, params, recipe)
    start = time.perf_counter()
    result = tvm_qnn.tune(qmod, args.target, trials=args.trials, cost_model=args.cost_model,
                          work_dir=args.work_dir, rpc=rpc)
    summary = {"work_dir": args.work_dir, "trials": args.trials, "seconds": time.perf_counter() - start}
    if hasattr(result, "results"):  # tvm_qnn.tuning.TuneReport
        import dataclasses

        summary["kernels"] = [dataclasses.asdict(r) for r in result.results]
        if not args.json:
            print(result.table())
    return summary


# --------------------------------------------------------------------------- bench
def _bench_arguments(parser):
    parser.add_argument("export_dir", help="export directory to time")
    parser.add_argument("--baseline", default=None,
                        help="MODEL to time in PyTorch fp32 in the same run (speedup column)")
    parser.add_argument("--repeat", type=positive_int, default=10)


def _bench(args):
    import tvm_qnn

    existing_file(args.export_dir, "export directory")
    model = tvm_qnn.load(args.export_dir)
    timing = model.benchmark(repeat=args.repeat)
    summary = {"export": args.export_dir, **timing}
    if args.baseline:
        summary["torch_fp32_ms"] = _torch_ms(args.baseline, args.repeat, model)
        summary["speedup_vs_torch_fp32"] = summary["torch_fp32_ms"] / timing["mean_ms"]
    return summary


def check_baseline(module, example, spec: str, model) -> None:
    """QnnError unless the baseline has the export's input shape and parameter count."""
    from tvm_qnn.train.fold_bn import fold_batchnorm

    want = tuple(model.inputs[0]["shape"])
    if tuple(example.shape) != want:
        raise QnnError(f"--baseline {spec!r} takes input shape {list(example.shape)}; the export takes "
                       f"{list(want)} (not the same model: the speedup would be meaningless)")
    if model.param_count is None:
        raise QnnError(f"--baseline {spec!r}: the export records no parameter count (compiled from a module "
                       f"without params); cannot check it is the same model")
    count = sum(int(p.numel()) for p in fold_batchnorm(module).parameters())
    if count != model.param_count:
        raise QnnError(f"--baseline {spec!r} has {count} parameters (BatchNorm folded); the export has "
                       f"{model.param_count} (not the same model: the speedup would be meaningless)")


def _torch_ms(spec: str, repeat: int, model=None) -> float:
    import torch

    module, example, _ = load_torch_model(spec)
    if model is not None:
        check_baseline(module, example, spec, model)
    with torch.no_grad():
        module(example)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            module(example)
            samples.append(time.perf_counter() - start)
    return 1e3 * sorted(samples)[len(samples) // 2]


# --------------------------------------------------------------------------- plan / demo
def _plan_arguments(parser):
    parser.add_argument("model", help="network name (resnet18, alexnet, ...) or a stream-graph JSON")
    parser.add_argument("--devices", type=positive_int, default=1, help="number of FPGAs")
    parser.add_argument("--config", default="vu9p", help="device preset or device JSON")
    parser.add_argument("--fps", type=positive_float, default=None, help="target frames per second")
    parser.add_argument("--a-bits", type=bits, default=2)
    parser.add_argument("--w-bits", type=bits, default=2)


def _plan(args):
    import json

    from vta_ext.streaming import plan_cli

    text = plan_cli(args.model, args.devices, config=args.config, target_fps=args.fps,
                    a_bits=args.a_bits, w_bits=args.w_bits, as_json=args.json)
    if args.json:
        return json.loads(text) if isinstance(text, str) else text
    print(text)
    return None


def _demo_arguments(parser):
    parser.add_argument("--fast", action="store_true", help="tiny data and epochs (CI)")
    parser.add_argument("--out", default=None, help="where the demo writes results and plots")
    parser.add_argument("--steps", default=None, help="comma-separated subset of the demo steps")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch threads")


def _demo(args):
    try:
        from tvm_qnn import demo
    except ModuleNotFoundError as err:
        if err.name != "tvm_qnn.demo":
            raise
        raise QnnError("the demo (tvm_qnn/demo/) is not part of this installation") from None
    argv = ["--fast"] if args.fast else []
    for flag, value in (("--out", args.out), ("--steps", args.steps), ("--threads", args.threads)):
        if value is not None:
            argv += [flag, str(value)]
    if args.quiet:
        argv.append("--no-progress")
    try:
        code = demo.main(argv)
    except SystemExit as stop:  # the demo's own argument errors
        if stop.code in (0, None):
            return None
        raise QnnError(f"demo: {stop.code}") from None
    if code:
        raise QnnError(f"demo failed (exit code {code})")
    return None


register("train", Command(
    "quantization-aware training (UNIQ k-quantile / NICE uniform weights, learned clamps)",
    ("tvm-qnn train --model tiny_cnn --data fashion-mnist --w-bits 2 --a-bits 2 --out runs/tiny",
     "tvm-qnn train --model tiny_cnn --data digits --limit 512 --epochs 1 --out runs/quick --json"),
    _train_arguments, _train))
register("calibrate", Command(
    "post-training recipe (LUTs from weights, clamps from activation statistics)",
    ("tvm-qnn calibrate runs/tiny/model.pt --w-bits 2 --a-bits 2 --out recipe.json",
     "tvm-qnn calibrate model.onnx --data digits --scheme uniform --out recipe.json"),
    _calibrate_arguments, _calibrate))
register("compile", Command(
    "quantize and compile for cpu / cpu-reference / fpga, write an export directory",
    ("tvm-qnn compile runs/tiny/model.pt --recipe runs/tiny/recipe.json --target cpu --out build/cpu",
     "tvm-qnn compile runs/tiny/model.pt --recipe runs/tiny/recipe.json --target fpga "
     "--hw-config pynq_z1 --out build/fpga"),
    _compile_arguments, _compile))
register("tune", Command(
    "tune the bit-serial kernels with MetaSchedule (locally or on RPC boards)",
    ("tvm-qnn tune runs/tiny/model.pt --recipe runs/tiny/recipe.json --trials 16 --work-dir tune/",
     "tvm-qnn tune model.pt --recipe r.json --work-dir tune/ --rpc 127.0.0.1:9190 --key cpu"),
    _tune_arguments, _tune))
register("bench", Command(
    "time an export (TVM time_evaluator), optionally against PyTorch fp32",
    ("tvm-qnn bench build/cpu", "tvm-qnn bench build/cpu --baseline runs/tiny/model.pt --json"),
    _bench_arguments, _bench))
register("plan", Command(
    "multi-FPGA streaming plan: per-device layers, throughput, latency, FIFO depths",
    ("tvm-qnn plan resnet18 --devices 2 --config vu9p",
     "tvm-qnn plan alexnet --devices 4 --fps 1000 --json"),
    _plan_arguments, _plan))
register("demo", Command(
    "the whole story: train -> quantize -> compile cpu/fpga -> run locally and over RPC",
    ("tvm-qnn demo", "tvm-qnn demo --fast"),
    _demo_arguments, _demo))
