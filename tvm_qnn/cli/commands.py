"""The ``tvm-qnn`` subcommands, each a thin wrapper over one public API call.

Every command returns a JSON-able dict (printed by ``tvm_qnn.cli``); heavy imports happen
inside the command so ``tvm-qnn --help`` stays fast. Input files are checked up front so that a
missing file is one clear line, not a traceback from deep inside torch or TVM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from tvm_qnn.errors import QnnError, RemoteError, UnsupportedOpError


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
    parser.add_argument("--port", type=int, default=9091, help="port to bind (default 9091)")
    parser.add_argument("--port-end", type=int, default=None,
                        help="search ports in [port, port-end) (default: port only)")
    parser.add_argument("--tracker", default=None, help="tracker HOST:PORT to register at")
    parser.add_argument("--key", default="", help="device key at the tracker, e.g. cpu or fpga")
    parser.add_argument("--fpga", default=None, metavar="CONFIG",
                        help="register the accelerator runtime for this hardware config "
                             "(preset name such as pynq_z1, or a JSON path)")
    parser.add_argument("--rtl", action="store_true",
                        help="with --fpga: run accelerator layers on the whole core's RTL (iverilog) "
                             "instead of the functional simulator")


def _serve(args):
    from tvm_qnn.rpc.board import serve

    serve(args.host, args.port, tracker=args.tracker, key=args.key, fpga_config=args.fpga,
          port_end=args.port_end, silent=not args.debug, rtl=args.rtl)
    return None


def _run_arguments(parser):
    parser.add_argument("export_dir", help="directory written by `tvm-qnn compile --out`")
    parser.add_argument("input", help="input tensor as .npy (NCHW float32)")
    parser.add_argument("--rpc", default=None, metavar="HOST:PORT",
                        help="run on a board: a tracker address (with --key) or a board address")
    parser.add_argument("--key", default=None, help="board key at the tracker")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats")
    parser.add_argument("--output", default=None, help="save the output as .npy here")


def _run(args):
    import numpy as np

    existing_file(args.export_dir, "export directory")
    x = load_array(args.input)
    if args.rpc:
        from tvm_qnn.rpc import remote

        result = remote(args.export_dir, args.rpc, args.key, inputs=x, timeout_s=args.timeout,
                        repeat=args.repeat)
        output, summary = result.output, result.as_dict()
    else:
        if args.key:
            raise RemoteError("--key needs --rpc HOST:PORT")
        import tvm_qnn

        model = tvm_qnn.load(args.export_dir)
        output = np.asarray(model.run(x))
        timing = model.benchmark(repeat=args.repeat)
        summary = {"board": "local", **_timing_dict(timing)}
    if args.output:
        np.save(args.output, output)
    summary.update(output_shape=list(output.shape),
                   top1=output.reshape(output.shape[0], -1).argmax(axis=1).tolist())
    return summary


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

# the model-side commands (train, calibrate, compile, tune, bench, plan, demo)
from tvm_qnn.cli import model_commands  # noqa: E402,F401  (registers its commands)

__all__ = ["COMMANDS", "Command", "check_target", "existing_file", "load_array",
           "load_recipe_file", "register"]
