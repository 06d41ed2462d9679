"""The ``tvm-qnn`` subcommands, each a thin wrapper over one public API call.

Every command returns a JSON-able dict (printed by ``tvm_qnn.cli``); heavy imports happen
inside the command so ``tvm-qnn --help`` stays fast. Input files are checked up front so that a
missing file is one clear line, not a traceback from deep inside torch or TVM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from tvm_qnn.errors import QnnError, QuantizationError, RemoteError, UnsupportedOpError


@dataclasses.dataclass(frozen=True)
class Command:
    summary: str
    examples: tuple
    add_arguments: Callable
    run: Callable


def existing_file(path: str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    return path


def _number_type(convert, ok, expected):
    """An argparse ``type=`` that refuses values outside a range (a usage error, exit 2)."""
    import argparse
    import math

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        if isinstance(value, float) and not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range; expected {expected}")
        return value

    parse.__name__ = expected  # argparse names the type in its messages
    return parse


positive_int = _number_type(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _number_type(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number_type(float, lambda v: v > 0, "a finite number > 0")
bits = _number_type(int, lambda v: 1 <= v <= 8, "an integer in 1..8")
port_number = _number_type(int, lambda v: 0 < v < 65536, "a port in 1..65535")


def load_array(path: str):
    import numpy as np

    path = existing_file(path, "input")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise QnnError(f"input {str(path)!r} is not a .npy array: {err}") from None


def load_recipe_file(path: str):
    from tvm_qnn import recipe as recipe_module

    return recipe_module.load(existing_file(path, "recipe"))


def check_target(name: str) -> str:
    """Unknown target -> UnsupportedOpError listing the registered ones."""
    try:
        from tvm_qnn.targets import get_target
    except ImportError:
        known = ("cpu", "cpu-reference", "fpga")
        if name not in known:
            raise UnsupportedOpError(f"unknown target {name!r}; known targets: {list(known)}")
        return name
    get_target(name)
    return name


# --------------------------------------------------------------------------- serve / run
def _serve_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=9091, help="port to bind (default 9091)")
    parser.add_argument("--port-end", type=port_number, default=None,
                        help="search ports in [port, port-end) (default: port only)")
    parser.add_argument("--tracker", default=None, help="tracker HOST:PORT to register at")
    parser.add_argument("--key", default="", help="device key at the tracker, e.g. cpu or fpga")
    parser.add_argument("--fpga", default=None, metavar="CONFIG",
                        help="register the accelerator runtime for this hardware config "
                             "(preset name such as pynq_z1, or a JSON path)")
    parser.add_argument("--rtl", action="store_true",
                        help="with --fpga: run accelerator layers on the whole core's RTL instead of the "
                             "functional simulator")
    parser.add_argument("--rtl-simulator", choices=("iverilog", "verilator"), default="iverilog",
                        help="with --rtl: the RTL simulator (verilator compiles the core once, then runs "
                             "several times faster; default %(default)s)")


def _serve(args):
    from tvm_qnn.rpc.board import serve

    serve(args.host, args.port, tracker=args.tracker, key=args.key, fpga_config=args.fpga,
          port_end=args.port_end, silent=not args.debug, rtl=args.rtl, rtl_simulator=args.rtl_simulator)
    return None


def _run_arguments(parser):
    parser.add_argument("export_dir", help="directory written by `tvm-qnn compile --out`")
    parser.add_argument("input", help="input tensor as .npy (NCHW float32)")
    parser.add_argument("--rpc", default=None, metavar="HOST:PORT",
                        help="run on a board: a tracker address (with --key) or a board address")
    parser.add_argument("--key", default=None, help="board key at the tracker")
    parser.add_argument("--timeout", type=positive_float, default=120.0, help="seconds before giving up")
    parser.add_argument("--repeat", type=positive_int, default=3, help="timing repeats")
    parser.add_argument("--output", default=None, help="save the output as .npy here")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="run inputs holding NaN/inf anyway (refused by default: quantized layers "
                             "clip them and the output looks normal but is wrong)")


def _run(args):
    import numpy as np

    existing_file(args.export_dir, "export directory")
    x = load_array(args.input)
    if args.rpc:
        from tvm_qnn.rpc import remote

        try:
            result = remote(args.export_dir, args.rpc, args.key, inputs=x, timeout_s=args.timeout,
                            repeat=args.repeat, check_finite=not args.allow_nonfinite)
        except QuantizationError as err:
            raise QuantizationError(str(err).replace("check_finite=False", "--allow-nonfinite")) from None
        output, summary = result.output, result.as_dict()
    else:
        if args.key:
            raise RemoteError("--key needs --rpc HOST:PORT")
        import tvm_qnn

        model = tvm_qnn.load(args.export_dir)
        try:
            output = np.asarray(model.run(x, check_finite=not args.allow_nonfinite))
        except QuantizationError as err:  # name the flag, not the keyword argument
            raise QuantizationError(str(err).replace("check_finite=False", "--allow-nonfinite")) from None
        timing = model.benchmark(repeat=args.repeat)
        summary = {"board": "local", **_timing_dict(timing)}
    if args.output:
        np.save(args.output, output)
    summary.update(output_shape=list(output.shape),
                   top1=output.reshape(output.shape[0], -1).argmax(axis=1).tolist())
    return summary


# --------------------------------------------------------------------------- bitstream
def _bitstream_arguments(parser):
    parser.add_argument("--hw-config", required=True, metavar="CONFIG",
                        help="hardware config naming an iCE40 part (preset such as ice40_hx8k, or a JSON path)")
    parser.add_argument("-o", "--out", required=True, help="directory for core.bin and report.json")
    parser.add_argument("--seed", type=non_negative_int, default=1, help="nextpnr placement seed (default 1)")
    parser.add_argument("--timeout", type=positive_float, default=3600.0,
                        help="seconds each of synthesis and place-and-route may take (default 3600)")


def _bitstream(args):
    from tvm_qnn.rpc.board import load_hw_config
    from vta_ext.rtl.bitstream import build_bitstream

    config = load_hw_config(args.hw_config)
    report = build_bitstream(config, args.out, seed=args.seed, timeout_s=args.timeout)
    return {"bitstream": str(Path(args.out) / "core.bin"), "report": str(Path(args.out) / "report.json"),
            **{k: report[k] for k in ("config", "part", "package", "clock_mhz", "fmax_mhz", "timing_met",
                                      "utilisation", "bitstream_bytes")}}


def _timing_dict(timing) -> dict:
    if isinstance(timing, dict):
        return timing
    if dataclasses.is_dataclass(timing):
        return dataclasses.asdict(timing)
    return {"mean_ms": float(getattr(timing, "mean_ms", timing))}


COMMANDS: dict[str, Command] = {}


def register(name: str, command: Command) -> None:
    COMMANDS[name] = command


register("serve", Command(
    "run a TVM RPC board (optionally with the FPGA runtime) until terminated",
    ("tvm-qnn serve --host 127.0.0.1 --port 9091 --tracker 127.0.0.1:9190 --key cpu",
     "tvm-qnn serve --port 9092 --tracker 127.0.0.1:9190 --key fpga --fpga pynq_z1"),
    _serve_arguments, _serve))
register("run", Command(
    "run an export locally or on an RPC board, print timing and top-1",
    ("tvm-qnn run build/cpu x.npy",
     "tvm-qnn run --rpc 127.0.0.1:9190 --key cpu build/cpu x.npy --json",
     "tvm-qnn run --rpc 127.0.0.1:9190 --key fpga build/fpga x.npy --output y.npy"),
    _run_arguments, _run))

register("bitstream", Command(
    "build an iCE40 bitstream of a config's whole core (yosys -> nextpnr-ice40 -> icepack)",
    ("tvm-qnn bitstream --hw-config ice40_hx8k -o build/ice40",),
    _bitstream_arguments, _bitstream))

# the model-side commands (train, calibrate, compile, tune, bench, plan, demo)
from tvm_qnn.cli import model_commands  # noqa: E402,F401  (registers its commands)

__all__ = ["COMMANDS", "Command", "bits", "check_target", "existing_file", "load_array",
           "load_recipe_file", "non_negative_int", "port_number", "positive_float", "positive_int",
           "register"]
