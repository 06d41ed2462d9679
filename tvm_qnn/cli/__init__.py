"""The ``tvm-qnn`` command: one subcommand per public API call.

Each subcommand lives in ``tvm_qnn.cli.commands`` as a ``Command`` (its arguments, examples and
a function returning a JSON-able dict). This module only parses, dispatches, prints (human text
or ``--json``) and turns errors into one line and an exit code:

  0 ok · 1 QnnError (bad input: recipe, shape, export, config, data set, argument, NaN/inf input,
  unsupported op) or an OS error on a user's path · 2 usage (unknown flag, a flag value out of range) ·
  3 RemoteError (tracker/board) · 4 TuningError · 5 CompileError · 6 ToolNotFoundError ·
  70 unexpected internal error · 130 interrupted.

Tracebacks are shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import json
import sys

from tvm_qnn import errors

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
# most specific first; the first isinstance match wins
EXIT_CODES = (
    (errors.RemoteError, 3),
    (errors.TuningError, 4),
    (errors.CompileError, 5),
    (errors.ToolNotFoundError, 6),
    (errors.QnnError, 1),
    (OSError, 1),  # a user's path: missing, not writable, a directory where a file is expected
)

ORDER = ("train", "calibrate", "compile", "tune", "bench", "plan", "serve", "run", "bitstream", "demo")
EPILOG = """examples:
  tvm-qnn train --model tiny_cnn --w-bits 2 --a-bits 2 --epochs 1 --out runs/tiny
  tvm-qnn compile runs/tiny/model.pt --recipe runs/tiny/recipe.json --target cpu --out build/cpu
  tvm-qnn run build/cpu input.npy
  tvm-qnn serve --host 127.0.0.1 --port 9091 --tracker 127.0.0.1:9190 --key cpu
  tvm-qnn run --rpc 127.0.0.1:9190 --key cpu build/cpu input.npy --json
  tvm-qnn <command> --help     (each command lists its own examples)
exit codes: 0 ok, 1 bad input, 2 usage (incl. flag values out of range), 3 remote (tracker/board), 4 tuning, 5 compile,
            6 missing tool, 70 internal error, 130 interrupted"""


def build_parser() -> argparse.ArgumentParser:
    from tvm_qnn.cli.commands import COMMANDS

    common = _common_options(argparse.SUPPRESS)  # after the command; must not reset the below

    import tvm_qnn

    parser = argparse.ArgumentParser(
        prog="tvm-qnn", parents=[_common_options(False)], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Quantized neural networks (UNIQ/NICE) compiled by TVM to bit-serial CPU "
                    "code and a VTA-style FPGA accelerator.")
    parser.add_argument("--version", action="version", version=f"tvm-qnn {tvm_qnn.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(COMMANDS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        command = COMMANDS[name]
        sub = subparsers.add_parser(
            name, parents=[common], help=command.summary, description=command.summary,
            epilog="examples:\n" + "\n".join(f"  {line}" for line in command.examples),
            formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def _common_options(default) -> argparse.ArgumentParser:
    """--json/--debug/--quiet, accepted before or after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=default,
                        help="print the result as one JSON object")
    common.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks on errors")
    common.add_argument("--quiet", action="store_true", default=default, help="no progress bars")
    return common


def exit_code_for(error: BaseException) -> int:
    for error_type, code in EXIT_CODES:
        if isinstance(error, error_type):
            return code
    return EXIT_INTERNAL


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=_jsonable, sort_keys=True))
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=_jsonable)
        print(f"{key}: {value}")


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    return repr(value)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on usage errors (argparse's own convention)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        print("tvm-qnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the one place errors become exit codes
        if args.debug:
            raise
        code = exit_code_for(error)
        kind = "internal error" if code == EXIT_INTERNAL else type(error).__name__
        hint = " (rerun with --debug for the traceback)" if code == EXIT_INTERNAL else ""
        message = " ".join(str(error).split()) or repr(error)
        print(f"tvm-qnn {args.command}: {kind}: {message}{hint}", file=sys.stderr)
        return code
    if result is not None:
        print_result(result, args.json)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
