"""Exports never destroy a user's files, and load() refuses corrupt exports without crashing.

Every refusal asserts the error class, that the message names the path at fault, and (for the
data-loss cases) that the user's files are still there, byte for byte.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tvm_qnn
from tvm_qnn import export_paths
from tvm_qnn.compiler import MANIFEST, seal_manifest
from tvm_qnn.errors import ExportError
from tvm_qnn.models import tiny_cnn

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compiled():
    torch.manual_seed(0)
    mod, params = tvm_qnn.from_torch(tiny_cnn().eval(), torch.rand(1, 1, 28, 28))
    recipe = tvm_qnn.calibrate(mod, params, torch.rand(4, 1, 28, 28), progress=False)
    return tvm_qnn.compile(mod, target="cpu-reference", recipe=recipe, params=params)


def user_files(directory):
    """A directory of the user's: two files and a sub-directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "notes.txt").write_text("my notes")
    (directory / "data").mkdir()
    (directory / "data" / "x.npy").write_bytes(b"\x93NUMPY-not-really")
    return snapshot(directory)


def snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_user_directory_is_refused_and_kept(compiled, tmp_path):
    before = user_files(tmp_path / "mine")
    for overwrite in (False, True):
        with pytest.raises(ExportError, match=r"mine is not empty and is not a tvm-qnn export.*notes.txt"):
            compiled.export(tmp_path / "mine", overwrite=overwrite)
    assert snapshot(tmp_path / "mine") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging left behind


def test_regular_file_is_refused_and_kept(compiled, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"precious")
    with pytest.raises(ExportError, match=r"model.bin is a file, not an export directory"):
        compiled.export(path, overwrite=True)
    assert path.read_bytes() == b"precious"


def test_export_with_user_files_added_is_refused(compiled, tmp_path):
    out = compiled.export(tmp_path / "exp")
    (out / "my_results.csv").write_text("1,2,3")
    with pytest.raises(ExportError, match=r"exp is a tvm-qnn export but also holds files it did not write.*my_results.csv"):
        compiled.export(out, overwrite=True)
    assert (out / "my_results.csv").read_text() == "1,2,3"


def test_an_earlier_export_is_replaced_only_with_overwrite(compiled, tmp_path):
    out = compiled.export(tmp_path / "exp")
    library = (out / "model.so").read_bytes()
    with pytest.raises(ExportError, match=r"exp already holds an export; pass overwrite=True"):
        compiled.export(out)
    assert compiled.export(out, overwrite=True) == out
    assert (out / "model.so").read_bytes() == library
    x = np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(tvm_qnn.load(out).run(x), compiled.run(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_export_under_a_file_or_in_proc_is_an_export_error(compiled, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ExportError, match=r"afile is a file, not a directory"):
        compiled.export(tmp_path / "afile" / "sub" / "out")
    assert (tmp_path / "afile").read_text() == "x"
    with pytest.raises(ExportError, match=r"/proc"):
        compiled.export("/proc/tvm-qnn-export")


def test_stale_staging_of_a_killed_export_is_removed(compiled, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".exp{export_paths.STAGING_TAG}{dead_pid}.abc123"
    stale.mkdir()
    (stale / "model.so").write_bytes(b"half")
    live = tmp_path / f".other{export_paths.STAGING_TAG}{os.getppid()}.def456"  # a running process's
    live.mkdir()
    compiled.export(tmp_path / "exp")
    assert not stale.exists()
    assert live.exists()


def test_truncated_library_with_updated_checksums_is_an_export_error_not_a_crash(compiled, tmp_path):
    out = compiled.export(tmp_path / "exp")
    library = out / "model.so"
    library.write_bytes(library.read_bytes()[: library.stat().st_size // 2])
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"]["model.so"] = tvm_qnn.compiler.sha256_file(library)
    (out / MANIFEST).write_text(json.dumps(seal_manifest({k: v for k, v in manifest.items()
                                                          if k != "manifest_sha256"})))
    # in a child process: before the ELF check, this load died of SIGBUS
    code = ("import sys, tvm_qnn\nfrom tvm_qnn.errors import ExportError\n"
            "try:\n    tvm_qnn.load(sys.argv[1])\nexcept ExportError as err:\n    print('ExportError', err)\n")
    child = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    assert "ExportError" in child.stdout and "model.so is truncated" in child.stdout, child.stdout
    with pytest.raises(ExportError, match=r"model.so is truncated"):
        tvm_qnn.load(out)


def test_manifest_with_an_edited_input_shape_is_refused(compiled, tmp_path):
    out = compiled.export(tmp_path / "exp")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["inputs"][0]["shape"] = [1, 3, 32, 32]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"manifest.json was modified after export"):
        tvm_qnn.load(out)
    manifest["inputs"][0]["shape"] = [1, 0, "28"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match=r"inputs\[0\]"):
        tvm_qnn.load(out)
