"""Gradual QAT with distillation on digits: one process vs torchrun with 2 gloo processes (slow)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(__file__), "digits_qat_script.py")
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")


def _run(cache, out, nproc=1, stop_after=None):
    command = [sys.executable, SCRIPT] if nproc == 1 else [TORCHRUN, "--standalone", f"--nproc_per_node={nproc}",
                                                           SCRIPT]
    command += ["--cache", str(cache), "--out", str(out)]
    if stop_after is not None:
        command += ["--stop-after", str(stop_after)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(command, check=True, env=env, timeout=900, capture_output=True)
    with open(out, encoding="utf-8") as handle:
        return json.load(handle)


def _layers(result):
    return {name: (layer["w_bits"], layer["a_bits"], layer["w_scheme"], np.shape(layer["lut"]))
            for name, layer in result["recipe"]["layers"].items()}


@pytest.mark.slow
def test_qat_with_distillation_single_vs_two_gloo_processes_and_resume_across_world_sizes(tmp_path):
    assert TORCHRUN, "torchrun not found beside the interpreter"
    single_cache, ddp_cache, mixed_cache = (tmp_path / n for n in ("single", "ddp", "mixed"))
    single = _run(single_cache, tmp_path / "single.json")  # trains and caches the fp32 teacher too
    assert single["world_size"] == 1 and single["fp32"] > 0.9
    assert single["qat"] >= single["ptq"] + 0.20, single
    for cache in (ddp_cache, mixed_cache):  # the same cached teacher for every run
        shutil.copytree(single_cache, cache, ignore=shutil.ignore_patterns("qat-*"))
    ddp = _run(ddp_cache, tmp_path / "ddp.json", nproc=2)
    assert ddp["world_size"] == 2 and ddp["fp32"] == single["fp32"] and ddp["ptq"] == single["ptq"]
    assert abs(ddp["qat"] - single["qat"]) <= 0.03, (single["qat"], ddp["qat"])
    assert _layers(ddp) == _layers(single) and ddp["recipe"]["fp32_layers"] == single["recipe"]["fp32_layers"]
    # a 2-process run stopped after 3 epochs, resumed by one process
    partial = _run(mixed_cache, tmp_path / "partial.json", nproc=2, stop_after=3)
    assert partial["epochs_done"] == 3
    resumed = _run(mixed_cache, tmp_path / "resumed.json")
    assert resumed["epochs_done"] == single["epochs_done"] and len(resumed["history"]) == single["epochs_done"]
    assert resumed["history"][:3] == partial["history"]
    assert abs(resumed["qat"] - single["qat"]) <= 0.03, (single["qat"], resumed["qat"])
    assert _layers(resumed) == _layers(single)
