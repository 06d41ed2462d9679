"""Every tutorial runs end to end in its ``--fast`` mode, as a user would run it (a subprocess),
and prints the facts it promises. Each tutorial also asserts its own numeric checks
(compiled vs fake-quant, simulator vs CPU, remote vs local), so a wrong answer fails here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"

# tutorial -> lines (substrings) its output must contain
EXPECTED = {
    "01_quantize_and_compile.py": ("recipe:", "BOPs:", "top-1 agreement", "latency:",
                                   "export -> load: identical output"),
    "02_train_uniq_nice.py": ("test accuracy vs BOPs", "UNIQ w2a2", "NICE w2a2", "plot:"),
    "03_fpga_target.py": ("core pynq_z1", "top-1 agreement 1.0000", "on xc7z020", "LUT", "deadlock: False",
                          "Streaming plan"),
    "04_tune_bitserial.py": ("before tuning", "after tuning", "identical outputs: True"),
    "05_rpc_deploy.py": ("bit-identical to the local run: True", "as expected:",
                         "all boards and the tracker stopped"),
}


def test_every_tutorial_is_covered():
    assert sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.rpc) if "rpc" in name
                                  else name for name in sorted(EXPECTED)])
def test_tutorial_fast_mode(name, tmp_path):
    script = TUTORIALS / name
    argv = [sys.executable, str(script), "--fast"]
    if name.startswith("02_"):
        argv += ["--out", str(tmp_path)]
    started = time.time()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    for needle in EXPECTED[name]:
        assert needle in proc.stdout, f"{name}: {needle!r} missing from its output"
    if name.startswith("02_"):
        assert (tmp_path / "02_accuracy_vs_bops.png").stat().st_size > 0
    # nothing the tutorial started outlives it: every process it started ran in tmp_path
    # (TVM's tracker and servers keep worker children; orphans are re-parented, so look
    # system-wide)
    assert _processes_started_in(tmp_path, started) == []


def _processes_started_in(directory, started):
    found = []
    for proc in psutil.process_iter(["cmdline", "create_time", "cwd"]):
        if proc.info["create_time"] >= started - 1 and proc.info["cwd"] == str(directory):
            found.append((proc.pid, " ".join(proc.info["cmdline"] or [])[:120]))
    return found
