"""Running Verilog test benches with iverilog (default) or verilator, and packing hex vectors.

iverilog is the default simulator: Verilator 5.006 (Debian bookworm) mis-simulated wide input
words in a probe on these machines while iverilog was right throughout, and our ports are wide
(a 16 x 16 x 8-bit weight tile is 2048 bits). Verilator is used only when asked for.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from tvm_qnn.errors import QnnError, ShapeError
from vta_ext.rtl.tools import find_tool, run_bounded

VERILOG_DIR = Path(__file__).resolve().parent / "verilog"
# the bit-serial GEMM unit and the modules it instantiates (every top that holds a GEMM needs them all)
GEMM_MODULES = ("gemm_unit", "gemm_bitplane", "gemm_onehot", "gemm_decode", "gemm_decode_column", "bitserial_acc",
                "popcount")
SIMULATORS = ("iverilog", "verilator")


class SimulationError(QnnError):
    """A Verilog simulation failed to compile or run; carries the tool's last lines."""


def verilog_sources(*modules: str) -> list[Path]:
    """Paths of the named modules under ``vta_ext/rtl/verilog`` (one module per file)."""
    paths = [VERILOG_DIR / f"{name}.v" for name in modules]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SimulationError(f"Verilog source(s) {missing} not found")
    return paths


def pack_words(values, width: int) -> int:
    """Pack a 1-D sequence of integers (two's complement for negatives) into one big int:
    element ``k`` occupies bits ``[k*width, (k+1)*width)`` -- the lane layout of every port."""
    mask = (1 << width) - 1
    word = 0
    for k, value in enumerate(np.asarray(values).reshape(-1).tolist()):
        word |= (int(value) & mask) << (k * width)
    return word


def unpack_words(word: int, count: int, width: int, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_words` (int64 array)."""
    mask = (1 << width) - 1
    out = np.empty(count, dtype=np.int64)
    for k in range(count):
        value = (word >> (k * width)) & mask
        if signed and value >> (width - 1):
            value -= 1 << width
        out[k] = value
    return out


def write_hex(path: Path, words, width_bits: int) -> None:
    """One hex word per line for ``$readmemh`` (zero-padded to the memory width)."""
    digits = max(1, -(-width_bits // 4))
    Path(path).write_text("".join(f"{int(w):0{digits}x}\n" for w in words))


def run_testbench(testbench: str, modules, params: dict, plusargs: dict | None = None,
                  simulator: str = "iverilog", workdir=None, timeout_s: float = 300.0,
                  include_dirs=()) -> str:
    """Compile ``testbench`` (a module name under verilog/) with ``modules`` and run it.

    ``params`` override the test bench's parameters; ``plusargs`` become ``+key=value``.
    Returns the simulation's stdout; a compile or run failure raises SimulationError with the
    tool's last lines and the parameters.
    """
    with tempfile.TemporaryDirectory(prefix="qnn_rtl_sim_") as tmp:
        work = Path(workdir or tmp)
        run_cmd = build_testbench(testbench, modules, params, simulator, work, timeout_s, include_dirs)
        return run_built(run_cmd, plusargs, work, timeout_s, f"{simulator} run of {testbench} with {params}")


def build_testbench(testbench: str, modules, params: dict, simulator: str, work: Path, timeout_s: float = 300.0,
                    include_dirs=()) -> list:
    """Compile ``testbench`` with ``modules`` in ``work``; returns the command that runs it (no plusargs)."""
    if simulator not in SIMULATORS:
        raise SimulationError(f"simulator={simulator!r}; known: {list(SIMULATORS)}")
    sources = verilog_sources(testbench, *modules)
    if simulator == "iverilog":
        binary = work / "sim.vvp"
        compile_cmd = [find_tool("iverilog"), "-g2012", "-s", testbench, "-o", binary]
        compile_cmd += [f"-I{d}" for d in include_dirs]
        compile_cmd += [f"-P{testbench}.{k}={int(v)}" for k, v in params.items()]
        run_cmd = [find_tool("vvp"), "-n", binary]
    else:
        obj = work / "obj_dir"
        compile_cmd = [find_tool("verilator"), "--binary", "--timing", "-Wno-fatal", "-Wno-lint",
                       "-Wno-style", "--top-module", testbench, "--Mdir", obj, "-o", "sim"]
        compile_cmd += [f"-G{k}={int(v)}" for k, v in params.items()]
        compile_cmd += [f"-I{d}" for d in include_dirs]
        run_cmd = [obj / "sim"]
    built = run_bounded([*compile_cmd, *sources], cwd=work, timeout_s=timeout_s, mem_mb=4096)
    if built.returncode != 0:
        raise SimulationError(f"{simulator} failed to build {testbench} with {params}:\n{built.tail()}")
    return run_cmd


def run_built(run_cmd, plusargs: dict | None, work: Path, timeout_s: float, where: str) -> str:
    """Run a built test bench with ``+key=value`` plusargs; stdout, or SimulationError with its last lines."""
    plus = [f"+{k}={v}" for k, v in (plusargs or {}).items()]
    ran = run_bounded([*run_cmd, *plus], cwd=work, timeout_s=timeout_s, mem_mb=4096)
    if ran.returncode != 0 or ran.timed_out:
        why = "timed out" if ran.timed_out else f"exit {ran.returncode}"
        raise SimulationError(f"{where} {why}:\n{ran.tail()}")
    return ran.stdout


def check_range(name: str, values, lo: int, hi: int) -> np.ndarray:
    """Integer array with every element in [lo, hi], else ShapeError naming the operand."""
    array = np.asarray(values)
    if array.size and (array.min() < lo or array.max() > hi):
        raise ShapeError(f"{name} has values in [{array.min()}, {array.max()}]; expected {lo}..{hi}")
    return array.astype(np.int64)
