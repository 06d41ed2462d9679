"""Finding and running the open-source hardware tools (yosys, iverilog, verilator, nextpnr).

Every tool is looked up on PATH when it is needed (never at import). A missing tool raises
``ToolNotFoundError`` naming the Debian package that provides it, because ``make setup``
installs exactly those packages. External runs are bounded in wall time and address space so a
runaway synthesis (per-lane LUT decode at 64 lanes, b_w = 8 took 600 s and 6 GB in a probe)
cannot take the shared machine down.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

from tvm_qnn.errors import ToolNotFoundError

# tool executable -> Debian package that installs it
DEBIAN_PACKAGE = {
    "yosys": "yosys",
    "iverilog": "iverilog",
    "vvp": "iverilog",
    "verilator": "verilator",
    "nextpnr-ice40": "nextpnr-ice40",
    "icepack": "fpga-icestorm",
    "icetime": "fpga-icestorm",
}

# argument that makes each tool print its version on one line
_VERSION_ARGS = {
    "yosys": ["-V"],
    "iverilog": ["-V"],
    "vvp": ["-V"],
    "verilator": ["--version"],
    "nextpnr-ice40": ["--version"],
}


def find_tool(name: str) -> str:
    """Absolute path of tool ``name``; ``ToolNotFoundError`` naming its Debian package if absent."""
    if name not in DEBIAN_PACKAGE:
        raise ToolNotFoundError(f"unknown tool {name!r}; known: {sorted(DEBIAN_PACKAGE)}")
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGE[name]
        raise ToolNotFoundError(
            f"{name} not found on PATH: install the Debian package '{package}' "
            f"(`make setup`, or `apt-get install {package}`)"
        )
    return path


def has_tool(name: str) -> bool:
    """True when ``name`` is on PATH (used to pick verilator only where present)."""
    try:
        find_tool(name)
    except ToolNotFoundError:
        return False
    return True


def tool_version(name: str) -> str:
    """First line of the tool's version banner, e.g. ``Yosys 0.23 (git sha1 7ce5011c24b)``."""
    path = find_tool(name)
    proc = subprocess.run([path, *_VERSION_ARGS.get(name, ["--version"])],
                          capture_output=True, text=True, timeout=30)
    text = (proc.stdout or proc.stderr).strip().splitlines()
    return text[0] if text else "unknown"


@dataclass(frozen=True)
class ToolRun:
    """Result of one bounded external run."""

    command: tuple
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool

    def tail(self, lines: int = 25) -> str:
        """Last ``lines`` lines of stdout+stderr (what an error message shows)."""
        text = (self.stdout + "\n" + self.stderr).strip().splitlines()
        return "\n".join(text[-lines:])


def run_bounded(command, cwd=None, timeout_s: float = 300.0, mem_mb: int = 4096) -> ToolRun:
    """Run ``command`` with a wall-time limit and an address-space limit (ulimit -v).

    The child gets its own process group so a timeout kills it and everything it started.
    Never raises for a failing tool: the caller decides how to report ``returncode``.
    """
    mem_bytes = int(mem_mb) * 1024 * 1024

    def limit_child():
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    start = time.monotonic()
    proc = subprocess.Popen([str(c) for c in command], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit_child)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return ToolRun(tuple(str(c) for c in command), proc.returncode, stdout, stderr,
                   time.monotonic() - start, timed_out)
